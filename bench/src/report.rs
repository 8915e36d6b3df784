//! The one table every section adds rows to:
//! `metric | ours | reference | target | ok`.

use std::fmt::Write;

/// One measured line of the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    pub ours: String,
    pub reference: String,
    pub target: String,
    /// Whether the target is met; `None` where there is nothing to judge.
    pub ok: Option<bool>,
}

impl Row {
    pub fn new(metric: impl Into<String>) -> Self {
        Row {
            metric: metric.into(),
            ours: String::new(),
            reference: String::new(),
            target: String::new(),
            ok: None,
        }
    }

    pub fn ours(mut self, v: impl Into<String>) -> Self {
        self.ours = v.into();
        self
    }

    pub fn reference(mut self, v: impl Into<String>) -> Self {
        self.reference = v.into();
        self
    }

    pub fn target(mut self, v: impl Into<String>, ok: Option<bool>) -> Self {
        self.target = v.into();
        self.ok = ok;
        self
    }
}

/// Renders rows as an aligned text table, with a heading per section.
pub fn render<T: AsRef<str>>(sections: &[(T, Vec<Row>)]) -> String {
    let header = ["metric", "ours", "reference", "target", "ok"];
    let cells = |r: &Row| {
        let ok = match r.ok {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        [
            r.metric.clone(),
            r.ours.clone(),
            r.reference.clone(),
            r.target.clone(),
            ok.into(),
        ]
    };
    let mut widths = header.map(str::len);
    for row in sections.iter().flat_map(|(_, rows)| rows) {
        for (w, c) in widths.iter_mut().zip(cells(row)) {
            *w = (*w).max(c.len());
        }
    }

    let line = |cols: [String; 5]| {
        let padded: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join(" | ").trim_end().to_string()
    };
    let mut out = String::new();
    writeln!(out, "{}", line(header.map(String::from))).unwrap();
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    writeln!(out, "{}", rule.join("-|-")).unwrap();
    for (title, rows) in sections {
        writeln!(
            out,
            "{}",
            line([
                format!("[{}]", title.as_ref()),
                "".into(),
                "".into(),
                "".into(),
                "".into()
            ])
        )
        .unwrap();
        for row in rows {
            writeln!(out, "{}", line(cells(row))).unwrap();
        }
    }
    out
}

/// A rate with thousands separators, e.g. `41,250/s`.
pub fn per_second(n: f64) -> String {
    format!("{}/s", thousands(n.round() as u64))
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count in B, KiB or MiB.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

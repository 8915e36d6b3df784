//! Headers indexed per second on one core, by our guarded reader and by
//! pydicom on the same files; and how much of a big file the reader needs.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use pacs_shared::dicom::{
    HeaderLimits, HeaderRead, InstanceHeader, MetadataRead, read_header, read_metadata,
};

use crate::corpus::Corpus;
use crate::report::{Row, bytes, per_second};

/// First ranged GET of the ingest function, mirrored here.
const FIRST_READ: usize = 64 * 1024;
/// Ours must be at least this many times pydicom's rate.
const TARGET_RATIO: f64 = 10.0;
/// Timed passes over the small files; the best counts.
const PASSES: usize = 5;

/// Settings of this section.
pub struct Options {
    /// Python with pydicom, or none to skip the reference.
    pub python: Option<PathBuf>,
}

pub fn run(corpus: &Corpus, options: &Options) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let limits = HeaderLimits::default();

    // Warm the page cache and check every file reads.
    for path in &corpus.small {
        index_file(path, &limits).with_context(|| format!("read {}", path.display()))?;
    }
    let ours = best_rate(&corpus.small, |path| index_file(path, &limits).map(|_| ()))?;
    let ours_json = best_rate(&corpus.small, |path| metadata_file(path, &limits))?;

    let list = corpus
        .small
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    let list_file = tempfile::NamedTempFile::new()?;
    std::fs::write(list_file.path(), list.join("\n"))?;

    let n = corpus.small.len();
    let reference = |json| match &options.python {
        Some(python) => pydicom_rate(python, list_file.path(), json).map(Some),
        None => Ok(None),
    };
    // Indexing: the header's fields, what the ingest function does per file.
    let row = Row::new(format!(
        "headers indexed/s/core, {n} files ~40 KB, mixed syntaxes"
    ))
    .ours(per_second(ours));
    rows.push(match reference(false)? {
        Some(reference) => {
            let ratio = ours / reference;
            row.reference(format!("{} (pydicom dcmread)", per_second(reference)))
                .target(
                    format!(">= {TARGET_RATIO}x ({ratio:.1}x)"),
                    Some(ratio >= TARGET_RATIO),
                )
        }
        None => row
            .reference("n/a (no pydicom)")
            .target(format!(">= {TARGET_RATIO}x"), None),
    });
    // WADO-RS metadata: the same files turned into DICOM JSON, on reads.
    let row =
        Row::new("  header to DICOM JSON/s/core (WADO-RS metadata)").ours(per_second(ours_json));
    rows.push(match reference(true)? {
        Some(reference) => row
            .reference(format!("{} (pydicom to_json_dict)", per_second(reference)))
            .target(format!("{:.1}x, no target", ours_json / reference), None),
        None => row.reference("n/a (no pydicom)"),
    });

    // Bytes the reader needs from each big file, read as ingest reads.
    for (label, path, size) in &corpus.big {
        let (header, read) = index_file(path, &limits)?;
        let budget = header.header_len.max(FIRST_READ as u64) + 64 * 1024;
        rows.push(
            Row::new(format!("header bytes read, {label}"))
                .ours(bytes(read))
                .reference(format!("{} file", bytes(*size)))
                .target(
                    format!("<= {} (header + 64 KiB)", bytes(budget)),
                    Some(read <= budget),
                ),
        );
    }
    Ok(rows)
}

/// Files per second of CPU time, best of several single-threaded passes.
///
/// CPU time of this thread rather than wall time, so the rate is per core
/// even on a machine busy with other work; pydicom's script does the same.
fn best_rate(
    paths: &[PathBuf],
    mut read: impl FnMut(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..PASSES {
        let start = thread_cpu_seconds()?;
        for path in paths {
            read(path)?;
        }
        best = best.min(thread_cpu_seconds()? - start);
    }
    Ok(paths.len() as f64 / best)
}

/// CPU time this thread has used, from Linux's schedstat (nanoseconds).
fn thread_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("read /proc/thread-self/schedstat")?;
    let ns: u64 = stat
        .split_whitespace()
        .next()
        .context("empty schedstat")?
        .parse()?;
    Ok(ns as f64 / 1e9)
}

/// Reads a header the way the ingest function does: a first read of
/// 64 KiB, then further reads as far as the reader asks. Returns the
/// header and the bytes read.
pub fn index_file(path: &Path, limits: &HeaderLimits) -> anyhow::Result<(InstanceHeader, u64)> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut prefix = vec![0; FIRST_READ.min(size as usize)];
    file.read_exact(&mut prefix)?;

    loop {
        match read_header(&prefix, size, limits)? {
            HeaderRead::Complete(header) => return Ok((header, prefix.len() as u64)),
            HeaderRead::NeedMore { until } => {
                let have = prefix.len();
                prefix.resize(until as usize, 0);
                file.seek(SeekFrom::Start(have as u64))?;
                file.read_exact(&mut prefix[have..])?;
            }
        }
    }
}

/// Reads a header as DICOM JSON the way WADO-RS metadata does.
fn metadata_file(path: &Path, limits: &HeaderLimits) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)?;
    match read_metadata(&bytes, bytes.len() as u64, limits)? {
        MetadataRead::Complete(_) => Ok(()),
        MetadataRead::NeedMore { until } => bail!("{}: needs {until} bytes", path.display()),
    }
}

/// pydicom's files per second on the same list, from its script.
fn pydicom_rate(python: &Path, list: &Path, json: bool) -> anyhow::Result<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pydicom_headers.py");
    let mut command = Command::new(python);
    command.arg(&script).arg(list);
    if json {
        command.arg("--json");
    }
    let out = command
        .output()
        .with_context(|| format!("run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "pydicom script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    report["files_per_second"]
        .as_f64()
        .context("files_per_second in the pydicom report")
}

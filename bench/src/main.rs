//! `pacs-bench`: measures pacs-hub against its targets on generated files
//! and prints one table, `metric | ours | reference | target | ok`.
//!
//! Each section lives in a module of its own and returns rows; `bench/run`
//! prepares the reference tools and runs this in release mode.

mod corpus;
mod headers;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

/// Measures pacs-hub against its targets.
#[derive(Debug, Parser)]
struct Args {
    /// Small (~40 KB) files in the header benchmark.
    #[arg(long, default_value_t = 2000)]
    small: usize,

    /// Python interpreter with pydicom installed, for the reference rates.
    #[arg(long, env = "PACS_BENCH_PYTHON")]
    python: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();

    let started = Instant::now();
    eprintln!("writing {} small and 4 big DICOM files", args.small);
    let corpus = corpus::Corpus::write(args.small)?;

    eprintln!("measuring headers");
    let options = headers::Options {
        python: args.python.clone(),
    };
    let sections = vec![("DICOM headers", headers::run(&corpus, &options)?)];

    print!("{}", report::render(&sections));
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    let failed = sections
        .iter()
        .flat_map(|(_, rows)| rows)
        .any(|r| r.ok == Some(false));
    std::process::exit(if failed { 1 } else { 0 });
}

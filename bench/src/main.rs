//! `pacs-bench`: measures pacs-hub against its targets on generated files
//! and prints one table, `metric | ours | reference | target | ok`.
//!
//! Each section lives in a module of its own and returns rows; `bench/run`
//! prepares the reference tools and runs this in release mode.

mod corpus;
mod counting;
mod headers;
mod ingest;
mod orthanc;
mod report;
mod studies;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

/// Measures pacs-hub against its targets.
#[derive(Debug, Parser)]
struct Args {
    /// Small (~40 KB) files in the header benchmark.
    #[arg(long, default_value_t = 2000)]
    small: usize,

    /// Studies one hospital holds in the study-list benchmark.
    #[arg(long, default_value_t = 100_000)]
    list_studies: usize,

    /// Timed first-page requests in the study-list benchmark.
    #[arg(long, default_value_t = 200)]
    pages: usize,

    /// Python interpreter with pydicom installed, for the reference rates.
    #[arg(long, env = "PACS_BENCH_PYTHON")]
    python: Option<PathBuf>,

    /// Files in the ingest burst and the end-to-end comparison.
    #[arg(long, default_value_t = 1000)]
    files: usize,

    /// Studies the ingest burst is spread over.
    #[arg(long, default_value_t = 10)]
    studies: usize,

    /// Concurrent clients end to end (and concurrent indexer runs).
    #[arg(long, default_value_t = 8)]
    workers: usize,

    /// Orthanc executable for the end-to-end reference.
    #[arg(long, env = "PACS_BENCH_ORTHANC", default_value = "Orthanc")]
    orthanc: String,

    /// Skip the ingest sections (local stack, Orthanc).
    #[arg(long)]
    headers_only: bool,
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
    let mut sections = vec![(
        "DICOM headers".to_string(),
        headers::run(&corpus, &options)?,
    )];

    if !args.headers_only {
        let options = ingest::Options {
            files: args.files,
            studies: args.studies,
            workers: args.workers,
            orthanc: find_executable(&args.orthanc),
        };
        let runtime = tokio::runtime::Runtime::new()?;
        sections.extend(runtime.block_on(ingest::run(&corpus, &options))?);
    }

    if !args.headers_only {
        eprintln!("measuring the study list ({} studies)", args.list_studies);
        let options = studies::Options {
            studies: args.list_studies,
            pages: args.pages,
        };
        sections.push(("Study list".to_string(), studies::run(&options)?));
    }

    print!("{}", report::render(&sections));
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    let failed = sections
        .iter()
        .flat_map(|(_, rows)| rows)
        .any(|r| r.ok == Some(false));
    std::process::exit(if failed { 1 } else { 0 });
}

/// `name` as given if it is a path, else looked up on `PATH`.
fn find_executable(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(name);
    if path.components().count() > 1 {
        return path.is_file().then_some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

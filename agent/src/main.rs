//! `pacs-agent`: reads the settings, sets up logging, and runs one of the
//! commands of the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pacs_agent::config::{Config, Purpose, check_date};

/// Where the packaged agent looks for its settings.
const DEFAULT_CONFIG: &str = "/etc/pacs-agent/config.json";

#[derive(Parser)]
#[command(
    name = "pacs-agent",
    version,
    about = "Sends a hospital's DICOM to pacs-hub"
)]
struct Cli {
    /// The JSON configuration file (default /etc/pacs-agent/config.json
    /// when it exists; otherwise settings come from the environment).
    #[arg(long, short, env = "PACS_AGENT_CONFIG", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: Orthanc sync, folder watch, webhooks, uploads.
    Run {
        /// On first start, back-fill only Orthanc studies from this date
        /// (YYYY-MM-DD); overrides backfillSince.
        #[arg(long)]
        backfill_since: Option<String>,
    },
    /// Send files and folders once, then report.
    Push {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Show the queue, last sync, last error and whether the hub answers.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();

    let purpose = match cli.command {
        Command::Run { .. } => Purpose::Run,
        Command::Push { .. } => Purpose::Push,
        Command::Status => Purpose::Status,
    };
    let path = cli.config.or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG);
        default.exists().then_some(default)
    });
    let env = |name: &str| std::env::var(name).ok();
    let mut config = match Config::load(path.as_deref(), &env, purpose) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pacs-agent: {error}");
            return ExitCode::from(2);
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(async move {
        match cli.command {
            Command::Run { backfill_since } => {
                if let Some(since) = backfill_since {
                    if let Err(error) = check_date("--backfill-since", &since) {
                        eprintln!("pacs-agent: {error}");
                        return ExitCode::from(2);
                    }
                    config.backfill_since = Some(since);
                }
                match pacs_agent::run::run(config, shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        tracing::error!(error = %error, "agent stopped");
                        eprintln!("pacs-agent: stopped: {error}");
                        ExitCode::from(1)
                    }
                }
            }
            Command::Push { paths } => match pacs_agent::push::push(&config, &paths).await {
                Ok(summary) => {
                    pacs_agent::push::print_summary(&summary);
                    if summary.is_failure() {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(error) => {
                    eprintln!("pacs-agent: push stopped: {error}");
                    ExitCode::from(1)
                }
            },
            Command::Status => match pacs_agent::status::status_report(&config).await {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("pacs-agent: {error}");
                    ExitCode::from(1)
                }
            },
        }
    })
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));

    // The HTTP crates write request lines (a presigned URL is a credential)
    // at debug and trace level: they stay at info whatever RUST_LOG says.
    for quiet in [
        "reqwest=info",
        "hyper=info",
        "hyper_util=info",
        "h2=info",
        "rustls=info",
    ] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

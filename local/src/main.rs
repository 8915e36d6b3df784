//! The `pacs-hub` command: `up` runs the whole system on this machine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pacs_local::{Stack, StackOptions};

#[derive(Parser)]
#[command(
    name = "pacs-hub",
    version,
    about = "pacs-hub: many hospitals' PACS, one archive"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every function with embedded DynamoDB and S3 servers until
    /// Ctrl-C.
    Up {
        /// Where tables, objects and secrets are kept; survives restarts.
        #[arg(long, default_value = "./.pacs-hub")]
        data_dir: PathBuf,
        /// API port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// S3 port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        s3_port: u16,
        /// DynamoDB port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        dynamodb_port: u16,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    pacs_shared::logging::init();
    let Command::Up {
        data_dir,
        port,
        s3_port,
        dynamodb_port,
    } = Cli::parse().command;

    let mut options = StackOptions::new(data_dir);
    options.api_port = port;
    options.s3_port = s3_port;
    options.dynamodb_port = dynamodb_port;
    let stack = match Stack::start(options).await {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("pacs-hub up: {e}");
            return ExitCode::FAILURE;
        }
    };

    println!("pacs-hub is up");
    println!("  API:                {}", stack.api_url());
    println!(
        "  S3:                 {}  (bucket {})",
        stack.s3_url(),
        pacs_local::DICOM_BUCKET
    );
    println!("  DynamoDB:           {}", stack.dynamodb_url());
    println!("  EventBridge:        {}", stack.events_url());
    println!("  data dir:           {}", stack.data_dir().display());
    println!(
        "  platform-admin key: {}",
        stack.platform_admin_key_path().display()
    );
    println!("Ctrl-C stops it.");

    wait_for_stop().await;
    stack.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_stop() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

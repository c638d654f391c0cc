//! `demo-backend`: runs one demo backend until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

/// A small HTTP/1.1 + h2c backend that answers with its name (see the library docs for routes).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Name to answer with (body of `/` and the `x-backend` header).
    #[arg(long, default_value = "alpha")]
    name: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let backend = demo_backend::Backend::builder(&args.name)
        .listen(args.listen)
        .start()
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!("demo-backend {}: listening on {}", args.name, backend.url());
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    backend.stop().await;
    Ok(())
}

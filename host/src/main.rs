//! The `lbhost` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// A WebAssembly-programmable HTTP load balancer.
///
/// Which backend gets each request is decided by a strategy component (a .wasm file). Built-in
/// strategies live in strategies/: round_robin, weighted, least_conn, ip_hash, random.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The config file (JSON).
    #[arg(long, short, env = "LBHOST_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The strategy component; overrides the config's `strategy`.
    #[arg(long, short, env = "LBHOST_STRATEGY", value_name = "FILE.wasm")]
    strategy: Option<PathBuf>,
    /// Where to accept client traffic; overrides the config's `listen`.
    #[arg(long, short, env = "LBHOST_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where the admin API listens; overrides the config's `admin`.
    #[arg(long, env = "LBHOST_ADMIN", value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Worker threads; overrides the config's `workers` (default: one per core).
    #[arg(long, env = "LBHOST_WORKERS", value_name = "N")]
    workers: Option<usize>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "LBHOST_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config (and load its strategy) without serving; exit 0 if it is good.
    Check(RunArgs),
    /// Write, build and try a strategy: `new NAME`, `build [DIR]`, `simulate FILE.wasm`.
    #[command(subcommand)]
    Strategy(lbhost::author::StrategyCommand),
    /// Internal: compile a strategy component from stdin to a wasmtime artifact on stdout.
    /// lbhost runs itself with this so the compiler's memory stays out of the server.
    #[command(hide = true)]
    CompileStrategy {
        /// Linear memory cap the engine is built with.
        #[arg(long)]
        memory_limit_bytes: usize,
        /// Build the engine without fuel metering.
        #[arg(long)]
        no_fuel: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// jemalloc rather than the system's malloc: 6 % fewer instructions per HTTP/2 request (72,568
/// -> 67,907 at 16 x 8, callgrind; 1 % for HTTP/1.1). glibc spent ~7,700 on a request's 27
/// blocks, ~1,250 of it on one tokio task's 128-byte-aligned block (`posix_memalign`). RSS
/// lower too (14.6 against 16.2 MiB at start, 1.9 against 2.0 KiB per idle connection), and a
/// block of 8 MiB or more is given back to the OS as soon as it is freed (its `oversize_threshold`),
/// so a strategy's huge refusal costs no lasting memory (tests/bounded_text.rs).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, check_only) = match cli.command {
        Some(Command::Check(args)) => (args, true),
        Some(Command::Strategy(command)) => return author(command),
        Some(Command::CompileStrategy {
            memory_limit_bytes,
            no_fuel,
        }) => {
            return lbhost::strategy::compile_child_main(lbhost::strategy::EngineSettings {
                fuel: !no_fuel,
                memory_limit_bytes,
            })
        }
        None => (cli.run, false),
    };
    lbhost::strategy::compile_in_child_process();
    let format = args.log_format;
    init_logging(format);
    match run(args, check_only) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match format {
                LogFormat::Text => eprintln!("error: {e:#}"),
                // Every line on stderr stays one JSON object.
                LogFormat::Json => tracing::error!(error = %format!("{e:#}"), "exiting"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs, check_only: bool) -> anyhow::Result<()> {
    // Sockets inherited in a binary upgrade are taken (and made close-on-exec again) before
    // loading the strategies starts a compiler process.
    let handoff = (!check_only).then(lbhost::Handoff::from_process);
    let Some(path) = args.config else {
        anyhow::bail!("no config file: pass --config FILE or set LBHOST_CONFIG");
    };
    let mut config =
        lbhost::config::load(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let overrides = lbhost::Overrides {
        strategy: args.strategy,
        listen: args.listen,
        admin: args.admin,
        workers: args.workers,
    };
    overrides.apply(&mut config);
    let strategies = lbhost::prepare(&config)?;
    let Some(handoff) = handoff else {
        println!("{}: ok", path.display());
        return Ok(());
    };
    // The control plane (admin API, health checks, reload triggers) runs on this thread; the
    // workers that serve requests each get a thread and a runtime of their own (server.rs).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(lbhost::run(config, strategies, path, overrides, handoff))
}

/// Runs an `lbhost strategy` command: its report on stdout, one error line on stderr.
fn author(command: lbhost::author::StrategyCommand) -> ExitCode {
    let stdout = std::io::stdout();
    match lbhost::author::run(command, &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`). Text is for people; JSON is one
/// object per line with the event's fields at the top level next to `timestamp`, `level`,
/// `target` and `message` (access lines: target `lbhost::access`).
fn init_logging(format: LogFormat) {
    let (filter, bad_filter) = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        // Unset: the default. Set but unparsable: the default too, and a warning below.
        Err(e) => (
            tracing_subscriber::EnvFilter::new("info"),
            std::env::var_os("RUST_LOG").map(|_| e.to_string()),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => {
            builder
                .with_ansi(false)
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .init();
            // A panic message is a log line too, not free text among JSON objects.
            std::panic::set_hook(Box::new(|info| {
                tracing::error!(panic = %info, "panic");
            }));
        }
    }
    if let Some(reason) = bad_filter {
        tracing::warn!(%reason, "RUST_LOG ignored; logging at info");
    }
}

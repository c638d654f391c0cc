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
    return_large_blocks_to_the_os();
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

/// Makes glibc serve every allocation of 1 MiB or more with its own mapping, unmapped when freed.
///
/// glibc's default raises that threshold to the size of the largest such block freed so far (up
/// to 32 MiB), and a later block of that size then stays in a heap and resident after it is
/// freed. lbhost allocates large blocks rarely, and one of them is a guest's: a strategy's
/// `configure` refusal is copied out of its memory whole (up to `sandbox.memory_limit_bytes`)
/// before lbhost keeps a bounded 1 KiB of it. With the threshold fixed, such a copy costs no
/// lasting memory (measured: 12.5 MB refusals left RSS 12.5 MiB higher for good; now 0.6 MiB).
/// The trim threshold is fixed at twice as much, as glibc's own rule would set it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn return_large_blocks_to_the_os() {
    const MMAP_THRESHOLD: libc::c_int = 1 << 20;
    // SAFETY: mallopt only sets allocator parameters; it takes the allocator's own lock, and
    // runs here before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD);
    }
}

/// Other allocators keep their own policy.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks_to_the_os() {}

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

//! `lbhost strategy new | build | simulate`: the author's path from an empty folder to a checked
//! strategy component and a preview of what it does, with nothing but rustup and lbhost.
//!
//! [`new`] writes a crate (with the SDK and the WIT embedded in lbhost beside it), [`build`] runs
//! cargo for `wasm32-unknown-unknown`, wraps the module into a component and loads it as the
//! server would, [`simulate`] runs a component in the server's sandbox against a synthetic pool,
//! from [`traffic`], [`moves`] counts the client keys a change of the set moved, [`report`]
//! prints what the simulation saw and [`chart`] draws it.

pub mod build;
pub mod chart;
pub mod moves;
pub mod new;
pub mod report;
pub mod simulate;
pub mod traffic;

use std::io::Write;
use std::path::PathBuf;

/// `lbhost strategy …`: write, build and try a strategy.
#[derive(Debug, clap::Subcommand)]
pub enum StrategyCommand {
    /// Write a new strategy crate: the SDK beside it as a path dependency, a `select`, a native
    /// test, and the toolchain with the wasm target.
    New(new::NewArgs),
    /// Build a strategy crate into a component (NAME.wasm), checked as lbhost checks it.
    Build(build::BuildArgs),
    /// Run a strategy component offline, in lbhost's sandbox, against a synthetic pool.
    Simulate(simulate::SimulateArgs),
}

/// Why an authoring command failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorError {
    /// A bad argument: the text says which and why.
    #[error("{0}")]
    Usage(String),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A tool (cargo, rustc) could not run or failed.
    #[error("{0}")]
    Tool(String),
    /// The built module could not be made into a component.
    #[error("{0}")]
    Wrap(#[from] lbhost_wrap::WrapError),
    /// The component is not one lbhost would load.
    #[error("lbhost would refuse it: {0}")]
    Load(#[from] crate::strategy::LoadError),
}

impl AuthorError {
    /// An I/O error at `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| AuthorError::Io { path, source }
    }
}

/// Runs `command`, writing what it reports to `out` (stdout) and progress to stderr.
pub fn run(command: StrategyCommand, out: &mut dyn Write) -> Result<(), AuthorError> {
    match command {
        StrategyCommand::New(args) => new::run(&args, out),
        StrategyCommand::Build(args) => build::run(&args, out).map(|_| ()),
        StrategyCommand::Simulate(args) => simulate::run(&args, out),
    }
}

/// Writes `text` to `out`; a closed stdout is an error like any other.
fn say(out: &mut dyn Write, text: std::fmt::Arguments<'_>) -> Result<(), AuthorError> {
    out.write_fmt(text)
        .map_err(AuthorError::io(PathBuf::from("<stdout>")))
}

/// Parses `KEY=VALUE` (a strategy parameter).
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

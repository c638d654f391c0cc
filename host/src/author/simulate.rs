//! `lbhost strategy simulate FILE.wasm`: runs a strategy component offline, in the server's own
//! sandbox ([`Runtime`], fuel, memory cap, fallback on faults), against a synthetic pool.
//!
//! Time is virtual: request `j` arrives at `j / rps` seconds; each backend answers after a draw
//! from its latency distribution (log-normal around its median), and answers are fed back to the
//! strategy (`on-response`) and to the backends' latency averages as the proxy does. Requests
//! come from a skewed mix of clients (IPv4 and IPv6 addresses, headers, cookies, paths). Kills,
//! additions and slowdowns happen at given request numbers. Only the time `select` takes is
//! measured on the real clock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::moves::{Change, KeyTracker};
use super::traffic::{synthetic_request, Rng};
use super::AuthorError;
use crate::config::{BackendConfig, Sandbox};
use crate::pool::{InFlight, Pool};
use crate::strategy::{Choice, Runtime, Strategies};

/// Most requests one simulation runs (each costs a `select` and 4 bytes of record).
const MAX_REQUESTS: u64 = 10_000_000;
/// Most backends, at the start and added.
const MAX_BACKENDS: usize = 10_000;

/// Arguments of `lbhost strategy simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The strategy component.
    #[arg(value_name = "FILE.wasm")]
    pub file: PathBuf,
    /// Backends at the start (default 4, or the config's backends with --config).
    #[arg(long, value_name = "N")]
    pub backends: Option<usize>,
    /// Requests to route.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub requests: u64,
    /// Kill backend I (its index, from 0) at request N: it turns ineligible, as after a failed
    /// health check. Repeatable.
    #[arg(long, value_name = "I@N", value_parser = parse_at)]
    pub kill: Vec<(usize, u64)>,
    /// Add a backend at request N. Repeatable.
    #[arg(long, value_name = "N")]
    pub add: Vec<u64>,
    /// From request N on, backend I answers MS milliseconds slower. Repeatable.
    #[arg(long, value_name = "I@N:MS", value_parser = parse_slow)]
    pub slow: Vec<(usize, u64, u32)>,
    /// Backend weights, comma-separated; the last one repeats (default 1).
    #[arg(long, value_name = "W,W,...", value_delimiter = ',')]
    pub weights: Vec<u32>,
    /// Median response time of each backend in ms, comma-separated; the last one repeats.
    #[arg(
        long,
        value_name = "MS,MS,...",
        value_delimiter = ',',
        default_value = "10"
    )]
    pub latency_ms: Vec<f64>,
    /// Request arrivals per (virtual) second.
    #[arg(long, value_name = "N", default_value_t = 2000.0)]
    pub rps: f64,
    /// Distinct clients in the request mix (a few are much busier than most).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub clients: u32,
    /// A `strategy_config` parameter (repeatable); added to the config's.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = super::parse_param)]
    pub params: Vec<(String, String)>,
    /// An lbhost config: its sandbox, strategy_config and backends (addresses, weights) are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Seed of the synthetic traffic and latencies.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Time windows of the share table and chart.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub windows: usize,
    /// Draw each backend's share over time into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `I@N` → (I, N).
fn parse_at(text: &str) -> Result<(usize, u64), String> {
    let (i, n) = text
        .split_once('@')
        .ok_or_else(|| format!("{text:?}: expected I@N (backend index @ request number)"))?;
    Ok((
        i.parse()
            .map_err(|_| format!("{text:?}: bad backend index"))?,
        n.parse()
            .map_err(|_| format!("{text:?}: bad request number"))?,
    ))
}

/// `I@N:MS` → (I, N, MS).
fn parse_slow(text: &str) -> Result<(usize, u64, u32), String> {
    let (at, ms) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected I@N:MS"))?;
    let (i, n) = parse_at(at)?;
    Ok((i, n, ms.parse().map_err(|_| format!("{text:?}: bad MS"))?))
}

/// A backend of the synthetic pool and what happened to it.
#[derive(Debug, Clone)]
pub struct SimBackend {
    pub address: String,
    pub weight: u32,
    /// Median response time, before slowdowns.
    pub median_ms: f64,
    /// Most requests it had in flight at once.
    pub in_flight_peak: u32,
    /// The request number it joined at (None: from the start).
    pub added_at: Option<u64>,
    /// The request number it was killed at.
    pub killed_at: Option<u64>,
    /// (request number, extra ms) of each slowdown.
    pub slowed: Vec<(u64, u32)>,
}

/// Everything a simulation saw; [`super::report`] and [`super::chart`] present it.
#[derive(Debug)]
pub struct Outcome {
    pub strategy: String,
    pub requests: u64,
    pub rps: f64,
    pub clients: u32,
    pub backends: Vec<SimBackend>,
    /// Per request: the backend index that served it, or [`UNSERVED`].
    pub choices: Vec<u32>,
    pub changes: Vec<Change>,
    /// Time of each `select` call, in nanoseconds, real clock.
    pub select_ns: Vec<u64>,
    /// Faults by kind; their requests were served by the fallback.
    pub faults: BTreeMap<&'static str, u64>,
}

/// A request no backend could take (the strategy answered none, or none was eligible).
pub const UNSERVED: u32 = u32::MAX;

/// The sandbox lbhost runs strategies in when the config says nothing.
pub fn default_sandbox() -> Result<Sandbox, AuthorError> {
    crate::config::from_file(
        r#"{"backends": [{"url": "http://127.0.0.1:1"}]}"#,
        Path::new("."),
    )
    .map(|c| c.sandbox)
    .map_err(|e| AuthorError::Tool(format!("default config: {e}")))
}

/// Runs the simulation and prints the report (and draws the chart).
pub fn run(args: &SimulateArgs, out: &mut dyn Write) -> Result<(), AuthorError> {
    let outcome = simulate(args)?;
    if let Some(path) = &args.chart {
        let svg = super::chart::svg(&outcome, args.windows.max(20));
        std::fs::write(path, svg).map_err(AuthorError::io(path))?;
    }
    if args.json {
        super::report::json(&outcome, args.windows, out)
    } else {
        super::report::text(&outcome, args.windows, args.chart.as_deref(), out)
    }
}

/// Runs the simulation described by `args`.
pub fn simulate(args: &SimulateArgs) -> Result<Outcome, AuthorError> {
    let (sandbox, mut params, configured) = match &args.config {
        Some(path) => {
            let config = crate::config::load(path)
                .map_err(|e| AuthorError::Usage(format!("{}: {e}", path.display())))?;
            (config.sandbox, config.strategy_config, config.backends)
        }
        None => (default_sandbox()?, Vec::new(), Vec::new()),
    };
    params.retain(|(k, _)| !args.params.iter().any(|(key, _)| key == k));
    params.extend(args.params.iter().cloned());
    check_bounds(args)?;
    let runtime = Runtime::new(&sandbox)?;
    let loaded = runtime.load(&args.file, &params)?;
    let strategy = loaded.name.clone();
    let strategies = Strategies::new(runtime, loaded);

    let count = args.backends.unwrap_or(if configured.is_empty() {
        4
    } else {
        configured.len()
    });
    let mut backends: Vec<SimBackend> = (0..count)
        .map(|i| SimBackend {
            address: configured
                .get(i)
                .map(|c| c.address.clone())
                .unwrap_or_else(|| format!("b{i}.sim:8080")),
            weight: configured
                .get(i)
                .map(|c| c.weight)
                .unwrap_or_else(|| pick(&args.weights, i, 1)),
            median_ms: pick(&args.latency_ms, i, 10.0),
            in_flight_peak: 0,
            added_at: None,
            killed_at: None,
            slowed: Vec::new(),
        })
        .collect();
    let mut configs: Vec<BackendConfig> = backends.iter().map(config_of).collect();
    let pool = Pool::new(&configs);

    let mut rng = Rng::new(args.seed);
    let mut choices = Vec::with_capacity(args.requests as usize);
    let mut select_ns = Vec::with_capacity(args.requests as usize);
    let mut faults = BTreeMap::new();
    let mut keys = KeyTracker::new(args.clients, &pool);
    // Requests in flight, by the virtual time (µs) they finish.
    // Entries: (end, request number, backend index, start).
    let mut pending: BinaryHeap<Reverse<(u64, u64, usize, u64)>> = BinaryHeap::new();
    let mut guards: BTreeMap<u64, InFlight> = BTreeMap::new();
    let mut extra_ms: Vec<u32> = vec![0; backends.len()];
    for j in 0..args.requests {
        let now_us = (j as f64 * 1e6 / args.rps) as u64;
        while let Some(Reverse((end, id, index, start))) = pending.peek().copied() {
            if end > now_us {
                break;
            }
            pending.pop();
            guards.remove(&id);
            let latency = Duration::from_micros(end.saturating_sub(start));
            let set = pool.load();
            if let Some(b) = set.backends.get(index) {
                b.record_latency(latency);
            }
            strategies.feedback(index, 200, latency, |_| None);
        }
        let mut event = Vec::new();
        for &(i, _) in args.kill.iter().filter(|(_, at)| *at == j) {
            let set = pool.load();
            let b = set
                .backends
                .get(i)
                .ok_or_else(|| out_of_range("kill", i, j, set.backends.len()))?;
            b.set_up(false);
            pool.refresh();
            backends[i].killed_at = Some(j);
            event.push(format!("kill {i}"));
        }
        for _ in args.add.iter().filter(|at| **at == j) {
            let i = backends.len();
            if i >= MAX_BACKENDS {
                return Err(AuthorError::Usage(format!(
                    "at most {MAX_BACKENDS} backends"
                )));
            }
            backends.push(SimBackend {
                address: format!("b{i}.sim:8080"),
                weight: pick(&args.weights, i, 1),
                median_ms: pick(&args.latency_ms, i, 10.0),
                in_flight_peak: 0,
                added_at: Some(j),
                killed_at: None,
                slowed: Vec::new(),
            });
            configs.push(config_of(&backends[i]));
            extra_ms.push(0);
            pool.update(&configs);
            event.push(format!("add {i}"));
        }
        for &(i, _, ms) in args.slow.iter().filter(|(_, at, _)| *at == j) {
            let len = backends.len();
            let b = backends
                .get_mut(i)
                .ok_or_else(|| out_of_range("slow", i, j, len))?;
            b.slowed.push((j, ms));
            extra_ms[i] = ms;
            event.push(format!("slow {i} +{ms}ms"));
        }
        if !event.is_empty() {
            keys.change(j, event.join(", "), &pool);
        }

        let client = rng.client(args.clients);
        let request = synthetic_request(client, &mut rng);
        let set = pool.load();
        let started = Instant::now();
        let (_request, choice) = strategies.select(&pool, &set, &[], request);
        select_ns.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let index = match choice {
            Choice::Strategy(i) => Some(i),
            Choice::Fallback(i, fault) => {
                *faults.entry(fault.kind()).or_insert(0) += 1;
                Some(i)
            }
            Choice::Unavailable => None,
        };
        let Some(index) = index else {
            choices.push(UNSERVED);
            continue;
        };
        choices.push(index as u32);
        keys.record(client, index as u32);
        let Some(backend) = set.backends.get(index) else {
            continue;
        };
        let guard = backend.start_request();
        let peak = &mut backends[index].in_flight_peak;
        *peak = (*peak).max(backend.in_flight());
        let median = backends[index].median_ms + f64::from(extra_ms[index]);
        let latency_us = (median * 1000.0 * rng.log_normal(0.5)).max(50.0) as u64;
        guards.insert(j, guard);
        pending.push(Reverse((
            now_us.saturating_add(latency_us),
            j,
            index,
            now_us,
        )));
    }
    drop(guards);
    let changes = keys.finish();
    Ok(Outcome {
        strategy,
        requests: args.requests,
        rps: args.rps,
        clients: args.clients,
        backends,
        choices,
        changes,
        select_ns,
        faults,
    })
}

fn check_bounds(args: &SimulateArgs) -> Result<(), AuthorError> {
    let bad = |what: &str| Err(AuthorError::Usage(what.to_string()));
    if args.requests == 0 || args.requests > MAX_REQUESTS {
        return bad("--requests: from 1 to 10000000");
    }
    if args.backends.is_some_and(|n| n == 0 || n > MAX_BACKENDS) {
        return bad("--backends: from 1 to 10000");
    }
    if !(args.rps.is_finite() && args.rps > 0.0) {
        return bad("--rps: a number above 0");
    }
    if args.clients == 0 || args.clients > 1_000_000 {
        return bad("--clients: from 1 to 1000000");
    }
    if args.windows == 0 || args.windows > 1000 {
        return bad("--windows: from 1 to 1000");
    }
    if args
        .latency_ms
        .iter()
        .any(|ms| !(ms.is_finite() && *ms >= 0.0 && *ms <= 600_000.0))
    {
        return bad("--latency-ms: from 0 to 600000");
    }
    if args.weights.iter().any(|w| *w > 10_000) {
        return bad("--weights: from 0 to 10000");
    }
    Ok(())
}

fn out_of_range(what: &str, i: usize, at: u64, len: usize) -> AuthorError {
    AuthorError::Usage(format!(
        "--{what} {i}@{at}: there are {len} backends at request {at} (indices 0 to {})",
        len.saturating_sub(1)
    ))
}

/// The `i`-th value of a list whose last value repeats, or `default` for an empty list.
fn pick<T: Copy>(list: &[T], i: usize, default: T) -> T {
    list.get(i).or(list.last()).copied().unwrap_or(default)
}

fn config_of(b: &SimBackend) -> BackendConfig {
    BackendConfig {
        address: b.address.clone(),
        weight: b.weight,
        labels: Vec::new(),
        tls: None,
        protocol: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_arguments_parse_and_refuse_garbage() {
        assert_eq!(parse_at("1@500"), Ok((1, 500)));
        assert!(parse_at("1500").is_err());
        assert_eq!(parse_slow("2@10:250"), Ok((2, 10, 250)));
        assert!(parse_slow("2@10").is_err());
    }
}

//! What `lbhost strategy simulate` prints: a table for people, or one JSON object (`--json`)
//! with `shares`, `moved_share`, `select_us` and `faults` at the top.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::simulate::{Outcome, UNSERVED};
use super::{say, AuthorError};

/// Requests served by each backend, in backend order.
pub fn counts(outcome: &Outcome) -> Vec<u64> {
    let mut counts = vec![0u64; outcome.backends.len()];
    for &c in &outcome.choices {
        if let Some(n) = counts.get_mut(c as usize) {
            *n += 1;
        }
    }
    counts
}

/// Each backend's share of the requests served in each of `windows` equal stretches of the run:
/// `[backend][window]`, and the window's length in requests.
pub fn timeline(outcome: &Outcome, windows: usize) -> (Vec<Vec<f64>>, usize) {
    let len = outcome.choices.len().div_ceil(windows.max(1)).max(1);
    let mut shares = vec![Vec::new(); outcome.backends.len()];
    for chunk in outcome.choices.chunks(len) {
        let mut counts = vec![0u64; outcome.backends.len()];
        let mut served = 0u64;
        for &c in chunk {
            if let Some(n) = counts.get_mut(c as usize) {
                *n += 1;
                served += 1;
            }
        }
        for (b, n) in counts.iter().enumerate() {
            shares[b].push(if served == 0 {
                0.0
            } else {
                *n as f64 / served as f64
            });
        }
    }
    (shares, len)
}

/// Requests a killed backend served after it was killed.
fn after_kill(outcome: &Outcome, backend: usize) -> Option<u64> {
    let at = outcome.backends.get(backend)?.killed_at?;
    let tail = outcome.choices.get(at as usize..).unwrap_or(&[]);
    Some(tail.iter().filter(|c| **c as usize == backend).count() as u64)
}

/// The share of compared client keys that moved, over every change (None without changes).
fn moved_share(outcome: &Outcome) -> Option<f64> {
    let compared: u64 = outcome.changes.iter().map(|c| c.compared).sum();
    let moved: u64 = outcome.changes.iter().map(|c| c.moved).sum();
    (compared > 0).then(|| moved as f64 / compared as f64)
}

/// Select time percentiles in microseconds: p50, p90, p99, p99.9, max.
fn select_percentiles(outcome: &Outcome) -> [(&'static str, f64); 5] {
    let mut ns = outcome.select_ns.clone();
    ns.sort_unstable();
    let at = |q: f64| -> f64 {
        if ns.is_empty() {
            return 0.0;
        }
        let i = ((ns.len() as f64 * q).ceil() as usize).clamp(1, ns.len()) - 1;
        ns[i] as f64 / 1000.0
    };
    [
        ("p50", at(0.50)),
        ("p90", at(0.90)),
        ("p99", at(0.99)),
        ("p999", at(0.999)),
        ("max", at(1.0)),
    ]
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// Writes the one JSON object of `--json`.
pub fn json(outcome: &Outcome, windows: usize, out: &mut dyn Write) -> Result<(), AuthorError> {
    let counts = counts(outcome);
    let (timeline, window) = timeline(outcome, windows);
    let mut shares = Map::new();
    for (b, n) in outcome.backends.iter().zip(&counts) {
        shares.insert(b.address.clone(), json!(n));
    }
    let backends: Vec<Value> = outcome
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "index": i,
                "address": b.address,
                "weight": b.weight,
                "median_ms": b.median_ms,
                "requests": counts[i],
                "share": round(counts[i] as f64 / outcome.requests as f64, 4),
                "in_flight_peak": b.in_flight_peak,
                "added_at": b.added_at,
                "killed_at": b.killed_at,
                "requests_after_kill": after_kill(outcome, i),
                "slowed": b.slowed.iter().map(|(at, ms)| json!({"at": at, "extra_ms": ms})).collect::<Vec<_>>(),
                "timeline": timeline[i].iter().map(|s| round(*s, 4)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let select_us: Map<String, Value> = select_percentiles(outcome)
        .iter()
        .map(|(k, v)| (k.to_string(), json!(round(*v, 3))))
        .collect();
    let faults_total: u64 = outcome.faults.values().sum();
    let value = json!({
        "strategy": outcome.strategy,
        "requests": outcome.requests,
        "shares": shares,
        "unserved": outcome.choices.iter().filter(|c| **c == UNSERVED).count(),
        "moved_share": moved_share(outcome).map(|m| round(m, 4)),
        "select_us": select_us,
        "faults": {"total": faults_total, "kinds": outcome.faults},
        "changes": outcome.changes.iter().map(|c| json!({
            "at": c.at,
            "event": c.event,
            "compared": c.compared,
            "moved": c.moved,
            "moved_needlessly": c.moved_needlessly,
            "moved_share": if c.compared == 0 { Value::Null } else { json!(round(c.moved as f64 / c.compared as f64, 4)) },
        })).collect::<Vec<_>>(),
        "backends": backends,
        "window_requests": window,
        "rps": outcome.rps,
        "clients": outcome.clients,
    });
    say(out, format_args!("{value}\n"))
}

/// Writes the report for people.
pub fn text(
    outcome: &Outcome,
    windows: usize,
    chart: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), AuthorError> {
    let counts = counts(outcome);
    let seconds = outcome.requests as f64 / outcome.rps;
    let mut s = format!(
        "{}: {} requests from {} clients at {} req/s ({:.1} s of virtual time), {} backends at the start\n\n",
        outcome.strategy,
        outcome.requests,
        outcome.clients,
        outcome.rps,
        seconds,
        outcome.backends.iter().filter(|b| b.added_at.is_none()).count()
    );
    s.push_str(
        "  #  backend                  weight  median  requests   share  in-flight peak  events\n",
    );
    for (i, b) in outcome.backends.iter().enumerate() {
        let mut events = Vec::new();
        if let Some(at) = b.added_at {
            events.push(format!("added @{at}"));
        }
        if let Some(at) = b.killed_at {
            let after = after_kill(outcome, i).unwrap_or(0);
            events.push(format!("killed @{at} ({after} after)"));
        }
        for (at, ms) in &b.slowed {
            events.push(format!("+{ms} ms @{at}"));
        }
        s.push_str(&format!(
            "{i:>3}  {:<24} {:>6} {:>5}ms {:>9} {:>6.1}% {:>15}  {}\n",
            truncate(&b.address, 24),
            b.weight,
            b.median_ms,
            counts[i],
            100.0 * counts[i] as f64 / outcome.requests as f64,
            b.in_flight_peak,
            events.join(", ")
        ));
    }
    let (timeline, window) = timeline(outcome, windows);
    s.push_str(&format!(
        "\nshare over time (% of each window of {window} requests):\n  #"
    ));
    for w in 0..timeline.first().map_or(0, Vec::len) {
        s.push_str(&format!(" {:>5}", w * window));
    }
    s.push('\n');
    for (i, row) in timeline.iter().enumerate() {
        s.push_str(&format!("{i:>3}"));
        for share in row {
            s.push_str(&format!(" {:>5.1}", 100.0 * share));
        }
        s.push('\n');
    }
    s.push('\n');
    for c in &outcome.changes {
        if c.compared == 0 {
            s.push_str(&format!(
                "moved @{} ({}): no client seen on both sides\n",
                c.at, c.event
            ));
            continue;
        }
        s.push_str(&format!(
            "moved @{} ({}): {:.1}% of {} clients changed backend ({:.1}% needlessly: between backends there before and after)\n",
            c.at,
            c.event,
            100.0 * c.moved as f64 / c.compared as f64,
            c.compared,
            100.0 * c.moved_needlessly as f64 / c.compared as f64
        ));
    }
    let p = select_percentiles(outcome);
    s.push_str(&format!(
        "select time: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs\n",
        p[0].1, p[1].1, p[2].1, p[3].1, p[4].1
    ));
    let total: u64 = outcome.faults.values().sum();
    if total == 0 {
        s.push_str("faults: none\n");
    } else {
        let kinds: Vec<String> = outcome
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        s.push_str(&format!(
            "faults: {total} ({}), served by lbhost's fallback\n",
            kinds.join(", ")
        ));
    }
    let unserved = outcome.choices.iter().filter(|c| **c == UNSERVED).count();
    if unserved > 0 {
        s.push_str(&format!(
            "unserved: {unserved} requests (503: no backend)\n"
        ));
    }
    if let Some(path) = chart {
        s.push_str(&format!("chart: {}\n", path.display()));
    }
    say(out, format_args!("{s}"))
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max - 1).chain(['…']).collect()
    }
}

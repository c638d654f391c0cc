//! `/metrics` read with a Prometheus text parser (and `promtool`, when installed).

use lbhost_e2e::{Http, Lb};
use prometheus_parse::{Sample, Scrape, Value as Metric};

/// `GET /metrics`, checked and parsed.
pub async fn scrape(http: &Http, lb: &Lb) -> Scrape {
    let reply = http.get(&lb.admin_url("/metrics")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    promtool_check(&text);
    Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse ({e}):\n{text}"))
}

/// The samples named `name` whose labels include every pair of `labels`.
fn samples<'a>(
    scrape: &'a Scrape,
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    scrape.samples.iter().filter(move |s| {
        s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
    })
}

/// The value of the one counter, gauge or untyped sample `name{labels..}`; `None` if absent.
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<_> = samples(scrape, name, labels).collect();
    assert!(found.len() <= 1, "{name}{labels:?} matches {found:?}");
    found.first().map(|s| match s.value {
        Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => v,
        ref other => panic!("{name}{labels:?} is not a single value: {other:?}"),
    })
}

/// The sum of every sample `name{labels..}`.
pub fn total(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(scrape, name, labels)
        .map(|s| match s.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => v,
            ref other => panic!("{name} is not a single value: {other:?}"),
        })
        .sum()
}

/// The `+Inf` bucket (the observation count) of histogram `name{labels..}`.
pub fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(scrape, name, labels).find_map(|s| match &s.value {
        Metric::Histogram(buckets) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count),
        _ => None,
    })
}

/// Also runs `promtool check metrics` (Debian's `prometheus` package) when it is installed.
fn promtool_check(text: &str) {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .expect("writing to promtool");
    }
    let output = child.wait_with_output().expect("running promtool");
    // promtool exits 1 for lint findings (e.g. a missing unit suffix) and 3 for errors.
    assert_ne!(
        output.status.code(),
        Some(3),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

//! Backends from DNS, against a real DNS server (dnsmasq) on loopback: requests reach the
//! addresses a name resolves to; a changed answer reaches traffic within one refresh with no
//! failed request; a DNS server that stops or says NXDOMAIN leaves the last answer in place,
//! shown in `/status` and counted; SRV records give ports and weights. (`lbhost check` on bad DNS
//! entries: `config_errors.rs`.)

use std::time::{Duration, Instant};

use demo_backend::Backend;
use lbhost_e2e::dnsmasq::{Dnsmasq, ZONE};
use lbhost_e2e::load::Load;
use lbhost_e2e::{
    chromium, get, headless, loopback_backends, metric, metric_total, start_backends, strategy,
    wait_until, Http, Lb,
};
use serde_json::{json, Value};

/// The refresh the tests' settings give: dnsmasq's TTL (1 s) within 250 ms..1 s.
const REFRESH: Duration = Duration::from_secs(1);
/// What a change may take beyond one refresh: the lookup itself, applying it, a request.
const MARGIN: Duration = Duration::from_millis(1500);

fn name(host: &str) -> String {
    format!("{host}.{ZONE}")
}

/// A config over `backends` (entries), resolved by `dns` with short refresh bounds.
fn config(dns: &Dnsmasq, strategy_name: &str, backends: Value) -> Value {
    json!({
        "strategy": strategy(strategy_name),
        "workers": 2,
        "backends": backends,
        "dns": {
            "servers": [dns.addr().to_string()],
            "min_refresh": "250ms",
            "max_refresh": "1s",
            "timeout": "300ms",
        },
    })
}

/// The hosts file naming `api` with each of `backends`' addresses.
fn hosts(host: &str, backends: &[&Backend]) -> String {
    backends
        .iter()
        .map(|b| format!("{} {}\n", b.addr().ip(), name(host)))
        .collect()
}

async fn status(lb: &Lb) -> Value {
    get(&lb.admin_url("/status")).await.json()
}

async fn metrics(lb: &Lb) -> String {
    get(&lb.admin_url("/metrics")).await.text()
}

/// The addresses of `status.dns[i].answer`.
fn answer(status: &Value, i: usize) -> Vec<String> {
    status["dns"][i]["answer"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["address"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits up to `within` until `backend` got a request; returns how long that took.
async fn until_hit(backend: &Backend, within: Duration) -> Duration {
    let started = Instant::now();
    let before = backend.hits();
    wait_until(&format!("{} gets traffic", backend.name()), within, || {
        backend.hits() > before
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_the_addresses_the_name_resolves_to() {
    let (port, backends) = loopback_backends(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]).await;
    let [b2, b3, b4] = [&backends[0], &backends[1], &backends[2]];
    let dns = Dnsmasq::start(
        &format!("{}{}", hosts("api", &[b2, b3]), hosts("other", &[b4])),
        &[],
    )
    .await;
    let entry = json!([{ "dns": name("api"), "port": port }]);
    let lb = Lb::start(config(&dns, "round_robin", entry)).await;
    let http = Http::new();
    for _ in 0..40 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!([b2.hits(), b3.hits(), b4.hits()], [20, 20, 0]);

    let status = status(&lb).await;
    let dns_entry = &status["dns"][0];
    assert_eq!(dns_entry["kind"], "dns");
    assert_eq!(dns_entry["name"], name("api"));
    assert_eq!(
        answer(&status, 0),
        [format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")]
    );
    assert_eq!(dns_entry["failures_in_a_row"], 0);
    assert!(dns_entry["answer_age_ms"].as_u64().is_some(), "{dns_entry}");
    assert_eq!(dns_entry["last_error"], Value::Null);
    let series = format!(
        "lbhost_dns_lookups_total{{name=\"{}\",result=\"ok\"}}",
        name("api")
    );
    assert!(metric(&metrics(&lb).await, &series) >= 1.0);

    // A reload that names another host starts its resolution over: traffic follows at once.
    let next = config(
        &dns,
        "round_robin",
        json!([{ "dns": name("other"), "port": port }]),
    );
    let mut next = next.as_object().cloned().expect("an object");
    next.insert("listen".into(), json!(lb.listen().to_string()));
    next.insert("admin".into(), json!(lb.admin().to_string()));
    std::fs::write(
        lb.dir().join("config.json"),
        serde_json::to_vec(&Value::Object(next)).expect("JSON"),
    )
    .expect("writing the config");
    let reloaded = Http::new()
        .send(
            hyper::Request::post(lb.admin_url("/reload"))
                .body(lbhost_e2e::empty())
                .expect("a request"),
        )
        .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    let before = [b2.hits(), b3.hits(), b4.hits()];
    for _ in 0..10 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    assert_eq!(
        [b2.hits(), b3.hits(), b4.hits()],
        [before[0], before[1], before[2] + 10]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_answer_reaches_traffic_within_one_refresh_with_no_failed_request() {
    let (port, backends) = loopback_backends(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]).await;
    let [b2, b3, b4] = [&backends[0], &backends[1], &backends[2]];
    let dns = Dnsmasq::start(&hosts("api", &[b2, b3]), &[]).await;
    let entry = json!([{ "dns": name("api"), "port": port }]);
    let lb = Lb::start(config(&dns, "round_robin", entry)).await;
    let load = Load::start(&lb.url("/"), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;

    dns.set_hosts(&hosts("api", &[b3, b4]));
    let took = until_hit(b4, REFRESH + MARGIN).await;
    eprintln!("new address got traffic {took:?} after the DNS change");
    // The removed address drains: once its last requests ended, it gets no more.
    until_status(&lb, "the old address is out", REFRESH + MARGIN, |s| {
        !in_pool(s, b2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let drained = b2.hits();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b2.hits(), drained, "a removed address still gets requests");
    let summary = load.stop().await;
    eprintln!("under load: {summary:?}");
    assert_eq!(summary.failed, 0, "failed requests: {summary:?}");
    assert!(summary.ok > 100, "too little load to tell: {summary:?}");
}

/// Waits up to `within` until `/status` satisfies `holds`.
async fn until_status(lb: &Lb, what: &str, within: Duration, holds: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let s = status(lb).await;
        if holds(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within {within:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `backend` is in the pool `status` shows.
fn in_pool(status: &Value, backend: &Backend) -> bool {
    let address = backend.addr().to_string();
    status["backends"]
        .as_array()
        .is_some_and(|all| all.iter().any(|b| b["address"] == address.as_str()))
}

/// An address that stays in the answer keeps its pooled connection: one client, one worker,
/// and the kept backend never sees a second connection across the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_stays_keeps_its_pooled_connection() {
    let (port, backends) = loopback_backends(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]).await;
    let [b2, b3, b4] = [&backends[0], &backends[1], &backends[2]];
    let dns = Dnsmasq::start(&hosts("api", &[b2, b3]), &[]).await;
    let mut config = config(
        &dns,
        "round_robin",
        json!([{ "dns": name("api"), "port": port }]),
    );
    config["workers"] = json!(1);
    let lb = Lb::start(config).await;
    let http = Http::new();
    for _ in 0..20 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    assert_eq!([b2.connections(), b3.connections()], [1, 1]);

    dns.set_hosts(&hosts("api", &[b2, b4]));
    let deadline = Instant::now() + REFRESH + MARGIN;
    while b4.hits() == 0 {
        assert!(Instant::now() < deadline, "the new address got no traffic");
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = b2.hits();
    for _ in 0..20 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    assert!(b2.hits() >= before + 10, "the kept address lost its share");
    assert_eq!(
        b2.connections(),
        1,
        "the kept address was connected to anew"
    );
}

/// An address that stays keeps its health: one that health checks took down is still down
/// after the answer changes around it (a backend made anew would start up) and gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_stays_keeps_its_health() {
    let (port, backends) = loopback_backends(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]).await;
    let [b2, b3, b4] = [&backends[0], &backends[1], &backends[2]];
    let dns = Dnsmasq::start(&hosts("api", &[b2, b3]), &[]).await;
    let mut config = config(
        &dns,
        "round_robin",
        json!([{ "dns": name("api"), "port": port }]),
    );
    config["health_check"] = json!({ "interval": "200ms", "timeout": "200ms" });
    let lb = Lb::start(config).await;
    b3.set_health_status(503);
    until_status(&lb, "127.0.0.3 down", Duration::from_secs(5), |s| {
        is_up(s, b3) == Some(false)
    })
    .await;

    dns.set_hosts(&hosts("api", &[b2, b3, b4]));
    until_status(&lb, "127.0.0.4 in the pool", REFRESH + MARGIN, |s| {
        is_up(s, b4).is_some()
    })
    .await;
    let down_hits = b3.hits();
    let http = Http::new();
    for _ in 0..40 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    assert_eq!(b3.hits(), down_hits, "the down address got traffic");
    assert_eq!(is_up(&status(&lb).await, b3), Some(false));
    assert!(b4.hits() >= 15, "the new address got no share");
}

/// Whether `status` shows `backend` up; `None` when it is not in the pool.
fn is_up(status: &Value, backend: &Backend) -> Option<bool> {
    let address = backend.addr().to_string();
    status["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == address.as_str())
        .map(|b| b["up"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dns_server_leaves_the_last_answer_in_place() {
    let (port, backends) = loopback_backends(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]).await;
    let [b2, b3, b4] = [&backends[0], &backends[1], &backends[2]];
    let mut dns = Dnsmasq::start(&hosts("api", &[b2, b3]), &[]).await;
    let entry = json!([{ "dns": name("api"), "port": port }]);
    let lb = Lb::start(config(&dns, "round_robin", entry)).await;
    let load = Load::start(&lb.url("/"), 4);
    let addresses = [format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")];

    // The server stops: lookups time out, the answer stays.
    dns.stop().await;
    let deadline = Instant::now() + Duration::from_secs(8);
    let failing = loop {
        let s = status(&lb).await;
        if s["dns"][0]["failures_in_a_row"].as_u64() >= Some(2) {
            break s;
        }
        assert!(Instant::now() < deadline, "no failed lookup shown: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer(&failing, 0), addresses);
    assert!(failing["dns"][0]["last_error"].is_string(), "{failing}");
    let text = metrics(&lb).await;
    let failed_lookups = metric_total(&text, "lbhost_dns_lookups_total")
        - metric(
            &text,
            &format!(
                "lbhost_dns_lookups_total{{name=\"{}\",result=\"ok\"}}",
                name("api")
            ),
        );
    assert!(failed_lookups >= 2.0, "{text}");
    let (h2, h3) = (b2.hits(), b3.hits());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        b2.hits() > h2 && b3.hits() > h3,
        "the kept answer gets no traffic"
    );

    // Back, but without the name: NXDOMAIN, the answer stays.
    dns.set_hosts(&hosts("other", &[b4]));
    dns.restart(&[]).await;
    let series = format!(
        "lbhost_dns_lookups_total{{name=\"{}\",result=\"nxdomain\"}}",
        name("api")
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&metrics(&lb).await, &series) < 1.0 {
        assert!(Instant::now() < deadline, "no NXDOMAIN counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = status(&lb).await;
    assert_eq!(answer(&s, 0), addresses);
    let error = s["dns"][0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("NXDOMAIN"), "{s}");

    // The name is back with another address: traffic follows.
    dns.set_hosts(&hosts("api", &[b4]));
    until_hit(b4, REFRESH * 2 + MARGIN).await;
    let summary = load.stop().await;
    eprintln!("under load: {summary:?}");
    assert_eq!(summary.failed, 0, "failed requests: {summary:?}");
}

/// lbhost starts while its DNS server is down: it serves (503, nothing to send to) and takes
/// the backends as soon as the server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lbhost_starts_without_an_answer_and_takes_the_first_one() {
    let (port, backends) = loopback_backends(&["127.0.0.2"]).await;
    let mut dns = Dnsmasq::start(&hosts("api", &[&backends[0]]), &[]).await;
    dns.stop().await;
    let started = Instant::now();
    let lb = Lb::start(config(
        &dns,
        "round_robin",
        json!([{ "dns": name("api"), "port": port }]),
    ))
    .await;
    eprintln!(
        "ready {:?} after start with no DNS answer",
        started.elapsed()
    );
    let http = Http::new();
    assert_eq!(http.get(&lb.url("/")).await.status, 503);
    let s = status(&lb).await;
    assert!(s["dns"][0]["last_error"].is_string(), "{s}");
    assert_eq!(answer(&s, 0), Vec::<String>::new());

    dns.restart(&[]).await;
    let deadline = Instant::now() + REFRESH + MARGIN;
    loop {
        if http.get(&lb.url("/")).await.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no backend once DNS answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_and_weights() {
    let backends = start_backends(&["p1", "p2", "p3"]).await;
    let ports: Vec<u16> = backends.iter().map(|b| b.addr().port()).collect();
    let srv = |port: u16, priority: u16, weight: u16| {
        format!(
            "--srv-host=_http._tcp.{},{},{port},{priority},{weight}",
            name("api"),
            name("b")
        )
    };
    // p1 weight 3, p2 weight 1; p3 a backup (priority 1), not used.
    let mut dns = Dnsmasq::start(
        &format!("127.0.0.1 {}\n", name("b")),
        &[
            srv(ports[0], 0, 3),
            srv(ports[1], 0, 1),
            srv(ports[2], 1, 5),
        ],
    )
    .await;
    let entry = json!([{ "srv": format!("_http._tcp.{}", name("api")) }]);
    let lb = Lb::start(config(&dns, "weighted", entry)).await;
    let s = status(&lb).await;
    let weights: Vec<(String, u64)> = s["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap_or_default().to_string(),
                b["weight"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut expected = vec![
        (format!("127.0.0.1:{}", ports[0]), 3),
        (format!("127.0.0.1:{}", ports[1]), 1),
    ];
    expected.sort();
    assert_eq!(weights, expected, "{s}");
    let http = Http::new();
    for _ in 0..400 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    let hits: Vec<u64> = backends.iter().map(Backend::hits).collect();
    eprintln!("SRV weights 3:1 gave {hits:?}");
    assert_eq!(hits[2], 0);
    assert!((270..=330).contains(&hits[0]), "{hits:?}");

    // The records change: p1 leaves, p3 joins at the lowest priority.
    let load = Load::start(&lb.url("/"), 2);
    dns.restart(&[srv(ports[1], 0, 1), srv(ports[2], 0, 1)])
        .await;
    until_hit(&backends[2], REFRESH * 2 + MARGIN).await;
    let summary = load.stop().await;
    assert_eq!(summary.failed, 0, "failed requests: {summary:?}");
    let s = status(&lb).await;
    let mut expected = vec![
        format!("127.0.0.1:{}", ports[1]),
        format!("127.0.0.1:{}", ports[2]),
    ];
    expected.sort();
    assert_eq!(answer(&s, 0), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_each_entry_its_answer_and_its_failures() {
    let Some(chromium) = chromium() else {
        eprintln!("SKIPPED the_status_page_shows_each_entry...: chromium is not installed");
        return;
    };
    let (port, backends) = loopback_backends(&["127.0.0.2"]).await;
    let mut dns = Dnsmasq::start(&hosts("page", &[&backends[0]]), &[]).await;
    let entry = json!([{ "dns": name("page"), "port": port }]);
    let lb = Lb::start(config(&dns, "round_robin", entry)).await;
    let dom = headless(&chromium, &lb.admin_url("/"), &["--dump-dom".into()]).await;
    let row = format!(r#"data-dns="{}" class="st-up""#, name("page"));
    assert!(dom.contains(r#"<section id="dns">"#), "{dom}");
    assert!(dom.contains(&row), "{dom}");
    assert!(dom.contains(&format!("127.0.0.2:{port}")), "{dom}");

    dns.stop().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&lb).await["dns"][0]["failures_in_a_row"] == 0 {
        assert!(Instant::now() < deadline, "the lookup did not fail");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dom = headless(&chromium, &lb.admin_url("/"), &["--dump-dom".into()]).await;
    let row = format!(r#"data-dns="{}" class="st-down""#, name("page"));
    assert!(dom.contains(&row), "a failing entry stands out: {dom}");
    assert!(dom.contains("in a row"), "{dom}");
    assert!(
        dom.contains(&format!("127.0.0.2:{port}")),
        "its last answer stays: {dom}"
    );
}

//! The status page at `GET /` of the admin listener, rendered by headless Chromium.

use std::time::Duration;

use lbhost_e2e::{chromium, config, headless, start_backends, strategy, workspace_root, Http, Lb};
use serde_json::json;

use super::{fast_health_check, sha256_of, wait_for_status};

/// The `<tr ...>...</tr>` of the row for `address` in `dom`.
fn row<'a>(dom: &'a str, address: &str) -> &'a str {
    let marker = format!("data-backend=\"{address}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {address} in the page:\n{dom}"));
    let start = dom[..at].rfind("<tr").unwrap_or(at);
    let end = dom[at..].find("</tr>").map_or(dom.len(), |i| at + i + 5);
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_every_backend_and_its_state_in_chromium() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED status_page_renders_every_backend_and_its_state_in_chromium: chromium is not \
             installed (apt-get install chromium, or set LBHOST_CHROMIUM)"
        );
        return;
    };
    let names = ["alpha", "beta", "gamma"];
    let backends = start_backends(&names).await;
    backends[1].set_health_status(500);
    let mut config = config("round_robin", &backends);
    config["health_check"] = fast_health_check();
    for (entry, name) in config["backends"]
        .as_array_mut()
        .expect("backends is an array")
        .iter_mut()
        .zip(names)
    {
        entry["labels"] = json!({ "name": name });
    }
    let lb = Lb::start(config).await;
    let http = Http::new();
    wait_for_status(&http, &lb, "beta is down", |s| {
        s["backends"][1]["up"] == false
    })
    .await;
    for _ in 0..20 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    // Steady traffic while the page polls, so it has rates to show.
    let traffic = {
        let (http, url) = (http.clone(), lb.url("/"));
        tokio::spawn(async move {
            loop {
                http.get(&url).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let page = http.get(&lb.admin_url("/")).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );

    let dom = headless(&chromium, &lb.admin_url("/"), &["--dump-dom".into()]).await;
    let updates: u32 = dom
        .split("data-updates=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(updates >= 1, "the page never rendered /status:\n{dom}");
    for (backend, state) in backends.iter().zip(["up", "down", "up"]) {
        let addr = backend.addr().to_string();
        let row = row(&dom, &addr);
        assert!(
            row.contains(&format!("data-state=\"{state}\"")),
            "{addr} should be {state}: {row}"
        );
        assert!(
            row.contains(&format!(">{state}</span>")),
            "{addr} shows its state: {row}"
        );
    }
    assert!(dom.contains("round_robin"), "the page names the strategy");
    let sha = sha256_of(&strategy("round_robin"));
    assert!(dom.contains(&sha[..12]), "the page shows the hash prefix");
    assert!(dom.contains("2 / 3"), "two of three backends up");
    assert!(dom.contains("name=beta"), "the page shows labels");

    // `LBHOST_SCREENSHOT=docs/status-page.png` refreshes the screenshot in the docs.
    if let Some(target) = std::env::var_os("LBHOST_SCREENSHOT") {
        let target = workspace_root().join(target);
        headless(
            &chromium,
            &lb.admin_url("/"),
            &[
                format!("--screenshot={}", target.display()),
                "--window-size=1200,700".into(),
            ],
        )
        .await;
        assert!(target.is_file(), "no screenshot at {}", target.display());
    }
    traffic.abort();
}

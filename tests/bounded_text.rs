//! Text lbhost did not write — a guest's refusal message, a client's request target, a key in
//! the config file — reaches a log line, `/status` or an answer only bounded (1 KiB, marked as
//! cut) and without control characters: it can neither flood nor forge what lbhost shows, and a
//! huge message costs no lasting memory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::Request;
use lbhost_e2e::{config, full, guest, send_raw, start_backends, strategy, Http, Lb, Scratch};
use serde_json::{json, Value};

/// What the loud guest's message starts with (see `tests/guests/loud_refusal`).
const FORGED: &str = "2026-01-01T00:00:00.000000Z ERROR lbhost: FORGED LINE";
/// The longest line lbhost should ever write for a bounded text: 1 KiB of it and some context.
const LONGEST_LINE: usize = 4096;

/// Lines that could only be there if a text was printed unbounded or with its line breaks.
fn check_log(log: &str) {
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest <= LONGEST_LINE,
        "a log line of {longest} bytes: {}",
        &log[..log.len().min(2000)]
    );
    for line in log.lines() {
        assert!(!line.starts_with(FORGED), "a forged log line: {line}");
    }
    assert!(!log.contains('\x1b'), "an escape sequence in the log");
}

async fn post(http: &Http, url: &str, body: &str) -> lbhost_e2e::Reply {
    let request = Request::post(url)
        .body(full(body.to_string()))
        .expect("a valid request");
    http.send(request).await
}

async fn status(http: &Http, lb: &Lb) -> (usize, Value) {
    let reply = http.get(&lb.admin_url("/status")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    (reply.body.len(), reply.json())
}

/// The refusal as lbhost shows it: cut, marked, on one line.
fn check_refusal(text: &str) {
    assert!(
        text.contains("configure refused strategy_config: refused on purpose "),
        "{text}"
    );
    assert!(text.contains("(cut, 12.5 MB in all)"), "{text}");
    assert!(!text.contains(['\n', '\r', '\x1b']), "{text:?}");
    assert!(text.len() < 2048, "{} bytes", text.len());
}

#[tokio::test]
async fn a_huge_refusal_at_start_is_one_short_line() {
    let scratch = Scratch::new();
    let config = json!({
        "strategy": guest("loud_refusal"),
        "backends": [{"url": "http://127.0.0.1:9"}],
    });
    let path = scratch.write("config.json", config.to_string());
    let run = Lb::spawn_raw(["check", "--config", path.to_str().expect("utf-8 path")]).await;
    assert!(!run.status.success(), "refused");
    eprintln!("lbhost check: {} bytes on stderr", run.stderr.len());
    let stderr = run.stderr.trim_end();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    check_refusal(stderr);
    check_log(&run.stderr);
}

/// A strategies folder with `active.wasm` (round-robin) and the loud guest beside it.
fn strategies(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let dir = scratch.path().join("strategies");
    std::fs::create_dir_all(&dir).expect("creating the strategies folder");
    std::fs::copy(guest("loud_refusal"), dir.join("loud_refusal.wasm")).expect("copying");
    let active = dir.join("active.wasm");
    std::fs::copy(strategy("round_robin"), &active).expect("copying");
    (dir, active)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_refusal_on_a_swap_is_bounded_in_the_answer_status_and_log_and_costs_no_memory() {
    let backends = start_backends(&["a", "b"]).await;
    let scratch = Scratch::new();
    let (_dir, active) = strategies(&scratch);
    let mut c = config("round_robin", &backends);
    c["strategy"] = json!(active);
    let lb = Lb::start(c).await;
    let http = Http::new();
    for _ in 0..20 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    let (status_before, _) = status(&http, &lb).await;
    let rss_before = lb.rss_bytes();

    // By name through the admin API, three times: the message never grows the process.
    for _ in 0..3 {
        let reply = post(
            &http,
            &lb.admin_url("/strategy"),
            r#"{"name": "loud_refusal"}"#,
        )
        .await;
        assert_eq!(
            reply.status,
            422,
            "{}",
            &reply.text()[..reply.body.len().min(500)]
        );
        eprintln!("POST /strategy: 422 with {} bytes", reply.body.len());
        assert!(
            reply.body.len() < LONGEST_LINE,
            "{} bytes",
            reply.body.len()
        );
        check_refusal(reply.json()["error"].as_str().unwrap_or_default());
    }
    let (status_len, s) = status(&http, &lb).await;
    eprintln!("/status: {status_before} bytes before, {status_len} after");
    assert!(
        status_len < status_before + 2048,
        "/status is {status_len} bytes"
    );
    check_refusal(
        s["reload"]["last_strategy_reload"]["error"]
            .as_str()
            .unwrap_or_default(),
    );
    assert_eq!(s["strategy"]["name"], json!("active"), "nothing changed");

    // Dropped over the active file: refused the same way.
    let tmp = active.with_file_name(".next");
    std::fs::copy(guest("loud_refusal"), &tmp).expect("copying");
    std::fs::rename(&tmp, &active).expect("renaming");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, s) = status(&http, &lb).await;
        let last = &s["reload"]["last_strategy_reload"];
        if last["trigger"] == json!("file") {
            check_refusal(last["error"].as_str().unwrap_or_default());
            break;
        }
        assert!(Instant::now() < deadline, "the file was not tried: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..20 {
        assert_eq!(http.get(&lb.url("/")).await.status, 200);
    }
    let rss_after = lb.rss_bytes();
    eprintln!(
        "RSS before the refusals {} KiB, after four {} KiB",
        rss_before / 1024,
        rss_after / 1024
    );
    // Keeping one 12.5 MB message (in /status, say) would cost at least 12 MiB.
    assert!(
        rss_after < rss_before + 4 * 1024 * 1024,
        "RSS went from {rss_before} to {rss_after} bytes"
    );
    let log = lb.log();
    assert!(
        log.contains("(cut, 12.5 MB in all)"),
        "the refusal is logged"
    );
    check_log(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_request_target_with_line_separators_is_bounded_in_the_access_log() {
    let backends = start_backends(&["a"]).await;
    let mut c = config("round_robin", &backends);
    c["access_log"] = json!(true);
    let lb = Lb::start(c).await;
    // Bytes httparse and the URI parser take as they are: U+2028 (line separator), U+0085
    // (next line), U+202E (right-to-left override), then 20,000 more bytes.
    let target = format!("/x\u{2028}ERROR:forged\u{85}\u{202e}{}", "a".repeat(20_000));
    let request = format!("GET {target} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n");
    let answer = send_raw(lb.listen(), request.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lb.log().contains("lbhost::access") {
        assert!(Instant::now() < deadline, "no access line: {}", lb.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = lb.log();
    let line = log
        .lines()
        .find(|l| l.contains("lbhost::access"))
        .unwrap_or_default();
    eprintln!("access line: {} bytes", line.len());
    assert!(line.contains("(cut, 20.0 kB in all)"), "{line}");
    for c in ['\u{2028}', '\u{85}', '\u{202e}'] {
        assert!(!log.contains(c), "{c:?} in the log: {line}");
    }
    check_log(&log);

    // A method is any token, as long as the head allows.
    let method = "M".repeat(20_000);
    let request = format!("{method} / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n");
    let answer = send_raw(lb.listen(), request.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 "),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while lb.log().matches("lbhost::access").count() < 2 {
        assert!(Instant::now() < deadline, "no access line: {}", lb.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = lb.log();
    assert!(log.contains("MMMM… (cut, 20.0 kB in all)"), "{log}");
    check_log(&log);
}

//! Binary upgrade on SIGUSR2 (nginx's way): the running lbhost starts the program at its path
//! with its arguments and hands it the listening sockets; the new one logs `lbhost ready`, the
//! old one stops accepting, closes each keep-alive connection after its next answer, keeps its
//! WebSockets until its `shutdown_timeout` deadline, and exits 0. A new process that cannot
//! start leaves the old one serving.

#[path = "upgrade/clients.rs"]
mod clients;
#[path = "upgrade/process.rs"]
mod process;

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use lbhost_e2e::{config, start_backends};
use serde_json::json;
use tokio::time::Instant;

use clients::{Paced, Tally, Ws};
use process::Upgradable;

/// The old process's deadline after the handover.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_load_drops_nothing_and_websockets_live_until_the_deadline() {
    let backends = start_backends(&["a"]).await;
    let mut cfg = config("round_robin", &backends);
    cfg["shutdown_timeout"] = json!("3s");
    cfg["workers"] = json!(2);
    // Started from a copy of the binary, which is then replaced by a rename (as `install` does):
    // the upgrade must run the new file at that path, not the old one's deleted inode.
    let mut lb = Upgradable::start(cfg, true).await;
    let old_pid = lb.old_pid();

    // ~1,000 requests/s: 10 keep-alive clients, one request each every 10 ms.
    let load = Paced::start(lb.listen, 10, Duration::from_millis(10));
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(Ws::open(lb.listen).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = Tally::get(&load.tally.ok);

    lb.replace_program();
    let started = Instant::now();
    lb.signal(old_pid, "USR2");
    let new_pid = lb.wait_ready(2, Duration::from_secs(30)).await[1];
    let handed_over = Instant::now();
    assert_ne!(new_pid, old_pid);
    eprintln!(
        "new process {new_pid} ready {:?} after SIGUSR2",
        handed_over - started
    );
    let exe = std::fs::metadata(format!("/proc/{new_pid}/exe")).expect("the new process runs");
    let file = std::fs::metadata(lb.program()).expect("the program file");
    assert_eq!(
        exe.ino(),
        file.ino(),
        "the new process runs the file now at the path"
    );

    let status = lb
        .wait_old_exit(SHUTDOWN_TIMEOUT + Duration::from_secs(5))
        .await
        .expect("the old process exits after its deadline");
    let exited = Instant::now();
    assert!(status.success(), "the old process exited with {status}");
    let lived = exited - handed_over;
    eprintln!("old process exited {lived:?} after the handover");
    assert!(
        lived >= SHUTDOWN_TIMEOUT - Duration::from_millis(300),
        "the old process left after {lived:?}, before its deadline, with WebSockets open"
    );

    // The new process serves on alone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = load.stop().await;
    let (ok, failed, resets) = (
        Tally::get(&tally.ok),
        Tally::get(&tally.failed),
        Tally::get(&tally.resets),
    );
    let closes = Tally::get(&tally.closes);
    let seconds = started.elapsed().as_secs_f64() + 1.0;
    eprintln!(
        "{ok} ok ({:.0}/s), {failed} failed, {resets} resets, {closes} closed by the old process",
        ok as f64 / seconds
    );
    let first = tally
        .first_failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!((failed, resets), (0, 0), "first failures: {first:?}");
    assert!(ok - before > 2_000, "the load kept going: {ok} ok in all");
    assert!(
        closes >= 10,
        "every keep-alive client was told to close ({closes})"
    );

    for ws in sockets {
        let run = ws.finish(Duration::from_secs(3)).await;
        let last = run.last_echo.expect("echoes before the upgrade");
        assert!(
            last + Duration::from_millis(700) >= handed_over + SHUTDOWN_TIMEOUT,
            "a WebSocket stopped echoing {:?} after the handover, before the deadline: {run:?}",
            last - handed_over
        );
        let (ended, why) = run.ended.clone().expect("it ended with the old process");
        assert!(ended <= exited + Duration::from_secs(2), "{why}: {run:?}");
    }
    let log = lb.log();
    assert_eq!(
        log.matches("using the inherited listening socket").count(),
        2,
        "the client and admin sockets were inherited:\n{log}"
    );
    assert!(process::alive(new_pid), "the new process serves on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_leaves_the_old_process_serving_and_a_second_usr2_is_refused() {
    let backends = start_backends(&["a"]).await;
    let mut cfg = config("round_robin", &backends);
    cfg["shutdown_timeout"] = json!("2s");
    let mut lb = Upgradable::start(cfg.clone(), false).await;
    let old_pid = lb.old_pid();
    let load = Paced::start(lb.listen, 4, Duration::from_millis(10));

    // A config the new process refuses: it exits before it is ready.
    let good = std::fs::read(lb.config_path()).expect("the config");
    std::fs::write(lb.config_path(), b"{\"listen\": 42}").expect("writing the config");
    lb.signal(old_pid, "USR2");
    lb.wait_log("upgrade failed", 1, Duration::from_secs(20))
        .await;
    let log = lb.log();
    assert!(
        log.contains("exited before it was ready"),
        "the old process says why:\n{log}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(lb.old_running(), "the old process serves on");
    assert_eq!(lb.ready_pids().len(), 1, "no new process became ready");
    let served = Tally::get(&load.tally.ok);

    // Fixed, it upgrades; a second USR2 while the first is in progress is refused.
    std::fs::write(lb.config_path(), good).expect("writing the config");
    lb.signal(old_pid, "USR2");
    lb.wait_log(
        "upgrade: the new process started",
        1,
        Duration::from_secs(10),
    )
    .await;
    lb.signal(old_pid, "USR2");
    lb.wait_log("SIGUSR2 refused", 1, Duration::from_secs(10))
        .await;
    let new_pid = lb.wait_ready(2, Duration::from_secs(30)).await[1];
    let status = lb
        .wait_old_exit(Duration::from_secs(10))
        .await
        .expect("the old process exits");
    assert!(status.success(), "the old process exited with {status}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    let first = tally
        .first_failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(
        (Tally::get(&tally.failed), Tally::get(&tally.resets)),
        (0, 0),
        "first failures: {first:?}"
    );
    assert!(Tally::get(&tally.ok) > served, "served through it all");
    assert_eq!(lb.ready_pids().len(), 2, "one new process, not two");
    assert!(process::alive(new_pid));

    // The new process upgrades in turn.
    let load = Paced::start(lb.listen, 4, Duration::from_millis(10));
    lb.signal(new_pid, "USR2");
    let third = lb.wait_ready(3, Duration::from_secs(30)).await[2];
    let deadline = Instant::now() + Duration::from_secs(10);
    while process::alive(new_pid) {
        assert!(Instant::now() < deadline, "the second process did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    assert_eq!(
        (Tally::get(&tally.failed), Tally::get(&tally.resets)),
        (0, 0),
        "{:?}",
        tally.first_failures
    );
    assert!(process::alive(third), "the third process serves");
}

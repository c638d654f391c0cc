//! A config and a strategy mounted from a Kubernetes ConfigMap: the kubelet updates such a
//! volume by writing a new `..<timestamp>` folder and renaming a `..data` symlink onto it, and
//! the files are symlinks through `..data`. lbhost must see that swap, though no event names
//! the files.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use lbhost_e2e::{free_addr, start_backends, strategy, Http, Lb, Scratch};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Writes one version of the volume: `..<version>/{config.json,active.wasm}`.
fn write_version(volume: &Path, version: &str, config: &Value, wasm: &str) {
    let dir = volume.join(format!("..{version}"));
    std::fs::create_dir_all(&dir).expect("creating a version folder");
    std::fs::write(dir.join("config.json"), config.to_string()).expect("writing the config");
    std::fs::copy(strategy(wasm), dir.join("active.wasm")).expect("copying the strategy");
}

/// Points `..data` at `..<version>` the way the kubelet does: a new symlink renamed over it.
fn point_data_at(volume: &Path, version: &str) {
    let tmp = volume.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(format!("..{version}"), &tmp).expect("creating ..data_tmp");
    std::fs::rename(&tmp, volume.join("..data")).expect("renaming ..data_tmp over ..data");
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("reading a strategy");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_updated_by_its_data_symlink_is_reloaded() {
    let backends = start_backends(&["a", "b"]).await;
    let scratch = Scratch::new();
    let volume = scratch.path().join("volume");
    std::fs::create_dir_all(&volume).expect("creating the volume");
    let (listen, admin) = (free_addr(), free_addr());
    let version = |urls: &[String]| {
        json!({
            "listen": listen.to_string(),
            "admin": admin.to_string(),
            "strategy": "active.wasm",
            "backends": urls.iter().map(|u| json!({"url": u})).collect::<Vec<_>>(),
        })
    };
    let first = version(&[backends[0].url()]);
    write_version(&volume, "2026_12_06_01", &first, "round_robin");
    point_data_at(&volume, "2026_12_06_01");
    symlink("..data/config.json", volume.join("config.json")).expect("config.json symlink");
    symlink("..data/active.wasm", volume.join("active.wasm")).expect("active.wasm symlink");

    let lb = Lb::start_from_file(&volume.join("config.json"), listen, admin).await;
    let http = Http::new();
    for _ in 0..10 {
        assert_eq!(http.get(&lb.url("/")).await.text(), "a\n");
    }

    // The update: a second backend and another strategy, in a new folder; the old one removed.
    let second = version(&[backends[0].url(), backends[1].url()]);
    write_version(&volume, "2026_12_06_02", &second, "ip_hash");
    point_data_at(&volume, "2026_12_06_02");
    std::fs::remove_dir_all(volume.join("..2026_12_06_01")).expect("removing the old version");
    let wanted = sha256_hex(Path::new(&strategy("ip_hash")));

    let admin_status = lb.admin_url("/status");
    let mut status = http.get(&admin_status).await.json();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status["strategy"]["sha256"] != wanted.as_str()
        || status["backends"].as_array().map_or(0, Vec::len) != 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ConfigMap update was not applied within 10 s: {status}\n{}",
            lb.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = http.get(&admin_status).await.json();
    }
    let addresses: Vec<&str> = status["backends"]
        .as_array()
        .map(|list| list.iter().filter_map(|b| b["address"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        addresses.iter().any(|a| backends[1].url().ends_with(a)),
        "backend b is not in the pool: {addresses:?}"
    );
    // Serving goes on, on the new strategy and pool.
    for _ in 0..20 {
        let reply = http.get(&lb.url("/")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert!(lb.log().contains("config reloaded"), "{}", lb.log());
}

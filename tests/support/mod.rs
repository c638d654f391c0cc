//! Harness for lbhost's end-to-end tests: start the real `lbhost` binary against in-process
//! demo backends on loopback, and talk to it over real sockets.
//!
//! ```no_run
//! # async fn demo() {
//! use lbhost_e2e::{config, start_backends, Http, Lb};
//! let backends = start_backends(&["a", "b"]).await;
//! let lb = Lb::start(config("round_robin", &backends)).await;
//! let reply = Http::new().get(&lb.url("/")).await;
//! assert_eq!(reply.status, 200);
//! # }
//! ```
//!
//! Needs `cargo build --release -p lbhost` and `cargo xtask strategies` first; the helpers
//! panic with that advice when the files are missing.

mod browser;
mod certs;
pub mod dnsmasq;
mod fixtures;
pub mod h2raw;
mod http;
mod lb;
pub mod load;
mod paths;
mod raw;
mod tls_front;

pub use browser::{chromium, headless};
pub use certs::{make_certificate, make_expired_certificate, openssl};
pub use fixtures::{config, loopback_backends, metric, metric_total, start_backends, wait_until};
pub use http::{empty, full, get, send_raw, send_raw_for, zeros, Http, Reply, RequestBody};
pub use lb::{free_addr, Lb, PeakRss, RawRun, Scratch};
pub use paths::{bench_guest, guest, lbhost_bin, strategy, workspace_root};
pub use raw::{RawBackend, Recorded, RecordingBackend};
pub use tls_front::TlsFront;

//! Hand-written TCP backends, for what a real HTTP server would not do on purpose (close idle
//! connections early, answer halfway, swallow requests).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

/// A listener on a free loopback port whose connections are served by a test's own code.
#[derive(Debug)]
pub struct RawBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

impl RawBackend {
    /// Starts accepting; each connection is counted and handed to `serve` in a task of its own.
    pub async fn start<F, Fut>(serve: F) -> RawBackend
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(stream));
            }
        });
        RawBackend { addr, accepted }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` + its address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

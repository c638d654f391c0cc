//! Upgraded connections (WebSocket and friends): bytes copied both ways until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::pool::InFlight;
use crate::upstream::Upgraded;

/// Joins the client's upgraded connection and the backend's in a background task: first what
/// the backend sent after its 101, then bytes both ways. The backend counts one request in
/// flight for as long as the tunnel is open.
pub fn tunnel(client: OnUpgrade, backend: Upgraded, in_flight: InFlight, address: String) {
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let client = match client.await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(backend = %address, cause = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let Upgraded {
            io: mut backend,
            read,
        } = backend;
        if !read.is_empty() {
            if let Err(e) = client.write_all(&read).await {
                tracing::debug!(backend = %address, cause = %e, "upgraded connection ended");
                return;
            }
        }
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => {
                tracing::debug!(backend = %address, up, down, "upgraded connection closed")
            }
            Err(e) => tracing::debug!(backend = %address, cause = %e, "upgraded connection ended"),
        }
    });
}

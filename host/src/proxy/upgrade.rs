//! Upgraded connections (WebSocket and friends): bytes copied both ways until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::pool::InFlight;

/// Joins the client's and the backend's upgraded connections in a background task. The backend
/// counts one request in flight for as long as the tunnel is open.
pub fn tunnel(client: OnUpgrade, backend: OnUpgrade, in_flight: InFlight, address: String) {
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(backend = %address, cause = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => {
                tracing::debug!(backend = %address, up, down, "upgraded connection closed")
            }
            Err(e) => tracing::debug!(backend = %address, cause = %e, "upgraded connection ended"),
        }
    });
}

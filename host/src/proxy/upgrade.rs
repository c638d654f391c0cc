//! Upgraded connections (WebSocket and friends): bytes copied both ways until either side closes.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::pool::InFlight;
use crate::upstream::Upgraded;

/// A client connection after `101 Switching Protocols`, with whatever the client sent after its
/// request head first in line.
pub(crate) trait UpgradedClient: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpgradedClient for T {}

/// The proxy's end of a client's upgrade: the listener hands the connection over once it has
/// written the 101.
#[derive(Debug)]
pub(crate) struct ClientUpgrade(oneshot::Receiver<Box<dyn UpgradedClient>>);

/// The listener's end of a client's upgrade.
#[derive(Debug)]
pub(crate) struct UpgradeHandover(oneshot::Sender<Box<dyn UpgradedClient>>);

impl std::fmt::Debug for dyn UpgradedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpgradedClient")
    }
}

/// A new upgrade: the listener keeps the handover, the request carries the other end.
pub(crate) fn upgrade_pair() -> (UpgradeHandover, ClientUpgrade) {
    let (handover, upgrade) = oneshot::channel();
    (UpgradeHandover(handover), ClientUpgrade(upgrade))
}

impl UpgradeHandover {
    /// Gives the connection to the tunnel (if the proxy started one; otherwise it is dropped).
    pub(crate) fn hand_over(self, client: Box<dyn UpgradedClient>) {
        let _ = self.0.send(client);
    }
}

/// Joins the client's upgraded connection and the backend's in a background task: first what
/// the backend sent after its 101, then bytes both ways. The backend counts one request in
/// flight for as long as the tunnel is open.
pub(super) fn tunnel(
    client: ClientUpgrade,
    backend: Upgraded,
    in_flight: InFlight,
    address: String,
) {
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let Ok(mut client) = client.0.await else {
            tracing::warn!(backend = %address, "upgrade failed: the client connection was not handed over");
            return;
        };
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

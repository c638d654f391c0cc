//! A client's connection: a plain TCP socket, or TLS over one ([`MaybeTls`]).

use std::io;
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::tls::MaybeTls;

/// A client connection's stream.
pub(super) type ClientStream = MaybeTls<TlsStream<TcpStream>>;

impl MaybeTls<TlsStream<TcpStream>> {
    /// Whether it came over TLS (`https` for the backend's forwarding fields).
    pub(super) fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Ready once a read may return something: the socket became readable, or (TLS) decrypted
    /// bytes already wait in the session.
    pub(super) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            MaybeTls::Plain(tcp) => tcp.poll_read_ready(cx),
            MaybeTls::Tls(tls) => {
                let (tcp, session) = tls.get_ref();
                if !session.wants_read() {
                    return Poll::Ready(Ok(()));
                }
                tcp.poll_read_ready(cx)
            }
        }
    }
}

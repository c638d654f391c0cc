//! A backend connection's stream: a plain TCP socket, or TLS over one (`https://` backends,
//! [`MaybeTls`]).

use std::io;
use std::pin::Pin;
use std::task::Context;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::tls::MaybeTls;

/// A backend connection's stream.
pub(crate) type BackendStream = MaybeTls<TlsStream<TcpStream>>;

impl MaybeTls<TlsStream<TcpStream>> {
    /// Whether an idle connection can still carry a request: the backend has not closed it and
    /// sent nothing unasked for. Costs no system call unless the socket became readable since
    /// it was last read (tokio remembers readiness). Over TLS, records that arrived meanwhile
    /// are processed (a session ticket leaves the connection usable; a `close_notify`, data or
    /// an error does not).
    pub(super) fn is_alive(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            MaybeTls::Plain(tcp) => {
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            MaybeTls::Tls(tls) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut buf = ReadBuf::new(&mut probe);
                Pin::new(tls.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

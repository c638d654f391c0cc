//! The new process's side of a binary upgrade: the listening sockets and the readiness pipe it
//! inherits from the lbhost it replaces, named in `LBHOST_UPGRADE`.
//!
//! The value is `role=fd` pairs, comma-separated: `listen=9,tls=10,admin=11,ready=12,from=4242`
//! (`from`: the old process's pid, for the log). nginx passes its sockets the same way (its
//! `NGINX` variable); the pipe is tableflip's readiness handshake.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};

use tokio::net::TcpListener;

/// The environment variable naming what a new process inherits.
pub(super) const ENV: &str = "LBHOST_UPGRADE";

/// Which listener a socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// `listen`: client traffic.
    Listen,
    /// `tls.listen`: client traffic over TLS.
    Tls,
    /// `admin`: the admin API.
    Admin,
}

impl Role {
    pub(super) const ALL: [Role; 3] = [Role::Listen, Role::Tls, Role::Admin];

    /// Its name in `LBHOST_UPGRADE` and in the log.
    pub(super) fn name(self) -> &'static str {
        match self {
            Role::Listen => "listen",
            Role::Tls => "tls",
            Role::Admin => "admin",
        }
    }
}

/// What this process got from the one it replaces; empty when it was started otherwise.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    sockets: Vec<(Role, OwnedFd)>,
    /// The pipe to write `ready` to once this process accepts.
    ready: Option<OwnedFd>,
    from: Option<u32>,
}

impl Inherited {
    /// Takes what `LBHOST_UPGRADE` names, and removes the variable (so processes this one starts
    /// do not see it). The descriptors get close-on-exec again. To be called first thing, before
    /// the process starts any thread or other process. A malformed value is logged and ignored:
    /// this process then binds its listeners itself (and fails while the old one holds them,
    /// which leaves the old one serving).
    pub(crate) fn from_env() -> Inherited {
        let Some(value) = std::env::var_os(ENV) else {
            return Inherited::default();
        };
        std::env::remove_var(ENV);
        let value = value.to_string_lossy();
        match Inherited::parse(&value) {
            Ok(inherited) => inherited,
            Err(reason) => {
                tracing::warn!(%reason, "{ENV} ignored: binding the listeners anew");
                Inherited::default()
            }
        }
    }

    fn parse(value: &str) -> Result<Inherited, String> {
        let mut inherited = Inherited::default();
        let mut seen: Vec<RawFd> = Vec::new();
        for pair in value.split(',').filter(|p| !p.is_empty()) {
            let (name, number) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not name=number"))?;
            let number: u32 = number
                .parse()
                .map_err(|_| format!("{pair:?}: {number:?} is not a number"))?;
            if name == "from" {
                inherited.from = Some(number);
                continue;
            }
            let fd = RawFd::try_from(number).map_err(|_| format!("{pair:?}: out of range"))?;
            if fd <= 2 || seen.contains(&fd) {
                return Err(format!("{pair:?}: descriptor {fd} cannot be inherited"));
            }
            let role = Role::ALL.into_iter().find(|r| r.name() == name);
            if role.is_none() && name != "ready" {
                return Err(format!("{pair:?}: unknown name {name:?}"));
            }
            let owned = take_fd(fd).ok_or_else(|| format!("{pair:?}: no such descriptor"))?;
            seen.push(fd);
            match role {
                Some(role) => inherited.sockets.push((role, owned)),
                None => inherited.ready = Some(owned),
            }
        }
        Ok(inherited)
    }

    /// The pid of the process this one replaces, if it replaces one.
    pub(crate) fn upgraded_from(&self) -> Option<u32> {
        self.from
    }

    /// The listener for `role` at `address`: the inherited socket if it is a TCP socket bound
    /// there (its queue of connections not yet accepted is the old process's: none is lost),
    /// otherwise a new one bound to `address` (the inherited one, if any, is closed: the
    /// config changed).
    pub(crate) async fn listener(
        &mut self,
        role: Role,
        address: SocketAddr,
    ) -> std::io::Result<TcpListener> {
        if let Some(at) = self.sockets.iter().position(|(r, _)| *r == role) {
            let (_, fd) = self.sockets.swap_remove(at);
            let socket = socket2::Socket::from(fd);
            let bound = socket.local_addr().ok().and_then(|a| a.as_socket());
            let stream = matches!(socket.r#type(), Ok(socket2::Type::STREAM));
            if stream && bound == Some(address) {
                socket.set_nonblocking(true)?;
                tracing::info!(role = role.name(), %address, "using the inherited listening socket");
                return TcpListener::from_std(socket.into());
            }
            tracing::info!(
                role = role.name(),
                %address,
                inherited = ?bound,
                "the inherited socket is not the configured address: binding anew"
            );
        }
        TcpListener::bind(address).await
    }

    /// Tells the process this one replaces that it accepts now (writes `ready` to the pipe and
    /// closes it). Nothing without a pipe.
    pub(crate) fn ready(&mut self) {
        let Some(fd) = self.ready.take() else {
            return;
        };
        if let Err(e) = std::fs::File::from(fd).write_all(b"ready\n") {
            tracing::warn!(cause = %e, from = ?self.from, "cannot tell the old process this one is ready");
        }
    }
}

/// Ownership of descriptor `fd`, with close-on-exec set, if it is open.
#[allow(unsafe_code)]
fn take_fd(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD and F_SETFD read and set the descriptor's flags and touch no memory; on a
    // number that is no open descriptor they fail with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return None;
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    // SAFETY: `fd` is open (above) and was handed to this process for this use alone by the
    // process it replaces; `LBHOST_UPGRADE` is read once and a number taken once (`parse`), so
    // nothing else in the process owns or closes it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_values_are_refused_whole() {
        for value in ["listen", "listen=x", "listen=1", "bogus=50", "listen=99999"] {
            assert!(Inherited::parse(value).is_err(), "{value}");
        }
        let inherited = Inherited::parse("from=42").expect("a pid alone is fine");
        assert_eq!(inherited.upgraded_from(), Some(42));
        assert!(inherited.sockets.is_empty() && inherited.ready.is_none());
    }

    #[test]
    fn an_open_descriptor_is_taken_once() {
        let (reader, _writer) = std::io::pipe().expect("a pipe");
        let fd = std::os::fd::IntoRawFd::into_raw_fd(reader);
        let value = format!("ready={fd},listen={fd}");
        assert!(
            Inherited::parse(&value).is_err(),
            "the same descriptor twice"
        );
        // The first `take_fd` above owned it and closed it with the error.
        let mut inherited = Inherited::parse("from=1").expect("parses");
        inherited.ready();
    }
}

//! The daemon's TCP listening sockets, bound before it starts (the shape of
//! mini-redis' `server::run(listener, shutdown)`): `tjfwd run` binds what
//! the configuration names ([`Listeners::bind`]) and hands the sockets to
//! [`crate::daemon::run`]; tests bind `127.0.0.1:0` themselves, pass the
//! listeners in and read the port from them, so that no test guesses a free
//! port.
//!
//! Invariants:
//!
//! - A configuration never names port 0 (`[admin] listen`,
//!   `[input] listen_tcp` and `[feed] listen` refuse it: Cowrie and the monitoring need a fixed
//!   port). Only the test-only [`TEST_EPHEMERAL_PORTS_ENV`] makes the binary
//!   bind port 0 of the configured addresses ([`Listeners::bind_ephemeral`]);
//!   `tjfwd run` then logs each bound address.
//! - The sockets are non-blocking std listeners, owned by the caller of
//!   `daemon::run` for the whole run: each run of the daemon (a new one
//!   after the database was reopened) serves clones of them, so the ports
//!   stay bound in between and connections wait in the backlog.
//! - The control socket is not among them: it lives in the state directory,
//!   and replacing its file is only safe once the daemon holds the
//!   database's lock (another daemon's socket would be unlinked), so the
//!   daemon binds it itself.

use std::io;
use std::net::{SocketAddr, TcpListener};

use crate::config::Config;

/// Test only: when set to `1`, `tjfwd run` binds `[admin] listen` and
/// `[input] listen_tcp` on port 0 of their configured address (a port the
/// kernel picks, free by construction) and logs the bound addresses, so
/// that tests of the binary need not guess a free port. Never set it in
/// production: Cowrie and the monitoring would not find the ports.
pub const TEST_EPHEMERAL_PORTS_ENV: &str = "TJFWD_TEST_EPHEMERAL_PORTS";

/// The configuration key of the admin endpoint's address.
pub const ADMIN_KEY: &str = "[admin] listen";
/// The configuration key of the socket input's address.
pub const INPUT_TCP_KEY: &str = "[input] listen_tcp";
/// The configuration key of the denylist feed's address.
pub const FEED_KEY: &str = "[feed] listen";

/// A socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({key}; is another process using the port?)")]
pub struct ListenError {
    /// The configuration key that names the address.
    pub key: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// What the OS said.
    #[source]
    pub source: io::Error,
}

/// The daemon's listening sockets.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The admin endpoint (`/metrics`, `/healthz`); None: no endpoint.
    pub admin: Option<TcpListener>,
    /// Cowrie's socketlog connections; None: no socket input. Not served
    /// with `--drain`, which reads files only.
    pub input_tcp: Option<TcpListener>,
    /// The denylist feed (`/denylist.txt`, `/denylist.json`); None: not
    /// served.
    pub feed: Option<TcpListener>,
}

impl Listeners {
    /// No listening socket: no admin endpoint, no socket input.
    pub fn none() -> Listeners {
        Listeners::default()
    }

    /// Binds the addresses of `config`; with `drain` (`run --drain` reads
    /// files only), not the socket input's.
    pub fn bind(config: &Config, drain: bool) -> Result<Listeners, ListenError> {
        Listeners::bind_with(config, drain, |addr| addr)
    }

    /// Test only ([`TEST_EPHEMERAL_PORTS_ENV`]): like [`Listeners::bind`],
    /// on port 0 of each configured address.
    pub fn bind_ephemeral(config: &Config, drain: bool) -> Result<Listeners, ListenError> {
        Listeners::bind_with(config, drain, |addr| SocketAddr::new(addr.ip(), 0))
    }

    fn bind_with(
        config: &Config,
        drain: bool,
        port: impl Fn(SocketAddr) -> SocketAddr,
    ) -> Result<Listeners, ListenError> {
        let admin = match config.admin.listen {
            Some(addr) => Some(bind(ADMIN_KEY, port(addr))?),
            None => None,
        };
        let input_tcp = match (config.input.listen_tcp, drain) {
            (Some(addr), false) => Some(bind(INPUT_TCP_KEY, port(addr))?),
            _ => None,
        };
        let feed = match config.feed.listen {
            Some(addr) => Some(bind(FEED_KEY, port(addr))?),
            None => None,
        };
        Ok(Listeners {
            admin,
            input_tcp,
            feed,
        })
    }

    /// The bound addresses, with the key that configures each.
    pub fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        [
            (ADMIN_KEY, &self.admin),
            (INPUT_TCP_KEY, &self.input_tcp),
            (FEED_KEY, &self.feed),
        ]
        .into_iter()
        .filter_map(|(key, l)| Some((key, l.as_ref()?.local_addr().ok()?)))
        .collect()
    }
}

/// Binds `addr`, non-blocking.
fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let err = |source| ListenError { key, addr, source };
    let l = TcpListener::bind(addr).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(admin: Option<SocketAddr>, input: Option<SocketAddr>) -> Config {
        let mut c = Config::default_for_tests("/nonexistent".into());
        c.admin.listen = admin;
        c.input.listen_tcp = input;
        c
    }

    #[test]
    fn a_busy_port_is_refused_with_the_key_and_the_address() {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        for (c, key) in [
            (config(Some(addr), None), "[admin] listen"),
            (config(None, Some(addr)), "[input] listen_tcp"),
        ] {
            let msg = Listeners::bind(&c, false).unwrap_err().to_string();
            assert!(msg.contains(key), "{msg}");
            assert!(msg.contains(&format!("cannot listen on {addr}")), "{msg}");
            assert!(msg.contains("is another process using the port?"), "{msg}");
        }
        // --drain does not serve the socket input, so does not bind it.
        let l = Listeners::bind(&config(None, Some(addr)), true).unwrap();
        assert!(l.input_tcp.is_none());
    }

    #[test]
    fn ephemeral_ports_keep_the_address_and_take_a_port_the_kernel_picked() {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        let l = Listeners::bind_ephemeral(&config(Some(addr), Some(addr)), false).unwrap();
        let bound = l.addresses();
        assert_eq!(bound.len(), 2);
        for (key, a) in &bound {
            assert_eq!(a.ip(), addr.ip(), "{key}");
            assert_ne!(a.port(), addr.port(), "{key}");
            assert_ne!(a.port(), 0, "{key}");
        }
        assert_eq!(bound[0].0, ADMIN_KEY);
        assert_eq!(bound[1].0, INPUT_TCP_KEY);
        assert!(Listeners::none().addresses().is_empty());
    }
}

//! lbhost: a WebAssembly-programmable HTTP load balancer.
//!
//! The host owns the network; which backend gets a request is decided by a strategy component
//! (see `wit/strategy.wit`). One module, one job; the layers they form, bottom first, are listed
//! (and checked by a test) in `layers.rs`:
//! `text` foreign text made safe to show · `http1` HTTP/1.1 on the wire, both roles ·
//! [`request`] the client request head as the proxy and strategies read it · `body` body types
//! shared by the layers · [`config`] parsing and validation · `metrics` Prometheus families ·
//! [`pool`] the backends and their health, circuits and counts · [`strategy`] wasm selection ·
//! `ratelimit` per-client limits · `discovery` backends from DNS names · `upstream` connections
//! to backends · `health` active checks ·
//! `proxy` a request's way through · `server` the client listener · `admin` the admin API ·
//! `reload` and `watch` hot reload · [`author`] the `lbhost strategy` commands (new, build,
//! simulate), offline.
//!
//! # A request's path through the files
//! 1. `server/mod.rs` accepts on each worker thread; `server/connection.rs` tells HTTP/2 (hyper)
//!    from HTTP/1.1 and counts the connection.
//! 2. `server/h1/mod.rs` runs the connection: `http1/parse_request.rs` reads the head into a
//!    [`request::ClientHead`]; the body stays on the socket (`server/h1/incoming_body.rs`, read
//!    with `http1/decoder.rs` as the proxy streams it).
//! 3. `proxy/mod.rs` `Proxy::handle`: rate limit (`ratelimit.rs`), client address and forwarded
//!    fields (`proxy/headers.rs`), then `forward`: `Proxy::attempt` asks the strategy
//!    (`strategy/mod.rs` → `strategy/instance.rs`, a warm wasm instance per worker), checks the
//!    backend's circuit (`pool/circuit.rs`), and sends:
//! 4. `upstream/mod.rs` takes an idle connection (`upstream/idle.rs`) or connects;
//!    `upstream/exchange.rs` writes the head (`http1/write_request.rs`) and streams the body
//!    (`body.rs` `UpstreamBody`, chunked by `http1/encode.rs`), then reads the response head
//!    (`http1/parse_response.rs`). On a failure before any answer, `Proxy::attempt` retries on
//!    another backend if `proxy/retry.rs` allows.
//! 5. `Proxy::answer` is the one exit: metrics (`metrics/`), passive health (`pool/passive.rs`),
//!    the access log line, and the response, whose body (`upstream/backend_body.rs`, through
//!    `proxy/response_body.rs`) streams from the backend's connection and gives it back to the
//!    idle pool at its end.
//! 6. `server/h1/respond.rs` writes the response (`http1/write_response.rs` for the head), and
//!    the connection reads the next request.

#![warn(unreachable_pub, missing_debug_implementations)]

mod admin;
pub mod author;
mod body;
pub mod config;
mod discovery;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod health;
mod http1;
mod http2;
#[cfg_attr(not(test), allow(dead_code))]
mod layers;
mod metrics;
pub mod pool;
mod proxy;
mod ratelimit;
mod reload;
pub mod request;
pub mod routes;
mod server;
pub mod strategy;
mod text;
mod tls;
mod upstream;
mod watch;

pub use reload::Overrides;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use config::Config;
use metrics::Metrics;
use proxy::service::{PoolRuntime, Service, Table};
use proxy::Proxy;
use strategy::{Runtime, Strategies};

/// Each pool's strategy slot, loaded and checked before listening ([`prepare`]).
#[derive(Debug)]
pub struct Prepared {
    /// One per pool of the config, in its order.
    slots: Vec<Strategies>,
}

/// Loads the strategy of every pool of `config` (and the shadow and canary, if any, of its main
/// pool), checking everything that can be checked before listening.
pub fn prepare(config: &Config) -> anyhow::Result<Prepared> {
    let runtime = Runtime::new(&config.sandbox).context("starting the wasm runtime")?;
    let main = config.main_pool().name.clone();
    let mut slots = Vec::with_capacity(config.pools.len());
    for pool in &config.pools {
        let loaded = runtime
            .load(&pool.strategy, &pool.strategy_config)
            .with_context(|| {
                if config.has_pools() && !pool.strategy_inherited {
                    format!("pools.{}.strategy {}", pool.name, pool.strategy.display())
                } else {
                    format!("strategy {}", pool.strategy.display())
                }
            })?;
        let strategies = Strategies::new(Arc::clone(&runtime), loaded);
        if let (Some(shadow), true) = (&config.shadow, pool.name == main) {
            let loaded = runtime
                .load(&shadow.strategy, &shadow.strategy_config)
                .with_context(|| format!("shadow.strategy {}", shadow.strategy.display()))?;
            strategies.set_shadow(Some(strategy::Shadow::new(loaded, shadow.sample)?));
        }
        if let (Some(canary), true) = (&config.canary, pool.name == main) {
            let loaded = runtime
                .load(&canary.strategy, &canary.strategy_config)
                .with_context(|| format!("canary.strategy {}", canary.strategy.display()))?;
            let plan = canary.plan.clone();
            strategies.set_canary(Some(strategy::Canary::new(Arc::new(loaded), plan)));
        }
        slots.push(strategies);
    }
    Ok(Prepared { slots })
}

/// What a starting lbhost takes from its process: the sockets it inherits when it replaces
/// another lbhost (a binary upgrade), and how to start its own successor. Take it first thing
/// in `main`, before any thread or child process starts.
#[derive(Debug)]
pub struct Handoff {
    inherited: server::upgrade::Inherited,
    relaunch: server::upgrade::Relaunch,
}

impl Handoff {
    /// This process's: see [`Handoff`].
    pub fn from_process() -> Handoff {
        Handoff {
            inherited: server::upgrade::Inherited::from_env(),
            relaunch: server::upgrade::Relaunch::from_process(),
        }
    }
}

/// Runs lbhost with `config` (read from `config_path`, with the CLI's `overrides`) until SIGTERM
/// or SIGINT, then drains; or until SIGUSR2 has started a new lbhost that took over the
/// listening sockets, then drains too. Must be called inside a tokio runtime, which then runs
/// the control plane (admin API, health checks, reload triggers); requests are served by
/// `config.workers` threads of their own. Returns an error if a listener cannot be bound or no
/// worker starts.
pub async fn run(
    config: Config,
    prepared: Prepared,
    config_path: std::path::PathBuf,
    overrides: reload::Overrides,
    handoff: Handoff,
) -> anyhow::Result<()> {
    use server::upgrade::Role;
    let Handoff {
        mut inherited,
        relaunch,
    } = handoff;
    let listener = inherited
        .listener(Role::Listen, config.listen)
        .await
        .with_context(|| format!("listen {}", config.listen))?;
    let tls_listener = match &config.tls {
        Some(tls) => Some(
            inherited
                .listener(Role::Tls, tls.listen)
                .await
                .with_context(|| format!("tls.listen {}", tls.listen))?,
        ),
        None => None,
    };
    let admin_listener = inherited
        .listener(Role::Admin, config.admin)
        .await
        .with_context(|| format!("admin {}", config.admin))?;
    // SIGUSR2 is listened for before anything answers (its default action ends the process).
    let mut upgrade = server::upgrade::Upgrade::new(relaunch);
    upgrade
        .keep(Role::Listen, &listener)
        .and_then(|()| match &tls_listener {
            Some(tls) => upgrade.keep(Role::Tls, tls),
            None => Ok(()),
        })
        .and_then(|()| upgrade.keep(Role::Admin, &admin_listener))
        .context("keeping the listening sockets for upgrades")?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    // DNS entries get their first answers before lbhost serves (a failed lookup is logged and
    // tried again; the entry adds no backend until one succeeds).
    let discovery = Arc::new(discovery::Discovery::new(Arc::clone(&metrics)));
    discovery.sync(&config).await.context("dns")?;
    // Each pool's backends are its static ones and the answers of its DNS entries.
    let answers = discovery.answers();
    let services = config
        .pools
        .iter()
        .zip(prepared.slots)
        .map(|(pool, strategies)| {
            let backends = reload::backends_of(pool, &answers);
            let strategies = Arc::new(strategies.with_metrics(Arc::clone(&metrics)));
            let runtime = PoolRuntime::start(pool, &backends, strategies, &metrics);
            Service::new(runtime, &config, pool)
        })
        .collect();
    let table = Table::new(&config, services);
    let main = table.main();
    let active = main.runtime.strategies.active();
    metrics.set_active_strategy(&active.name, &active.sha256);
    let pool_size = main.runtime.pool.load().backends.len();
    let pools = table.services.len();
    let proxy = Arc::new(Proxy::new(config.clone(), table, metrics));
    let reloader = Arc::new(reload::Reloader::new(
        Arc::clone(&proxy),
        config_path,
        overrides,
        discovery,
    ));
    let following = tokio::spawn(Arc::clone(&reloader).follow_discovery());
    let watcher = match watch::start(Arc::clone(&reloader)) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(cause = %e, "cannot watch files; reload with SIGHUP or POST /reload");
            None
        }
    };
    watch::on_sighup(Arc::clone(&reloader));
    let draining = Arc::new(AtomicBool::new(false));
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        Arc::clone(&proxy),
        reloader,
        Arc::clone(&draining),
    ));
    let listener = listener
        .into_std()
        .with_context(|| format!("listen {}", config.listen))?;
    let stop = stop_after_drain_delay(Arc::clone(&proxy), draining);
    let tls = match tls_listener {
        Some(listener) => Some(server::TlsListener {
            listener: listener.into_std().context("the TLS listening socket")?,
            config: tls::server_config(Arc::clone(&proxy.certificates))
                .context("setting up TLS")?,
        }),
        None => None,
    };
    let workers = server::start(listener, tls, proxy, &config)?;
    tracing::info!(
        pid = std::process::id(),
        listen = %config.listen,
        admin = %config.admin,
        strategy = %active.name,
        sha256 = %&active.sha256[..12],
        backends = pool_size,
        pools,
        routes = config.routes.len(),
        workers = config.workers,
        upgraded_from = inherited.upgraded_from(),
        "lbhost ready"
    );
    inherited.ready();
    let drained = tokio::select! {
        () = stop => {
            upgrade.close("shutting down");
            workers.stop(server::Stop::Shutdown, std::future::pending()).await
        }
        () = upgrade.handed_over() => {
            // The new process answers the admin API from now on.
            admin.abort();
            upgrade.close("this process handed its sockets over and is draining; signal the new one");
            workers.stop(server::Stop::Handover, shutdown_signal()).await
        }
    };
    admin.abort();
    following.abort();
    drop(watcher);
    if drained {
        tracing::info!("drained; bye");
    } else {
        tracing::warn!(timeout = ?config.shutdown_timeout, "shutdown timeout: some requests were cut");
    }
    Ok(())
}

/// Resolves when lbhost should stop accepting: `drain_delay` after SIGTERM or SIGINT (a second
/// signal cuts the delay short). From the first signal on, `draining` is set, and with it
/// `GET /healthz` fails while traffic is still served.
async fn stop_after_drain_delay(proxy: Arc<Proxy>, draining: Arc<AtomicBool>) {
    shutdown_signal().await;
    draining.store(true, Ordering::Relaxed);
    // The running config's: a reload may have changed it since start.
    let delay = proxy.config.load().drain_delay;
    if delay > Duration::ZERO {
        tracing::info!(?delay, "draining: /healthz fails, still serving");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown_signal() => tracing::info!("second signal: drain delay cut short"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(cause = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}

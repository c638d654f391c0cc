//! Watches the config file, every pool's strategy file and the TLS certificate and key files, and
//! SIGHUP, and triggers reloads (a changed certificate reloads the config, which loads it).
//!
//! The watch is on the folders, not the files, so an atomic `mv` over the file, a `cp` onto it
//! and an editor's write-then-rename are all seen. Events are sorted on the watcher's own thread
//! (matching a path touches the filesystem): the workers hear only of the two files that matter,
//! not of a log written next to the config. Bursts are debounced: a reload runs once the file has
//! been quiet for [`DEBOUNCE`].
//!
//! A Kubernetes ConfigMap or Secret volume is updated by pointing its `..data` symlink at a new
//! folder in one rename; the files are symlinks through `..data`, so no event names them. A
//! change of `..data` beside a watched file counts as a change of that file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::reload::Reloader;

/// Quiet time after the last event before reloading.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(150);

/// The symlink Kubernetes' atomic writer swaps to update a mounted ConfigMap or Secret.
const KUBERNETES_DATA: &str = "..data";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Config,
    Strategy,
}

/// Starts watching; the returned watcher must be kept alive.
pub(crate) fn start(reloader: Arc<Reloader>) -> notify::Result<RecommendedWatcher> {
    let (tx, rx) = mpsc::unbounded_channel::<Target>();
    let sorter = Arc::clone(&reloader);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            return;
        };
        if event.kind.is_access() {
            return;
        }
        for path in event.paths {
            for target in targets_of(&sorter, &path).into_iter().flatten() {
                let _ = tx.send(target);
            }
        }
    })?;
    let mut dirs = vec![parent_dir(reloader.config_path()), reloader.strategy_dir()];
    dirs.extend(reloader.strategy_paths().iter().map(|f| parent_dir(f)));
    // The folders of the certificates at start (a folder a reload adds is watched after a
    // restart; until then SIGHUP or POST /reload picks up its changes).
    dirs.extend(reloader.certificate_files().iter().map(|f| parent_dir(f)));
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(debounce(reloader, rx));
    Ok(watcher)
}

/// Reloads the config on SIGHUP, until the process ends.
pub(crate) fn on_sighup(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(cause = %e, "cannot listen for SIGHUP");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading config");
            let _ = reloader.reload_config("sighup").await;
        }
    });
}

/// Which watched files an event on `path` changes: the file it names, or every watched file
/// beside a Kubernetes `..data` symlink. Runs on the watcher's thread.
fn targets_of(reloader: &Reloader, path: &Path) -> [Option<Target>; 2] {
    let config = reloader.config_path();
    let strategies = reloader.strategy_paths();
    let certificates = reloader.certificate_files();
    let name = path.file_name();
    if name == Some(std::ffi::OsStr::new(KUBERNETES_DATA)) {
        let dir = parent_dir(path);
        let certificate_dir = certificates.iter().any(|f| parent_dir(f) == dir);
        return [
            (dir == parent_dir(config) || certificate_dir).then_some(Target::Config),
            strategies
                .iter()
                .any(|s| dir == parent_dir(s))
                .then_some(Target::Strategy),
        ];
    }
    // A renewed certificate or key (written in place, or renamed over the old one as certbot
    // does): the config reload loads and checks it.
    if certificates.iter().any(|f| same_file(path, f)) {
        return [Some(Target::Config), None];
    }
    if name != config.file_name() && !strategies.iter().any(|s| name == s.file_name()) {
        return [None, None];
    }
    if same_file(path, config) {
        [Some(Target::Config), None]
    } else if strategies.iter().any(|s| same_file(path, s)) {
        [Some(Target::Strategy), None]
    } else {
        [None, None]
    }
}

/// Runs the reloads the events ask for, once each burst has been quiet for [`DEBOUNCE`].
///
/// Kept instead of `notify-debouncer-mini`: that one adds a thread that wakes every tick even
/// when no file changes, and hands back paths to classify again; this waits on the control
/// runtime until an event comes, and merges config and strategy events into one reload.
async fn debounce(reloader: Arc<Reloader>, mut rx: mpsc::UnboundedReceiver<Target>) {
    let mut pending: Vec<Target> = Vec::new();
    loop {
        let event = if pending.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                Ok(event) => event,
                Err(_) => {
                    // Quiet for DEBOUNCE: act. A config reload also reloads a changed strategy.
                    if pending.contains(&Target::Config) {
                        let _ = reloader.reload_config("file").await;
                    } else {
                        // Each pool whose file it is and whose content changed swaps; the
                        // others see the same hash and keep theirs.
                        let files = reloader.strategy_files();
                        let single = files.len() == 1;
                        for (pool, path) in files {
                            if single || reloader.strategy_file_changed(&pool) {
                                let _ = reloader
                                    .switch_strategy(Some(&pool), path, None, "file")
                                    .await;
                            }
                        }
                    }
                    pending.clear();
                    continue;
                }
            }
        };
        let Some(target) = event else {
            return;
        };
        if !pending.contains(&target) {
            pending.push(target);
        }
    }
}

/// The folder of `path`, canonical when possible (events carry canonical paths).
fn parent_dir(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// Whether `event_path` names the file `path` (same folder and file name).
fn same_file(event_path: &Path, path: &Path) -> bool {
    event_path.file_name() == path.file_name() && parent_dir(event_path) == parent_dir(path)
}

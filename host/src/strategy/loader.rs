//! Loading a strategy file: read, compile, check the world and imports, trial-configure.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;

use super::bindings::{BalancerPre, Needs};
use super::compiler;
use super::instance::{Pre, Warm};
use super::quarantine::FaultTracker;
use super::runtime::Runtime;
use super::LoadError;
use crate::text::{bounded, bounded_owned};

/// The interfaces lbhost provides to guests, of both contract versions (`types` has no
/// functions, only shared types).
const PROVIDED_IMPORTS: [&str; 4] = [
    "lb:strategy/http@0.2.0",
    "lb:strategy/types@0.2.0",
    "lb:strategy/http@0.1.0",
    "lb:strategy/types@0.1.0",
];
/// The interface a strategy must export: the current contract's.
const REQUIRED_EXPORT: &str = "lb:strategy/strategy@0.2.0";
/// The 0.1.0 contract's, still loaded.
const REQUIRED_EXPORT_V0_1: &str = "lb:strategy/strategy@0.1.0";

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A compiled, checked strategy, ready to instantiate on any worker thread.
pub struct Loaded {
    /// Unique per load: a worker whose warm instance has another id rebuilds it.
    pub id: u64,
    /// File name without `.wasm`.
    pub name: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    pub(super) pre: Pre,
    pub(super) params: Vec<(String, String)>,
    pub(super) needs: Needs,
    /// Global sequence handed to `select` (round-robin stays exact across threads).
    pub(super) sequence: AtomicU64,
    /// Faults and quarantine of this module.
    pub(super) faults: FaultTracker,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Loaded {
    /// The `strategy_config` it was configured with.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }
}

impl Runtime {
    /// Loads the strategy at `path` and checks that `configure(params)` accepts it.
    pub fn load(
        self: &Arc<Self>,
        path: &Path,
        params: &[(String, String)],
    ) -> Result<Loaded, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // Shown in logs, `/status` and metric labels.
        let name = path
            .file_stem()
            .map(|s| bounded_owned(s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "strategy".into());
        let mut loaded = self.load_bytes(&name, &bytes, params)?;
        loaded.path = path.to_path_buf();
        Ok(loaded)
    }

    /// Loads a strategy from `bytes`.
    pub fn load_bytes(
        self: &Arc<Self>,
        name: &str,
        bytes: &[u8],
        params: &[(String, String)],
    ) -> Result<Loaded, LoadError> {
        check_header(bytes)?;
        let component = self.compiled_or_compile(bytes)?;
        let ty = component.component_type();
        for (import, _) in ty.imports(&self.engine) {
            if !PROVIDED_IMPORTS.contains(&import) {
                return Err(LoadError::Import(bounded(import).into_owned()));
            }
        }
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
            .map(|(name, _)| name.to_string())
            .collect();
        let exports_current = exports.iter().any(|e| e == REQUIRED_EXPORT);
        if !exports_current && !exports.iter().any(|e| e == REQUIRED_EXPORT_V0_1) {
            return Err(LoadError::World(if exports.is_empty() {
                "exports no interface".into()
            } else {
                bounded_owned(format!("exports {}", exports.join(", ")))
            }));
        }
        let world_error = |e: wasmtime::Error| LoadError::World(bounded_owned(format!("{e:#}")));
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(world_error)?;
        let pre = if exports_current {
            Pre::V0_2(BalancerPre::new(pre).map_err(world_error)?)
        } else {
            Pre::V0_1(super::v0_1::BalancerPre::new(pre).map_err(world_error)?)
        };
        let mut loaded = Loaded {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: bounded(name).into_owned(),
            path: PathBuf::new(),
            sha256: sha256_hex(bytes),
            loaded_at: SystemTime::now(),
            pre,
            params: params.to_vec(),
            needs: Needs::empty(),
            sequence: AtomicU64::new(0),
            faults: FaultTracker::new(self.quarantine.clone()),
        };
        // A trial instance proves it instantiates and accepts its parameters, off the request path.
        let trial = Warm::new(self, &loaded).map_err(|fault| match fault {
            super::Fault::Refused(reason) => LoadError::Configure(reason),
            other => LoadError::Trial(other.to_string()),
        })?;
        loaded.needs = trial.needs;
        Ok(loaded)
    }
}

/// Compiled components kept for reuse; past it the cache starts over.
const MAX_COMPILED: usize = 32;

impl Runtime {
    /// `bytes` compiled, from the cache when the same content was compiled before.
    fn compiled_or_compile(
        &self,
        bytes: &[u8],
    ) -> Result<wasmtime::component::Component, LoadError> {
        let sha256 = sha256_hex(bytes);
        let cache = || {
            self.compiled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(component) = cache().get(&sha256) {
            return Ok(component.clone());
        }
        let component = compiler::compile(&self.engine, self.settings, bytes)?;
        let mut cached = cache();
        if cached.len() >= MAX_COMPILED {
            cached.clear();
        }
        cached.insert(sha256, component.clone());
        Ok(component)
    }
}

/// Tells garbage and core modules apart from components before compiling.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(LoadError::CoreModule),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        _ => Err(LoadError::NotWasm),
    }
}

/// The SHA-256 of `bytes` in hex: a strategy's content hash.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

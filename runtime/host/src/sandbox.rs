//! The sandbox every plugin runs in: one wasmtime [`Engine`] for the process,
//! components compiled once (and cached on disk by content hash), and a fresh
//! instance from the pooling allocator for every invocation, with an epoch
//! deadline and a memory limit. A plugin sees no filesystem, no sockets and no
//! environment: its WASI context is empty, and the only other imports are the
//! host interfaces of its world.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the epoch advances. A deadline is enforced to within one tick, so
/// this bounds how far past its deadline a runaway plugin can get.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits applied to every plugin invocation.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Wall-clock budget of one call; the plugin is interrupted past it.
    pub deadline: Duration,
    /// Most linear memory one instance may hold, in bytes.
    pub memory_limit: usize,
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// How many instances may be alive at once (the pool's size).
    pub max_instances: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(100),
            memory_limit: 64 << 20,
            cache_dir: None,
            max_instances: 256,
        }
    }
}

/// Why a plugin could not be loaded or did not complete a call. Every case
/// names the plugin, so an operator can tell which one to fix.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("plugin `{plugin}`: cannot read {path}: {source}")]
    Read {
        /// The plugin's name.
        plugin: String,
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component wasmtime accepts.
    #[error("plugin `{plugin}`: not a valid component: {reason}")]
    Invalid {
        /// The plugin's name.
        plugin: String,
        /// What the compiler said.
        reason: String,
    },
    /// The component lacks an export its world requires.
    #[error("plugin `{plugin}` does not implement the `{world}` world: missing export `{missing}`")]
    MissingExport {
        /// The plugin's name.
        plugin: String,
        /// The world it was loaded as.
        world: &'static str,
        /// The export that is missing, fully qualified.
        missing: String,
    },
    /// The component imports something its world does not grant.
    #[error("plugin `{plugin}` cannot be linked as a `{world}`: {reason}")]
    Link {
        /// The plugin's name.
        plugin: String,
        /// The world it was loaded as.
        world: &'static str,
        /// What could not be satisfied.
        reason: String,
    },
    /// The plugin trapped (a panic, an out-of-bounds access, `unreachable`).
    #[error("plugin `{plugin}` trapped: {message}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The trap and its backtrace, as wasmtime reports it.
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin `{plugin}` exceeded its deadline of {deadline:?}")]
    DeadlineExceeded {
        /// The plugin's name.
        plugin: String,
        /// The deadline it was given.
        deadline: Duration,
    },
    /// The plugin tried to grow its memory past the limit.
    #[error("plugin `{plugin}` hit its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The plugin's name.
        plugin: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// No instance could be created (the pool is exhausted, say).
    #[error("plugin `{plugin}` could not be instantiated: {reason}")]
    Instantiate {
        /// The plugin's name.
        plugin: String,
        /// Why.
        reason: String,
    },
}

/// The engine and the limits shared by all plugins of a process.
pub struct Sandbox {
    engine: Engine,
    config: SandboxConfig,
    ticker_stop: Arc<AtomicBool>,
}

impl Sandbox {
    /// Builds the engine with the component model, epoch interruption and the
    /// pooling allocator, and starts the epoch ticker.
    pub fn new(config: SandboxConfig) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 4)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances * 2)
            .total_stacks(config.max_instances)
            .max_memory_size(config.memory_limit)
            // Fresh instances mostly cost page faults; keeping the first pages
            // of each slot resident (and zeroed by memset, not madvise) makes
            // instantiation of small plugins several times cheaper. The reset
            // memsets min(keep-resident, the memory's current size) on every
            // drop, so what a small step pays is set by its own initial memory
            // (see components/tag/build.rs: 64 KiB, reset in ~1-2 µs), not by
            // this cap.
            //
            // `pagemap_scan` (reset only the pages a call dirtied) stays off:
            // its ioctl costs ~3 µs per drop, more than memsetting a small
            // step's memory, and webhook gateway instances, whose larger
            // memories it once paid off for, are now reused rather than
            // dropped per request (see `gateway::Idle`).
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(16 << 10);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `DRIPLINE_PERF_MAP=1` writes /tmp/perf-<pid>.map so that `perf report`
        // names the guests' functions instead of bare JIT addresses.
        if std::env::var_os("DRIPLINE_PERF_MAP").is_some() {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&wasm)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.weak());
        std::thread::Builder::new()
            .name("dripline-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticking.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Self {
            engine,
            config,
            ticker_stop,
        })
    }

    /// The process's one engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits in force.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Compiles a component file, or loads its cached compilation. The cache key
    /// is the hash of the component's bytes and of the engine's settings, so a
    /// changed plugin or a new wasmtime never loads stale machine code.
    pub fn compile_file(&self, plugin: &str, path: &Path) -> Result<Component, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            plugin: plugin.into(),
            path: path.into(),
            source,
        })?;
        self.compile(plugin, &bytes)
    }

    /// Compiles component bytes, through the cache when one is configured.
    pub fn compile(&self, plugin: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        let invalid = |e: wasmtime::Error| PluginError::Invalid {
            plugin: plugin.into(),
            reason: format!("{e:#}"),
        };
        let Some(dir) = &self.config.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(invalid);
        };
        let cached = dir.join(format!("{}.cwasm", self.cache_key(bytes)));
        if cached.exists() {
            match self.deserialize(&cached) {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(plugin, path = %cached.display(), "ignoring unusable cache entry: {e:#}")
                }
            }
        }
        let compiled = self.engine.precompile_component(bytes).map_err(invalid)?;
        // The cache is an optimization: failing to write it must not fail the load.
        if let Err(e) = write_atomically(dir, &cached, &compiled) {
            tracing::warn!(plugin, "could not cache the compiled component: {e}");
        }
        self.deserialize_bytes(&compiled).map_err(invalid)
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        let mut settings = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut settings);
        let mut hash = Sha256::new();
        hash.update(settings.finish().to_le_bytes());
        hash.update(bytes);
        hex::encode(&hash.finalize()[..20])
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, path: &Path) -> wasmtime::Result<Component> {
        // SAFETY: the file was written by `compile` from this engine's own
        // `precompile_component` output, under a name keyed by the source's hash
        // and the engine's settings; the cache directory belongs to Dripline.
        unsafe { Component::deserialize_file(&self.engine, path) }
    }

    #[allow(unsafe_code)]
    fn deserialize_bytes(&self, compiled: &[u8]) -> wasmtime::Result<Component> {
        // SAFETY: `compiled` came from this engine's `precompile_component` just now.
        unsafe { Component::deserialize(&self.engine, compiled) }
    }

    /// A fresh store for one invocation, with the deadline and memory limit armed.
    pub fn store<T: Send + 'static>(&self, data: T) -> Store<Sandboxed<T>> {
        let mut store = Store::new(
            &self.engine,
            Sandboxed {
                wasi: empty_wasi(),
                table: ResourceTable::new(),
                limiter: MemoryLimiter {
                    limit: self.config.memory_limit,
                    hit: false,
                },
                data,
            },
        );
        store.limiter(|s| &mut s.limiter);
        self.arm(&mut store);
        store
    }

    /// Restarts the deadline for the next call on `store`.
    pub(crate) fn arm<T>(&self, store: &mut Store<T>) {
        self.arm_for(store, self.config.deadline);
    }

    /// Arms `store` with a deadline other than the per-call one (the gateway's,
    /// which covers a whole HTTP request, body upload included).
    pub(crate) fn arm_for<T>(&self, store: &mut Store<T>, deadline: Duration) {
        let ticks = deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    }

    /// Turns a failed call into the error an operator can act on.
    pub(crate) fn classify<T>(
        &self,
        plugin: &str,
        store: &Store<Sandboxed<T>>,
        error: wasmtime::Error,
    ) -> PluginError {
        if store.data().limiter.hit {
            return PluginError::MemoryLimit {
                plugin: plugin.into(),
                limit: self.config.memory_limit,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::DeadlineExceeded {
                plugin: plugin.into(),
                deadline: self.config.deadline,
            },
            _ => PluginError::Trap {
                plugin: plugin.into(),
                message: format!("{error:?}"),
            },
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Per-invocation state: the (empty) WASI context, the memory limiter, and the
/// world-specific state `T` that the host interfaces work on.
pub struct Sandboxed<T> {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    /// The host interfaces' state for this call.
    pub data: T,
}

impl<T> Sandboxed<T> {
    /// Whether a memory of this store was refused growth past the limit.
    pub(crate) fn memory_limit_hit(&self) -> bool {
        self.limiter.hit
    }

    /// The resource table and the world's state at once, for host interfaces
    /// (such as `wasi:http`) whose context borrows both.
    pub(crate) fn table_and_data(&mut self) -> (&mut ResourceTable, &mut T) {
        (&mut self.table, &mut self.data)
    }
}

impl<T: Send> WasiView for Sandboxed<T> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Components built with Rust's `wasm32-wasip2` std import WASI even when they
/// never touch it, so the interfaces are linked, but with nothing behind them:
/// no preopened directories, no environment, no arguments, no network.
fn empty_wasi() -> WasiCtx {
    WasiCtxBuilder::new()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// Refuses growth past the limit and remembers that it did, so that the trap
/// that follows (a guest aborts when allocation fails) is reported as what it is.
struct MemoryLimiter {
    limit: usize,
    hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Checks at load time that `component` exports `interface` with `functions`,
/// so that a plugin built against the wrong world is refused with the name of
/// what it lacks, not at its first call.
pub(crate) fn require_export(
    engine: &Engine,
    plugin: &str,
    world: &'static str,
    component: &Component,
    interface: &str,
    functions: &[&str],
) -> Result<(), PluginError> {
    use wasmtime::component::types::ComponentItem;
    let missing = |what: String| PluginError::MissingExport {
        plugin: plugin.into(),
        world,
        missing: what,
    };
    let ty = component.component_type();
    let Some((_, item)) = ty.exports(engine).find(|(name, _)| *name == interface) else {
        return Err(missing(interface.to_string()));
    };
    let ComponentItem::ComponentInstance(instance) = item.ty else {
        return Err(missing(format!(
            "{interface} (exported, but not as an interface)"
        )));
    };
    for function in functions {
        if !instance.exports(engine).any(|(name, item)| {
            name == *function && matches!(item.ty, ComponentItem::ComponentFunc(_))
        }) {
            return Err(missing(format!("{interface}#{function}")));
        }
    }
    Ok(())
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

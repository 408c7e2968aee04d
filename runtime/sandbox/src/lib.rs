//! The sandbox every plugin runs in: one wasmtime [`Engine`] for the process,
//! components compiled once (and cached on disk by content hash), and a fresh
//! instance from the pooling allocator for every invocation, with an epoch
//! deadline and a memory limit. A plugin sees no filesystem, no sockets and no
//! environment: its WASI context is empty, and the only other imports are the
//! host interfaces of its world.

pub mod bindings;
mod cache;
pub mod egress;
mod error;
mod link;
pub mod plugins;
pub mod step;
pub mod trigger;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

pub use error::PluginError;
pub use plugins::{Plugins, plugin_name};
pub use step::{AcceptAll, Decision, Effect, Messenger, StepPlugin, StepRun};
pub use trigger::TriggerPlugin;

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

/// The engine and the limits shared by all plugins of a process.
pub struct Sandbox {
    engine: Engine,
    config: SandboxConfig,
    ticker_stop: Arc<AtomicBool>,
}

impl Sandbox {
    /// Builds the engine with the component model, epoch interruption and the
    /// pooling allocator, and starts the epoch ticker.
    pub fn new(config: SandboxConfig) -> wasmtime::Result<Self> {
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
    pub fn arm<T>(&self, store: &mut Store<T>) {
        self.arm_for(store, self.config.deadline);
    }

    /// Arms `store` with a deadline other than the per-call one (the gateway's,
    /// which covers a whole HTTP request, body upload included).
    pub fn arm_for<T>(&self, store: &mut Store<T>, deadline: Duration) {
        let ticks = deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    }

    /// Turns a failed call into the error an operator can act on.
    pub fn classify<T>(
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
    pub fn memory_limit_hit(&self) -> bool {
        self.limiter.hit
    }

    /// The resource table and the world's state at once, for host interfaces
    /// (such as `wasi:http`) whose context borrows both.
    pub fn table_and_data(&mut self) -> (&mut ResourceTable, &mut T) {
        (&mut self.table, &mut self.data)
    }
}

/// The state of a call whose component speaks `wasi:http` (the webhook
/// gateway): its HTTP context and the hooks that decide outgoing requests.
pub trait HttpCall: Send {
    /// The context and the hooks, borrowed together.
    fn http_parts(&mut self) -> (&mut WasiHttpCtx, &mut dyn WasiHttpHooks);
}

impl<T: HttpCall> WasiHttpView for Sandboxed<T> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let (ctx, hooks) = self.data.http_parts();
        WasiHttpCtxView {
            ctx,
            table: &mut self.table,
            hooks,
        }
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

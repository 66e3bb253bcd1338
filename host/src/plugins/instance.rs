//! One plugin instance: its store, sandbox context and limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-store data: what the plugin's imports can reach.
pub struct PluginState {
    /// Component name, attached to every log line the plugin writes.
    pub component: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryCap,
    /// When the call now running must end; checked on every epoch tick.
    deadline: Instant,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Builds a store whose guest is held to `memory_cap` bytes and to the deadline set by
/// [`arm_deadline`] before each call.
pub fn new_store(
    engine: &Engine,
    component: Arc<str>,
    wasi: WasiCtx,
    memory_cap: usize,
) -> Store<PluginState> {
    let limits = MemoryCap {
        cap: memory_cap,
        used: 0,
    };
    let state = PluginState {
        component,
        wasi,
        table: ResourceTable::new(),
        limits,
        deadline: Instant::now(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    store.epoch_deadline_callback(|ctx| {
        if Instant::now() >= ctx.data().deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            // Yielding lets a busy guest share its tokio worker with other tasks.
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// Gives the next call into `store` at most `budget` of wall time.
pub fn arm_deadline(store: &mut Store<PluginState>, budget: Duration) {
    store.data_mut().deadline = Instant::now() + budget;
    store.set_epoch_deadline(1);
}

/// Holds an instance to `cap` bytes across all its linear memories (a component can have
/// several), and says so in its own words when the guest asks for more.
struct MemoryCap {
    cap: usize,
    used: usize,
}

/// Table elements one instance may hold; far above what real plugins use.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let wanted = self.used.saturating_add(desired.saturating_sub(current));
        if wanted > self.cap {
            return Err(wasmtime::format_err!(
                "the plugin instance asked for {} MiB of memory, above its cap of {} MiB \
                 (raise blockhost.memoryLimitMb or --plugin-memory-limit-mb if it needs more)",
                wanted.div_ceil(1 << 20),
                self.cap >> 20
            ));
        }
        self.used = wanted;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

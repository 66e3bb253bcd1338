//! The one wasmtime engine every plugin runs on, and the clock that drives call deadlines.

use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A call deadline is checked at this granularity, and a
/// looping guest yields its tokio worker this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits that shape the engine; per-component values are applied per store.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    /// Largest linear memory any instance may grow to.
    pub max_memory_bytes: usize,
    /// Instances the pooling allocator keeps slots for.
    pub max_instances: u32,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 256 << 20,
            max_instances: 1000,
        }
    }
}

pub fn build_engine(limits: &EngineLimits) -> anyhow::Result<Engine> {
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(limits.max_instances)
        // Guest toolchains (componentize-py in particular) create many core instances,
        // memories and tables inside one component.
        .total_core_instances(limits.max_instances * 8)
        .total_memories(limits.max_instances * 4)
        .total_tables(limits.max_instances * 8)
        .max_memory_size(limits.max_memory_bytes)
        .max_core_instances_per_component(64)
        .max_memories_per_component(16)
        .max_tables_per_component(64);

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Ok(Engine::new(&config)?)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a plain thread, so deadlines keep
/// working even when every tokio worker is busy. The thread ends with the engine.
pub fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("blockhost-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
}

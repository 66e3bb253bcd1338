//! The one list of building blocks this sidecar hosts. The plugin catalog's interfaces, the
//! category check of every component, the load order and the start of each component are
//! derived from it. Adding a block adds one line here.

use std::sync::Arc;

use crate::blocks::pubsub::PubSub;
use crate::blocks::state::StateStore;
use crate::blocks::{Block, BoxFuture, ComponentContext, LoadPhase};
use crate::plugins::pool::Pool;
use crate::plugins::PluginBackend;

use super::start::{Prepared, Started};

pub const BLOCKS: &[BlockEntry] = &[BlockEntry::of::<StateStore>(), BlockEntry::of::<PubSub>()];

type StartFn = for<'a> fn(Prepared<'a>) -> BoxFuture<'a, Result<Started, String>>;

/// A block as the supervisor sees it.
pub struct BlockEntry {
    /// Dapr's component category (`spec.type` prefix).
    pub category: &'static str,
    /// The `blockhost:plugin` interface its plugins export.
    pub interface: &'static str,
    pub phase: LoadPhase,
    pub(super) start: StartFn,
}

impl BlockEntry {
    pub const fn of<B: Block>() -> Self
    where
        B::Backend: PluginBackend,
    {
        Self {
            category: B::CATEGORY,
            interface: <B::Backend as PluginBackend>::INTERFACE,
            phase: B::PHASE,
            start: start::<B>,
        }
    }

    /// The entry for plugins exporting `interface`.
    pub fn for_interface(interface: &str) -> Option<&'static BlockEntry> {
        BLOCKS.iter().find(|block| block.interface == interface)
    }

    pub fn hosted_interfaces() -> Vec<&'static str> {
        BLOCKS.iter().map(|block| block.interface).collect()
    }
}

/// Starts one component of block `B` on its plugin: the block reads its settings, the pool
/// starts (and `init`s) the first instance, the block is built over the pool.
fn start<B: Block>(prepared: Prepared<'_>) -> BoxFuture<'_, Result<Started, String>>
where
    B::Backend: PluginBackend,
{
    Box::pin(async move {
        let Prepared {
            starter,
            name,
            plugin,
            mut metadata,
            policy,
            limits,
        } = prepared;
        let settings = B::configure(&mut ComponentContext {
            name,
            app_id: &starter.app_id,
            namespace: starter.namespace.as_deref(),
            features: &plugin.info.features,
            metadata: &mut metadata,
        })?;
        let pool = Pool::<<B::Backend as PluginBackend>::World>::start(
            Arc::from(name),
            &starter.engine,
            plugin,
            policy,
            metadata,
            limits,
        )
        .await
        .map_err(|err| format!("plugin {}: {err}", plugin.file_name))?;
        let backend = <B::Backend as PluginBackend>::over_pool(pool);
        Ok(Started {
            running: Arc::new(B::build(name, settings, backend)),
            capabilities: B::capabilities(&plugin.info.features),
        })
    })
}

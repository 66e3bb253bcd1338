//! One module per building block: what the block means in Dapr's terms, independent of the
//! transport (HTTP, gRPC) and of wasmtime. A block reaches its plugin through a backend trait
//! of its own, implemented in `plugins/`; it speaks in its own types and [`BlockError`].
//!
//! Adding a block: implement [`Block`] in a module here, its backend in `plugins/`, and add
//! one line to `components::BLOCKS` (ARCHITECTURE.md has the whole recipe).

pub mod error;
pub mod metadata;
pub mod pubsub;
pub mod state;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use error::{BackendError, BlockError, ErrorKind};
pub use metadata::Metadata;

/// The future a backend trait method returns (backends are trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// When a block's components start, relative to the others: secret stores first, because
/// other components' metadata may reference them (`secretKeyRef`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LoadPhase {
    SecretStores,
    Components,
}

/// What a block learns about the component it is about to serve, before any plugin
/// instance exists.
pub struct ComponentContext<'a> {
    pub name: &'a str,
    pub app_id: &'a str,
    pub namespace: Option<&'a str>,
    /// The features the plugin declares (`ETAG`, `TRANSACTIONAL`, `MESSAGE_TTL`, ...).
    pub features: &'a [String],
    /// The metadata the plugin will be given; a block may add its defaults.
    pub metadata: &'a mut Metadata,
}

/// A building block: one Dapr component category served by one kind of plugin.
pub trait Block: Send + Sync + Sized + 'static {
    /// Dapr's category: the part of `spec.type` before the first dot (`state`, `pubsub`).
    const CATEGORY: &'static str;
    const PHASE: LoadPhase = LoadPhase::Components;

    /// What the block asks of its plugin, as a trait object (`dyn StateBackend`).
    type Backend: ?Sized + Send + Sync + 'static;
    /// What [`Block::configure`] reads from the component for [`Block::build`].
    type Settings: Send + 'static;

    /// Reads and checks the block's own settings from the component; runs before the
    /// plugin starts, so a bad setting never costs an instance.
    fn configure(component: &mut ComponentContext<'_>) -> Result<Self::Settings, String>;

    /// The running component over its started backend.
    fn build(name: &str, settings: Self::Settings, backend: Arc<Self::Backend>) -> Self;

    /// The capabilities `/v1.0/metadata` lists for a component whose plugin declares
    /// `features`.
    fn capabilities(features: &[String]) -> Vec<String> {
        features.to_vec()
    }

    /// Stops serving once calls in flight have finished and releases the backend.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// A running component of any block, as the supervisor holds it.
pub trait Running: Any + Send + Sync {
    fn close(&self) -> BoxFuture<'_, ()>;
}

impl<B: Block> Running for B {
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(Block::close(self))
    }
}

/// How a component name resolved, for a block's own error codes.
pub enum Lookup<B> {
    Found(Arc<B>),
    /// Components of this block exist, but none of this name.
    Missing,
    /// No component of this block is configured at all.
    NoneOfBlock,
}

/// Where running components of block `B` are found by name (the supervisor).
pub trait Resolver<B>: Send + Sync {
    fn resolve(&self, name: &str) -> Lookup<B>;
}

/// The running component as block `B`, if it is one.
pub fn downcast<B: Block>(running: Arc<dyn Running>) -> Option<Arc<B>> {
    let any: Arc<dyn Any + Send + Sync> = running;
    any.downcast::<B>().ok()
}

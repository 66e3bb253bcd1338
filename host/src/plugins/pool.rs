//! Instance pools: each component owns a pool of initialised plugin instances, created from
//! one `InstancePre` and reused across calls. A call that traps, runs out of time or out of
//! memory costs only its own instance.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store};

use super::bindings::{backend_error, describe_error, PluginError};
use super::catalog::Plugin;
use super::instance::{arm_deadline, new_store, PluginState};
use super::sandbox::SandboxPolicy;
use super::slots::{pool_size, Slots};
use crate::blocks::{BackendError, ErrorKind};

/// Budgets a component's instances run under.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes: usize,
    pub init_timeout: Duration,
    pub call_timeout: Duration,
    /// Used when the plugin leaves the instance count to the host.
    pub default_instances: u32,
    /// Set by the component; still never above what the plugin allows.
    pub max_instances_override: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 128 << 20,
            init_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(10),
            default_instances: 8,
            max_instances_override: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// `init` returned an error for a new instance.
    #[error("plugin init failed: {}", describe_error(.0))]
    Init(PluginError),
    /// The guest trapped, hit its deadline or its memory cap; the instance was discarded.
    #[error("plugin instance failed and was replaced: {0}")]
    Trap(String),
    #[error("the component is shutting down")]
    Closed,
}

/// Host-side handle on one world's exports, instantiated from an `InstancePre`.
pub trait WorldBindings: Sized + Send + 'static {
    type Pre: Clone + Send + Sync + 'static;

    fn pre(instance_pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre>;

    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self>> + Send;

    // The generated bindings take `&Vec` for WIT lists.
    #[allow(clippy::ptr_arg)]
    fn init(
        &self,
        store: &mut Store<PluginState>,
        metadata: &Vec<(String, String)>,
    ) -> impl Future<Output = wasmtime::Result<Result<(), PluginError>>> + Send;

    fn close(
        &self,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<()>> + Send;
}

/// A live instance: the bindings and the store they run in.
pub struct Instance<B> {
    pub bindings: B,
    pub store: Store<PluginState>,
    /// Distinguishes this instance from the ones it replaces: resource handles a plugin
    /// returned are valid only in the instance that made them.
    pub generation: u64,
}

/// The work a caller runs on a borrowed instance.
pub type Work<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

pub struct Pool<B: WorldBindings> {
    component: Arc<str>,
    engine: Engine,
    pre: B::Pre,
    policy: SandboxPolicy,
    metadata: Vec<(String, String)>,
    limits: Limits,
    slots: Slots<Instance<B>>,
    generations: AtomicU64,
}

impl<B: WorldBindings> Pool<B> {
    /// Creates the pool and its first instance, so a component whose `init` fails is
    /// reported at load time rather than on its first request.
    pub async fn start(
        component: Arc<str>,
        engine: &Engine,
        plugin: &Plugin,
        policy: SandboxPolicy,
        metadata: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Arc<Self>, StartError> {
        let pre = B::pre(plugin.instance_pre.clone()).map_err(StartError::Bind)?;
        let size = pool_size(
            plugin.info.max_instances,
            limits.max_instances_override,
            limits.default_instances,
        );
        let pool = Arc::new(Self {
            component,
            engine: engine.clone(),
            pre,
            policy,
            metadata,
            limits,
            slots: Slots::new(size),
            generations: AtomicU64::new(0),
        });
        let first = pool.create().await.map_err(StartError::Call)?;
        pool.slots.give_back(first);
        Ok(pool)
    }

    pub fn component(&self) -> &str {
        &self.component
    }

    /// Runs `work` on an idle instance (creating one if the pool has room, else waiting).
    /// The work runs on a task of its own: if the caller goes away mid-call, the guest
    /// still finishes, so its state is never left half-updated.
    pub async fn call<R, F>(self: &Arc<Self>, work: F) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: for<'a> FnOnce(&'a mut Instance<B>) -> Work<'a, R> + Send + 'static,
    {
        let pool = Arc::clone(self);
        let task = tokio::spawn(async move {
            let (_permit, idle) = pool.slots.acquire().await.map_err(|_| CallError::Closed)?;
            let mut instance = match idle {
                Some(instance) => instance,
                None => pool.create().await?,
            };
            let budget = pool.limits.call_timeout;
            arm_deadline(&mut instance.store, budget);
            // The epoch deadline stops a guest that computes; the timer stops one that
            // waits on a host future (a socket that never answers).
            match tokio::time::timeout(budget + TIMER_SLACK, work(&mut instance)).await {
                Ok(Ok(value)) => {
                    pool.slots.give_back(instance);
                    Ok(value)
                }
                Ok(Err(err)) => Err(pool.discard(instance, &describe_trap(&pool.component, &err))),
                Err(_) => Err(pool.discard(instance, DEADLINE_MESSAGE)),
            }
        });
        task.await
            .unwrap_or_else(|join| Err(CallError::Trap(format!("plugin call aborted: {join}"))))
    }

    /// True when the plugin runs as one instance whose calls are serialised: its state
    /// (an in-memory bus, say) lives in that instance, so every caller must use it.
    pub fn is_single_instance(&self) -> bool {
        self.slots.size() == 1
    }

    /// The most instances that may run at once.
    pub fn size(&self) -> u32 {
        self.slots.size()
    }

    /// A new initialised instance outside the pool, for work that blocks for long (a
    /// subscription's `next`) and must not hold a pooled instance.
    pub async fn dedicated(&self) -> Result<Instance<B>, CallError> {
        self.create().await
    }

    /// Runs `work` on a dedicated instance, allowing `extra` beyond the call budget for
    /// time the plugin is asked to wait. A failure means the instance must be dropped.
    pub async fn run_dedicated<R>(
        &self,
        instance: &mut Instance<B>,
        extra: Duration,
        work: impl for<'a> FnOnce(&'a mut Instance<B>) -> Work<'a, R>,
    ) -> Result<R, CallError> {
        let budget = self.limits.call_timeout + extra;
        arm_deadline(&mut instance.store, budget);
        match tokio::time::timeout(budget + TIMER_SLACK, work(instance)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(CallError::Trap(describe_trap(&self.component, &err))),
            Err(_) => Err(CallError::Trap(DEADLINE_MESSAGE.to_owned())),
        }
    }

    /// Stops handing out instances, waits for calls in flight, and closes every instance
    /// so plugins can flush and release what they hold.
    pub async fn close(&self) {
        for mut instance in self.slots.close().await {
            arm_deadline(&mut instance.store, self.limits.call_timeout);
            let closing = instance.bindings.close(&mut instance.store);
            match tokio::time::timeout(self.limits.call_timeout + TIMER_SLACK, closing).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(
                    component = &*self.component,
                    "plugin close failed: {}",
                    describe_trap(&self.component, &err)
                ),
                Err(_) => tracing::warn!(component = &*self.component, "plugin close timed out"),
            }
        }
    }

    async fn create(&self) -> Result<Instance<B>, CallError> {
        let wasi = self
            .policy
            .wasi_ctx(&self.component)
            .map_err(|err| CallError::Init(PluginError::InvalidArgument(err.to_string())))?;
        let mut store = new_store(
            &self.engine,
            Arc::clone(&self.component),
            wasi,
            self.limits.memory_bytes,
        );
        let budget = self.limits.init_timeout;
        arm_deadline(&mut store, budget);
        let started = tokio::time::timeout(budget + TIMER_SLACK, async {
            let bindings = B::instantiate(&self.pre, &mut store).await?;
            let outcome = bindings.init(&mut store, &self.metadata).await?;
            Ok::<_, wasmtime::Error>((bindings, outcome))
        })
        .await;
        match started {
            Ok(Ok((bindings, Ok(())))) => Ok(Instance {
                bindings,
                store,
                generation: self.generations.fetch_add(1, Ordering::Relaxed),
            }),
            Ok(Ok((_, Err(err)))) => Err(CallError::Init(err)),
            Ok(Err(trap)) => Err(CallError::Trap(describe_trap(&self.component, &trap))),
            Err(_) => Err(CallError::Trap(format!(
                "init did not finish within {budget:?} (spec.initTimeout)"
            ))),
        }
    }

    fn discard(&self, instance: Instance<B>, reason: &str) -> CallError {
        drop(instance);
        tracing::error!(
            component = &*self.component,
            "plugin call failed, instance discarded: {reason}"
        );
        CallError::Trap(reason.to_owned())
    }
}

/// Every world exports the same `lifecycle`, so one implementation serves them all.
macro_rules! world_bindings {
    ($world:ty, $pre:ident) => {
        impl $crate::plugins::pool::WorldBindings for $world {
            type Pre = $pre<$crate::plugins::instance::PluginState>;

            fn pre(
                instance_pre: wasmtime::component::InstancePre<
                    $crate::plugins::instance::PluginState,
                >,
            ) -> wasmtime::Result<Self::Pre> {
                $pre::new(instance_pre)
            }

            async fn instantiate(
                pre: &Self::Pre,
                store: &mut wasmtime::Store<$crate::plugins::instance::PluginState>,
            ) -> wasmtime::Result<Self> {
                pre.instantiate_async(store).await
            }

            async fn init(
                &self,
                store: &mut wasmtime::Store<$crate::plugins::instance::PluginState>,
                metadata: &Vec<(String, String)>,
            ) -> wasmtime::Result<Result<(), $crate::plugins::bindings::PluginError>> {
                self.blockhost_plugin_lifecycle()
                    .call_init(store, metadata)
                    .await
            }

            async fn close(
                &self,
                store: &mut wasmtime::Store<$crate::plugins::instance::PluginState>,
            ) -> wasmtime::Result<()> {
                self.blockhost_plugin_lifecycle().call_close(store).await
            }
        }
    };
}
pub(crate) use world_bindings;

impl CallError {
    /// The failure as the blocks see it: a component shutting down is unavailable, a
    /// broken instance is internal.
    pub fn backend(&self) -> BackendError {
        let kind = match self {
            CallError::Closed => ErrorKind::Unavailable,
            CallError::Init(_) | CallError::Trap(_) => ErrorKind::Internal,
        };
        BackendError::new(kind, self.to_string())
    }
}

/// Runs `work` on a pooled instance and flattens the two ways it can fail (the call, and
/// the plugin's own error) into the blocks' error.
pub async fn call_plugin<B, R, F>(pool: &Arc<Pool<B>>, work: F) -> Result<R, BackendError>
where
    B: WorldBindings,
    R: Send + 'static,
    F: for<'a> FnOnce(&'a mut Instance<B>) -> Work<'a, Result<R, PluginError>> + Send + 'static,
{
    match pool.call(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(backend_error(&err)),
        Err(err) => Err(err.backend()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the plugin does not match its world: {0:#}")]
    Bind(wasmtime::Error),
    #[error("{0}")]
    Call(CallError),
}

/// Extra wall time past a call's budget before the timer gives up on it; the epoch
/// deadline normally fires first and yields the clearer error.
const TIMER_SLACK: Duration = Duration::from_millis(500);

const DEADLINE_MESSAGE: &str = "the call exceeded its deadline and was interrupted";

/// Turns a wasmtime error into one line a reader can act on. The wasm backtrace wasmtime
/// attaches (many lines of function indices) is left out: it goes to the log at debug level.
fn describe_trap(component: &str, err: &wasmtime::Error) -> String {
    let backtrace = err
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(ToString::to_string);
    if let Some(backtrace) = &backtrace {
        tracing::debug!(component, "{backtrace}");
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => DEADLINE_MESSAGE.to_owned(),
        Some(trap) => format!("the plugin trapped: {trap}"),
        None => err
            .chain()
            .map(ToString::to_string)
            .filter(|layer| Some(layer) != backtrace.as_ref())
            .collect::<Vec<_>>()
            .join(": "),
    }
}

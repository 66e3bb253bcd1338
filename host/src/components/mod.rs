//! The supervisor of running components. Each component sits in a slot of its own, with a
//! generation number; the set of slots is an immutable map swapped atomically, so a request
//! resolves its component with one atomic load and keeps what it got until it ends, while a
//! component is started, replaced or removed beside it. A replaced or removed component is
//! closed once its calls in flight have finished.

mod blocks;
mod settings;
mod start;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use blocks::{BlockEntry, BLOCKS};
pub use start::{ComponentError, Starter};

use crate::blocks::{downcast, Block, Lookup, Resolver, Running};

/// What `/v1.0/metadata` shows for a component.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub component_type: String,
    pub version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// A component that failed to start but was allowed to (`ignoreErrors: true`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedComponent {
    pub name: String,
    #[serde(rename = "type")]
    pub component_type: String,
    pub error: String,
}

/// One running version of a component.
pub struct Slot {
    /// Grows with every start, across all components: a new version always has a higher one.
    pub generation: u64,
    pub info: ComponentInfo,
    running: Arc<dyn Running>,
}

#[derive(Default)]
pub struct Components {
    slots: ArcSwap<BTreeMap<String, Arc<Slot>>>,
    failed: ArcSwap<Vec<FailedComponent>>,
    /// Serialises changes; readers never take it.
    changes: tokio::sync::Mutex<()>,
    generations: AtomicU64,
}

impl Components {
    /// The component `name` as block `B`.
    pub fn lookup<B: Block>(&self, name: &str) -> Lookup<B> {
        let slots = self.slots.load();
        if let Some(found) = slots
            .get(name)
            .and_then(|slot| downcast::<B>(Arc::clone(&slot.running)))
        {
            return Lookup::Found(found);
        }
        let any_of_block = slots.values().any(|slot| {
            let running: &dyn Any = &*slot.running;
            running.is::<B>()
        });
        if any_of_block {
            Lookup::Missing
        } else {
            Lookup::NoneOfBlock
        }
    }

    /// The component `name` as block `B`, if it is one.
    pub fn get<B: Block>(&self, name: &str) -> Option<Arc<B>> {
        match self.lookup(name) {
            Lookup::Found(found) => Some(found),
            Lookup::Missing | Lookup::NoneOfBlock => None,
        }
    }

    /// Every running component, by name.
    pub fn list(&self) -> Vec<ComponentInfo> {
        self.slots
            .load()
            .values()
            .map(|slot| slot.info.clone())
            .collect()
    }

    pub fn failed(&self) -> Arc<Vec<FailedComponent>> {
        self.failed.load_full()
    }

    /// The generation of the running version of `name`.
    pub fn generation(&self, name: &str) -> Option<u64> {
        self.slots.load().get(name).map(|slot| slot.generation)
    }

    /// Starts `component` beside whatever runs under its name and swaps it in only once it
    /// is up (make before break); the version it replaces is closed after its calls in
    /// flight. On failure nothing changes. Returns the new generation.
    pub async fn start(
        &self,
        starter: &Starter,
        component: &crate::resources::Component,
    ) -> Result<u64, ComponentError> {
        let _change = self.changes.lock().await;
        let started = starter.start(component).await?;
        Ok(self.install(started.info, started.running))
    }

    /// Swaps `running` in under `info.name`; the version it replaces closes in the
    /// background. Callers hold `changes`.
    fn install(&self, info: ComponentInfo, running: Arc<dyn Running>) -> u64 {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let name = info.name.clone();
        let slot = Arc::new(Slot {
            generation,
            info,
            running,
        });
        let mut replaced = None;
        self.slots.rcu(|slots| {
            let mut next = BTreeMap::clone(slots);
            replaced = next.insert(name.clone(), Arc::clone(&slot));
            next
        });
        self.failed.rcu(|failed| {
            let mut next = Vec::clone(failed);
            next.retain(|f| f.name != name);
            next
        });
        if let Some(old) = replaced {
            tracing::info!(
                component = %name,
                generation,
                replaced = old.generation,
                "component replaced"
            );
            close_in_background(old);
        }
        generation
    }

    /// Stops serving `name`: new requests see it as unknown at once; it closes once its
    /// calls in flight have finished. Returns whether it was running.
    pub async fn remove(&self, name: &str) -> bool {
        let _change = self.changes.lock().await;
        let mut removed = None;
        self.slots.rcu(|slots| {
            let mut next = BTreeMap::clone(slots);
            removed = next.remove(name);
            next
        });
        match removed {
            Some(slot) => {
                tracing::info!(component = %name, "component removed");
                close_in_background(slot);
                true
            }
            None => false,
        }
    }

    /// Records a component that failed to start and is left out (`ignoreErrors: true`).
    pub fn record_failure(&self, failure: FailedComponent) {
        self.failed.rcu(|failed| {
            let mut next = Vec::clone(failed);
            next.retain(|f| f.name != failure.name);
            next.push(failure.clone());
            next
        });
    }

    /// Removes every component and closes each once its calls in flight have finished.
    pub async fn close_all(&self) {
        let _change = self.changes.lock().await;
        let slots = self.slots.swap(Arc::default());
        for slot in slots.values() {
            slot.running.close().await;
        }
    }
}

impl<B: Block> Resolver<B> for Components {
    fn resolve(&self, name: &str) -> Lookup<B> {
        self.lookup(name)
    }
}

fn close_in_background(slot: Arc<Slot>) {
    tokio::spawn(async move {
        slot.running.close().await;
        tracing::debug!(
            component = %slot.info.name,
            generation = slot.generation,
            "previous version closed"
        );
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use super::*;
    use crate::blocks::ComponentContext;

    /// A block with no plugin behind it: it only records being closed.
    struct Fake {
        closed: Arc<AtomicBool>,
    }

    impl Block for Fake {
        const CATEGORY: &'static str = "fake";
        type Backend = ();
        type Settings = ();

        fn configure(_: &mut ComponentContext<'_>) -> Result<(), String> {
            Ok(())
        }

        fn build(_: &str, (): (), _: Arc<()>) -> Self {
            Self {
                closed: Arc::default(),
            }
        }

        async fn close(&self) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    fn info(name: &str) -> ComponentInfo {
        ComponentInfo {
            name: name.to_owned(),
            component_type: "fake.one".to_owned(),
            version: "v1".to_owned(),
            capabilities: Vec::new(),
        }
    }

    fn fake() -> (Arc<Fake>, Arc<AtomicBool>) {
        let closed = Arc::new(AtomicBool::new(false));
        let block = Arc::new(Fake {
            closed: Arc::clone(&closed),
        });
        (block, closed)
    }

    async fn eventually(flag: &AtomicBool) -> bool {
        for _ in 0..100 {
            if flag.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_replacement_serves_new_requests_while_old_ones_keep_theirs() {
        let components = Components::default();
        assert!(matches!(
            components.lookup::<Fake>("a"),
            Lookup::NoneOfBlock
        ));
        let (first, first_closed) = fake();
        let g1 = components.install(info("a"), first);
        let held = components.get::<Fake>("a").unwrap();
        assert!(matches!(components.lookup::<Fake>("b"), Lookup::Missing));

        let (second, second_closed) = fake();
        let g2 = components.install(info("a"), Arc::clone(&second) as Arc<dyn Running>);
        assert!(g2 > g1);
        assert_eq!(components.generation("a"), Some(g2));
        let now = components.get::<Fake>("a").unwrap();
        assert!(
            Arc::ptr_eq(&now, &second),
            "new lookups get the new version"
        );
        assert!(eventually(&first_closed).await, "the old version is closed");
        assert!(
            held.closed.load(Ordering::SeqCst),
            "the request kept the old one"
        );
        assert!(!second_closed.load(Ordering::SeqCst));
        assert_eq!(components.list().len(), 1);
    }

    #[tokio::test]
    async fn removal_and_failures() {
        let components = Components::default();
        let (block, closed) = fake();
        components.record_failure(FailedComponent {
            name: "a".into(),
            component_type: "fake.one".into(),
            error: "init failed".into(),
        });
        assert_eq!(components.failed().len(), 1);
        components.install(info("a"), block);
        assert!(
            components.failed().is_empty(),
            "a started component is no longer failed"
        );
        assert!(components.remove("a").await);
        assert!(!components.remove("a").await);
        assert!(components.get::<Fake>("a").is_none());
        assert!(eventually(&closed).await);
        assert!(components.list().is_empty());
    }
}

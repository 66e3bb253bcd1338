//! The bookkeeping of an instance pool, apart from wasmtime: how many instances may exist at
//! once, which are idle, and a close that waits for every checked-out one to come back.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The pool is closed: nothing more is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

pub struct Slots<T> {
    idle: Mutex<Vec<T>>,
    permits: Arc<Semaphore>,
    size: u32,
}

/// The right to hold one instance; give the instance back before dropping it.
pub type Permit = OwnedSemaphorePermit;

impl<T> Slots<T> {
    pub fn new(size: u32) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size as usize)),
            size,
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Waits until fewer than `size` instances are checked out, then hands out the most
    /// recently used idle one (warm caches, live connections), or `None` when the caller
    /// should create one.
    pub async fn acquire(&self) -> Result<(Permit, Option<T>), Closed> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Closed)?;
        Ok((permit, self.lock().pop()))
    }

    /// Returns an instance to the idle set; after `close` it is dropped instead.
    pub fn give_back(&self, item: T) {
        if !self.permits.is_closed() {
            self.lock().push(item);
        }
    }

    /// Waits until no instance is checked out, stops handing out, and returns the idle
    /// instances for the caller to close.
    pub async fn close(&self) -> Vec<T> {
        // Holding every permit means no instance is checked out.
        let all = self.permits.acquire_many(self.size).await;
        self.permits.close();
        let idle = std::mem::take(&mut *self.lock());
        drop(all);
        idle
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How many instances a component may run: what the plugin allows (0: the host decides),
/// lowered by the component's `blockhost.maxInstances`, at least one.
pub fn pool_size(plugin_max: u32, wanted: Option<u32>, default: u32) -> u32 {
    match (plugin_max, wanted) {
        (0, wanted) => wanted.unwrap_or(default).max(1),
        (allowed, wanted) => wanted.map_or(allowed, |w| w.min(allowed)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sizes_respect_the_plugin_first() {
        assert_eq!(pool_size(0, None, 8), 8);
        assert_eq!(pool_size(0, Some(3), 8), 3);
        assert_eq!(pool_size(0, None, 0), 1);
        assert_eq!(
            pool_size(1, Some(5), 8),
            1,
            "a single-instance plugin stays single"
        );
        assert_eq!(pool_size(4, Some(2), 8), 2);
        assert_eq!(pool_size(4, None, 8), 4);
    }

    #[tokio::test]
    async fn at_most_size_instances_are_out_and_the_warmest_is_reused() {
        let slots = Arc::new(Slots::new(2));
        let (first, none) = slots.acquire().await.unwrap();
        assert_eq!(none, None, "an empty pool asks the caller to create");
        let (second, _) = slots.acquire().await.unwrap();
        let third = {
            let slots = Arc::clone(&slots);
            tokio::spawn(async move { slots.acquire().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third.is_finished(), "a third caller waits for room");
        slots.give_back(10);
        slots.give_back(11);
        drop(first);
        let (_third_permit, item) = third.await.unwrap().unwrap();
        assert_eq!(
            item,
            Some(11),
            "the most recently returned instance comes first"
        );
        drop(second);
    }

    #[tokio::test]
    async fn close_waits_for_instances_in_use_then_refuses() {
        let slots = Arc::new(Slots::new(2));
        slots.give_back(1);
        let (permit, item) = slots.acquire().await.unwrap();
        assert_eq!(item, Some(1));
        let closing = {
            let slots = Arc::clone(&slots);
            tokio::spawn(async move { slots.close().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!closing.is_finished(), "an instance is still in use");
        slots.give_back(1);
        drop(permit);
        assert_eq!(
            closing.await.unwrap(),
            vec![1],
            "the idle instance is handed over"
        );
        assert_eq!(slots.acquire().await.err(), Some(Closed));
        slots.give_back(2);
        assert!(slots.lock().is_empty(), "a late return is dropped");
    }
}

//! `pubsub.in-memory`: Dapr's in-memory pub/sub. The bus lives in this instance's memory, so
//! the plugin asks for exactly one instance; the host serialises calls to it, calls `next`
//! with a zero timeout and wakes its subscribers after each publish, so nothing here ever
//! waits. See [`bus`] for the delivery rules.

// The generated ABI glue is unsafe by nature; the workspace denies `unsafe_code` everywhere
// else, so it is confined to this module (and so is `export!`, which expands to more of it).
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ world: "pubsub-plugin", path: "../../wit" });
    use super::InMemory;
    export!(InMemory);
}

mod bus;
mod settings;

use std::cell::RefCell;
use std::time::Instant;

use bindings::blockhost::plugin::log::{log, Level};
use bindings::exports::blockhost::plugin::lifecycle::{self, PluginInfo};
use bindings::exports::blockhost::plugin::pubsub::{
    self, BulkEntry, BulkFailure, Error, IncomingMessage, Metadata, Outcome, OutgoingMessage,
    SettleFailure, Settlement, SubscribeRequest,
};

use bus::{Acked, Bus, BusError, Limits, Published, Settle};
use settings::Settings;

struct InMemory;

thread_local! {
    static BUS: RefCell<Bus> = RefCell::new(Bus::new(Limits::default()));
    static DEFAULTS: RefCell<Settings> = RefCell::new(Settings::default());
    /// The bus's clock starts with the instance.
    static EPOCH: Instant = Instant::now();
}

fn now_ms() -> u64 {
    EPOCH.with(|epoch| u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
}

impl lifecycle::Guest for InMemory {
    fn describe() -> PluginInfo {
        PluginInfo {
            component_type: "pubsub.in-memory".into(),
            version: "v1".into(),
            features: vec![],
            endpoint_keys: vec![],
            path_keys: vec![],
            writable_path_keys: vec![],
            max_instances: 1,
        }
    }

    fn init(metadata: Metadata) -> Result<(), Error> {
        let settings =
            Settings::parse(&metadata, &Settings::default()).map_err(Error::InvalidArgument)?;
        let ignored = settings::ignored(&metadata);
        if !ignored.is_empty() {
            log(
                Level::Info,
                &format!(
                    "pubsub.in-memory ignores metadata it does not use: {}",
                    ignored.join(", ")
                ),
            );
        }
        DEFAULTS.set(settings);
        BUS.set(Bus::new(Limits::default()));
        now_ms();
        log(
            Level::Info,
            "pubsub.in-memory ready; messages are kept in memory and lost when the instance goes",
        );
        Ok(())
    }

    /// The messages go with the instance.
    fn close() {
        BUS.set(Bus::new(Limits::default()));
    }
}

impl pubsub::Guest for InMemory {
    type Subscription = InMemorySubscription;

    fn publish(message: OutgoingMessage) -> Result<(), Error> {
        publish_one(
            message.topic,
            message.data,
            message.content_type,
            message.metadata,
        )
    }

    fn bulk_publish(
        topic: String,
        entries: Vec<BulkEntry>,
        metadata: Metadata,
    ) -> Result<Vec<BulkFailure>, Error> {
        check_topic(&topic)?;
        let mut failures = Vec::new();
        for entry in entries {
            // The entry's own metadata wins over the request's.
            let mut merged: Metadata = metadata
                .iter()
                .filter(|(k, _)| !entry.metadata.iter().any(|(e, _)| e == k))
                .cloned()
                .collect();
            merged.extend(entry.metadata);
            if let Err(error) = publish_one(topic.clone(), entry.data, entry.content_type, merged) {
                failures.push(BulkFailure {
                    entry_id: entry.entry_id,
                    error,
                });
            }
        }
        Ok(failures)
    }

    fn subscribe(request: SubscribeRequest) -> Result<pubsub::Subscription, Error> {
        check_topic(&request.topic)?;
        let settings = DEFAULTS
            .with_borrow(|defaults| Settings::parse(&request.metadata, defaults))
            .map_err(Error::InvalidArgument)?;
        let group = settings.consumer_id.clone().unwrap_or_default();
        let id = BUS.with_borrow_mut(|bus| {
            bus.subscribe(&request.topic, &group, settings.processing_timeout_ms())
        });
        log(
            Level::Debug,
            &format!(
                "subscribed to topic {:?} as consumer group {group:?}",
                request.topic
            ),
        );
        Ok(pubsub::Subscription::new(InMemorySubscription { id }))
    }
}

fn check_topic(topic: &str) -> Result<(), Error> {
    if topic.is_empty() {
        return Err(Error::InvalidArgument("the topic name is empty".into()));
    }
    Ok(())
}

fn publish_one(
    topic: String,
    data: Vec<u8>,
    content_type: Option<String>,
    metadata: Metadata,
) -> Result<(), Error> {
    check_topic(&topic)?;
    match BUS.with_borrow_mut(|bus| bus.publish(&topic, data, content_type, metadata)) {
        Ok(Published::Queued(_)) => Ok(()),
        Ok(Published::NoSubscribers) => {
            log(
                Level::Debug,
                &format!("no subscription to topic {topic:?}: the message is dropped"),
            );
            Ok(())
        }
        Err(e) => Err(to_wit(e)),
    }
}

/// The exported resource: a handle on one subscription of the bus, ended when the host
/// drops it.
pub struct InMemorySubscription {
    id: u64,
}

impl pubsub::GuestSubscription for InMemorySubscription {
    /// Returns what is ready at once; `timeout-ms` is not waited (the host wakes this
    /// subscription after each publish).
    fn next(&self, max: u32, _timeout_ms: u32) -> Result<Vec<IncomingMessage>, Error> {
        let messages = BUS
            .with_borrow_mut(|bus| bus.next(self.id, max, now_ms()))
            .map_err(to_wit)?;
        Ok(messages
            .iter()
            .map(|m| IncomingMessage {
                id: m.seq.to_string(),
                topic: m.topic.clone(),
                data: m.data.clone(),
                content_type: m.content_type.clone(),
                metadata: m.metadata.clone(),
            })
            .collect())
    }

    fn ack(&self, settled: Vec<Settlement>) -> Result<Vec<SettleFailure>, Error> {
        let mut failures = Vec::new();
        BUS.with_borrow_mut(|bus| {
            for Settlement { id, outcome } in settled {
                let settle = match outcome {
                    Outcome::Success | Outcome::Drop => Settle::Done,
                    Outcome::Retry => Settle::Retry,
                };
                match bus.ack(self.id, &id, settle) {
                    Ok(Acked::Settled) => {}
                    Ok(Acked::NotInFlight) => log(
                        Level::Debug,
                        &format!("message {id} was not in flight (acknowledged before, or redelivered after its processingTimeout)"),
                    ),
                    Err(e) => failures.push(SettleFailure { id, error: to_wit(e) }),
                }
            }
        });
        Ok(failures)
    }
}

impl Drop for InMemorySubscription {
    fn drop(&mut self) {
        BUS.with_borrow_mut(|bus| bus.unsubscribe(self.id));
    }
}

fn to_wit(e: BusError) -> Error {
    match e {
        BusError::Full(m) => Error::Unavailable(format!(
            "{m}; publish again once subscribers have caught up"
        )),
        BusError::UnknownSubscription => {
            Error::Internal("the subscription no longer exists on this instance".into())
        }
        BusError::InvalidId(id) => Error::InvalidArgument(format!(
            "{id:?} is not a message id this subscription handed out"
        )),
    }
}

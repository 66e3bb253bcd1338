//! The pub/sub conformance suite: written once, run against every pub/sub plugin. Each case
//! starts a [`TestApp`] and a sidecar delivering to it, with one pub/sub component
//! [`PUBSUB`] of the given kind, on topics of its own ([`crate::pubsub::unique_topic`]).
//!
//! - [`pubsub_conformance_suite!`]: what every plugin must do (delivery and its answers,
//!   dead letters, envelopes, raw payloads, bulk publish, routing, concurrency).
//! - [`pubsub_durability_suite!`]: what a broker outside the sidecar adds (competing
//!   consumers, fan-out per app id, a broker restart, a subscriber's sidecar crash).

mod delivery;
mod durability;
mod envelope;
mod routing;

pub use delivery::{
    at_least_once_despite_failures, bulk_subscribe, concurrency_bounds_parallel_deliveries,
    dead_letter_topic, publish_and_receive_all, retry_redelivers_drop_does_not,
};
pub use durability::{
    broker_restart_loses_nothing, competing_consumers, fan_out_to_app_ids,
    subscriber_killed_and_restarted,
};
pub use envelope::{bulk_publish, envelope_fields, publish_errors, raw_payload};
pub use routing::{declarative_subscriptions, routing_rules, two_topics};

use std::time::Duration;

use serde_json::Value;

use crate::app::TestApp;
use crate::builder::SidecarBuilder;
use crate::pubsub::{Broker, PubSubApi, PubSubKind, PUBSUB};
use crate::sidecar::Sidecar;

/// How long a "nothing more arrives" check listens.
pub const QUIET: Duration = Duration::from_millis(400);

/// A broker, an app and a sidecar delivering to it.
pub struct Fixture {
    pub app: TestApp,
    pub sidecar: Sidecar,
    pub api: PubSubApi,
    /// Dropped last: the sidecar goes before its broker.
    pub broker: Broker,
}

/// An app answering `subscriptions` and a started sidecar `app_id` delivering to it.
#[track_caller]
pub fn start(kind: PubSubKind, app_id: &str, subscriptions: Value) -> Fixture {
    start_with(Broker::start(kind), app_id, subscriptions, |b| b)
}

/// [`start`] on a given broker, with a last word on the sidecar (resources, flags).
#[track_caller]
pub fn start_with(
    broker: Broker,
    app_id: &str,
    subscriptions: Value,
    customize: impl FnOnce(SidecarBuilder) -> SidecarBuilder,
) -> Fixture {
    let app = TestApp::start(subscriptions);
    let sidecar = customize(broker.subscriber(app_id, &app)).start();
    let api = sidecar.pubsub(PUBSUB);
    Fixture {
        app,
        sidecar,
        api,
        broker,
    }
}

/// `pubsub_conformance_suite!(module_name, PubSubKind::X)` defines `mod module_name` with one
/// `#[test]` per conformance case, run against that kind of pub/sub.
#[macro_export]
macro_rules! pubsub_conformance_suite {
    ($module:ident, $kind:expr) => {
        $crate::pubsub_conformance_suite!(@cases $module, $kind, [
            publish_and_receive_all,
            at_least_once_despite_failures,
            retry_redelivers_drop_does_not,
            dead_letter_topic,
            concurrency_bounds_parallel_deliveries,
            envelope_fields,
            publish_errors,
            raw_payload,
            bulk_publish,
            two_topics,
            routing_rules,
            declarative_subscriptions,
            bulk_subscribe,
        ]);
    };
    (@cases $module:ident, $kind:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::pubsub_conformance::$case($kind);
                }
            )*
        }
    };
}

/// `pubsub_durability_suite!(module_name, PubSubKind::X)`: the cases that need a broker
/// outside the sidecar (not `pubsub.in-memory`).
#[macro_export]
macro_rules! pubsub_durability_suite {
    ($module:ident, $kind:expr) => {
        $crate::pubsub_conformance_suite!(@cases $module, $kind, [
            competing_consumers,
            fan_out_to_app_ids,
            broker_restart_loses_nothing,
            subscriber_killed_and_restarted,
        ]);
    };
}

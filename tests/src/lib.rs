//! Integration and conformance tests for blockhost: they start the real `blockhost` binary on
//! free ports with real plugins and drive it over HTTP, as an application would.
//!
//! Harness:
//! - [`Sidecar::builder`] → [`SidecarBuilder`] (plugins, components, env, API token) →
//!   [`SidecarBuilder::start`] (waits for `/v1.0/healthz` = 204) or
//!   [`SidecarBuilder::spawn`] (for sidecars expected to exit); [`Sidecar::stop`] sends SIGTERM
//!   and returns the exit status; dropping a sidecar stops it and, if the test is failing,
//!   prints its logs.
//! - [`Client`] / [`Response`]: plain HTTP with Dapr error assertions; [`StateApi`] for the
//!   state routes; [`Component`] writes resource YAML; [`metadata`] reads `/v1.0/metadata`.
//! - [`redis::RedisServer`]: a real `redis-server` on a free port, for `state.redis` and direct
//!   checks; [`StoreKind::Redis`] stores get one each.
//! - [`app::TestApp`]: a stand-in app on a free port (`/dapr/subscribe`, recorded deliveries,
//!   answer policies); [`pubsub`]: pub/sub plugins, their brokers, the publish routes;
//!   [`pubsub_conformance`]: the pub/sub suite, instantiated per plugin with
//!   [`pubsub_conformance_suite!`] and [`pubsub_durability_suite!`].
//! - [`conformance`]: the state store suite, instantiated per plugin with
//!   [`state_conformance_suite!`].
//!
//! Locations come from `BLOCKHOST_BIN`, `BLOCKHOST_PLUGINS_DIR` and `BLOCKHOST_FIXTURES_DIR`,
//! else from what `cargo xtask test` builds under cargo's target directory (`CARGO_TARGET_DIR`,
//! else `target/`; see [`paths`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod builder;
pub mod conformance;
pub mod http;
pub mod logs;
pub mod metadata;
pub mod paths;
pub mod ports;
pub mod pubsub;
pub mod pubsub_conformance;
pub mod rabbitmq;
pub mod redis;
pub mod resources;
pub mod sidecar;
pub mod state;
pub mod time;

pub use builder::SidecarBuilder;
pub use http::{Client, Response};
pub use resources::Component;
pub use sidecar::Sidecar;
pub use state::{StateApi, StoreKind};

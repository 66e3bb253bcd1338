//! What the API serves from: the app's identity, the running components, readiness.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::components::Components;

/// A loaded plugin as `/v1.0/metadata` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginSummary {
    pub file: String,
    #[serde(rename = "type")]
    pub component_type: String,
    pub version: String,
    pub block: String,
    pub features: Vec<String>,
}

/// A plugin file that was skipped, with the reason.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SkippedPlugin {
    pub file: String,
    pub error: String,
}

/// A subscription as `/v1.0/metadata` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionInfo {
    pub pubsubname: String,
    pub topic: String,
    pub rules: Vec<RuleInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    #[serde(rename = "type")]
    pub kind: crate::blocks::pubsub::subscription::Kind,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleInfo {
    #[serde(rename = "match")]
    pub expression: String,
    pub path: String,
}

pub struct Sidecar {
    pub app_id: String,
    /// `DAPR_API_TOKEN`: when set, every route but health needs it.
    pub api_token: Option<String>,
    /// The running components; a request resolves its own by name.
    pub components: Arc<Components>,
    pub plugins: ArcSwap<(Vec<PluginSummary>, Vec<SkippedPlugin>)>,
    /// Attributes set through `PUT /v1.0/metadata/{name}`.
    pub extended: Mutex<BTreeMap<String, String>>,
    /// Components are up: the app may call the API (`/healthz/outbound`).
    outbound_ready: watch::Sender<bool>,
    /// Components, app channel and subscriptions are up (`/healthz`).
    ready: watch::Sender<bool>,
    /// What `/v1.0/metadata` lists under `subscriptions`.
    pub subscriptions: ArcSwap<Vec<SubscriptionInfo>>,
    /// Set by a signal or `POST /v1.0/shutdown`.
    stopping: watch::Sender<bool>,
}

impl Sidecar {
    pub fn new(app_id: String, api_token: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            app_id,
            api_token,
            components: Arc::new(Components::default()),
            plugins: ArcSwap::from_pointee((Vec::new(), Vec::new())),
            extended: Mutex::new(BTreeMap::new()),
            outbound_ready: watch::channel(false).0,
            ready: watch::channel(false).0,
            subscriptions: ArcSwap::from_pointee(Vec::new()),
            stopping: watch::channel(false).0,
        })
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub fn set_ready(&self) {
        self.ready.send_replace(true);
    }

    pub fn is_outbound_ready(&self) -> bool {
        *self.outbound_ready.borrow()
    }

    pub fn set_outbound_ready(&self) {
        self.outbound_ready.send_replace(true);
    }

    /// Waits until every component is initialised, so a request that arrives during
    /// start-up is served rather than refused.
    pub async fn wait_ready(&self) {
        let mut ready = self.outbound_ready.subscribe();
        // The sender lives as long as `self`, so this only returns once ready.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    pub fn request_stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once a stop was requested.
    pub async fn stop_requested(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

//! Health, metadata and shutdown routes (<https://docs.dapr.io/reference/api/health_api/>,
//! <https://docs.dapr.io/reference/api/metadata_api/>, <https://docs.dapr.io/reference/api/shutdown_api/>).

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::error::{empty, json_response, ApiError, Body};
use super::query::Query;
use crate::components::{ComponentInfo, FailedComponent};
use crate::sidecar::{PluginSummary, Sidecar, SkippedPlugin, SubscriptionInfo};

/// `GET /v1.0/healthz` and `/v1.0/healthz/outbound`: 204 once every component is up.
pub fn healthz(sidecar: &Sidecar, query: &Query, outbound: bool) -> Response<Body> {
    if !outbound {
        if let Some(app_id) = query.get("appid") {
            if app_id != sidecar.app_id {
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ERR_HEALTH_APPID_NOT_MATCH",
                    "dapr app-id does not match",
                )
                .into_response();
            }
        }
    }
    let ready = if outbound {
        sidecar.is_outbound_ready()
    } else {
        sidecar.is_ready()
    };
    if ready {
        return empty(StatusCode::NO_CONTENT);
    }
    let code = if outbound {
        "ERR_OUTBOUND_HEALTH_NOT_READY"
    } else {
        "ERR_HEALTH_NOT_READY"
    };
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, "dapr is not ready").into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    id: &'a str,
    runtime_version: &'static str,
    enabled_features: [&'static str; 0],
    components: &'a [ComponentInfo],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    subscriptions: &'a [SubscriptionInfo],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    failed_components: &'a [FailedComponent],
    extended: std::collections::BTreeMap<String, String>,
    /// blockhost's own: the plugin directory as loaded.
    plugins: &'a [PluginSummary],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    skipped_plugins: &'a [SkippedPlugin],
}

/// `GET /v1.0/metadata`. Answers (non-empty) from the first moment the server listens:
/// the SDKs use it as their readiness probe.
pub fn metadata(sidecar: &Sidecar) -> Response<Body> {
    let components = sidecar.components.list();
    let failed = sidecar.components.failed();
    let plugins = sidecar.plugins.load();
    let subscriptions = sidecar.subscriptions.load();
    let mut extended = sidecar
        .extended
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    extended.insert("daprRuntimeVersion".into(), crate::VERSION.into());
    let body = Metadata {
        id: &sidecar.app_id,
        runtime_version: crate::VERSION,
        enabled_features: [],
        components: &components,
        subscriptions: &subscriptions,
        failed_components: &failed,
        extended,
        plugins: &plugins.0,
        skipped_plugins: &plugins.1,
    };
    match serde_json::to_vec(&body) {
        Ok(bytes) => json_response(StatusCode::OK, bytes.into()),
        Err(err) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_METADATA_GET",
            err.to_string(),
        )
        .into_response(),
    }
}

/// `PUT /v1.0/metadata/{name}`: the raw body becomes an `extended` attribute.
pub fn set_attribute(sidecar: &Sidecar, name: &str, body: &Bytes) -> Response<Body> {
    let value = String::from_utf8_lossy(body).into_owned();
    if let Ok(mut extended) = sidecar.extended.lock() {
        extended.insert(name.to_owned(), value);
    }
    empty(StatusCode::NO_CONTENT)
}

/// `POST /v1.0/shutdown`: answers at once; the graceful shutdown runs after.
pub fn shutdown(sidecar: &Sidecar) -> Response<Body> {
    sidecar.request_stop();
    empty(StatusCode::NO_CONTENT)
}

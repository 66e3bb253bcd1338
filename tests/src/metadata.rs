//! Reading `GET /v1.0/metadata`.

use serde_json::Value;

use crate::http::Client;

/// `GET /v1.0/metadata`, asserting 200 and a JSON body.
#[track_caller]
pub fn fetch(client: &Client) -> Value {
    let response = client.get("/v1.0/metadata");
    response.expect_status(200);
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "metadata Content-Type {content_type:?}"
    );
    response.json()
}

/// The entry named `name` in `components`, if listed.
pub fn component<'a>(metadata: &'a Value, name: &str) -> Option<&'a Value> {
    metadata["components"]
        .as_array()
        .unwrap_or_else(|| panic!("metadata without a components array: {metadata}"))
        .iter()
        .find(|c| c["name"] == name)
}

/// Asserts `name` is listed with `component_type`, version `v1`, and every capability a state
/// store with ETags, transactions and TTL reports (`ACTOR` follows from ETAG + TRANSACTIONAL).
#[track_caller]
pub fn assert_state_component(metadata: &Value, name: &str, component_type: &str) {
    let entry = component(metadata, name)
        .unwrap_or_else(|| panic!("component {name} not listed: {metadata}"));
    assert_eq!(entry["type"], component_type, "{entry}");
    assert_eq!(entry["version"], "v1", "{entry}");
    let capabilities: Vec<&str> = entry["capabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("no capabilities array: {entry}"))
        .iter()
        .map(|c| {
            c.as_str()
                .unwrap_or_else(|| panic!("capability not a string: {entry}"))
        })
        .collect();
    for wanted in ["ETAG", "TRANSACTIONAL", "TTL", "ACTOR"] {
        assert!(
            capabilities.contains(&wanted),
            "{wanted} missing from {entry}"
        );
    }
}

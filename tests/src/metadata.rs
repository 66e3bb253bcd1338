//! Reading `GET /v1.0/metadata`.

use serde_json::Value;

use crate::http::Client;
use crate::state::StoreKind;

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

/// The `capabilities` of component `name`, as listed (panics if it is not listed).
#[track_caller]
pub fn capabilities(metadata: &Value, name: &str) -> Vec<String> {
    let entry = component(metadata, name)
        .unwrap_or_else(|| panic!("component {name} not listed: {metadata}"));
    // Omitted when empty.
    let Some(listed) = entry.get("capabilities") else {
        return Vec::new();
    };
    listed
        .as_array()
        .unwrap_or_else(|| panic!("capabilities is not an array: {entry}"))
        .iter()
        .map(|c| {
            c.as_str()
                .unwrap_or_else(|| panic!("capability not a string: {entry}"))
                .to_owned()
        })
        .collect()
}

/// The capabilities daprd lists for a state store that declares `features`: those, plus
/// `ACTOR` when it has both ETAG and TRANSACTIONAL.
pub fn state_capabilities(features: &[&str]) -> Vec<String> {
    let mut capabilities: Vec<String> = features.iter().map(|f| (*f).to_owned()).collect();
    if features.contains(&"ETAG") && features.contains(&"TRANSACTIONAL") {
        capabilities.push("ACTOR".to_owned());
    }
    capabilities
}

/// Asserts `name` is listed with `kind`'s type, version `v1`, and exactly the capabilities
/// that kind's plugin declares (plus the derived `ACTOR`, see [`state_capabilities`]); and that
/// the plugin's own entry under `plugins` lists exactly its declared features.
#[track_caller]
pub fn assert_state_component(metadata: &Value, name: &str, kind: StoreKind) {
    let entry = component(metadata, name)
        .unwrap_or_else(|| panic!("component {name} not listed: {metadata}"));
    assert_eq!(entry["type"], kind.component_type(), "{entry}");
    assert_eq!(entry["version"], "v1", "{entry}");
    let mut listed = capabilities(metadata, name);
    let mut expected = state_capabilities(kind.declared_features());
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "capabilities of {name}: {entry}");

    let plugin = metadata["plugins"]
        .as_array()
        .unwrap_or_else(|| panic!("metadata without a plugins array: {metadata}"))
        .iter()
        .find(|p| p["file"] == kind.plugin_file())
        .unwrap_or_else(|| panic!("plugin {} not listed: {metadata}", kind.plugin_file()));
    assert_eq!(plugin["type"], kind.component_type(), "{plugin}");
    assert_eq!(
        plugin["features"],
        serde_json::json!(kind.declared_features()),
        "features of plugin {}",
        kind.plugin_file()
    );
}

//! `/v1.0/healthz`, `/v1.0/healthz/outbound` and `/v1.0/metadata`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blockhost_tests::{metadata, Sidecar, StoreKind};

#[test]
fn health_endpoints_answer_204_when_ready() {
    let sidecar = Sidecar::with_store("healthapp", StoreKind::InMemory);
    let client = sidecar.client();
    client.get("/v1.0/healthz").expect_no_content();
    client.get("/v1.0/healthz/outbound").expect_no_content();
}

#[test]
fn metadata_describes_app_and_components() {
    let sidecar = Sidecar::with_store("metadataapp", StoreKind::InMemory);
    let metadata = metadata::fetch(&sidecar.client());
    assert_eq!(metadata["id"], "metadataapp", "{metadata}");
    let runtime_version = metadata["runtimeVersion"].as_str().unwrap_or_default();
    assert!(
        !runtime_version.is_empty(),
        "runtimeVersion missing: {metadata}"
    );
    metadata::assert_state_component(&metadata, "statestore", StoreKind::InMemory);
    assert_eq!(
        metadata["components"].as_array().unwrap().len(),
        1,
        "only the configured component is listed: {metadata}"
    );
}

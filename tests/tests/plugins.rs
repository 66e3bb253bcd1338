//! Plugin files that are not components, and plugins whose `init` fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blockhost_tests::sidecar::COLD_READY_TIMEOUT;
use blockhost_tests::{metadata, Component, Sidecar, SidecarBuilder, StoreKind};
use serde_json::json;

const FAILING_INIT: &str = "this fixture always fails init";

/// An empty core module: valid Wasm, but not a component.
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// A sidecar with a working in-memory `statestore` and the failing-init fixture as `doomed`.
fn with_doomed_component(app_id: &str, doomed: Component) -> SidecarBuilder {
    Sidecar::builder(app_id)
        .store(StoreKind::InMemory, "statestore")
        .fixture_plugin("failing-init.wasm")
        .component(&doomed)
}

#[test]
fn files_that_are_not_components_are_reported_and_skipped() {
    let sidecar = Sidecar::builder("brokenpluginapp")
        .store(StoreKind::InMemory, "statestore")
        .plugin_bytes("broken.wasm", CORE_MODULE)
        .plugin_bytes("notwasm.wasm", b"this is not WebAssembly\n")
        .start();
    let logs = sidecar.stderr();
    for file in ["broken.wasm", "notwasm.wasm"] {
        assert!(logs.contains(file), "stderr should name {file}:\n{logs}");
    }
    let state = sidecar.state("statestore");
    state.put("k", json!("works"));
    state.assert_value("k", r#""works""#);
}

#[test]
fn a_component_that_exports_no_plugin_world_is_reported_and_skipped() {
    let sidecar = Sidecar::builder("noworldapp")
        .store(StoreKind::InMemory, "statestore")
        .fixture_plugin("no-world.wasm")
        .start();
    let logs = sidecar.stderr();
    assert!(
        logs.contains("no-world.wasm") && logs.contains("exports no blockhost plugin interface"),
        "stderr should name the file and the reason:\n{logs}"
    );
    let skipped = metadata::fetch(&sidecar.client())["skippedPlugins"].clone();
    assert_eq!(skipped[0]["file"], "no-world.wasm", "metadata: {skipped}");
    let state = sidecar.state("statestore");
    state.put("k", json!(1));
    state.assert_value("k", "1");
}

#[test]
fn a_plugin_built_for_another_contract_version_is_refused_by_name() {
    let sidecar = Sidecar::builder("oldcontractapp")
        .store(StoreKind::InMemory, "statestore")
        .fixture_plugin("old-contract.wasm")
        .start();
    let logs = sidecar.stderr();
    assert!(
        logs.contains("old-contract.wasm")
            && logs.contains("built against blockhost:plugin@0.1.0")
            && logs.contains("rebuild the plugin"),
        "stderr should name the file, its version and what to do:\n{logs}"
    );
    let skipped = metadata::fetch(&sidecar.client())["skippedPlugins"].clone();
    assert_eq!(
        skipped[0]["file"], "old-contract.wasm",
        "metadata: {skipped}"
    );
    let state = sidecar.state("statestore");
    state.put("k", json!(1));
    state.assert_value("k", "1");
}

#[test]
fn init_failure_is_fatal() {
    let mut sidecar = with_doomed_component(
        "initfailapp",
        Component::new("doomed", "state.failing-init"),
    )
    .spawn();
    let status = sidecar.wait_exit(COLD_READY_TIMEOUT);
    let logs = sidecar.stderr();
    assert!(!status.success(), "exited with {status}; stderr:\n{logs}");
    for needle in ["doomed", "doomed.yaml", FAILING_INIT] {
        assert!(
            logs.contains(needle),
            "stderr should mention {needle:?}:\n{logs}"
        );
    }
}

#[test]
fn init_failure_with_ignore_errors_leaves_the_rest_running() {
    let sidecar = with_doomed_component(
        "ignoreerrorsapp",
        Component::new("doomed", "state.failing-init").ignore_errors(),
    )
    .start();
    let logs = sidecar.stderr();
    assert!(
        logs.contains(FAILING_INIT),
        "the failure should still be logged:\n{logs}"
    );

    let state = sidecar.state("statestore");
    state.put("k", json!(1));
    state.assert_value("k", "1");

    sidecar
        .state("doomed")
        .get("k")
        .expect_error(400, "ERR_STATE_STORE_NOT_FOUND");
    let metadata = metadata::fetch(&sidecar.client());
    assert!(
        metadata::component(&metadata, "doomed").is_none(),
        "a component that failed init is not usable: {metadata}"
    );
    assert!(
        metadata::component(&metadata, "statestore").is_some(),
        "{metadata}"
    );
}

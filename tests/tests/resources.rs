//! Loading resources: bad YAML, unknown types, several documents per file, several resources
//! paths, scopes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blockhost_tests::sidecar::COLD_READY_TIMEOUT;
use blockhost_tests::{metadata, Component, Sidecar, SidecarBuilder, StoreKind};
use serde_json::json;

const IN_MEMORY: StoreKind = StoreKind::InMemory;

fn builder(app_id: &str) -> SidecarBuilder {
    Sidecar::builder(app_id).plugin(IN_MEMORY.plugin_file())
}

fn in_memory(name: &str) -> Component {
    Component::new(name, IN_MEMORY.component_type())
}

/// Whether `logs` point at line `line` of `file`: `file:3` or `line 3` (not `line 30`).
fn mentions_line(logs: &str, file: &str, line: usize) -> bool {
    let followed_by_non_digit = |needle: &str| {
        logs.match_indices(needle)
            .any(|(at, _)| !logs[at + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
    };
    followed_by_non_digit(&format!("{file}:{line}"))
        || followed_by_non_digit(&format!("line {line}"))
}

/// The store `name` of `sidecar` saves and reads back a value.
#[track_caller]
fn assert_store_works(sidecar: &Sidecar, name: &str) {
    let state = sidecar.state(name);
    state.put("probe", json!(name));
    state.assert_value("probe", &json!(name).to_string());
}

#[test]
fn malformed_yaml_is_fatal_and_names_file_and_line() {
    let bad = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: name: statestore\nspec:\n  type: state.in-memory\n";
    let mut sidecar = builder("badyamlapp")
        .component(&in_memory("good"))
        .resource_file("bad.yaml", bad)
        .spawn();
    let status = sidecar.wait_exit(COLD_READY_TIMEOUT);
    let logs = sidecar.stderr();
    assert!(!status.success(), "exited with {status}; stderr:\n{logs}");
    assert!(
        logs.contains("bad.yaml"),
        "stderr should name the file:\n{logs}"
    );
    assert!(
        mentions_line(&logs, "bad.yaml", 3),
        "stderr should name line 3:\n{logs}"
    );
}

#[test]
fn unknown_type_is_fatal_and_lists_available_types() {
    let mut sidecar = builder("unknowntypeapp")
        .component(&Component::new("mystery", "state.nope"))
        .spawn();
    let status = sidecar.wait_exit(COLD_READY_TIMEOUT);
    let logs = sidecar.stderr();
    assert!(!status.success(), "exited with {status}; stderr:\n{logs}");
    for needle in ["state.nope", "mystery", "mystery.yaml", "state.in-memory"] {
        assert!(
            logs.contains(needle),
            "stderr should mention {needle:?}:\n{logs}"
        );
    }
}

#[test]
fn every_document_of_a_multi_document_file_loads() {
    let file = format!(
        "---\n{}---\n{}",
        in_memory("first").to_yaml(),
        in_memory("second").to_yaml()
    );
    let sidecar = builder("multidocapp")
        .resource_file("stores.yaml", &file)
        .start();
    assert_store_works(&sidecar, "first");
    assert_store_works(&sidecar, "second");
}

#[test]
fn every_resources_path_loads() {
    let sidecar = builder("multidirapp")
        .resource_file_in(0, "a.yaml", &in_memory("store-a").to_yaml())
        .resource_file_in(1, "b.yaml", &in_memory("store-b").to_yaml())
        .start();
    assert_store_works(&sidecar, "store-a");
    assert_store_works(&sidecar, "store-b");
}

#[test]
fn components_scoped_to_other_apps_are_not_loaded() {
    let sidecar = builder("scopeapp")
        .component(&in_memory("scoped-out").scopes(&["otherapp"]))
        .component(&in_memory("scoped-in").scopes(&["otherapp", "scopeapp"]))
        .start();
    assert_store_works(&sidecar, "scoped-in");
    let state = sidecar.state("scoped-out");
    state
        .get("k")
        .expect_error(400, "ERR_STATE_STORE_NOT_FOUND");
    state
        .save(&json!([{ "key": "k", "value": 1 }]))
        .expect_error(400, "ERR_STATE_STORE_NOT_FOUND");
    let metadata = metadata::fetch(&sidecar.client());
    assert!(
        metadata::component(&metadata, "scoped-out").is_none(),
        "{metadata}"
    );
    assert!(
        metadata::component(&metadata, "scoped-in").is_some(),
        "{metadata}"
    );
}

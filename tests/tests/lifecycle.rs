//! Shutdown, and what the embedded persistent store keeps across restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use blockhost_tests::{Sidecar, StoreKind};
use serde_json::json;

const REDB: StoreKind = StoreKind::Redb;

#[test]
fn sigterm_exits_zero() {
    let mut sidecar = Sidecar::with_store("stopapp", StoreKind::InMemory);
    sidecar.state("statestore").put("k", json!(1));
    let status = sidecar.stop();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", sidecar.stderr());
    assert!(
        sidecar
            .client()
            .try_request("GET", "/v1.0/healthz", &[], None)
            .is_err(),
        "the port still answers after exit"
    );
}

/// A redb-backed sidecar for `app_id` keeping its data in `data`.
fn redb_sidecar(app_id: &str, data: &Path) -> Sidecar {
    Sidecar::builder(app_id)
        .plugin(REDB.plugin_file())
        .component(&REDB.component("statestore", data))
        .start()
}

#[test]
fn redb_keeps_data_and_etags_across_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut first = redb_sidecar("persistapp", data.path());
    let state = first.state("statestore");
    state.put("kept", json!({ "n": 1 }));
    state.put("deleted", json!(2));
    state.delete("deleted", None).expect_no_content();
    let (_, etag) = state.get_ok("kept");
    let status = first.stop();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", first.stderr());

    let second = redb_sidecar("persistapp", data.path());
    let state = second.state("statestore");
    let (body, etag_after) = state.get_ok("kept");
    assert_eq!(body, br#"{"n":1}"#);
    assert_eq!(etag_after, etag, "the ETag must survive a restart");
    state.assert_missing("deleted");
    state
        .save(&json!([{ "key": "kept", "value": 2, "etag": etag }]))
        .expect_no_content();
    state.assert_value("kept", "2");
}

/// Keys are prefixed with the app id by default, so another app on the same data does not see
/// them; with `keyPrefix: name` both apps share them.
#[test]
fn redb_keys_are_scoped_by_app_id() {
    let per_app = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let start = |app_id: &str| {
        Sidecar::builder(app_id)
            .plugin(REDB.plugin_file())
            .component(&REDB.component("per-app", per_app.path()))
            .component(
                &REDB
                    .component("shared", shared.path())
                    .meta("keyPrefix", "name"),
            )
            .start()
    };

    let mut first = start("app-one");
    first.state("per-app").put("k", json!("one"));
    first.state("shared").put("k", json!("one"));
    assert_eq!(first.stop().code(), Some(0), "stderr:\n{}", first.stderr());

    let second = start("app-two");
    second.state("per-app").assert_missing("k");
    second.state("shared").assert_value("k", r#""one""#);
}

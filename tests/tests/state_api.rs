//! State API behaviour that belongs to the host rather than to a store (key prefixes, request
//! decoding, the shapes the JS SDK sends), checked on the in-memory store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blockhost_tests::{Sidecar, StoreKind};
use serde_json::json;

/// `keyPrefix` (default `appid`, `none`, `name`, a literal): saved keys read back, and bulk
/// get answers with the key as saved, without any prefix.
#[test]
fn key_prefix_is_invisible_to_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let kind = StoreKind::InMemory;
    let stores = [
        ("prefix-default", None),
        ("prefix-none", Some("none")),
        ("prefix-name", Some("name")),
        ("prefix-literal", Some("custom")),
    ];
    let mut builder = Sidecar::builder("prefixapp").plugin(kind.plugin_file());
    for (name, prefix) in stores {
        let mut component = kind.component(name, dir.path());
        if let Some(prefix) = prefix {
            component = component.meta("keyPrefix", prefix);
        }
        builder = builder.component(&component);
    }
    let sidecar = builder.start();

    for (name, _) in stores {
        let state = sidecar.state(name);
        state.put("k", json!({ "store": name }));
        state.assert_value("k", &json!({ "store": name }).to_string());
        let bulk = state.bulk_get(&json!({ "keys": ["k"] }));
        bulk.expect_status(200);
        let bulk = bulk.json();
        assert_eq!(bulk[0]["key"], "k", "{name}: {bulk}");
        assert_eq!(bulk[0]["data"], json!({ "store": name }), "{name}: {bulk}");
    }
}

/// Request bodies are decoded like Go's `encoding/json`: field names match case-insensitively.
#[test]
fn json_field_names_are_case_insensitive() {
    let sidecar = Sidecar::with_store("caseapp", StoreKind::InMemory);
    let state = sidecar.state("statestore");

    state
        .save_raw(r#"[{"Key":"ci","Value":{"a":1}}]"#)
        .expect_no_content();
    state.assert_value("ci", r#"{"a":1}"#);

    let (_, etag) = state.get_ok("ci");
    state.put("ci", json!(2));
    state
        .save(&json!([{ "KEY": "ci", "value": 3, "ETag": etag }]))
        .expect_error(409, "ERR_STATE_SAVE");
    state.assert_value("ci", "2");

    let bulk = state.bulk_get(&json!({ "KEYS": ["ci"] }));
    bulk.expect_status(200);
    assert_eq!(bulk.json()[0]["data"], json!(2));

    state
        .transaction(&json!({ "Operations": [
            { "Operation": "upsert", "Request": { "Key": "ci-tx", "Value": "t" } },
        ] }))
        .expect_no_content();
    state.assert_value("ci-tx", r#""t""#);
}

/// What `@dapr/dapr` 3.x sends: URLs ending in an empty `?`, `options: {}`, option strings,
/// `consistency` as a plain query parameter, bulk get with only `keys`, transactions with
/// `"metadata": null`.
#[test]
fn js_sdk_request_shapes() {
    let sidecar = Sidecar::with_store("sdkapp", StoreKind::InMemory);
    let client = sidecar.client();
    let state = sidecar.state("statestore");

    client
        .send_json(
            "POST",
            "/v1.0/state/statestore?",
            r#"[{"key":"sdk","value":{"n":1},"options":{}},
                {"key":"sdk2","value":"v","options":{"concurrency":"last-write","consistency":"strong"}}]"#,
        )
        .expect_no_content();

    let got = client.get("/v1.0/state/statestore/sdk?");
    got.expect_status(200);
    assert_eq!(got.text(), r#"{"n":1}"#);
    let got = client.get("/v1.0/state/statestore/sdk2?consistency=strong&");
    got.expect_status(200);
    assert_eq!(got.text(), r#""v""#);

    let bulk = client.send_json(
        "POST",
        "/v1.0/state/statestore/bulk?",
        r#"{"keys":["sdk2"]}"#,
    );
    bulk.expect_status(200);
    assert_eq!(
        bulk.json(),
        json!([{ "key": "sdk2", "data": "v", "etag": state.get_ok("sdk2").1 }])
    );

    client
        .send_json(
            "POST",
            "/v1.0/state/statestore/transaction?",
            r#"{"operations":[{"operation":"delete","request":{"key":"sdk2"}}],"metadata":null}"#,
        )
        .expect_no_content();
    state.assert_missing("sdk2");

    client
        .request(
            "DELETE",
            "/v1.0/state/statestore/sdk?concurrency=last-write&consistency=eventual&",
            &[],
            None,
        )
        .expect_no_content();
    state.assert_missing("sdk");
}

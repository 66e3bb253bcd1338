//! Error answers of the state routes: status, `errorCode` and `message` as daprd gives them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blockhost_tests::{Sidecar, StoreKind};

fn sidecar() -> Sidecar {
    Sidecar::with_store("errorsapp", StoreKind::InMemory)
}

/// Every state route on a store that does not exist → 400 `ERR_STATE_STORE_NOT_FOUND`, naming it.
#[test]
fn unknown_store() {
    let sidecar = sidecar();
    let client = sidecar.client();
    let answers = [
        client.get("/v1.0/state/nostore/k"),
        client.send_json("POST", "/v1.0/state/nostore", r#"[{"key":"k","value":1}]"#),
        client.send_json("PUT", "/v1.0/state/nostore", r#"[{"key":"k","value":1}]"#),
        client.send_json("POST", "/v1.0/state/nostore/bulk", r#"{"keys":["k"]}"#),
        client.send_json(
            "POST",
            "/v1.0/state/nostore/transaction",
            r#"{"operations":[]}"#,
        ),
        client.request("DELETE", "/v1.0/state/nostore/k", &[], None),
    ];
    for answer in answers {
        answer.expect_error(400, "ERR_STATE_STORE_NOT_FOUND");
        let message = answer.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("nostore"),
            "message should name the store: {message}"
        );
    }
}

/// Bodies that are not the expected JSON → 400 `ERR_MALFORMED_REQUEST`, and nothing is saved.
#[test]
fn malformed_bodies() {
    let sidecar = sidecar();
    let client = sidecar.client();
    let state = sidecar.state("statestore");
    for body in ["{not json", r#"{"key":"m","value":1}"#, ""] {
        state
            .save_raw(body)
            .expect_error(400, "ERR_MALFORMED_REQUEST");
    }
    client
        .send_json("POST", "/v1.0/state/statestore/bulk", "nope")
        .expect_error(400, "ERR_MALFORMED_REQUEST");
    client
        .send_json("POST", "/v1.0/state/statestore/transaction", "[")
        .expect_error(400, "ERR_MALFORMED_REQUEST");
    state.assert_missing("m");
}

/// A save item without a key (or with an empty one) → 400; the valid items of the same request
/// are not saved either.
#[test]
fn missing_key() {
    let sidecar = sidecar();
    let state = sidecar.state("statestore");
    for body in [
        r#"[{"value":1}]"#,
        r#"[{"key":"","value":1}]"#,
        r#"[{"key":"valid","value":1},{"value":2}]"#,
    ] {
        state
            .save_raw(body)
            .expect_error(400, "ERR_MALFORMED_REQUEST");
    }
    state.assert_missing("valid");
}

/// `||` is the prefix separator and is refused in keys: save, get and delete → 400.
#[test]
fn key_with_separator() {
    let sidecar = sidecar();
    let state = sidecar.state("statestore");
    state
        .save_raw(r#"[{"key":"a||b","value":1}]"#)
        .expect_error(400, "ERR_MALFORMED_REQUEST");
    state
        .get("a%7C%7Cb")
        .expect_error(400, "ERR_MALFORMED_REQUEST");
    state
        .delete("a%7C%7Cb", None)
        .expect_error(400, "ERR_MALFORMED_REQUEST");
}

/// A known route with a method it does not serve → 405.
#[test]
fn wrong_method() {
    let sidecar = sidecar();
    sidecar
        .client()
        .send_json(
            "PATCH",
            "/v1.0/state/statestore",
            r#"[{"key":"k","value":1}]"#,
        )
        .expect_status(405);
    sidecar.state("statestore").assert_missing("k");
}

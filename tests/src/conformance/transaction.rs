//! Transactions (`POST /v1.0/state/{store}/transaction`).

use serde_json::json;

use super::{start, Fixture, STORE};
use crate::http::Response;
use crate::state::StoreKind;

/// Whether the store takes transactions. When it does not, asserts Dapr's answer to
/// `response` instead: 500 `ERR_STATE_STORE_NOT_SUPPORTED`, "state store <name> doesn't
/// support transactions".
#[track_caller]
fn transactional_or_refused(f: &Fixture, response: impl FnOnce() -> Response) -> bool {
    if f.has("TRANSACTIONAL") {
        return true;
    }
    let response = response();
    response.expect_error(500, "ERR_STATE_STORE_NOT_SUPPORTED");
    assert_eq!(
        response.json()["message"],
        format!("state store {STORE} doesn't support transactions"),
        "{}",
        response.text()
    );
    eprintln!(
        "{} declares no TRANSACTIONAL: the transaction was refused as Dapr documents",
        f.kind.component_type()
    );
    false
}

fn upsert(key: &str, value: serde_json::Value) -> serde_json::Value {
    json!({ "operation": "upsert", "request": { "key": key, "value": value } })
}

fn delete(key: &str) -> serde_json::Value {
    json!({ "operation": "delete", "request": { "key": key } })
}

/// A transaction whose last operation has a stale ETag fails with 500 and applies nothing;
/// the same transaction with the current ETag applies everything. A store without
/// TRANSACTIONAL refuses even the valid one, and nothing changes.
pub fn transaction_atomic(kind: StoreKind) {
    let f = start(kind);
    let state = &f.state;
    state.put("tx-guarded", json!(1));
    let (_, stale) = state.get_ok("tx-guarded");
    state.put("tx-guarded", json!(2));
    let (_, current) = state.get_ok("tx-guarded");
    state.put("tx-victim", json!("old"));
    let (_, victim_stale) = state.get_ok("tx-victim");
    state.put("tx-victim", json!("keep"));

    let with_etag = |etag: &str| {
        json!({ "operations": [
            upsert("tx-new", json!("new")),
            delete("tx-victim"),
            { "operation": "upsert", "request": { "key": "tx-guarded", "value": 3, "etag": etag } },
        ] })
    };
    if !transactional_or_refused(&f, || state.transaction(&with_etag(&current))) {
        // A transaction that a transactional store would apply in full changed nothing.
        state.assert_missing("tx-new");
        state.assert_value("tx-victim", r#""keep""#);
        state.assert_value("tx-guarded", "2");
        return;
    }
    state
        .transaction(&with_etag(&stale))
        .expect_error(500, "ERR_STATE_TRANSACTION");
    state.assert_missing("tx-new");
    state.assert_value("tx-victim", r#""keep""#);
    state.assert_value("tx-guarded", "2");

    // A stale ETag on a delete rolls back just the same. (ETags are per key: stores that
    // count versions give different keys the same ETag, so take the victim's own.)
    let stale_delete = json!({ "operations": [
        upsert("tx-new", json!("new")),
        { "operation": "delete", "request": { "key": "tx-victim", "etag": victim_stale } },
    ] });
    state
        .transaction(&stale_delete)
        .expect_error(500, "ERR_STATE_TRANSACTION");
    state.assert_missing("tx-new");
    state.assert_value("tx-victim", r#""keep""#);

    state.transaction(&with_etag(&current)).expect_no_content();
    state.assert_value("tx-new", r#""new""#);
    state.assert_missing("tx-victim");
    state.assert_value("tx-guarded", "3");
}

/// Operations apply in order; `"metadata": null` (as the JS SDK sends) and an empty list are
/// accepted; deleting a missing key inside a transaction is fine. A store without
/// TRANSACTIONAL refuses the transaction and nothing changes.
pub fn transaction_order(kind: StoreKind) {
    let f = start(kind);
    let state = &f.state;
    state.put("o-recreated", json!("old"));

    let body = json!({
        "operations": [
            upsert("o-gone", json!(1)),
            delete("o-gone"),
            delete("o-recreated"),
            upsert("o-recreated", json!("new")),
            upsert("o-twice", json!(1)),
            upsert("o-twice", json!(2)),
            delete("o-never-existed"),
        ],
        "metadata": null,
    });
    if !transactional_or_refused(&f, || state.transaction(&body)) {
        state.assert_value("o-recreated", r#""old""#);
        state.assert_missing("o-twice");
        return;
    }
    state.transaction(&body).expect_no_content();
    state.assert_missing("o-gone");
    state.assert_value("o-recreated", r#""new""#);
    state.assert_value("o-twice", "2");

    state
        .transaction(&json!({ "operations": [] }))
        .expect_no_content();
}

/// Only `upsert` and `delete` exist: anything else → 400 and nothing applied. blockhost
/// validates the operations before it asks whether the store takes transactions, so this holds
/// for stores without TRANSACTIONAL too.
pub fn transaction_unsupported_operation(kind: StoreKind) {
    let f = start(kind);
    let state = &f.state;
    state
        .transaction(&json!({ "operations": [
            upsert("u1", json!(1)),
            { "operation": "get", "request": { "key": "u1" } },
        ] }))
        .expect_error(400, "ERR_NOT_SUPPORTED_STATE_OPERATION");
    state.assert_missing("u1");
}

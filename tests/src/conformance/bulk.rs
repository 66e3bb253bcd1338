//! Bulk get (`POST|PUT /v1.0/state/{store}/bulk`).

use serde_json::{json, Value};

use super::{start, STORE};
use crate::state::StoreKind;

fn items(response: &crate::http::Response) -> Vec<Value> {
    response.expect_status(200);
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type {content_type:?}"
    );
    response
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("bulk get answer is not an array: {}", response.text()))
        .clone()
}

/// Answers in the order asked, values under `data`, ETags as on a single get, and a missing key
/// as `{"key": ...}` alone.
pub fn bulk_get(kind: StoreKind) {
    let f = start(kind);
    let state = &f.state;
    state.put("b1", json!({ "x": 1 }));
    state.put("b2", json!("two"));
    state.put("b3", json!(3));
    let (_, etag1) = state.get_ok("b1");
    let (_, etag3) = state.get_ok("b3");

    // The JS SDK omits `parallelism`.
    let got = items(&state.bulk_get(&json!({ "keys": ["b3", "nope", "b1", "b2"] })));
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0]["key"], "b3");
    assert_eq!(got[0]["data"], json!(3));
    assert_eq!(got[0]["etag"], etag3.as_str());
    assert_eq!(
        got[1],
        json!({ "key": "nope" }),
        "a missing key has only `key`"
    );
    assert_eq!(got[2]["key"], "b1");
    assert_eq!(got[2]["data"], json!({ "x": 1 }));
    assert_eq!(got[2]["etag"], etag1.as_str());
    assert_eq!(got[3]["key"], "b2");
    assert_eq!(got[3]["data"], json!("two"));
    for item in [&got[0], &got[2], &got[3]] {
        assert!(item.get("error").is_none(), "unexpected error: {item}");
    }

    // PUT works as well, with an explicit parallelism.
    let got = items(&state.client().send_json(
        "PUT",
        &format!("/v1.0/state/{STORE}/bulk"),
        r#"{"keys":["b2","b1"],"parallelism":1}"#,
    ));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["data"], json!("two"));
    assert_eq!(got[1]["data"], json!({ "x": 1 }));
}

/// No keys → `[]`; field names match case-insensitively (Go JSON semantics).
pub fn bulk_get_edge_cases(kind: StoreKind) {
    let f = start(kind);
    let state = &f.state;
    state.put("c1", json!([1, 2]));

    assert_eq!(
        items(&state.bulk_get(&json!({ "keys": [] }))),
        Vec::<Value>::new()
    );

    let got = items(&state.bulk_get(&json!({ "Keys": ["c1"], "Parallelism": 0 })));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["key"], "c1");
    assert_eq!(got[0]["data"], json!([1, 2]));

    let got = items(&state.bulk_get(&json!({ "keys": ["c1", "c1"], "metadata": {} })));
    assert_eq!(got.len(), 2, "a repeated key is answered twice: {got:?}");
    assert_eq!(got[1]["data"], json!([1, 2]));
}

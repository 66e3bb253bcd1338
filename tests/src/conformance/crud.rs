//! Save, get and delete of single keys.

use serde_json::json;

use super::{start, STORE};
use crate::state::{escape_key, StoreKind};

/// Save by POST and by PUT, get (verbatim bytes, ETag, Content-Type), delete.
pub fn save_get_delete(kind: StoreKind) {
    let f = start(kind);
    let state = &f.state;

    state
        .save_raw(r#"[{"key":"crud","value":{"a":1,"b":"two"}}]"#)
        .expect_no_content();
    let response = state.get("crud");
    response.expect_status(200);
    assert_eq!(response.text(), r#"{"a":1,"b":"two"}"#);
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type {content_type:?}"
    );
    let first_etag = response.header("etag").expect("ETag header").to_owned();
    assert!(!first_etag.is_empty());

    state
        .client()
        .send_json(
            "PUT",
            &format!("/v1.0/state/{STORE}"),
            r#"[{"key":"crud","value":[1,2,3]}]"#,
        )
        .expect_no_content();
    let (body, second_etag) = state.get_ok("crud");
    assert_eq!(body, b"[1,2,3]");
    assert_ne!(
        first_etag, second_etag,
        "the ETag must change on every write"
    );

    state.delete("crud", None).expect_no_content();
    state.assert_missing("crud");
}

/// Every kind of JSON value is stored as its JSON encoding (a string keeps its quotes).
pub fn json_value_kinds(kind: StoreKind) {
    let f = start(kind);
    let cases = [
        ("object", r#"{"n":{"deep":[true,null]}}"#),
        ("string", r#""abc""#),
        ("empty-string", r#""""#),
        ("unicode", r#""héllo wörld""#),
        ("integer", "42"),
        ("float", "-1.5"),
        ("array", r#"[1,"x",false]"#),
        ("true", "true"),
        ("false", "false"),
    ];
    let items: Vec<String> = cases
        .iter()
        .map(|(key, value)| format!(r#"{{"key":"{key}","value":{value}}}"#))
        .collect();
    f.state
        .save_raw(&format!("[{}]", items.join(",")))
        .expect_no_content();
    for (key, value) in cases {
        f.state.assert_value(key, value);
    }
}

/// Missing keys: get → 204 without ETag, delete → 204; an empty save → 204.
pub fn missing_keys(kind: StoreKind) {
    let f = start(kind);
    let response = f.state.get("never-saved");
    response.expect_no_content();
    assert_eq!(response.header("etag"), None, "ETag on a missing key");
    f.state.delete("never-saved", None).expect_no_content();
    f.state.save(&json!([])).expect_no_content();
    f.state.assert_missing("never-saved");
}

/// Keys with spaces, `+`, `%` and non-ASCII characters round-trip through escaped paths.
/// daprd unescapes path parameters with Go's `url.QueryUnescape`, so `%20` and a bare `+` both
/// read as a space, and `%2B` is a literal `+`.
pub fn keys_with_escapes(kind: StoreKind) {
    let f = start(kind);
    let state = &f.state;
    let keys = ["a b", "a+b", "ключ", "x%y"];
    for (n, key) in keys.iter().enumerate() {
        state.put(key, json!(n));
    }
    state.assert_value("a%20b", "0");
    state.assert_value("a+b", "0");
    for (n, key) in keys.iter().enumerate() {
        state.assert_value(&escape_key(key), &n.to_string());
    }
    let bulk = state.bulk_get(&json!({ "keys": keys })).json();
    let returned: Vec<&str> = bulk
        .as_array()
        .expect("array")
        .iter()
        .map(|item| item["key"].as_str().expect("key"))
        .collect();
    assert_eq!(returned, keys);

    state.delete("a+b", None).expect_no_content();
    state.assert_missing("a%20b");
    state.assert_value("a%2Bb", "1");
}

//! Optimistic concurrency: ETags on save and delete, first-write concurrency.

use serde_json::json;

use super::start;
use crate::state::StoreKind;

/// Save with the current ETag succeeds and changes it; a stale ETag → 409 and no write; an ETag
/// for a key that does not exist → 409.
pub fn etag_save(kind: StoreKind) {
    let f = start(kind);
    if !f.applies("etag_save", &["ETAG"]) {
        return;
    }
    let state = &f.state;
    state.put("e", json!("v1"));
    let (_, etag1) = state.get_ok("e");

    state
        .save(&json!([{ "key": "e", "value": "v2", "etag": etag1 }]))
        .expect_no_content();
    let (body, etag2) = state.get_ok("e");
    assert_eq!(body, br#""v2""#);
    assert_ne!(etag1, etag2, "the ETag must change on every write");

    state
        .save(&json!([{ "key": "e", "value": "v3", "etag": etag1 }]))
        .expect_error(409, "ERR_STATE_SAVE");
    let (body, etag_now) = state.get_ok("e");
    assert_eq!(
        body, br#""v2""#,
        "a rejected write must not change the value"
    );
    assert_eq!(etag_now, etag2);

    state
        .save(&json!([{ "key": "e-new", "value": 1, "etag": etag2 }]))
        .expect_error(409, "ERR_STATE_SAVE");
    state.assert_missing("e-new");
}

/// Delete with a stale `If-Match` → 409 and the key stays; with the current one → 204.
pub fn etag_delete(kind: StoreKind) {
    let f = start(kind);
    if !f.applies("etag_delete", &["ETAG"]) {
        return;
    }
    let state = &f.state;
    state.put("d", json!(1));
    let (_, etag1) = state.get_ok("d");
    state.put("d", json!(2));
    let (_, etag2) = state.get_ok("d");

    state
        .delete("d", Some(&etag1))
        .expect_error(409, "ERR_STATE_DELETE");
    state.assert_value("d", "2");

    state.delete("d", Some(&etag2)).expect_no_content();
    state.assert_missing("d");
}

/// `options.concurrency: first-write`: without an ETag it only creates (409 if the key exists,
/// however it was written); with an ETag it behaves as an ETag check.
pub fn first_write(kind: StoreKind) {
    let f = start(kind);
    if !f.applies("first_write", &["ETAG"]) {
        return;
    }
    let state = &f.state;
    let first_write = |key: &str, value: i32, etag: Option<&str>| {
        let mut item =
            json!({ "key": key, "value": value, "options": { "concurrency": "first-write" } });
        if let Some(etag) = etag {
            item["etag"] = json!(etag);
        }
        state.save(&json!([item]))
    };

    first_write("fw", 1, None).expect_no_content();
    state.assert_value("fw", "1");
    first_write("fw", 2, None).expect_error(409, "ERR_STATE_SAVE");
    state.assert_value("fw", "1");

    state.put("fw-plain", json!(1));
    first_write("fw-plain", 2, None).expect_error(409, "ERR_STATE_SAVE");
    state.assert_value("fw-plain", "1");

    let (_, etag1) = state.get_ok("fw");
    first_write("fw", 3, Some(&etag1)).expect_no_content();
    state.assert_value("fw", "3");
    first_write("fw", 4, Some(&etag1)).expect_error(409, "ERR_STATE_SAVE");
    state.assert_value("fw", "3");

    // A later last-write save is not blocked by how the key was first written.
    state.put("fw", json!(5));
    state.assert_value("fw", "5");
}

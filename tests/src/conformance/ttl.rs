//! Time to live (`ttlInSeconds` per item and via `?metadata.ttlInSeconds=`).

use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{start, STORE};
use crate::state::StoreKind;
use crate::time::{parse_rfc3339, unix_now};

const EXPIRY_HEADER: &str = "metadata.ttlExpireTime";

/// Keys with a 1 s TTL are readable at once (with `metadata.ttlExpireTime` about a second
/// ahead) and gone within a few seconds, from get and bulk get alike; `-1` and no TTL stay.
/// Only for stores that declare TTL.
pub fn ttl(kind: StoreKind) {
    let f = start(kind);
    // A store without TTL keeps or refuses `ttlInSeconds` as it likes: Dapr documents nothing.
    if !f.applies("ttl", &["TTL"]) {
        return;
    }
    let state = &f.state;
    let saved_at = Instant::now();
    state
        .save(&json!([
            { "key": "ttl-item", "value": 1, "metadata": { "ttlInSeconds": "1" } },
            { "key": "ttl-forever", "value": 2, "metadata": { "ttlInSeconds": "-1" } },
            { "key": "no-ttl", "value": 3 },
        ]))
        .expect_no_content();
    state
        .client()
        .send_json(
            "POST",
            &format!("/v1.0/state/{STORE}?metadata.ttlInSeconds=1"),
            r#"[{"key":"ttl-query","value":4}]"#,
        )
        .expect_no_content();

    for key in ["ttl-item", "ttl-query"] {
        let response = state.get(key);
        response.expect_status(200);
        let expiry = response
            .header(EXPIRY_HEADER)
            .unwrap_or_else(|| panic!("{key}: no {EXPIRY_HEADER} header"));
        let expires = parse_rfc3339(expiry)
            .unwrap_or_else(|| panic!("{key}: {EXPIRY_HEADER} {expiry:?} is not RFC 3339"));
        let now = unix_now();
        assert!(
            (now - 1..=now + 3).contains(&expires),
            "{key}: expires at {expiry} ({expires}), now is {now}"
        );
    }
    for key in ["ttl-forever", "no-ttl"] {
        let response = state.get(key);
        response.expect_status(200);
        assert_eq!(response.header(EXPIRY_HEADER), None, "{key} has no TTL");
    }

    let deadline = saved_at + Duration::from_secs(5);
    while state.get("ttl-item").status != 204 || state.get("ttl-query").status != 204 {
        assert!(
            Instant::now() < deadline,
            "keys with a 1 s TTL still readable after 5 s"
        );
        sleep(Duration::from_millis(100));
    }
    let bulk = state
        .bulk_get(&json!({ "keys": ["ttl-item", "ttl-forever"] }))
        .json();
    assert_eq!(
        bulk[0],
        json!({ "key": "ttl-item" }),
        "expired key in bulk get"
    );
    assert_eq!(bulk[1]["data"], json!(2));
    state.assert_value("ttl-forever", "2");
    state.assert_value("no-ttl", "3");
}

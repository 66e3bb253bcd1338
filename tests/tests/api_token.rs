//! `DAPR_API_TOKEN`: every route but the health checks needs `dapr-api-token`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blockhost_tests::{Response, Sidecar, StoreKind};

const TOKEN: &str = "secret";

#[track_caller]
fn assert_rejected(response: &Response) {
    response.expect_status(401);
    assert_eq!(response.text().trim(), "invalid api token");
}

#[test]
fn token_is_required_when_configured() {
    let sidecar = Sidecar::builder("tokenapp")
        .store(StoreKind::InMemory, "statestore")
        .api_token(TOKEN)
        .start();
    let with_token = sidecar.client();
    let without = with_token.without_token();
    let wrong = with_token.with_token("not-the-secret");

    for client in [&without, &wrong] {
        assert_rejected(&client.send_json(
            "POST",
            "/v1.0/state/statestore",
            r#"[{"key":"t","value":1}]"#,
        ));
        assert_rejected(&client.get("/v1.0/state/statestore/t"));
        assert_rejected(&client.send_json(
            "POST",
            "/v1.0/state/statestore/bulk",
            r#"{"keys":["t"]}"#,
        ));
        assert_rejected(&client.request("DELETE", "/v1.0/state/statestore/t", &[], None));
        assert_rejected(&client.get("/v1.0/metadata"));
    }
    // The rejected save did not happen.
    sidecar.state("statestore").assert_missing("t");

    without.get("/v1.0/healthz").expect_no_content();
    without.get("/v1.0/healthz/outbound").expect_no_content();

    let state = sidecar.state("statestore");
    state.put("t", serde_json::json!(1));
    state.assert_value("t", "1");
    with_token.get("/v1.0/metadata").expect_status(200);
}

#[test]
fn no_token_needed_when_unset() {
    let sidecar = Sidecar::with_store("notokenapp", StoreKind::InMemory);
    let client = sidecar.client().without_token();
    client
        .send_json(
            "POST",
            "/v1.0/state/statestore",
            r#"[{"key":"t","value":1}]"#,
        )
        .expect_no_content();
    client.get("/v1.0/state/statestore/t").expect_status(200);
    client.get("/v1.0/metadata").expect_status(200);
}

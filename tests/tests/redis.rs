//! `state.redis` against a real redis-server: daprd's data layout (checked with a direct
//! client), TTLs as Redis keeps them, credentials, and the settings refused at init.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use blockhost_tests::redis::RedisServer;
use blockhost_tests::sidecar::COLD_READY_TIMEOUT;
use blockhost_tests::time::{parse_rfc3339, unix_now};
use blockhost_tests::{Component, Sidecar, StoreKind};
use serde_json::json;

const KIND: StoreKind = StoreKind::Redis;

fn component(redis: &RedisServer) -> Component {
    KIND.server_component("statestore", &redis.addr())
}

fn start(app_id: &str, component: &Component) -> Sidecar {
    Sidecar::builder(app_id)
        .plugin(KIND.plugin_file())
        .component(component)
        .start()
}

fn hash(con: &mut redis::Connection, key: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL").arg(key).query(con).unwrap()
}

fn pttl(con: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(con).unwrap()
}

#[test]
fn data_is_stored_in_daprds_layout() {
    let redis = RedisServer::start();
    let sidecar = start("layoutapp", &component(&redis));
    let state = sidecar.state("statestore");
    let mut con = redis.connection();

    state.put("k", json!({ "a": 1 }));
    let stored = hash(&mut con, "layoutapp||k");
    assert_eq!(stored["data"], r#"{"a":1}"#, "{stored:?}");
    assert_eq!(stored["version"], "1", "{stored:?}");
    assert_eq!(state.get_ok("k").1, "1", "the ETag is the version");

    state.put("k", json!("two"));
    let stored = hash(&mut con, "layoutapp||k");
    assert_eq!(
        (stored["data"].as_str(), stored["version"].as_str()),
        (r#""two""#, "2")
    );
    assert!(!stored.contains_key("first-write"), "{stored:?}");

    state
        .save(&json!([{ "key": "fw", "value": 1, "options": { "concurrency": "first-write" } }]))
        .expect_no_content();
    assert_eq!(
        hash(&mut con, "layoutapp||fw")["first-write"],
        "0",
        "as daprd marks it"
    );

    state
        .transaction(&json!({ "operations": [
            { "operation": "upsert", "request": { "key": "t", "value": [1] } },
            { "operation": "delete", "request": { "key": "k" } },
        ] }))
        .expect_no_content();
    assert_eq!(hash(&mut con, "layoutapp||t")["data"], "[1]");
    let exists: i64 = redis::cmd("EXISTS")
        .arg("layoutapp||k")
        .query(&mut con)
        .unwrap();
    assert_eq!(exists, 0, "a delete removes the hash");
}

/// Sequential requests run on the one instance the host created at start, over the connection
/// its init opened.
#[test]
fn requests_reuse_the_instance_connection() {
    let redis = RedisServer::start();
    let sidecar = start("reuseapp", &component(&redis));
    let state = sidecar.state("statestore");
    let mut con = redis.connection();
    let before = connections_received(&mut con);
    for n in 0..20 {
        state.put("k", json!(n));
        state.get_ok("k");
    }
    assert_eq!(connections_received(&mut con), before, "no new connections");
}

fn connections_received(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_connections_received in INFO stats")
}

#[test]
fn reads_and_updates_what_daprd_wrote() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    redis::cmd("HSET")
        .arg("legacyapp||order")
        .arg(&["data", r#"{"item":"tea"}"#, "version", "7"])
        .exec(&mut con)
        .unwrap();
    let sidecar = start("legacyapp", &component(&redis));
    let state = sidecar.state("statestore");

    let (body, etag) = state.get_ok("order");
    assert_eq!(
        (body.as_slice(), etag.as_str()),
        (br#"{"item":"tea"}"#.as_slice(), "7")
    );
    let bulk = state.bulk_get(&json!({ "keys": ["order"] })).json();
    assert_eq!(bulk[0]["etag"], "7", "{bulk}");

    state
        .save(&json!([{ "key": "order", "value": 2, "etag": "6" }]))
        .expect_error(409, "ERR_STATE_SAVE");
    state
        .save(&json!([{ "key": "order", "value": 2, "etag": "7" }]))
        .expect_no_content();
    let stored = hash(&mut con, "legacyapp||order");
    assert_eq!(
        (stored["data"].as_str(), stored["version"].as_str()),
        ("2", "8")
    );

    state
        .save(&json!([{ "key": "order", "value": 3, "etag": "seven" }]))
        .expect_error(400, "ERR_STATE_SAVE");
}

/// A key that is not a hash is an error for that key alone; a save replaces it, as daprd's does.
#[test]
fn keys_of_another_type() {
    let redis = RedisServer::start();
    let mut con = redis.connection();
    redis::cmd("SET")
        .arg("otherapp||plain")
        .arg("x")
        .exec(&mut con)
        .unwrap();
    let sidecar = start("otherapp", &component(&redis));
    let state = sidecar.state("statestore");
    state.put("fine", json!(1));

    let response = state.get("plain");
    response.expect_error(500, "ERR_STATE_GET");
    assert!(response.text().contains("WRONGTYPE"), "{}", response.text());
    let bulk = state.bulk_get(&json!({ "keys": ["plain", "fine"] })).json();
    assert!(
        bulk[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("WRONGTYPE"),
        "{bulk}"
    );
    assert_eq!(bulk[1]["data"], json!(1), "{bulk}");

    state.put("plain", json!("now a hash"));
    assert_eq!(hash(&mut con, "otherapp||plain")["version"], "1");
}

#[test]
fn ttls_are_redis_expiries() {
    let redis = RedisServer::start();
    let stores = [
        component(&redis),
        KIND.server_component("shortlived", &redis.addr())
            .meta("ttlInSeconds", "50"),
    ];
    let sidecar = Sidecar::builder("ttlapp")
        .plugin(KIND.plugin_file())
        .component(&stores[0])
        .component(&stores[1])
        .start();
    let state = sidecar.state("statestore");
    let mut con = redis.connection();

    state
        .save(&json!([{ "key": "t", "value": 1, "metadata": { "ttlInSeconds": "100" } }]))
        .expect_no_content();
    let left = pttl(&mut con, "ttlapp||t");
    assert!((95_000..=100_000).contains(&left), "PTTL {left}");
    let response = state.get("t");
    let expiry = response
        .header("metadata.ttlExpireTime")
        .expect("ttlExpireTime");
    let expires = parse_rfc3339(expiry).expect("RFC 3339");
    let now = unix_now();
    assert!(
        (now + 98..=now + 101).contains(&expires),
        "{expiry} vs now {now}"
    );

    // blockhost's stores agree: a write without a TTL leaves a key that does not expire.
    state.put("t", json!(2));
    assert_eq!(pttl(&mut con, "ttlapp||t"), -1);
    assert_eq!(state.get("t").header("metadata.ttlExpireTime"), None);

    // The component's ttlInSeconds applies unless the request names its own.
    let short = sidecar.state("shortlived");
    short.put("d", json!(1));
    let left = pttl(&mut con, "ttlapp||d");
    assert!((45_000..=50_000).contains(&left), "PTTL {left}");
    short
        .save(&json!([{ "key": "d", "value": 1, "metadata": { "ttlInSeconds": "-1" } }]))
        .expect_no_content();
    assert_eq!(pttl(&mut con, "ttlapp||d"), -1);
}

#[test]
fn authenticates_and_keeps_the_password_out_of_the_logs() {
    const PASSWORD: &str = "pa55-w0rd-never-logged";
    let redis = RedisServer::builder().password(PASSWORD).start();
    let sidecar = start(
        "authapp",
        &component(&redis)
            .meta("redisPassword", PASSWORD)
            .meta("redisDB", "3"),
    );
    let state = sidecar.state("statestore");
    state.put("k", json!(1));
    state.assert_value("k", "1");
    let mut con = redis.connection();
    redis::cmd("SELECT").arg(3).exec(&mut con).unwrap();
    assert_eq!(
        hash(&mut con, "authapp||k")["data"],
        "1",
        "written to redisDB 3"
    );
    assert!(
        !sidecar.stderr().contains(PASSWORD),
        "the password reached the log"
    );
}

/// Init fails, and the sidecar with it, with a message saying what to change.
fn assert_init_fails(app_id: &str, component: &Component, needles: &[&str]) {
    let mut sidecar = Sidecar::builder(app_id)
        .plugin(KIND.plugin_file())
        .component(component)
        .spawn();
    let status = sidecar.wait_exit(COLD_READY_TIMEOUT);
    let logs = sidecar.stderr();
    assert!(!status.success(), "exited with {status}; stderr:\n{logs}");
    for needle in needles {
        assert!(
            logs.contains(needle),
            "stderr should mention {needle:?}:\n{logs}"
        );
    }
}

#[test]
fn tls_is_refused_at_init() {
    let redis = RedisServer::start();
    let tls = component(&redis).meta("enableTLS", "true");
    assert_init_fails(
        "tlsapp",
        &tls,
        &["statestore", "enableTLS", "does not support TLS"],
    );
}

#[test]
fn init_fails_when_redis_cannot_be_reached() {
    let mut redis = RedisServer::start();
    let addr = redis.addr();
    redis.stop();
    assert_init_fails(
        "downapp",
        &component(&redis),
        &[&addr, "cannot connect to Redis"],
    );
}

#[test]
fn init_fails_on_a_wrong_password() {
    let redis = RedisServer::builder().password("right").start();
    let wrong = component(&redis).meta("redisPassword", "wrong");
    assert_init_fails(
        "wrongpwapp",
        &wrong,
        &["refused the connection setup", "WRONGPASS"],
    );
}

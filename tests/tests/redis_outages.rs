//! `state.redis` when Redis goes away: restarts are invisible to requests, an outage fails fast
//! without disturbing other components, and concurrent writers through the instance pool keep
//! optimistic concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use blockhost_tests::redis::RedisServer;
use blockhost_tests::{Sidecar, StateApi, StoreKind};
use serde_json::json;

const KIND: StoreKind = StoreKind::Redis;

/// Well under the host's 10 s call deadline: a refused connect is immediate and retries back off
/// for tens of milliseconds.
const FAIL_FAST: Duration = Duration::from_secs(3);

fn start(app_id: &str, redis: &RedisServer) -> Sidecar {
    Sidecar::builder(app_id)
        .plugin(KIND.plugin_file())
        .component(&KIND.server_component("statestore", &redis.addr()))
        .store(StoreKind::InMemory, "memory")
        .start()
}

/// The instance's connection went stale with the restart; the plugin notices before sending,
/// so not even a conditional write fails.
#[test]
fn a_redis_restart_costs_no_request() {
    let mut redis = RedisServer::builder().aof_always().start();
    let sidecar = start("restartapp", &redis);
    let state = sidecar.state("statestore");
    state.put("k", json!("before"));
    let (_, etag) = state.get_ok("k");

    redis.restart();
    state.assert_value("k", r#""before""#);

    redis.restart();
    state
        .save(&json!([{ "key": "k", "value": "after", "etag": etag }]))
        .expect_no_content();
    state.assert_value("k", r#""after""#);

    redis.restart();
    state
        .transaction(&json!({ "operations": [
            { "operation": "upsert", "request": { "key": "t", "value": 1 } },
        ] }))
        .expect_no_content();
    redis.restart();
    state.delete("t", Some("1")).expect_no_content();
    state.assert_missing("t");
}

#[test]
fn redis_down_fails_fast_and_other_components_keep_serving() {
    let mut redis = RedisServer::start();
    let sidecar = start("outageapp", &redis);
    let state = sidecar.state("statestore");
    let memory = sidecar.state("memory");
    state.put("k", json!(1));
    redis.stop();

    let timed = |what: &str, call: &dyn Fn() -> blockhost_tests::Response| {
        let started = Instant::now();
        let response = call();
        let took = started.elapsed();
        assert!(took < FAIL_FAST, "{what} took {took:?}");
        response
    };
    let get = timed("get", &|| state.get("k"));
    get.expect_error(500, "ERR_STATE_GET");
    assert_names_the_outage(&get.text(), &redis);
    let save = timed("save", &|| state.save(&json!([{ "key": "k", "value": 2 }])));
    save.expect_error(500, "ERR_STATE_SAVE");
    assert_names_the_outage(&save.text(), &redis);
    timed("bulk get", &|| state.bulk_get(&json!({ "keys": ["k"] })))
        .expect_error(500, "ERR_STATE_BULK_GET");

    memory.put("m", json!("still here"));
    memory.assert_value("m", r#""still here""#);
    sidecar.client().get("/v1.0/healthz").expect_no_content();

    // Back again (empty: this server keeps nothing across restarts).
    redis.resume();
    state.assert_missing("k");
    state.put("k", json!(3));
    state.assert_value("k", "3");
}

fn assert_names_the_outage(message: &str, redis: &RedisServer) {
    assert!(
        message.contains(&format!("cannot connect to Redis at {}", redis.addr()))
            && message.contains("Connection refused"),
        "the error should name the address and the problem: {message}"
    );
}

/// A Redis that stops answering fails the request after `readTimeout`; the connection, out of
/// step now, is replaced once Redis answers again.
#[test]
fn a_silent_redis_times_out_and_the_store_recovers() {
    let redis = RedisServer::start();
    let component = KIND
        .server_component("statestore", &redis.addr())
        .meta("readTimeout", "300ms");
    let sidecar = Sidecar::builder("pauseapp")
        .plugin(KIND.plugin_file())
        .component(&component)
        .start();
    let state = sidecar.state("statestore");
    state.put("k", json!(1));

    let paused_at = Instant::now();
    redis::cmd("CLIENT")
        .arg(&["PAUSE", "1500", "ALL"])
        .exec(&mut redis.connection())
        .unwrap();
    let response = state.get("k");
    let took = paused_at.elapsed();
    response.expect_error(500, "ERR_STATE_GET");
    assert!(
        response
            .text()
            .contains("did not answer within 300ms (readTimeout)"),
        "{}",
        response.text()
    );
    assert!(
        took < Duration::from_millis(1400),
        "answered after {took:?}, not at the timeout"
    );

    let deadline = paused_at + Duration::from_secs(5);
    while state.get("k").status != 200 {
        assert!(
            Instant::now() < deadline,
            "the store did not recover after the pause"
        );
        thread::sleep(Duration::from_millis(50));
    }
    state.assert_value("k", "1");
}

/// Something that accepts connections but never answers fails init after `readTimeout`.
#[test]
fn init_times_out_on_a_server_that_never_answers() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let component = KIND
        .server_component("statestore", &addr)
        .meta("readTimeout", "200");
    let started = Instant::now();
    let mut sidecar = Sidecar::builder("silentapp")
        .plugin(KIND.plugin_file())
        .component(&component)
        .spawn();
    let status = sidecar.wait_exit(Duration::from_secs(30));
    let logs = sidecar.stderr();
    assert!(!status.success(), "exited with {status}; stderr:\n{logs}");
    let wanted = format!("Redis at {addr} did not answer within 200ms (readTimeout)");
    assert!(
        logs.contains(&wanted),
        "stderr should say {wanted:?}:\n{logs}"
    );
    eprintln!("sidecar gave up after {:?}", started.elapsed());
}

/// Read-modify-write with ETags from several threads at once: the host spreads them over
/// instances with connections of their own, and no increment is lost.
#[test]
fn concurrent_etag_writers_lose_no_update() {
    const WRITERS: usize = 4;
    const INCREMENTS: u64 = 15;
    let redis = RedisServer::start();
    let sidecar = start("counterapp", &redis);
    let state = sidecar.state("statestore");
    state.put("counter", json!(0));

    let conflicts: usize = thread::scope(|scope| {
        let workers: Vec<_> = (0..WRITERS)
            .map(|_| scope.spawn(|| increment(&state, INCREMENTS)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let expected = WRITERS as u64 * INCREMENTS;
    state.assert_value("counter", &expected.to_string());
    let (_, etag) = state.get_ok("counter");
    assert_eq!(
        etag,
        (expected + 1).to_string(),
        "one version per successful write"
    );
    eprintln!("{conflicts} ETag conflicts retried");
}

/// Adds one `times` times, retrying on 409; returns how many conflicts it saw.
fn increment(state: &StateApi, times: u64) -> usize {
    let mut conflicts = 0;
    for _ in 0..times {
        loop {
            let (body, etag) = state.get_ok("counter");
            let n: u64 = String::from_utf8(body).unwrap().parse().unwrap();
            let response = state.save(&json!([{ "key": "counter", "value": n + 1, "etag": etag }]));
            match response.status {
                204 => break,
                409 => conflicts += 1,
                _ => panic!("unexpected answer: {} {}", response.status, response.text()),
            }
        }
    }
    conflicts
}

//! The sandbox and fault isolation, driven through the state API with the `state.misbehaving`
//! fixture (tests/fixtures/plugins/misbehaving): a GET's key names the misbehaviour.
//!
//! Each test runs one sidecar with a healthy `state.in-memory` store next to a misbehaving
//! component, a 1 s call deadline and a 32 MiB memory cap. For every misbehaviour: the bad
//! call answers 500 with a Dapr error naming the component; while it is still inside the
//! plugin, the healthy store saves and reads quickly; the sidecar stays up; and the
//! misbehaving component serves again afterwards (on a fresh instance when the call cost it
//! its instance). Connect targets are real listeners, so a refusal is the sandbox's doing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use blockhost_tests::state::escape_key;
use blockhost_tests::{Component, Response, Sidecar, SidecarBuilder, StoreKind};
use serde_json::json;

/// The misbehaving component.
const ROGUE: &str = "rogue";
/// The healthy in-memory store next to it.
const HEALTHY: &str = "statestore";
/// `--plugin-call-timeout` of every sidecar here.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// `--plugin-memory-limit-mb` of every sidecar here.
const MEMORY_CAP_MIB: u32 = 32;
/// How long a healthy save + get may take while a bad call runs.
const HEALTHY_BUDGET: Duration = Duration::from_millis(500);
/// How long a bad call computes before misbehaving (`metadata.spinMs`), so that it is still
/// in progress while the healthy store is exercised. Below [`CALL_TIMEOUT`].
const SPIN_MS: &str = "700";
/// The message of a call that cost its instance (`CallError::Trap`).
const REPLACED: &str = "plugin instance failed and was replaced";
/// What the host logs when it refuses a socket use.
const SOCKET_REFUSED: &str = "sandbox refused a socket use";

fn builder(app_id: &str) -> SidecarBuilder {
    Sidecar::builder(app_id)
        .store(StoreKind::InMemory, HEALTHY)
        .fixture_plugin("misbehaving.wasm")
        .args(&[
            "--plugin-call-timeout",
            "1s",
            "--plugin-memory-limit-mb",
            &MEMORY_CAP_MIB.to_string(),
        ])
}

fn rogue() -> Component {
    Component::new(ROGUE, "state.misbehaving")
}

/// `GET /v1.0/state/<component>/<action>?metadata.<name>=<value>...`
fn misbehave(
    sidecar: &Sidecar,
    component: &str,
    action: &str,
    metadata: &[(&str, &str)],
) -> Response {
    let query: Vec<String> = metadata
        .iter()
        .map(|(name, value)| format!("metadata.{name}={}", escape_key(value)))
        .collect();
    sidecar
        .state(component)
        .get(&format!("{action}?{}", query.join("&")))
}

/// [`misbehave`] on the rogue component.
fn rogue_get(sidecar: &Sidecar, action: &str, metadata: &[(&str, &str)]) -> Response {
    misbehave(sidecar, ROGUE, action, metadata)
}

/// GETs `action` and asserts a 200 with `expected` as the body.
#[track_caller]
fn assert_rogue_answers(
    sidecar: &Sidecar,
    action: &str,
    metadata: &[(&str, &str)],
    expected: &str,
) {
    let response = rogue_get(sidecar, action, metadata);
    response.expect_status(200);
    assert_eq!(response.text(), expected, "GET {action} on {ROGUE}");
}

/// How many GETs the rogue component's (single) instance has served, this one included.
fn rogue_calls(sidecar: &Sidecar) -> u64 {
    let response = rogue_get(sidecar, "calls", &[]);
    response.expect_status(200);
    response.text().parse().expect("calls answers a number")
}

/// Asserts a 500 `ERR_STATE_GET` whose message names the rogue component and contains every
/// one of `needles`; returns the message.
#[track_caller]
fn assert_rogue_failed(response: &Response, needles: &[&str]) -> String {
    response.expect_error(500, "ERR_STATE_GET");
    let message = response.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(&format!("state store {ROGUE}")),
        "the error should name the component: {message}"
    );
    assert!(
        !message.contains('\n') && !message.contains("wasm backtrace"),
        "the message should be one line, without the wasm backtrace: {message}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "expected {needle:?} in: {message}"
        );
    }
    message
}

/// Saves and reads back `key` on the healthy store; returns how long both took.
#[track_caller]
fn healthy_roundtrip(sidecar: &Sidecar, key: &str) -> Duration {
    let state = sidecar.state(HEALTHY);
    let started = Instant::now();
    state.put(key, json!({ "key": key }));
    state.assert_value(key, &json!({ "key": key }).to_string());
    started.elapsed()
}

/// Waits until the sidecar's log holds `needle` at least `count` times.
#[track_caller]
fn wait_for_log(sidecar: &Sidecar, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sidecar.stderr().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "{needle:?} did not appear {count} time(s) in the log:\n{}",
            sidecar.stderr()
        );
        sleep(Duration::from_millis(5));
    }
}

/// Runs the rogue GET `action` on a thread and, once the call is inside the plugin (the
/// fixture logs that it begins), saves and reads on the healthy store until the bad call
/// ends: every round trip must finish within [`HEALTHY_BUDGET`], and at least one must finish
/// while the bad call is still in progress. Returns the bad call's answer and duration.
fn while_rogue_call_runs(
    sidecar: &Sidecar,
    action: &str,
    metadata: &[(&str, &str)],
) -> (Response, Duration) {
    let began = format!("misbehaving fixture: {action} begins");
    let before = sidecar.stderr().matches(&began).count();
    let (response, took) = thread::scope(|scope| {
        let bad = scope.spawn(|| {
            let started = Instant::now();
            let response = rogue_get(sidecar, action, metadata);
            (response, started.elapsed())
        });
        wait_for_log(sidecar, &began, before + 1);
        let mut overlapped = 0;
        for round in 0.. {
            let took = healthy_roundtrip(sidecar, &format!("during-{action}-{round}"));
            assert!(
                took < HEALTHY_BUDGET,
                "a healthy save + get took {took:?} while {ROGUE} ran {action:?}"
            );
            if bad.is_finished() {
                break;
            }
            overlapped += 1;
        }
        assert!(
            overlapped > 0,
            "the bad call ended before any healthy round trip did: nothing was concurrent"
        );
        bad.join().expect("the bad call's thread")
    });
    (response, took)
}

/// The sidecar still runs, answers health checks and serves the healthy store.
#[track_caller]
fn assert_sidecar_up(sidecar: &mut Sidecar) {
    assert!(
        sidecar.try_status().is_none(),
        "the sidecar exited; stderr:\n{}",
        sidecar.stderr()
    );
    sidecar.client().get("/v1.0/healthz").expect_no_content();
    let took = healthy_roundtrip(sidecar, "after");
    assert!(took < HEALTHY_BUDGET, "a healthy save + get took {took:?}");
}

/// The rogue component serves again on a fresh instance: its call count restarted.
#[track_caller]
fn assert_rogue_replaced(sidecar: &Sidecar) {
    assert_eq!(
        rogue_calls(sidecar),
        1,
        "the failed instance should have been replaced by a fresh one"
    );
    assert_rogue_answers(sidecar, "ok", &[], "ok");
    let logs = sidecar.stderr();
    assert!(
        logs.lines()
            .any(|l| l.contains("instance discarded") && l.contains(ROGUE)),
        "the discarded instance should be logged with the component's name:\n{logs}"
    );
}

/// Warms the rogue instance up to two calls, so a later count of 1 means a new instance.
#[track_caller]
fn count_two_calls(sidecar: &Sidecar) {
    assert_eq!(rogue_calls(sidecar), 1);
    assert_eq!(rogue_calls(sidecar), 2);
}

#[test]
fn a_trap_fails_only_its_call_and_the_instance_is_replaced() {
    let mut sidecar = builder("trapapp").component(&rogue()).start();
    count_two_calls(&sidecar);

    let (response, _) = while_rogue_call_runs(&sidecar, "trap", &[("spinMs", SPIN_MS)]);
    assert_rogue_failed(&response, &[REPLACED, "trapped"]);

    assert_sidecar_up(&mut sidecar);
    assert_rogue_replaced(&sidecar);
}

#[test]
fn an_endless_loop_is_interrupted_at_the_deadline_while_others_keep_serving() {
    let mut sidecar = builder("loopapp").component(&rogue()).start();
    count_two_calls(&sidecar);

    let (response, took) = while_rogue_call_runs(&sidecar, "loop", &[]);
    assert_rogue_failed(&response, &[REPLACED, "deadline"]);
    assert!(
        took >= CALL_TIMEOUT && took < CALL_TIMEOUT * 3,
        "the loop should be stopped by the 1 s deadline, not sooner and not much later: {took:?}"
    );

    assert_sidecar_up(&mut sidecar);
    assert_rogue_replaced(&sidecar);
}

/// A guest blocked in the host (waiting on a socket that never answers) is not running Wasm,
/// so the epoch cannot stop it: the wall-clock timer must.
#[test]
fn a_call_blocked_on_a_silent_peer_is_stopped_by_the_wall_clock() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let mut sidecar = builder("hangapp")
        .component(&rogue().meta("allowedHost", &silent_addr))
        .start();
    count_two_calls(&sidecar);

    let (response, took) = while_rogue_call_runs(&sidecar, "hang", &[("target", &silent_addr)]);
    assert_rogue_failed(&response, &[REPLACED, "deadline"]);
    assert!(
        took >= CALL_TIMEOUT && took < CALL_TIMEOUT * 4,
        "the blocked call should end shortly after the 1 s deadline: {took:?}"
    );
    // The plugin did connect: the peer was reachable, only silent.
    silent.set_nonblocking(true).unwrap();
    silent.accept().expect("the plugin's connection is queued");

    assert_sidecar_up(&mut sidecar);
    assert_rogue_replaced(&sidecar);
}

#[test]
fn allocating_past_the_memory_cap_fails_only_that_call() {
    let mut sidecar = builder("oomapp").component(&rogue()).start();
    let half = (MEMORY_CAP_MIB / 2).to_string();
    let twice = (MEMORY_CAP_MIB * 2).to_string();
    // Below the cap, allocating works (so the failure below is the cap, not allocation).
    assert_rogue_answers(
        &sidecar,
        "alloc",
        &[("mib", &half)],
        &format!("allocated {half} MiB"),
    );
    assert_eq!(rogue_calls(&sidecar), 2);

    let (response, _) =
        while_rogue_call_runs(&sidecar, "alloc", &[("mib", &twice), ("spinMs", SPIN_MS)]);
    let cap = format!("above its cap of {MEMORY_CAP_MIB} MiB");
    let message = assert_rogue_failed(&response, &[REPLACED, cap.as_str()]);
    assert!(
        !message.contains("allocated"),
        "the allocation cannot have succeeded: {message}"
    );

    assert_sidecar_up(&mut sidecar);
    assert_rogue_replaced(&sidecar);
    assert_rogue_answers(
        &sidecar,
        "alloc",
        &[("mib", &half)],
        &format!("allocated {half} MiB"),
    );
}

/// A listener that answers each connection with `greeting` and closes it.
fn greeting_listener(greeting: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(greeting.as_bytes());
        }
    });
    addr
}

#[test]
fn connecting_outside_the_named_endpoint_is_refused_and_logged() {
    const GREETING: &str = "hello from the allowed listener";
    let allowed = greeting_listener(GREETING);
    // A live listener on the same host that the YAML does not name: if the sandbox let the
    // plugin through, this connection would succeed.
    let unnamed = TcpListener::bind("127.0.0.1:0").unwrap();
    unnamed.set_nonblocking(true).unwrap();
    let unnamed_addr = unnamed.local_addr().unwrap().to_string();

    let mut sidecar = builder("connectapp")
        .component(&rogue().meta("allowedHost", &allowed.to_string()))
        .start();

    // The named address works: the plugin really talks to it.
    assert_rogue_answers(
        &sidecar,
        "connect",
        &[("target", &allowed.to_string())],
        GREETING,
    );

    let (response, _) = while_rogue_call_runs(
        &sidecar,
        "connect",
        &[("target", &unnamed_addr), ("spinMs", SPIN_MS)],
    );
    // The guest sees the refusal as a permission error (not "connection refused").
    let message = assert_rogue_failed(
        &response,
        &[&format!("connect {unnamed_addr}"), "Permission denied"],
    );
    assert!(
        !message.contains(REPLACED),
        "a refusal is an error value, not a trap: {message}"
    );
    match unnamed.accept() {
        Err(err) if err.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the unnamed listener must not have been reached: {other:?}"),
    }
    // ... though it was listening all along.
    TcpStream::connect(&unnamed_addr).unwrap();
    unnamed
        .set_nonblocking(false)
        .and_then(|()| unnamed.accept())
        .expect("the unnamed listener accepts the test's own connection");

    let logs = sidecar.stderr();
    let refusals: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(SOCKET_REFUSED))
        .collect();
    assert!(
        refusals
            .iter()
            .any(|l| l.contains(ROGUE) && l.contains(&unnamed_addr)),
        "the refusal should be logged with the component and the address:\n{logs}"
    );
    assert!(
        !refusals.iter().any(|l| l.contains(&allowed.to_string())),
        "the named address must not have been refused:\n{logs}"
    );

    assert_sidecar_up(&mut sidecar);
    // An error value does not cost the instance: the same one serves on (its 3rd GET).
    assert_eq!(rogue_calls(&sidecar), 3);
    assert_rogue_answers(
        &sidecar,
        "connect",
        &[("target", &allowed.to_string())],
        GREETING,
    );
}

/// A component whose YAML names no endpoint at all may connect nowhere, and its attempts are
/// logged like any other refusal.
#[test]
fn a_component_that_names_no_endpoint_is_refused_every_connection_and_it_is_logged() {
    const SEALED: &str = "sealed";
    let listener = greeting_listener("hello from a live listener");
    let target = listener.to_string();
    let sidecar = builder("sealedapp")
        .component(&Component::new(SEALED, "state.misbehaving"))
        .start();

    let response = misbehave(&sidecar, SEALED, "connect", &[("target", &target)]);
    response.expect_error(500, "ERR_STATE_GET");
    let message = response.json()["message"].as_str().unwrap().to_owned();
    for needle in [
        &format!("state store {SEALED}"),
        &format!("connect {target}"),
        "Permission denied",
    ] {
        assert!(
            message.contains(needle),
            "expected {needle:?} in: {message}"
        );
    }
    let logs = sidecar.stderr();
    assert!(
        logs.lines()
            .any(|l| l.contains(SOCKET_REFUSED) && l.contains(SEALED) && l.contains(&target)),
        "the refusal should be logged with the component and the address:\n{logs}"
    );
}

/// Writes `contents` to `path` (creating its directory) and returns the canonical path.
fn write_file(path: &Path, contents: &str) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
    path.canonicalize().unwrap()
}

#[test]
fn files_outside_the_named_directory_cannot_be_read() {
    const SECRET: &str = "the secret outside the grant";
    let builder = builder("readapp");
    let granted = builder.dir().join("granted");
    let inside = write_file(&granted.join("inside.txt"), "readable inside the grant");
    let granted = granted.canonicalize().unwrap();
    let secret = write_file(&builder.dir().join("outside/secret.txt"), SECRET);
    std::os::unix::fs::symlink(&secret, granted.join("link-to-secret")).unwrap();
    let mut sidecar = builder
        .component(&rogue().meta("dir", granted.to_str().unwrap()))
        .start();

    // Inside the grant, reading works.
    assert_rogue_answers(
        &sidecar,
        "read",
        &[("target", inside.to_str().unwrap())],
        "readable inside the grant",
    );

    let (response, _) = while_rogue_call_runs(
        &sidecar,
        "read",
        &[("target", secret.to_str().unwrap()), ("spinMs", SPIN_MS)],
    );
    let message = assert_rogue_failed(&response, &[&format!("read {}", secret.display())]);
    assert!(!message.contains(SECRET), "{message}");

    // Nor through `..` from the granted directory, nor through a symlink inside it.
    let dotdot = format!("{}/../outside/secret.txt", granted.display());
    let link = format!("{}/link-to-secret", granted.display());
    for target in [&dotdot, &link] {
        let response = rogue_get(&sidecar, "read", &[("target", target)]);
        let message = assert_rogue_failed(&response, &[&format!("read {target}")]);
        assert!(!message.contains(SECRET), "{message}");
    }

    // The grant is read-only: the plugin can neither overwrite a file in it nor create one.
    let created = granted.join("created.txt");
    for target in [&inside, &created] {
        let target = target.to_str().unwrap();
        let response = rogue_get(&sidecar, "write", &[("target", target)]);
        assert_rogue_failed(&response, &[&format!("write {target}")]);
    }
    assert_eq!(
        fs::read_to_string(&inside).unwrap(),
        "readable inside the grant"
    );
    assert!(!created.exists(), "the read-only grant was written to");

    assert_sidecar_up(&mut sidecar);
    // Refusals are error values: the same instance serves on (1 + 1 + 2 reads, 2 writes, this).
    assert_eq!(rogue_calls(&sidecar), 7);
}

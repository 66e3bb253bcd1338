//! Component metadata as the host resolves it before a plugin sees it (`{appID}` and
//! `{namespace}` templates, `envRef`), and the host's own per-component settings
//! (`blockhost.callTimeout`, `blockhost.maxInstances`, `blockhost.memoryLimitMb`, unknown
//! `blockhost.*` keys), observed through real plugins: the files a `state.redb` store creates,
//! keys and connections in a real redis-server, and the `state.misbehaving` fixture's calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use blockhost_tests::redis::RedisServer;
use blockhost_tests::sidecar::COLD_READY_TIMEOUT;
use blockhost_tests::{Component, Response, Sidecar, SidecarBuilder, StoreKind};
use serde_json::json;

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn hash(con: &mut redis::Connection, key: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL").arg(key).query(con).unwrap()
}

fn keys(con: &mut redis::Connection) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    keys.sort();
    keys
}

/// Spawns a sidecar that must fail to start; returns the one error line it logged, without
/// its timestamp (`ERROR blockhost: blockhost stopped: ...`), and the whole log.
#[track_caller]
fn startup_error(builder: SidecarBuilder) -> (String, String) {
    let mut sidecar = builder.spawn();
    let status = sidecar.wait_exit(COLD_READY_TIMEOUT);
    let logs = sidecar.stderr();
    assert!(!status.success(), "exited with {status}; stderr:\n{logs}");
    let errors: Vec<&str> = logs
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected; stderr:\n{logs}");
    let line = errors[0]
        .split_once(' ')
        .map(|(_timestamp, rest)| rest.to_owned())
        .unwrap();
    (line, logs)
}

/// The component file a builder writes for `name`, as the host names it in errors (the
/// document starts on line 1).
fn source_of(builder: &SidecarBuilder, name: &str) -> String {
    format!(
        "{}:1",
        builder
            .dir()
            .join("resources-0")
            .join(format!("{name}.yaml"))
            .display()
    )
}

// --- Templates -----------------------------------------------------------------------------

/// `{appID}` and `{namespace}` in a plugin's metadata are filled before the plugin sees them:
/// with `--namespace prod`, `{namespace}` is `prod.<app id>`. The `state.redb` store creates its
/// file where the filled-in path points, and nothing under a literal template name.
#[test]
fn templates_in_metadata_are_filled_with_the_app_id_and_namespace() {
    let builder = Sidecar::builder("tmplapp")
        .args(&["--namespace", "prod"])
        .plugin(StoreKind::Redb.plugin_file());
    let data = builder.dir().join("data");
    let path = format!("{}/{{appID}}/{{namespace}}", data.display());
    let sidecar = builder
        .component(&Component::new("statestore", "state.redb").meta("path", &path))
        .start();
    let state = sidecar.state("statestore");
    state.put("k", json!("templated"));
    state.assert_value("k", r#""templated""#);

    assert_eq!(entries(&data), ["tmplapp"], "under {}", data.display());
    assert_eq!(entries(&data.join("tmplapp")), ["prod.tmplapp"]);
    let file = data.join("tmplapp/prod.tmplapp/state.redb");
    assert!(
        file.is_file() && file.metadata().unwrap().len() > 0,
        "{} should hold the database",
        file.display()
    );
}

/// Without `--namespace`, `{namespace}` is just the app id. Observed through a `state.redis`
/// literal `keyPrefix`, in the keys a direct client finds.
#[test]
fn without_a_namespace_the_namespace_template_is_the_app_id() {
    let redis = RedisServer::start();
    let component = StoreKind::Redis
        .server_component("statestore", &redis.addr())
        .meta("keyPrefix", "{namespace}-{appID}-p");
    let sidecar = Sidecar::builder("plainapp")
        .plugin(StoreKind::Redis.plugin_file())
        .component(&component)
        .start();
    sidecar.state("statestore").put("k", json!(1));

    let mut con = redis.connection();
    assert_eq!(keys(&mut con), ["plainapp-plainapp-p||k"]);
    assert_eq!(hash(&mut con, "plainapp-plainapp-p||k")["data"], "1");
}

// --- envRef --------------------------------------------------------------------------------

/// `envRef` values come from the sidecar's environment: the `state.redis` plugin connects to
/// the address in one variable (so the value reached the plugin, and the sandbox granted it)
/// and its keys carry the prefix from another.
#[test]
fn env_ref_values_reach_the_plugin() {
    let redis = RedisServer::start();
    let component = Component::new("statestore", StoreKind::Redis.component_type())
        .env_ref("redisHost", "BLOCKHOST_TEST_REDIS_HOST")
        .env_ref("keyPrefix", "BLOCKHOST_TEST_KEY_PREFIX");
    let sidecar = Sidecar::builder("envrefapp")
        .plugin(StoreKind::Redis.plugin_file())
        .component(&component)
        .env("BLOCKHOST_TEST_REDIS_HOST", &redis.addr())
        .env("BLOCKHOST_TEST_KEY_PREFIX", "from-env")
        .start();
    let state = sidecar.state("statestore");
    state.put("k", json!({ "via": "envRef" }));
    state.assert_value("k", r#"{"via":"envRef"}"#);

    let mut con = redis.connection();
    assert_eq!(keys(&mut con), ["from-env||k"]);
    assert_eq!(hash(&mut con, "from-env||k")["data"], r#"{"via":"envRef"}"#);
}

/// An `envRef` to the sidecar's own secrets (`DAPR_API_TOKEN`, any `DAPR_*`, `APP_API_TOKEN`)
/// stops start-up with one error line naming the component, the metadata key and the
/// variable; the variable's value does not reach the log.
#[test]
fn env_ref_to_the_sidecars_own_variables_fails_start_up() {
    const VALUE: &str = "value-that-must-stay-secret";
    let cases = ["DAPR_API_TOKEN", "DAPR_SOMETHING_ELSE", "APP_API_TOKEN"];
    let outcomes: Vec<(String, String, String)> = thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .map(|var| {
                scope.spawn(move || {
                    let builder = Sidecar::builder("reservedapp")
                        .plugin(StoreKind::InMemory.plugin_file())
                        .component(
                            &Component::new("guarded", "state.in-memory").env_ref("password", var),
                        )
                        .env(var, VALUE);
                    let source = source_of(&builder, "guarded");
                    let (line, logs) = startup_error(builder);
                    (source, line, logs)
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for (var, (source, line, logs)) in cases.iter().zip(outcomes) {
        assert_eq!(
            line,
            format!(
                "ERROR blockhost: blockhost stopped: component 'guarded' ({source}): \
                 metadata 'password': envRef may not read {var}"
            ),
            "stderr:\n{logs}"
        );
        assert!(
            !logs.contains(VALUE),
            "{var}'s value reached the log:\n{logs}"
        );
    }
}

// --- blockhost.* host settings -------------------------------------------------------------

/// The misbehaving fixture (tests/fixtures/plugins/misbehaving) under several names.
fn misbehaving(args: &[&str]) -> SidecarBuilder {
    Sidecar::builder("settingsapp")
        .fixture_plugin("misbehaving.wasm")
        .args(args)
}

/// `GET /v1.0/state/<component>/<action>?metadata.<name>=<value>...` and how long it took.
fn misbehave(
    sidecar: &Sidecar,
    component: &str,
    action: &str,
    args: &[(&str, &str)],
) -> (Response, Duration) {
    let query: Vec<String> = args
        .iter()
        .map(|(name, value)| format!("metadata.{name}={value}"))
        .collect();
    let started = Instant::now();
    let response = sidecar
        .state(component)
        .get(&format!("{action}?{}", query.join("&")));
    (response, started.elapsed())
}

/// The error message of a 500 `ERR_STATE_GET`.
#[track_caller]
fn get_failure(response: &Response) -> String {
    response.expect_error(500, "ERR_STATE_GET");
    response.json()["message"].as_str().unwrap().to_owned()
}

/// `blockhost.callTimeout` bounds that component's calls, not the sidecar's: an endless loop
/// in the component with 300ms fails after about 300ms (the sidecar-wide deadline is 5s), while
/// a component without the setting computes for a second and answers.
#[test]
fn call_timeout_applies_to_its_component_only() {
    let sidecar = misbehaving(&["--plugin-call-timeout", "5s"])
        .component(
            &Component::new("quick", "state.misbehaving").meta("blockhost.callTimeout", "300ms"),
        )
        .component(&Component::new("patient", "state.misbehaving"))
        .start();

    let (response, took) = misbehave(&sidecar, "quick", "loop", &[]);
    let message = get_failure(&response);
    assert!(
        message.contains("state store quick") && message.contains("deadline"),
        "{message}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "the loop should stop at the component's 300ms deadline, not the sidecar's 5s: {took:?}"
    );

    let (response, took) = misbehave(&sidecar, "patient", "ok", &[("spinMs", "1000")]);
    response.expect_status(200);
    assert_eq!(response.text(), "ok");
    assert!(took >= Duration::from_millis(1000), "{took:?}");

    // The quick component serves again (on a fresh instance).
    let (response, _) = misbehave(&sidecar, "quick", "ok", &[]);
    response.expect_status(200);
}

/// `blockhost.memoryLimitMb` caps that component's instances below the sidecar-wide
/// `--plugin-memory-limit-mb`: 32 MiB fits the sidecar's 64 MiB (another component allocates
/// it) but not the component's 16 MiB, and only that call fails.
#[test]
fn memory_limit_caps_its_component_below_the_sidecars() {
    let sidecar = misbehaving(&["--plugin-memory-limit-mb", "64"])
        .component(
            &Component::new("small", "state.misbehaving").meta("blockhost.memoryLimitMb", "16"),
        )
        .component(&Component::new("roomy", "state.misbehaving"))
        .start();

    let (response, _) = misbehave(&sidecar, "roomy", "alloc", &[("mib", "32")]);
    response.expect_status(200);
    assert_eq!(response.text(), "allocated 32 MiB");

    let (response, _) = misbehave(&sidecar, "small", "alloc", &[("mib", "8")]);
    response.expect_status(200);
    assert_eq!(response.text(), "allocated 8 MiB");

    let (response, _) = misbehave(&sidecar, "small", "alloc", &[("mib", "32")]);
    let message = get_failure(&response);
    assert!(
        message.contains("state store small") && message.contains("above its cap of 16 MiB"),
        "{message}"
    );
    assert!(!message.contains("allocated"), "{message}");

    let (response, _) = misbehave(&sidecar, "small", "alloc", &[("mib", "8")]);
    response.expect_status(200);
}

/// The ids of the redis clients other than `con` itself.
fn other_clients(con: &mut redis::Connection) -> Vec<String> {
    let own: i64 = redis::cmd("CLIENT").arg("ID").query(con).unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(con).unwrap();
    list.lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix("id="))
                .map(str::to_owned)
        })
        .filter(|id| *id != own.to_string())
        .collect()
}

/// `blockhost.maxInstances` bounds a `state.redis` component (whose plugin leaves the count to
/// the host, 8 by default) to 2 instances: with writes held in Redis (`CLIENT PAUSE WRITE`),
/// six concurrent saves open only two connections (one per instance), and all six complete once
/// Redis resumes.
#[test]
fn max_instances_bounds_the_instances_of_its_component() {
    const SAVES: usize = 6;
    let redis = RedisServer::start();
    let component = StoreKind::Redis
        .server_component("statestore", &redis.addr())
        .meta("blockhost.maxInstances", "2");
    let sidecar = Sidecar::builder("poolapp")
        .plugin(StoreKind::Redis.plugin_file())
        .component(&component)
        .start();
    let state = sidecar.state("statestore");
    state.put("warm", json!(0));

    let mut con = redis.connection();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(10_000)
        .arg("WRITE")
        .exec(&mut con)
        .unwrap();
    let answers: Vec<u16> = thread::scope(|scope| {
        let saves: Vec<_> = (0..SAVES)
            .map(|n| {
                let state = state.clone();
                scope.spawn(move || {
                    state
                        .save(&json!([{ "key": format!("k{n}"), "value": n }]))
                        .status
                })
            })
            .collect();
        // Give every save time to reach the pool (and, if it were allowed, a new instance).
        sleep(Duration::from_millis(800));
        let clients = other_clients(&mut con);
        let unpaused = redis::cmd("CLIENT").arg("UNPAUSE").exec(&mut con);
        assert_eq!(
            clients.len(),
            2,
            "2 instances, so 2 connections, while {SAVES} saves wait: {clients:?}"
        );
        unpaused.unwrap();
        saves.into_iter().map(|s| s.join().unwrap()).collect()
    });
    assert_eq!(answers, [204; SAVES]);
    for n in 0..SAVES {
        state.assert_value(&format!("k{n}"), &n.to_string());
    }
}

/// A `blockhost.*` key the host does not know stops start-up, naming the component and the
/// settings that exist.
#[test]
fn an_unknown_host_setting_fails_start_up() {
    let builder = Sidecar::builder("unknownsettingapp")
        .plugin(StoreKind::InMemory.plugin_file())
        .component(&Component::new("tuned", "state.in-memory").meta("blockhost.x", "1"));
    let source = source_of(&builder, "tuned");
    let (line, logs) = startup_error(builder);
    assert_eq!(
        line,
        format!(
            "ERROR blockhost: blockhost stopped: component 'tuned' ({source}): unknown host \
             setting blockhost.x: use blockhost.callTimeout, blockhost.memoryLimitMb or \
             blockhost.maxInstances"
        ),
        "stderr:\n{logs}"
    );
}

/// `blockhost.memoryLimitMb` above the sidecar's `--plugin-memory-limit-mb` stops start-up,
/// saying the range and what to raise.
#[test]
fn a_memory_limit_above_the_sidecars_fails_start_up() {
    let builder = Sidecar::builder("biglimitapp")
        .plugin(StoreKind::InMemory.plugin_file())
        .args(&["--plugin-memory-limit-mb", "64"])
        .component(
            &Component::new("greedy", "state.in-memory").meta("blockhost.memoryLimitMb", "100"),
        );
    let source = source_of(&builder, "greedy");
    let (line, logs) = startup_error(builder);
    assert_eq!(
        line,
        format!(
            "ERROR blockhost: blockhost stopped: component 'greedy' ({source}): \
             blockhost.memoryLimitMb '100' must be a whole number of MiB between 1 and 64 \
             (raise --plugin-memory-limit-mb for more)"
        ),
        "stderr:\n{logs}"
    );
}

//! The on-disk compile cache: a second start with unchanged plugins does not recompile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blockhost_tests::{Sidecar, StoreKind};
use serde_json::json;

const KIND: StoreKind = StoreKind::InMemory;

/// Whether a line of `logs` contains `message` and a `plugin=` field naming `file` (quoted or
/// not, bare file name or a path ending in it).
fn logged_for_plugin(logs: &str, message: &str, file: &str) -> bool {
    logs.lines()
        .filter(|line| line.contains(message))
        .any(|line| {
            line.match_indices("plugin=").any(|(at, field)| {
                let value = line[at + field.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .trim_matches(|c| c == '"' || c == ',');
                value.ends_with(file)
            })
        })
}

#[test]
fn second_start_loads_plugins_from_cache() {
    let cache = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    let component = KIND.component("statestore", plugins.path());
    let file = KIND.plugin_file();

    let mut first = Sidecar::builder("cacheapp")
        .plugins_dir(plugins.path())
        .plugin(file)
        .cache_dir(cache.path())
        .component(&component)
        .start();
    let logs = first.stderr();
    assert!(
        logged_for_plugin(&logs, "plugin compiled", file),
        "a fresh cache should compile {file}:\n{logs}"
    );
    assert!(first.stop().success(), "first sidecar did not exit cleanly");

    // Same plugins dir (untouched), same cache dir.
    let second = Sidecar::builder("cacheapp")
        .plugins_dir(plugins.path())
        .cache_dir(cache.path())
        .component(&component)
        .start();
    let logs = second.stderr();
    assert!(
        logged_for_plugin(&logs, "plugin loaded from cache", file),
        "the second start should load {file} from the cache:\n{logs}"
    );
    assert!(
        !logs.contains("plugin compiled"),
        "nothing should be compiled again:\n{logs}"
    );

    let state = second.state("statestore");
    state.put("k", json!(1));
    state.assert_value("k", "1");
}

#[test]
fn plugin_field_matcher() {
    let file = "state-in-memory.wasm";
    assert!(logged_for_plugin(
        "DEBUG plugin compiled plugin=state-in-memory.wasm",
        "plugin compiled",
        file
    ));
    assert!(logged_for_plugin(
        r#"DEBUG blockhost::plugins: plugin compiled plugin="/x/state-in-memory.wasm" ms=3"#,
        "plugin compiled",
        file
    ));
    assert!(!logged_for_plugin(
        "DEBUG plugin compiled plugin=state-redb.wasm",
        "plugin compiled",
        file
    ));
    assert!(!logged_for_plugin(
        "DEBUG plugin loaded from cache plugin=state-in-memory.wasm",
        "plugin compiled",
        file
    ));
}

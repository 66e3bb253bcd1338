//! `cargo xtask build | run | test`: the project's two commands and what they need.
//!
//! - `build`: plugins (every cdylib under `plugins/` and `tests/fixtures/plugins/`) for
//!   wasm32-wasip2 into `target/plugins/` and `target/fixture-plugins/`, then the host.
//! - `run [ARGS]`: build, then `blockhost run ARGS` from the repository root.
//! - `test`: set up what a fresh machine lacks, build, run every test: the plugins' unit tests
//!   natively (every workspace member under `plugins/` and `tests/fixtures/plugins/`, as
//!   `cargo metadata` lists them), then the host's, the integration tests and the rest.
//! - `bench [ARGS]`: build, install redis-server if missing, then run the benchmarks
//!   (`host/bench`, not part of the tests) and write `host/bench/RESULTS.md`.
//!
//! `target/` is cargo's target directory: `CARGO_TARGET_DIR` (or `build.target-dir`) moves
//! it, and everything here follows (cargo metadata reports where it is).
//!
//! A plugin crate that cannot be built for the host's target says so in its manifest, with the
//! reason, and is then left out of the native unit tests (and named when they run):
//!
//! ```toml
//! [package.metadata.xtask]
//! no-native-tests = "why it cannot build natively"
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const WASM_TARGET: &str = "wasm32-wasip2";
const PLUGIN_PROFILE: &str = "plugin";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = workspace_root()?;
    std::env::set_current_dir(&root)?;
    let workspace = Workspace::load(&root)?;
    match command.as_str() {
        "build" => build(&workspace),
        "run" => {
            build(&workspace)?;
            let bin = workspace.target_dir.join("release/blockhost");
            let status = Command::new(&bin)
                .arg("run")
                .args(&rest)
                .status()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        "test" => {
            install_packages(&["redis-server", "rabbitmq-server"])?;
            build(&workspace)?;
            test(&workspace, &rest)
        }
        "bench" => {
            install_packages(&["redis-server"])?;
            build(&workspace)?;
            bench(&workspace, &rest)
        }
        _ => bail!(
            "usage: cargo xtask build | run [blockhost run flags] | test [cargo test args] \
             | bench [blockhost-bench run flags]"
        ),
    }
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .context("xtask lives at host/xtask inside the workspace")
}

/// What a fresh machine with only rustup, apt and git lacks.
fn prepare_machine() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t == WASM_TARGET)
    {
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

/// Installs Debian packages whose programs are missing (the tests start real servers).
/// `apt-get update` runs once, and only when something must be installed.
fn install_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !program_exists(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Debian packages here are named after the program they install.
fn program_exists(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn build(workspace: &Workspace) -> Result<()> {
    prepare_machine()?;
    let plugins = workspace.wasm_packages();
    let mut cargo = Command::new(cargo_bin());
    cargo.args([
        "build",
        "--profile",
        PLUGIN_PROFILE,
        "--target",
        WASM_TARGET,
    ]);
    for plugin in &plugins {
        cargo.args(["-p", &plugin.package]);
    }
    run(&mut cargo)?;
    let built = workspace.target_dir.join(WASM_TARGET).join(PLUGIN_PROFILE);
    for plugin in &plugins {
        let from = built.join(format!("{}.wasm", plugin.package.replace('-', "_")));
        let dir = workspace.target_dir.join(plugin.output_dir);
        std::fs::create_dir_all(&dir)?;
        copy_if_changed(&from, &dir.join(format!("{}.wasm", plugin.file_stem)))?;
    }
    run(Command::new(cargo_bin()).args(["build", "--release", "-p", "blockhost"]))
}

fn test(workspace: &Workspace, extra: &[String]) -> Result<()> {
    // Plugins' pure logic is unit-tested natively: every plugin crate in the workspace, so a
    // new one cannot be forgotten here.
    let mut unit = Command::new(cargo_bin());
    unit.args(["test", "--release"]);
    for package in workspace.plugin_packages() {
        match &package.no_native_tests {
            None => {
                unit.args(["-p", &package.name]);
            }
            Some(reason) => eprintln!(
                "xtask: {} ({}) is not unit-tested natively: {reason}",
                package.name,
                package.relative.display()
            ),
        }
    }
    run(&mut unit)?;
    run(Command::new(cargo_bin())
        .args([
            "test",
            "--release",
            "-p",
            "blockhost",
            "-p",
            "blockhost-tests",
            "-p",
            "blockhost-bench",
            "-p",
            "xtask",
        ])
        .args(extra))
}

/// Builds and runs the benchmark driver; `extra` goes to `blockhost-bench run`.
fn bench(workspace: &Workspace, extra: &[String]) -> Result<()> {
    // `cargo xtask bench -- --secs 5` and `cargo xtask bench --secs 5` mean the same.
    let extra = extra.strip_prefix(&["--".to_owned()]).unwrap_or(extra);
    run(Command::new(cargo_bin()).args(["build", "--release", "-p", "blockhost-bench"]))?;
    let mut command_line = vec!["cargo xtask bench".to_owned()];
    command_line.extend(extra.iter().cloned());
    let target = &workspace.target_dir;
    let mut bench = Command::new(target.join("release/blockhost-bench"));
    bench.arg("run");
    // The driver's defaults name `target/`; point them at the real target directory unless
    // the caller chose.
    for (flag, path) in [
        ("--bin", target.join("release/blockhost")),
        ("--plugins", target.join("plugins")),
        ("--cache-dir", target.join("bench-cache")),
    ] {
        let given = extra
            .iter()
            .any(|arg| arg == flag || arg.starts_with(&format!("{flag}=")));
        if !given {
            bench.arg(flag).arg(path);
        }
    }
    run(bench
        .args(extra)
        .env("BLOCKHOST_BENCH_COMMAND", command_line.join(" ")))
}

struct WasmPackage {
    package: String,
    /// File name in the output directory, without `.wasm`.
    file_stem: String,
    output_dir: &'static str,
}

/// A workspace member, as `cargo metadata` describes it.
struct Package {
    name: String,
    /// Its manifest's path, relative to the workspace root.
    relative: PathBuf,
    is_cdylib: bool,
    /// `[package.metadata.xtask] no-native-tests = "<reason>"`: it cannot build natively.
    no_native_tests: Option<String>,
}

impl Package {
    fn is_plugin(&self) -> bool {
        self.relative.starts_with("plugins")
    }

    fn is_fixture(&self) -> bool {
        self.relative.starts_with("tests/fixtures/plugins")
    }
}

/// The workspace's members and its target directory (which honours `CARGO_TARGET_DIR`).
struct Workspace {
    target_dir: PathBuf,
    packages: Vec<Package>,
}

impl Workspace {
    fn load(root: &Path) -> Result<Self> {
        let output = Command::new(cargo_bin())
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .output()
            .context("cannot run cargo metadata")?;
        if !output.status.success() {
            bail!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        Self::parse(root, &metadata)
    }

    fn parse(root: &Path, metadata: &serde_json::Value) -> Result<Self> {
        let target_dir = metadata["target_directory"]
            .as_str()
            .map(PathBuf::from)
            .context("cargo metadata names no target_directory")?;
        let mut packages = Vec::new();
        for package in metadata["packages"].as_array().into_iter().flatten() {
            let name = package["name"].as_str().unwrap_or_default().to_owned();
            let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
            let relative = manifest
                .strip_prefix(root)
                .unwrap_or(&manifest)
                .to_path_buf();
            let is_cdylib = package["targets"].as_array().is_some_and(|targets| {
                targets.iter().any(|t| {
                    t["crate_types"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
                })
            });
            let no_native_tests = match &package["metadata"]["xtask"]["no-native-tests"] {
                serde_json::Value::Null => None,
                serde_json::Value::String(reason) if !reason.trim().is_empty() => {
                    Some(reason.clone())
                }
                other => bail!(
                    "{}: [package.metadata.xtask] no-native-tests must be the reason, as a \
                     non-empty string (got {other})",
                    relative.display()
                ),
            };
            packages.push(Package {
                name,
                relative,
                is_cdylib,
                no_native_tests,
            });
        }
        Ok(Self {
            target_dir,
            packages,
        })
    }

    /// Every member under `plugins/` (shipped plugins and the crates they share) or
    /// `tests/fixtures/plugins/` (test-only plugins). `plugins/vendor` is not a member.
    fn plugin_packages(&self) -> impl Iterator<Item = &Package> {
        self.packages
            .iter()
            .filter(|p| p.is_plugin() || p.is_fixture())
    }

    /// Every cdylib package under `plugins/` (shipped) or `tests/fixtures/plugins/` (test-only).
    fn wasm_packages(&self) -> Vec<WasmPackage> {
        self.plugin_packages()
            .filter(|p| p.is_cdylib)
            .map(|p| {
                if p.is_fixture() {
                    WasmPackage {
                        file_stem: p.name.trim_start_matches("fixture-").to_owned(),
                        package: p.name.clone(),
                        output_dir: "fixture-plugins",
                    }
                } else {
                    WasmPackage {
                        file_stem: p.name.clone(),
                        package: p.name.clone(),
                        output_dir: "plugins",
                    }
                }
            })
            .collect()
    }
}

/// Leaves an unchanged plugin's file (and its modification time) alone.
fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    if std::fs::read(to).ok().as_deref() != Some(bytes.as_slice()) {
        std::fs::write(to, &bytes).with_context(|| format!("cannot write {}", to.display()))?;
    }
    Ok(())
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn package(
        name: &str,
        manifest: &str,
        kind: &str,
        metadata: serde_json::Value,
    ) -> serde_json::Value {
        json!({
            "name": name,
            "manifest_path": format!("/ws/{manifest}"),
            "targets": [{ "crate_types": [kind] }],
            "metadata": metadata,
        })
    }

    fn workspace(packages: Vec<serde_json::Value>) -> Result<Workspace> {
        let metadata = json!({ "target_directory": "/elsewhere/target", "packages": packages });
        Workspace::parse(Path::new("/ws"), &metadata)
    }

    #[test]
    fn plugin_crates_and_outputs_come_from_the_members() {
        let ws = workspace(vec![
            package("blockhost", "host/Cargo.toml", "lib", json!(null)),
            package(
                "state-common",
                "plugins/state-common/Cargo.toml",
                "lib",
                json!(null),
            ),
            package(
                "state-redb",
                "plugins/state-redb/Cargo.toml",
                "cdylib",
                json!(null),
            ),
            package(
                "fixture-odd",
                "tests/fixtures/plugins/odd/Cargo.toml",
                "cdylib",
                json!({ "xtask": { "no-native-tests": "wasm only" } }),
            ),
        ])
        .unwrap();
        assert_eq!(ws.target_dir, PathBuf::from("/elsewhere/target"));
        let plugins: Vec<(&str, Option<&str>)> = ws
            .plugin_packages()
            .map(|p| (p.name.as_str(), p.no_native_tests.as_deref()))
            .collect();
        assert_eq!(
            plugins,
            [
                ("state-common", None),
                ("state-redb", None),
                ("fixture-odd", Some("wasm only")),
            ]
        );
        let wasm: Vec<(String, String, &str)> = ws
            .wasm_packages()
            .into_iter()
            .map(|w| (w.package, w.file_stem, w.output_dir))
            .collect();
        assert_eq!(
            wasm,
            [
                ("state-redb".into(), "state-redb".into(), "plugins"),
                ("fixture-odd".into(), "odd".into(), "fixture-plugins"),
            ]
        );
    }

    #[test]
    fn an_opt_out_without_a_reason_is_refused() {
        for marker in [json!(true), json!(""), json!(false)] {
            let err = workspace(vec![package(
                "fixture-odd",
                "tests/fixtures/plugins/odd/Cargo.toml",
                "cdylib",
                json!({ "xtask": { "no-native-tests": marker } }),
            )])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            assert!(
                err.contains("no-native-tests must be the reason"),
                "{marker}: {err:?}"
            );
        }
    }
}

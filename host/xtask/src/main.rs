//! `cargo xtask build | run | test`: the project's two commands and what they need.
//!
//! - `build`: plugins (every cdylib under `plugins/` and `tests/fixtures/plugins/`) for
//!   wasm32-wasip2 into `target/plugins/` and `target/fixture-plugins/`, then the host.
//! - `run [ARGS]`: build, then `blockhost run ARGS` from the repository root.
//! - `test`: set up what a fresh machine lacks, build, run every test.
//! - `bench [ARGS]`: build, install redis-server if missing, then run the benchmarks
//!   (`host/bench`, not part of the tests) and write `host/bench/RESULTS.md`.

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
    match command.as_str() {
        "build" => build(&root),
        "run" => {
            build(&root)?;
            let status = Command::new(root.join("target/release/blockhost"))
                .arg("run")
                .args(&rest)
                .status()
                .context("cannot start target/release/blockhost")?;
            std::process::exit(status.code().unwrap_or(1));
        }
        "test" => {
            install_packages(&["redis-server", "rabbitmq-server"])?;
            build(&root)?;
            test(&rest)
        }
        "bench" => {
            install_packages(&["redis-server"])?;
            build(&root)?;
            bench(&root, &rest)
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

fn build(root: &Path) -> Result<()> {
    prepare_machine()?;
    let plugins = wasm_packages(root)?;
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
    let built = root.join("target").join(WASM_TARGET).join(PLUGIN_PROFILE);
    for plugin in &plugins {
        let from = built.join(format!("{}.wasm", plugin.package.replace('-', "_")));
        let dir = root.join("target").join(plugin.output_dir);
        std::fs::create_dir_all(&dir)?;
        copy_if_changed(&from, &dir.join(format!("{}.wasm", plugin.file_stem)))?;
    }
    run(Command::new(cargo_bin()).args(["build", "--release", "-p", "blockhost"]))
}

fn test(extra: &[String]) -> Result<()> {
    // Plugins' pure logic is unit-tested natively.
    let mut unit = Command::new(cargo_bin());
    unit.args(["test", "--release"]);
    for plugin in [
        "state-common",
        "redis-common",
        "go-duration",
        "plugin-metadata",
        "state-redis",
        "pubsub-redis",
        "pubsub-in-memory",
        "pubsub-rabbitmq",
    ] {
        unit.args(["-p", plugin]);
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
fn bench(root: &Path, extra: &[String]) -> Result<()> {
    // `cargo xtask bench -- --secs 5` and `cargo xtask bench --secs 5` mean the same.
    let extra = extra.strip_prefix(&["--".to_owned()]).unwrap_or(extra);
    run(Command::new(cargo_bin()).args(["build", "--release", "-p", "blockhost-bench"]))?;
    let mut command_line = vec!["cargo xtask bench".to_owned()];
    command_line.extend(extra.iter().cloned());
    run(Command::new(root.join("target/release/blockhost-bench"))
        .arg("run")
        .args(extra)
        .env("BLOCKHOST_BENCH_COMMAND", command_line.join(" ")))
}

struct WasmPackage {
    package: String,
    /// File name in the output directory, without `.wasm`.
    file_stem: String,
    output_dir: &'static str,
}

/// Every cdylib package under `plugins/` (shipped) or `tests/fixtures/plugins/` (test-only).
fn wasm_packages(root: &Path) -> Result<Vec<WasmPackage>> {
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
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let mut found = Vec::new();
    for package in packages {
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
        if !is_cdylib {
            continue;
        }
        if relative.starts_with("plugins") {
            found.push(WasmPackage {
                file_stem: name.clone(),
                package: name,
                output_dir: "plugins",
            });
        } else if relative.starts_with("tests/fixtures/plugins") {
            found.push(WasmPackage {
                file_stem: name.trim_start_matches("fixture-").to_owned(),
                package: name,
                output_dir: "fixture-plugins",
            });
        }
    }
    Ok(found)
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

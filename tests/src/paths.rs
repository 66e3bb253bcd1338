//! Where the binary, the plugins and the fixtures live (env overrides first, then the
//! locations `cargo xtask test` builds to, under cargo's target directory: `CARGO_TARGET_DIR`
//! when set, else `<ws>/target`).

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace root if relative,
/// as `cargo xtask` runs cargo from there), else `<ws>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `var` if set, else `<target dir>/<default>`.
fn from_env_or(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join(default))
}

/// `BLOCKHOST_BIN`, else `<target dir>/release/blockhost`. Panics with a hint when missing.
pub fn blockhost_bin() -> PathBuf {
    let bin = from_env_or("BLOCKHOST_BIN", "release/blockhost");
    assert!(
        bin.is_file(),
        "blockhost binary not found at {} (set BLOCKHOST_BIN, or run `cargo xtask test`, \
         which builds the host and the plugins first)",
        bin.display()
    );
    bin
}

/// `BLOCKHOST_PLUGINS_DIR`, else `<target dir>/plugins`.
pub fn plugins_dir() -> PathBuf {
    from_env_or("BLOCKHOST_PLUGINS_DIR", "plugins")
}

/// `BLOCKHOST_FIXTURES_DIR`, else `<target dir>/fixture-plugins`.
pub fn fixtures_dir() -> PathBuf {
    from_env_or("BLOCKHOST_FIXTURES_DIR", "fixture-plugins")
}

/// The compile cache shared by every sidecar of a test run: `BLOCKHOST_TEST_CACHE_DIR`, else
/// `<target dir>/test-cache`.
pub fn shared_cache_dir() -> PathBuf {
    from_env_or("BLOCKHOST_TEST_CACHE_DIR", "test-cache")
}

/// `dir/file`, panicking with a hint when the file has not been built.
pub fn built_file(dir: &Path, file: &str) -> PathBuf {
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "{} not found (set BLOCKHOST_PLUGINS_DIR / BLOCKHOST_FIXTURES_DIR, or run `cargo xtask test`, \
         which builds the plugins and the fixtures)",
        path.display()
    );
    path
}

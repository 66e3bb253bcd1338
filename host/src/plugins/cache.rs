//! Compiled plugins cached on disk, so a restart with unchanged plugins deserializes
//! machine code instead of compiling.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("it is not a WebAssembly file (it lacks the \\0asm header)")]
    NotWasm,
    #[error(
        "it is a core WebAssembly module, not a component: build it for the wasm32-wasip2 \
         target, or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("it is not a valid WebAssembly component: {0:#}")]
    Invalid(wasmtime::Error),
}

/// How a plugin came to be ready to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cache,
    Compiled,
}

pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: u64,
}

impl CompileCache {
    /// `dir = None` disables caching. The key covers the engine's configuration, so a host
    /// upgrade or a changed setting never loads stale machine code.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_key: hasher.finish(),
        }
    }

    pub fn load(&self, engine: &Engine, file: &Path) -> Result<(Component, Origin), LoadError> {
        let bytes = std::fs::read(file).map_err(LoadError::Read)?;
        check_header(&bytes)?;
        let Some(dir) = &self.dir else {
            let component = Component::new(engine, &bytes).map_err(LoadError::Invalid)?;
            return Ok((component, Origin::Compiled));
        };
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let cached = dir.join(format!("{hex}-{:016x}.cwasm", self.engine_key));
        if cached.is_file() {
            match deserialize(engine, &cached) {
                Ok(component) => return Ok((component, Origin::Cache)),
                Err(err) => tracing::warn!(
                    cache = %cached.display(),
                    "cached plugin unusable, compiling again: {err:#}"
                ),
            }
        }
        let compiled = engine
            .precompile_component(&bytes)
            .map_err(LoadError::Invalid)?;
        if let Err(err) = store_atomically(dir, &cached, &compiled) {
            tracing::warn!(
                cache = %dir.display(),
                "cannot write the plugin compile cache (start-up will compile again): {err}"
            );
        }
        // SAFETY: `compiled` came from this engine's `precompile_component` just now.
        #[allow(unsafe_code)]
        let component =
            unsafe { Component::deserialize(engine, &compiled) }.map_err(LoadError::Invalid)?;
        Ok((component, Origin::Compiled))
    }
}

fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(LoadError::CoreModule),
        Some([0, b'a', b's', b'm', ..]) => Ok(()),
        _ => Err(LoadError::NotWasm),
    }
}

fn deserialize(engine: &Engine, cached: &Path) -> wasmtime::Result<Component> {
    // SAFETY: files in the cache directory are written only by `store_atomically` below
    // from `precompile_component` output, and are keyed by content hash and engine
    // configuration. The directory belongs to the operator, like the binary itself.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize_file(engine, cached)
    }
}

/// Write to a temporary name and rename, so a concurrent reader never sees half a file.
fn store_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temp = target.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, target)
}

#[cfg(test)]
mod tests {
    use super::{check_header, LoadError};

    #[test]
    fn headers_are_classified() {
        assert!(matches!(check_header(b"hello"), Err(LoadError::NotWasm)));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}

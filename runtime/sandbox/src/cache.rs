//! Compiled components, cached on disk by content hash: compiling a component
//! takes 150-350 ms on a small machine, deserializing its cached form under
//! 1 ms, so `dripline up` and the tests start quickly after the first run.

use std::hash::{Hash, Hasher};
use std::path::Path;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::{PluginError, Sandbox};

impl Sandbox {
    /// Compiles a component file, or loads its cached compilation. The cache key
    /// is the hash of the component's bytes and of the engine's settings, so a
    /// changed plugin or a new wasmtime never loads stale machine code.
    pub fn compile_file(&self, plugin: &str, path: &Path) -> Result<Component, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            plugin: plugin.into(),
            path: path.into(),
            source,
        })?;
        self.compile(plugin, &bytes)
    }

    /// Compiles component bytes, through the cache when one is configured.
    pub fn compile(&self, plugin: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        let invalid = |e: wasmtime::Error| PluginError::Invalid {
            plugin: plugin.into(),
            reason: format!("{e:#}"),
        };
        let Some(dir) = &self.config.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(invalid);
        };
        let cached = dir.join(format!("{}.cwasm", self.cache_key(bytes)));
        if cached.exists() {
            match self.deserialize(&cached) {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(plugin, path = %cached.display(), "ignoring unusable cache entry: {e:#}")
                }
            }
        }
        let compiled = self.engine.precompile_component(bytes).map_err(invalid)?;
        // The cache is an optimization: failing to write it must not fail the load.
        if let Err(e) = write_atomically(dir, &cached, &compiled) {
            tracing::warn!(plugin, "could not cache the compiled component: {e}");
        }
        self.deserialize_bytes(&compiled).map_err(invalid)
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        let mut settings = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut settings);
        let mut hash = Sha256::new();
        hash.update(settings.finish().to_le_bytes());
        hash.update(bytes);
        hex::encode(&hash.finalize()[..20])
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, path: &Path) -> wasmtime::Result<Component> {
        // SAFETY: the file was written by `compile` from this engine's own
        // `precompile_component` output, under a name keyed by the source's hash
        // and the engine's settings; the cache directory belongs to Dripline.
        unsafe { Component::deserialize_file(&self.engine, path) }
    }

    #[allow(unsafe_code)]
    fn deserialize_bytes(&self, compiled: &[u8]) -> wasmtime::Result<Component> {
        // SAFETY: `compiled` came from this engine's `precompile_component` just now.
        unsafe { Component::deserialize(&self.engine, compiled) }
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

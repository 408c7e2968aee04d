#![allow(clippy::panic)] // a harness that cannot set up fails the test, loudly
//! The test harness: where the components built by `build.rs` are, and a
//! sandbox set up the way the tests need it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dripline::{Sandbox, SandboxConfig, StepPlugin, TriggerPlugin};

/// The directory of freshly built components.
pub fn components_dir() -> &'static Path {
    Path::new(env!("DRIPLINE_TEST_COMPONENTS"))
}

/// The component file of a crate in `components/` (`"spin-forever"`).
pub fn component(name: &str) -> PathBuf {
    components_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// The repository's root.
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A sandbox with the given deadline and memory limit, sharing the compiled
/// component cache with every other test.
pub fn sandbox(deadline: Duration, memory_limit: usize) -> Arc<Sandbox> {
    let config = SandboxConfig {
        deadline,
        memory_limit,
        cache_dir: Some(PathBuf::from(env!("DRIPLINE_TEST_CACHE"))),
        max_instances: 32,
    };
    match Sandbox::new(config) {
        Ok(sandbox) => Arc::new(sandbox),
        Err(e) => panic!("the sandbox could not start: {e:#}"),
    }
}

/// Loads a component from `components/` as a step, failing the test on error.
pub fn step(sandbox: &Arc<Sandbox>, name: &str) -> StepPlugin {
    let loaded = sandbox
        .compile_file(name, &component(name))
        .and_then(|c| StepPlugin::new(sandbox.clone(), name, &c));
    loaded.unwrap_or_else(|e| panic!("{e}"))
}

/// Loads a component from `components/` as a trigger, failing the test on error.
pub fn trigger(sandbox: &Arc<Sandbox>, name: &str) -> TriggerPlugin {
    let loaded = sandbox
        .compile_file(name, &component(name))
        .and_then(|c| TriggerPlugin::new(sandbox.clone(), name, &c));
    loaded.unwrap_or_else(|e| panic!("{e}"))
}

/// Names of the hostile fixtures in `components/fixtures/`.
pub fn fixtures() -> Vec<String> {
    let dir = repo_root().join("components/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

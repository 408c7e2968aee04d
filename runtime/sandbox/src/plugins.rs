//! The plugins of a deployment: every component file in a directory, compiled
//! once, sorted by the world it exports, and addressed by name (`tag.wasm` is
//! the step `tag`; Cargo's `my_step.wasm` is `my-step`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::bindings::{STEP_EXPORT, TRIGGER_EXPORT};
use crate::{PluginError, Sandbox, StepPlugin, TriggerPlugin};

/// Loaded plugins by name.
pub struct Plugins {
    /// Step components, by the name journeys use (`uses = "tag"`).
    pub steps: BTreeMap<String, StepPlugin>,
    /// Trigger components, by the name routes use.
    pub triggers: BTreeMap<String, TriggerPlugin>,
}

impl Plugins {
    /// Loads every `*.wasm` in `dir`. A component that is neither a step nor a
    /// trigger is an error naming both exports it could have had.
    pub fn load_dir(sandbox: &Arc<Sandbox>, dir: &Path) -> Result<Self, PluginError> {
        let mut plugins = Self {
            steps: BTreeMap::new(),
            triggers: BTreeMap::new(),
        };
        let entries = std::fs::read_dir(dir).map_err(|source| PluginError::Directory {
            path: dir.into(),
            source,
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        paths.sort();
        for path in paths {
            let name = plugin_name(&path);
            plugins.load(sandbox, &name, &path)?;
        }
        Ok(plugins)
    }

    /// Loads one component file under `name`, as whichever world it exports.
    pub fn load(
        &mut self,
        sandbox: &Arc<Sandbox>,
        name: &str,
        path: &Path,
    ) -> Result<(), PluginError> {
        let component = sandbox.compile_file(name, path)?;
        let exports: Vec<String> = component
            .component_type()
            .exports(sandbox.engine())
            .map(|(n, _)| n.to_string())
            .collect();
        if exports
            .iter()
            .any(|e| e.starts_with("wasi:http/incoming-handler@"))
        {
            // An HTTP component (the Spin gateway): `spin.toml` says where it
            // serves, and the gateway loads it from there.
            tracing::debug!(
                plugin = name,
                "skipping an HTTP component; spin.toml routes to it"
            );
            return Ok(());
        }
        if exports.iter().any(|e| e == STEP_EXPORT) {
            self.steps.insert(
                name.into(),
                StepPlugin::new(sandbox.clone(), name, &component)?,
            );
        } else if exports.iter().any(|e| e == TRIGGER_EXPORT) {
            self.triggers.insert(
                name.into(),
                TriggerPlugin::new(sandbox.clone(), name, &component)?,
            );
        } else {
            return Err(PluginError::MissingExport {
                plugin: name.into(),
                world: "step or trigger",
                missing: format!(
                    "{STEP_EXPORT} or {TRIGGER_EXPORT} (it exports: {})",
                    exports.join(", ")
                ),
            });
        }
        Ok(())
    }
}

/// `components/my_step.wasm` -> `my-step`: Cargo writes crate names with
/// underscores, journeys spell them with hyphens.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().replace('_', "-"))
        .unwrap_or_default()
}

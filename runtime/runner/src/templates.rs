//! Message templates: the files of a deployment's `templates/`, handed to the
//! steps that name them.

use std::collections::BTreeMap;
use std::path::Path;

/// The message templates of `templates/`, by file name. A step whose config
/// names a `template` receives the files of that template in its config.
#[derive(Default)]
pub struct Templates {
    files: BTreeMap<String, String>,
}

impl Templates {
    /// Reads every file in `dir`; a missing directory is no templates.
    pub fn load(dir: &Path) -> Self {
        let mut files = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Ok(text) = std::fs::read_to_string(&path) {
                    files.insert(name, text);
                }
            }
        }
        Self { files }
    }

    /// The files of template `name`: those named `<name>.<anything>`.
    pub fn files_of(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        let prefix = format!("{name}.");
        self.files
            .range(prefix.clone()..)
            .take_while(|(file, _)| file.starts_with(&prefix))
            .map(|(file, text)| (file.clone(), serde_json::Value::String(text.clone())))
            .collect()
    }
}

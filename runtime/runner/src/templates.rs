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

    /// Adds to a step's `config` the files of the template it names, as
    /// `template_files`: what the runtime hands the step, and what
    /// `dripline validate` checks it with.
    pub fn add_to(&self, config: &mut serde_json::Value) {
        let Some(template) = config
            .get("template")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
        else {
            return;
        };
        if let Some(map) = config.as_object_mut() {
            map.insert(
                "template_files".into(),
                serde_json::Value::Object(self.files_of(&template)),
            );
        }
    }

    /// The text of one file, by name (`checkout-reminder.sms.liquid`).
    pub fn file(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(String::as_str)
    }
}

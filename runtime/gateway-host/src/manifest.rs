//! `spin.toml` as `dripline up` reads it: the HTTP routes, the component each
//! route runs, the component's trigger (its one component dependency), the
//! key-value stores it is granted and its variables, resolved the way Spin
//! resolves them (component templates over application variables, whose
//! values come from `SPIN_VARIABLE_<NAME>`, a variables file, or the default).
//!
//! Only what the gateway needs is read; other fields Spin knows are accepted
//! and ignored, so the file stays one that Spin itself runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The interface a route's trigger satisfies for the gateway.
pub const TRIGGER_DEPENDENCY: &str = "dripline:journey/trigger-handler@0.1.0";

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: i64,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
struct RawVariable {
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    secret: bool,
}

#[derive(Deserialize)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    dependencies: BTreeMap<String, toml::Value>,
}

/// One HTTP route of the app.
#[derive(Debug, Clone)]
pub struct HttpRoute {
    /// The route as written: `/webhooks/shopify` or `/forms/...`.
    pub pattern: String,
    /// The id of the component that serves it.
    pub component: String,
}

impl HttpRoute {
    /// Whether `path` is served by this route: the exact path, or for a
    /// trailing `/...` the prefix and everything under it.
    pub fn matches(&self, path: &str) -> bool {
        match self.pattern.strip_suffix("/...") {
            Some(prefix) => {
                path == prefix
                    || (path.starts_with(prefix) && path[prefix.len()..].starts_with('/'))
                    || prefix.is_empty()
            }
            None => path == self.pattern || path.trim_end_matches('/') == self.pattern,
        }
    }

    /// Higher is more specific: an exact route beats any wildcard, a longer
    /// prefix beats a shorter one (Spin's rule).
    pub fn specificity(&self) -> (bool, usize) {
        match self.pattern.strip_suffix("/...") {
            Some(prefix) => (false, prefix.len()),
            None => (true, self.pattern.len()),
        }
    }
}

/// A component as the gateway hosts it.
#[derive(Debug, Clone)]
pub struct AppComponent {
    /// Its id in the manifest.
    pub id: String,
    /// The component file.
    pub source: PathBuf,
    /// The file of its trigger dependency, if it has one.
    pub trigger: Option<PathBuf>,
    /// Key-value store labels it may open.
    pub key_value_stores: Vec<String>,
    /// Its variables, resolved.
    pub variables: BTreeMap<String, String>,
}

/// The app: its routes and the components they name.
#[derive(Debug, Clone)]
pub struct SpinApp {
    /// Every HTTP route, most specific first.
    pub routes: Vec<HttpRoute>,
    /// Components by id.
    pub components: BTreeMap<String, AppComponent>,
}

/// Where variable values come from, in order: the environment
/// (`SPIN_VARIABLE_SHOPIFY_SECRET` for `shopify_secret`), then the variables
/// file, then the manifest's default.
#[derive(Debug, Clone, Default)]
pub struct VariableSource {
    /// Values from a file (`name = "value"` TOML), if one was given.
    pub file: BTreeMap<String, String>,
    /// The environment to read; `None` reads the process's.
    pub env: Option<BTreeMap<String, String>>,
}

impl VariableSource {
    /// Reads a variables file: a TOML table of `name = "value"`.
    pub fn with_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading variables from {}", path.display()))?;
        let file: BTreeMap<String, String> = toml::from_str(&text)
            .with_context(|| format!("{}: expected `name = \"value\"` lines", path.display()))?;
        Ok(Self { file, env: None })
    }

    fn get(&self, name: &str) -> Option<String> {
        let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
        let from_env = match &self.env {
            Some(env) => env.get(&env_name).cloned(),
            None => std::env::var(&env_name).ok(),
        };
        from_env.or_else(|| self.file.get(name).cloned())
    }
}

impl SpinApp {
    /// Reads `spin.toml`. Component files are looked up by file name in
    /// `components_dir` (where `./dev` puts the components it builds), and
    /// otherwise resolved against the manifest's folder as Spin does.
    pub fn load(
        manifest: &Path,
        components_dir: Option<&Path>,
        variables: &VariableSource,
    ) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let base = manifest.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, components_dir, variables)
            .with_context(|| format!("in {}", manifest.display()))
    }

    /// Parses a manifest's text; see [`SpinApp::load`].
    pub fn parse(
        text: &str,
        base: &Path,
        components_dir: Option<&Path>,
        variables: &VariableSource,
    ) -> anyhow::Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        if raw.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version is {}, only 2 is supported",
                raw.spin_manifest_version
            );
        }
        let app_values = resolve_app_variables(&raw.variables, variables)?;

        let mut routes = Vec::new();
        for trigger in raw.trigger.get("http").into_iter().flatten() {
            let Some(route) = trigger.get("route").and_then(|r| r.as_str()) else {
                // `route = { private = true }`: reachable only from other components.
                continue;
            };
            let Some(component) = trigger.get("component").and_then(|c| c.as_str()) else {
                bail!("the http trigger for {route} names no component by id");
            };
            if !raw.component.contains_key(component) {
                bail!(
                    "the http trigger for {route} names component `{component}`, which is not defined"
                );
            }
            routes.push(HttpRoute {
                pattern: route.to_string(),
                component: component.to_string(),
            });
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));

        let mut components = BTreeMap::new();
        for (id, raw) in &raw.component {
            let resolve = |p: &str| resolve_file(base, components_dir, p);
            let Some(source) = raw.source.as_str() else {
                bail!(
                    "component `{id}`: only a local `source = \"file.wasm\"` is supported by `dripline up`"
                );
            };
            // The runtime's own records (journey versions, the tracking key, dead
            // letters) live in this store: a component granted it could forge them.
            if raw
                .key_value_stores
                .iter()
                .any(|label| label == dripline_store::RUNTIME_KV_STORE)
            {
                bail!(
                    "component `{id}`: key_value_stores: `{}` is the runtime's own store and cannot be granted to a component",
                    dripline_store::RUNTIME_KV_STORE
                );
            }
            let mut trigger = None;
            for (name, dependency) in &raw.dependencies {
                let path = dependency.get("path").and_then(|p| p.as_str());
                match (name.as_str(), path) {
                    (TRIGGER_DEPENDENCY, Some(path)) => trigger = Some(resolve(path)),
                    (TRIGGER_DEPENDENCY, None) => bail!(
                        "component `{id}`: the dependency {TRIGGER_DEPENDENCY} must be a local `{{ path = \"...\" }}`"
                    ),
                    (other, _) => bail!(
                        "component `{id}`: `dripline up` satisfies only the {TRIGGER_DEPENDENCY} dependency, not {other}"
                    ),
                }
            }
            let mut resolved = BTreeMap::new();
            for (name, template) in &raw.variables {
                let value = expand(template, &app_values)
                    .with_context(|| format!("component `{id}`, variable `{name}`"))?;
                resolved.insert(name.clone(), value);
            }
            components.insert(
                id.clone(),
                AppComponent {
                    id: id.clone(),
                    source: resolve(source),
                    trigger,
                    key_value_stores: raw.key_value_stores.clone(),
                    variables: resolved,
                },
            );
        }
        Ok(Self { routes, components })
    }

    /// The route serving `path`, with its component.
    pub fn route_for(&self, path: &str) -> Option<(&HttpRoute, &AppComponent)> {
        let route = self.routes.iter().find(|r| r.matches(path))?;
        Some((route, self.components.get(&route.component)?))
    }
}

/// A component file: by its name in `components_dir` when that holds it (the
/// build `dripline up` was pointed at wins over whatever `spin build` left
/// beside the manifest), else at its path relative to the manifest.
fn resolve_file(base: &Path, components_dir: Option<&Path>, path: &str) -> PathBuf {
    match (components_dir, Path::new(path).file_name()) {
        (Some(dir), Some(name)) if dir.join(name).exists() => dir.join(name),
        _ => base.join(path),
    }
}

fn resolve_app_variables(
    declared: &BTreeMap<String, RawVariable>,
    source: &VariableSource,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    for (name, variable) in declared {
        if variable.required && variable.default.is_some() {
            bail!("variable `{name}` is both required and has a default");
        }
        let value = match (source.get(name), &variable.default) {
            (Some(value), _) => value,
            (None, Some(default)) => default.clone(),
            (None, None) => bail!(
                "variable `{name}` is required: set SPIN_VARIABLE_{} or give it in the variables file",
                name.to_ascii_uppercase()
            ),
        };
        // Secrets are never logged; the flag only matters to what prints values.
        let _ = variable.secret;
        values.insert(name.clone(), value);
    }
    Ok(values)
}

/// Expands `{{ name }}` in a component variable's template.
fn expand(template: &str, values: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unclosed `{{{{` in {template:?}");
        };
        let name = after[..end].trim();
        match values.get(name) {
            Some(value) => out.push_str(value),
            None => bail!("it names `{name}`, which is not an application variable"),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
shopify_secret = { default = "", secret = true }
track_write_key = { required = true, secret = true }
[[trigger.http]]
route = "/webhooks/shopify"
component = "shop"
[[trigger.http]]
route = "/forms/..."
component = "forms"
[[trigger.http]]
route = "/forms/typeform/..."
component = "forms"
[component.shop]
source = "gateway.wasm"
key_value_stores = ["default"]
variables = { source = "shopify", secret = "{{ shopify_secret }}", key = "k-{{track_write_key}}" }
dependencies = { "dripline:journey/trigger-handler@0.1.0" = { path = "shopify.wasm" } }
[component.forms]
source = "gateway.wasm"
"#;

    fn env(pairs: &[(&str, &str)]) -> VariableSource {
        VariableSource {
            file: BTreeMap::new(),
            env: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn component_variables_expand_application_variables_from_the_environment() {
        let app = SpinApp::parse(
            MANIFEST,
            Path::new("/app"),
            None,
            &env(&[
                ("SPIN_VARIABLE_TRACK_WRITE_KEY", "wk"),
                ("SPIN_VARIABLE_SHOPIFY_SECRET", "s"),
            ]),
        )
        .unwrap();
        let shop = &app.components["shop"];
        assert_eq!(shop.variables["secret"], "s");
        assert_eq!(shop.variables["key"], "k-wk");
        assert_eq!(
            shop.trigger.as_deref(),
            Some(Path::new("/app/shopify.wasm"))
        );
        assert_eq!(shop.key_value_stores, ["default"]);
    }

    #[test]
    fn a_required_variable_without_a_value_refuses_to_start() {
        let error = SpinApp::parse(MANIFEST, Path::new("/"), None, &env(&[])).unwrap_err();
        assert!(
            error.to_string().contains("SPIN_VARIABLE_TRACK_WRITE_KEY"),
            "{error}"
        );
    }

    #[test]
    fn the_most_specific_route_serves_a_path() {
        let app = SpinApp::parse(
            MANIFEST,
            Path::new("/"),
            None,
            &env(&[("SPIN_VARIABLE_TRACK_WRITE_KEY", "k")]),
        )
        .unwrap();
        let pattern = |p: &str| app.route_for(p).map(|(r, _)| r.pattern.clone());
        assert_eq!(
            pattern("/webhooks/shopify").as_deref(),
            Some("/webhooks/shopify")
        );
        assert_eq!(
            pattern("/forms/typeform/x").as_deref(),
            Some("/forms/typeform/...")
        );
        assert_eq!(
            pattern("/forms/typeform").as_deref(),
            Some("/forms/typeform/...")
        );
        assert_eq!(pattern("/forms/whitepaper").as_deref(), Some("/forms/..."));
        assert_eq!(pattern("/formsx"), None);
        assert_eq!(pattern("/webhooks/shopify/x"), None);
    }

    #[test]
    fn a_component_granted_the_runtimes_own_store_is_refused_naming_it() {
        let text = r#"
spin_manifest_version = 2
[application]
name = "x"
[[trigger.http]]
route = "/webhooks/x"
component = "x"
[component.x]
source = "x.wasm"
key_value_stores = ["default", "dripline"]
"#;
        let error = SpinApp::parse(text, Path::new("."), None, &VariableSource::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("component `x`") && error.contains("`dripline`"),
            "{error}"
        );
    }
}

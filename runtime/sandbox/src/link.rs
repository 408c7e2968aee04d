//! What loading a step and loading a trigger share: the export check, the
//! linker of a world (WASI with nothing behind it, plus the world's own host
//! interfaces) and the plugins' log lines.

use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use crate::bindings::log::Level;
use crate::{PluginError, Sandbox, Sandboxed};

/// Links `component` as `world`: WASI's interfaces (empty, see
/// `empty_wasi`) and what `add_world` adds. An import neither provides is
/// refused here, at load, naming it.
pub(crate) fn link_world<T: Send + 'static>(
    sandbox: &Sandbox,
    plugin: &str,
    world: &'static str,
    component: &Component,
    add_world: impl FnOnce(&mut Linker<Sandboxed<T>>) -> wasmtime::Result<()>,
) -> Result<InstancePre<Sandboxed<T>>, PluginError> {
    let link_error = |e: wasmtime::Error| PluginError::Link {
        plugin: plugin.into(),
        world,
        reason: format!("{e:#}"),
    };
    let mut linker: Linker<Sandboxed<T>> = Linker::new(sandbox.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_error)?;
    add_world(&mut linker).map_err(link_error)?;
    linker.instantiate_pre(component).map_err(link_error)
}

/// A plugin's log line, cut to 4096 characters so a plugin cannot flood the
/// log with one call; `call` names the step run it came from, if any.
pub(crate) fn log(plugin: &str, call: Option<&str>, level: Level, message: &str) {
    let message: String = message.chars().take(4096).collect();
    let call = call.unwrap_or("-");
    match level {
        Level::Debug => tracing::debug!(target: "plugin", plugin, call, "{message}"),
        Level::Info => tracing::info!(target: "plugin", plugin, call, "{message}"),
        Level::Warn => tracing::warn!(target: "plugin", plugin, call, "{message}"),
        Level::Error => tracing::error!(target: "plugin", plugin, call, "{message}"),
    }
}

/// Checks at load time that `component` exports `interface` with `functions`,
/// so that a plugin built against the wrong world is refused with the name of
/// what it lacks, not at its first call.
pub(crate) fn require_export(
    engine: &Engine,
    plugin: &str,
    world: &'static str,
    component: &Component,
    interface: &str,
    functions: &[&str],
) -> Result<(), PluginError> {
    use wasmtime::component::types::ComponentItem;
    let missing = |what: String| PluginError::MissingExport {
        plugin: plugin.into(),
        world,
        missing: what,
    };
    let ty = component.component_type();
    let Some((_, item)) = ty.exports(engine).find(|(name, _)| *name == interface) else {
        return Err(missing(interface.to_string()));
    };
    let ComponentItem::ComponentInstance(instance) = item.ty else {
        return Err(missing(format!(
            "{interface} (exported, but not as an interface)"
        )));
    };
    for function in functions {
        if !instance.exports(engine).any(|(name, item)| {
            name == *function && matches!(item.ty, ComponentItem::ComponentFunc(_))
        }) {
            return Err(missing(format!("{interface}#{function}")));
        }
    }
    Ok(())
}

//! Composes a route's gateway with its trigger into one component, as Spin
//! does with a component dependency: the trigger's `trigger-handler` export
//! satisfies the gateway's import of it, and the composition exports what the
//! gateway exports.
//!
//! Why compose rather than link the import to a trigger instance of its own:
//! one request then costs one instantiation in one store, and the call from
//! gateway to trigger is a wasm-to-wasm call through an adapter that copies
//! the request between the two memories. Linking through the host took a
//! second store, a second WASI context, the request lifted into host values
//! and lowered again, and a second teardown: about a tenth of a webhook's CPU
//! time under `./dev bench ingest`.
//!
//! What the trigger may reach is checked here, since it no longer runs in a
//! sandbox of its own: it may import WASI and the shared types, nothing else
//! (under Spin, a dependency gets no Spin capabilities either), so it cannot
//! reach the key-value store or the variables granted to the gateway. It shares the
//! gateway's request deadline, and each of the two memories has the
//! sandbox's memory limit.

use anyhow::{Context as _, bail};
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

use crate::manifest::TRIGGER_DEPENDENCY;

/// What a trigger may import: WASI, and the interface of the shared types
/// (which has no functions).
fn allowed_trigger_import(name: &str) -> bool {
    name.starts_with("wasi:") || name.starts_with("dripline:journey/types@")
}

/// The gateway `gateway` (component bytes) with the trigger `trigger` plugged
/// into its `dripline:journey/trigger-handler` import. `component` and
/// `trigger_name` name the two in errors.
pub fn with_trigger(
    component: &str,
    gateway: Vec<u8>,
    trigger_name: &str,
    trigger: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let socket = Package::from_bytes("dripline:gateway", None, gateway, graph.types_mut())
        .with_context(|| format!("component `{component}` is not a component"))?;
    let plug = Package::from_bytes("dripline:trigger", None, trigger, graph.types_mut())
        .with_context(|| format!("trigger `{trigger_name}` is not a component"))?;

    let plug_world = &graph.types()[plug.ty()];
    if let Some(import) = plug_world
        .imports
        .keys()
        .find(|name| !allowed_trigger_import(name))
    {
        bail!(
            "trigger `{trigger_name}` imports `{import}`; a trigger may import WASI and dripline:journey/types, nothing else"
        );
    }
    let Some(export) = plug_world.exports.get(TRIGGER_DEPENDENCY).copied() else {
        bail!("trigger `{trigger_name}` does not export {TRIGGER_DEPENDENCY}");
    };
    let Some(import) = graph.types()[socket.ty()]
        .imports
        .get(TRIGGER_DEPENDENCY)
        .copied()
    else {
        bail!(
            "component `{component}` does not import {TRIGGER_DEPENDENCY}, so it takes no trigger"
        );
    };
    let mut cache = Default::default();
    wac_graph::types::SubtypeChecker::new(&mut cache)
        .is_subtype(export, graph.types(), import, graph.types())
        .with_context(|| {
            format!(
                "trigger `{trigger_name}`'s {TRIGGER_DEPENDENCY} does not match what component `{component}` imports"
            )
        })?;

    let socket_exports: Vec<String> = graph.types()[socket.ty()].exports.keys().cloned().collect();
    let socket = graph.register_package(socket)?;
    let plug = graph.register_package(plug)?;
    let gateway_instance = graph.instantiate(socket);
    let trigger_instance = graph.instantiate(plug);
    let handler = graph.alias_instance_export(trigger_instance, TRIGGER_DEPENDENCY)?;
    graph.set_instantiation_argument(gateway_instance, TRIGGER_DEPENDENCY, handler)?;
    for name in socket_exports {
        let export = graph.alias_instance_export(gateway_instance, &name)?;
        graph.export(export, &name)?;
    }
    // Not validated here: wasmtime validates the composition when it
    // compiles it, and a cached compilation is keyed by these very bytes.
    graph
        .encode(EncodeOptions {
            validate: false,
            ..EncodeOptions::default()
        })
        .with_context(|| format!("composing component `{component}` with trigger `{trigger_name}`"))
}

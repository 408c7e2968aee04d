//! Trigger components: loading one as the `trigger` world and turning one
//! inbound request into canonical events in a fresh instance.

use std::sync::Arc;

use wasmtime::component::{Component, HasSelf};

use crate::bindings::trigger::{Trigger, TriggerPre};
use crate::bindings::{Event, InboundRequest, TRIGGER_EXPORT, TriggerError};
use crate::{PluginError, Sandbox, Sandboxed};

/// The state the host interfaces work on during one trigger call: only the
/// plugin's name, for its log lines. A trigger can reach nothing else.
pub struct TriggerCall {
    plugin: Arc<str>,
}

/// A trigger component, compiled and pre-instantiated.
pub struct TriggerPlugin {
    name: Arc<str>,
    sandbox: Arc<Sandbox>,
    pre: TriggerPre<Sandboxed<TriggerCall>>,
}

impl TriggerPlugin {
    /// Links a compiled component as a trigger, refusing it (naming what is
    /// missing) if it does not export the trigger interface.
    pub fn new(
        sandbox: Arc<Sandbox>,
        name: &str,
        component: &Component,
    ) -> Result<Self, PluginError> {
        crate::link::require_export(
            sandbox.engine(),
            name,
            "trigger",
            component,
            TRIGGER_EXPORT,
            &["handle"],
        )?;
        let pre = crate::link::link_world(&sandbox, name, "trigger", component, |linker| {
            Trigger::add_to_linker::<_, HasSelf<TriggerCall>>(linker, |s| &mut s.data)
        })?;
        let pre = TriggerPre::new(pre).map_err(|e| PluginError::MissingExport {
            plugin: name.into(),
            world: "trigger",
            missing: format!("{e:#}"),
        })?;
        Ok(Self {
            name: name.into(),
            sandbox,
            pre,
        })
    }

    /// The plugin's name, as routes refer to it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Normalizes one request into events, in a fresh instance.
    pub fn handle(
        &self,
        request: &InboundRequest,
    ) -> Result<Result<Vec<Event>, TriggerError>, PluginError> {
        let mut store = self.sandbox.store(TriggerCall {
            plugin: self.name.clone(),
        });
        let trigger = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.sandbox.classify(&self.name, &store, e))?;
        trigger
            .dripline_journey_trigger_handler()
            .call_handle(&mut store, request)
            .map_err(|e| self.sandbox.classify(&self.name, &store, e))
    }
}

impl crate::bindings::step::dripline::journey::types::Host for TriggerCall {}

impl crate::bindings::log::Host for TriggerCall {
    fn log(&mut self, level: crate::bindings::log::Level, message: String) {
        crate::link::log(&self.plugin, None, level, &message);
    }
}

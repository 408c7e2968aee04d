//! Step components: loading one as the `step` world, and running it for one
//! contact. A step's changes to its contact and its sends are not applied while
//! it runs: they are collected as [`Effect`]s and returned with the outcome, so
//! the runtime can make them durable in the same transaction as the enrollment's
//! next state. That is what lets a step run twice after a crash and still take
//! effect once.

mod effects;
mod host;
mod messenger;

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf};

use crate::bindings::step::{Step, StepPre};
use crate::bindings::{Outcome, STEP_EXPORT, StepContext, StepError};
use crate::{PluginError, Sandbox, Sandboxed};

pub use effects::Effect;
pub use host::StepCall;
pub use messenger::{AcceptAll, Decision, Messenger};

/// What a step run produced.
#[derive(Debug)]
pub struct StepRun {
    /// The step's answer: an outcome, or its own error.
    pub result: Result<Outcome, StepError>,
    /// The changes it asked for, to apply with its completion.
    pub effects: Vec<Effect>,
}

/// A step component, compiled and pre-instantiated: ready to run in a fresh
/// instance per call.
pub struct StepPlugin {
    name: Arc<str>,
    sandbox: Arc<Sandbox>,
    pre: StepPre<Sandboxed<StepCall>>,
}

impl StepPlugin {
    /// Links a compiled component as a step. Fails, naming what is missing, if it
    /// does not export the step interface or imports something not granted.
    pub fn new(
        sandbox: Arc<Sandbox>,
        name: &str,
        component: &Component,
    ) -> Result<Self, PluginError> {
        crate::link::require_export(
            sandbox.engine(),
            name,
            "step",
            component,
            STEP_EXPORT,
            &["validate", "run"],
        )?;
        let pre = crate::link::link_world(&sandbox, name, "step", component, |linker| {
            Step::add_to_linker::<_, HasSelf<StepCall>>(linker, |s| &mut s.data)
        })?;
        let pre = StepPre::new(pre).map_err(|e| PluginError::MissingExport {
            plugin: name.into(),
            world: "step",
            missing: format!("{e:#}"),
        })?;
        Ok(Self {
            name: name.into(),
            sandbox,
            pre,
        })
    }

    /// The plugin's name, as journeys refer to it (`uses = "tag"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the step once in a fresh instance. `key` is the engine's
    /// idempotency key of this run (it counts visits and attempts); every
    /// send and post of the call is keyed under it.
    pub fn run(
        &self,
        context: &StepContext,
        key: &str,
        messenger: Arc<dyn Messenger>,
    ) -> Result<StepRun, PluginError> {
        let mut instance = self.instantiate(context, key, messenger)?;
        instance.run(context)
    }

    /// Asks the component whether a config from a journey file is acceptable.
    pub fn validate(&self, config: &str) -> Result<Result<(), StepError>, PluginError> {
        let mut store = self.sandbox.store(StepCall::placeholder(self.name.clone()));
        let step = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.sandbox.classify(&self.name, &store, e))?;
        step.dripline_journey_step_handler()
            .call_validate(&mut store, config)
            .map_err(|e| self.sandbox.classify(&self.name, &store, e))
    }

    /// An instance that can be called repeatedly. The runtime uses a fresh one per
    /// call for isolation; the benchmark uses this to measure the call alone.
    pub fn instantiate(
        &self,
        context: &StepContext,
        key: &str,
        messenger: Arc<dyn Messenger>,
    ) -> Result<StepInstance<'_>, PluginError> {
        let call = StepCall::new(self.name.clone(), context, key, messenger);
        let mut store = self.sandbox.store(call);
        let step = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.sandbox.classify(&self.name, &store, e))?;
        Ok(StepInstance {
            plugin: self,
            store,
            step,
        })
    }
}

/// A live instance of a step component.
pub struct StepInstance<'a> {
    plugin: &'a StepPlugin,
    store: Store<Sandboxed<StepCall>>,
    step: Step,
}

impl StepInstance<'_> {
    /// Calls `run`, returning the outcome and the effects of this call.
    pub fn run(&mut self, context: &StepContext) -> Result<StepRun, PluginError> {
        let sandbox = &self.plugin.sandbox;
        sandbox.arm(&mut self.store);
        let result = self
            .step
            .dripline_journey_step_handler()
            .call_run(&mut self.store, context)
            .map_err(|e| sandbox.classify(&self.plugin.name, &self.store, e))?;
        let effects = std::mem::take(&mut self.store.data_mut().data.effects);
        Ok(StepRun { result, effects })
    }
}

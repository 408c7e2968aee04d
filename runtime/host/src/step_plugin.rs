//! Step components: loading one as the `step` world, and running it for one
//! contact. A step's changes to its contact and its sends are not applied while
//! it runs: they are collected as [`Effect`]s and returned with the outcome, so
//! the runtime can make them durable in the same transaction as the enrollment's
//! next state. That is what lets a step run twice after a crash and still take
//! effect once.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings::step::{Step, StepPre};
use crate::bindings::{
    Contact, HostError, Outcome, STEP_EXPORT, StepContext, StepError, contacts, http_out, log,
    messaging,
};
use crate::sandbox::{PluginError, Sandbox, Sandboxed};

/// One change a step asked for, in the order it asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Set an attribute to a JSON value.
    SetAttribute {
        /// The attribute's name.
        name: String,
        /// Its new value.
        value: serde_json::Value,
    },
    /// Add a tag.
    AddTag(String),
    /// Remove a tag.
    RemoveTag(String),
    /// Add points to the lead score.
    AddScore(i64),
    /// A message the delivery policy accepted, suppressed or deferred.
    Send {
        /// Unique per enrollment, step, attempt and send within the step.
        idempotency_key: String,
        /// The message as the step rendered it.
        message: messaging::Message,
        /// What the policy decided.
        delivery: messaging::Delivery,
    },
    /// A JSON POST to a granted host, queued for the dispatcher.
    Post {
        /// Unique per enrollment, step, attempt and post within the step.
        idempotency_key: String,
        /// Where to post.
        url: String,
        /// The JSON body.
        body: String,
    },
}

/// What the delivery policy made of one send.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The channel it goes through: the one asked for, or for `preferred` the
    /// one the policy chose.
    pub channel: String,
    /// Sent now, deferred, or suppressed with the reason.
    pub delivery: messaging::Delivery,
}

/// Decides what becomes of a message: the delivery policy's entry point. The
/// runtime supplies one per step call; it must not perform the send itself
/// (that happens when the step's effects are committed), only decide.
pub trait Messenger: Send + Sync {
    /// Decides the delivery of `message` to `contact`. `idempotency_key` is stable
    /// across retries of the same step attempt.
    fn decide(
        &self,
        contact: &Contact,
        message: &messaging::Message,
        idempotency_key: &str,
    ) -> Result<Decision, HostError>;

    /// Whether the deployment grants the `webhook` step's posts to `url`'s
    /// host; the error names the host. Grants nothing unless the runtime says
    /// otherwise: a step reaches only what its config or the deployment grants.
    fn grant_post(&self, url: &str) -> Result<(), String> {
        crate::channels::config::check_host(url, &[])
    }
}

/// A messenger that accepts everything: for tests and benchmarks of the sandbox.
pub struct AcceptAll;

impl Messenger for AcceptAll {
    fn decide(
        &self,
        _: &Contact,
        message: &messaging::Message,
        key: &str,
    ) -> Result<Decision, HostError> {
        Ok(Decision {
            channel: message.channel.clone(),
            delivery: messaging::Delivery::Sent(key.to_string()),
        })
    }
}

/// The state the host interfaces work on during one step call.
pub struct StepCall {
    plugin: Arc<str>,
    contact: Contact,
    /// `{enrollment}/{step}/{attempt}`: the prefix of every effect's key.
    call_key: String,
    messenger: Arc<dyn Messenger>,
    /// Hosts the step's own config grants (`allowed_hosts`): the journey
    /// author's grant, which the component cannot change.
    allowed_hosts: Vec<String>,
    pub(crate) effects: Vec<Effect>,
}

impl StepCall {
    fn new(plugin: Arc<str>, context: &StepContext, messenger: Arc<dyn Messenger>) -> Self {
        let allowed_hosts = serde_json::from_str::<serde_json::Value>(&context.config)
            .ok()
            .and_then(|c| c.get("allowed_hosts").cloned())
            .and_then(|h| serde_json::from_value(h).ok())
            .unwrap_or_default();
        Self {
            allowed_hosts,
            plugin,
            contact: context.contact.clone(),
            call_key: format!(
                "{}/{}/{}",
                context.enrollment_id, context.step_id, context.attempt
            ),
            messenger,
            effects: Vec::new(),
        }
    }

    fn attributes(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_str(&self.contact.attributes) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }
}

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
        crate::sandbox::require_export(
            sandbox.engine(),
            name,
            "step",
            component,
            STEP_EXPORT,
            &["validate", "run"],
        )?;
        let mut linker: Linker<Sandboxed<StepCall>> = Linker::new(sandbox.engine());
        let link_error = |e: wasmtime::Error| PluginError::Link {
            plugin: name.into(),
            world: "step",
            reason: format!("{e:#}"),
        };
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_error)?;
        Step::add_to_linker::<_, HasSelf<StepCall>>(&mut linker, |s| &mut s.data)
            .map_err(link_error)?;
        let pre = linker.instantiate_pre(component).map_err(link_error)?;
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

    /// Runs the step once in a fresh instance.
    pub fn run(
        &self,
        context: &StepContext,
        messenger: Arc<dyn Messenger>,
    ) -> Result<StepRun, PluginError> {
        let mut instance = self.instantiate(context, messenger)?;
        instance.run(context)
    }

    /// Asks the component whether a config from a journey file is acceptable.
    pub fn validate(&self, config: &str) -> Result<Result<(), StepError>, PluginError> {
        let placeholder = StepCall {
            plugin: self.name.clone(),
            contact: empty_contact(),
            call_key: "validate".into(),
            messenger: Arc::new(AcceptAll),
            allowed_hosts: Vec::new(),
            effects: Vec::new(),
        };
        let mut store = self.sandbox.store(placeholder);
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
        messenger: Arc<dyn Messenger>,
    ) -> Result<StepInstance<'_>, PluginError> {
        let mut store = self
            .sandbox
            .store(StepCall::new(self.name.clone(), context, messenger));
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
    pub(crate) store: Store<Sandboxed<StepCall>>,
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

fn empty_contact() -> Contact {
    Contact {
        id: String::new(),
        identities: crate::bindings::Identities {
            email: None,
            phone: None,
            external_ids: Vec::new(),
        },
        attributes: "{}".into(),
        tags: Vec::new(),
        score: 0,
        consent: Vec::new(),
        time_zone: None,
    }
}

/// Names and values that a marketer will see and filter on; longer ones are a
/// plugin bug, refused before they reach the store.
const MAX_NAME: usize = 128;
const MAX_VALUE: usize = 64 << 10;

fn check_name(what: &str, name: &str) -> Result<(), HostError> {
    if name.trim().is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(HostError::InvalidInput(format!(
            "{what} must be 1 to {MAX_NAME} printable characters"
        )));
    }
    Ok(())
}

impl crate::bindings::step::dripline::journey::types::Host for StepCall {}

impl log::Host for StepCall {
    fn log(&mut self, level: log::Level, message: String) {
        let message: String = message.chars().take(4096).collect();
        let plugin = &*self.plugin;
        let call = &self.call_key;
        match level {
            log::Level::Debug => tracing::debug!(target: "plugin", plugin, call, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", plugin, call, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", plugin, call, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", plugin, call, "{message}"),
        }
    }
}

impl contacts::Host for StepCall {
    fn get_attribute(&mut self, name: String) -> Result<Option<String>, HostError> {
        check_name("attribute name", &name)?;
        // The step sees its own pending writes, as it would with a database.
        let pending = self.effects.iter().rev().find_map(|e| match e {
            Effect::SetAttribute { name: n, value } if *n == name => Some(value.to_string()),
            _ => None,
        });
        Ok(pending.or_else(|| self.attributes().get(&name).map(ToString::to_string)))
    }

    fn set_attribute(&mut self, name: String, value: String) -> Result<(), HostError> {
        check_name("attribute name", &name)?;
        if value.len() > MAX_VALUE {
            return Err(HostError::InvalidInput(format!(
                "value of `{name}` is over {MAX_VALUE} bytes"
            )));
        }
        let value = serde_json::from_str(&value)
            .map_err(|e| HostError::InvalidInput(format!("value of `{name}` is not JSON: {e}")))?;
        self.effects.push(Effect::SetAttribute { name, value });
        Ok(())
    }

    fn add_tag(&mut self, tag: String) -> Result<(), HostError> {
        check_name("tag", &tag)?;
        self.effects.push(Effect::AddTag(tag));
        Ok(())
    }

    fn remove_tag(&mut self, tag: String) -> Result<(), HostError> {
        check_name("tag", &tag)?;
        self.effects.push(Effect::RemoveTag(tag));
        Ok(())
    }

    fn add_score(&mut self, points: i64) -> Result<i64, HostError> {
        let pending: i64 = self
            .effects
            .iter()
            .map(|e| if let Effect::AddScore(p) = e { *p } else { 0 })
            .sum();
        let score = self
            .contact
            .score
            .saturating_add(pending)
            .saturating_add(points);
        self.effects.push(Effect::AddScore(points));
        Ok(score)
    }
}

impl messaging::Host for StepCall {
    fn send(&mut self, message: messaging::Message) -> Result<messaging::Delivery, HostError> {
        if message.body.len() > MAX_VALUE
            || message
                .html
                .as_ref()
                .is_some_and(|h| h.len() > 4 * MAX_VALUE)
        {
            return Err(HostError::InvalidInput("message body is too large".into()));
        }
        let sends = self
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::Send { .. }))
            .count();
        let idempotency_key = format!("{}/send-{sends}", self.call_key);
        let Decision { channel, delivery } =
            self.messenger
                .decide(&self.contact, &message, &idempotency_key)?;
        // The outbox row names the channel the message really goes through.
        let message = messaging::Message { channel, ..message };
        self.effects.push(Effect::Send {
            idempotency_key,
            message,
            delivery: delivery.clone(),
        });
        Ok(delivery)
    }
}

impl http_out::Host for StepCall {
    fn post(&mut self, request: http_out::Outbound) -> Result<String, HostError> {
        if request.body.len() > MAX_VALUE {
            return Err(HostError::InvalidInput(format!(
                "body is over {MAX_VALUE} bytes"
            )));
        }
        serde_json::from_str::<serde_json::Value>(&request.body)
            .map_err(|e| HostError::InvalidInput(format!("body is not JSON: {e}")))?;
        crate::channels::config::host_of(&request.url).map_err(HostError::InvalidInput)?;
        if crate::channels::config::check_host(&request.url, &self.allowed_hosts).is_err() {
            self.messenger
                .grant_post(&request.url)
                .map_err(HostError::AccessDenied)?;
        }
        let posts = self
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::Post { .. }))
            .count();
        let idempotency_key = format!("{}/post-{posts}", self.call_key);
        self.effects.push(Effect::Post {
            idempotency_key: idempotency_key.clone(),
            url: request.url,
            body: request.body,
        });
        Ok(idempotency_key)
    }
}

//! The Dripline host runtime.
//!
//! A webhook's path through this crate: the gateway's trigger component turns
//! it into canonical events ([`trigger_plugin`]); journeys decide what happens
//! to the contact; each journey step runs as a step component ([`step_plugin`])
//! inside the [`sandbox`], whose effects the runtime makes durable. The
//! [`plugins`] module loads a directory of components and sorts them by world;
//! [`server`] is the HTTP side of `dripline up`.
//!
//! The journeys themselves run in the [`runner`]: it consumes the inbox and the
//! due timers, asks the engine (`dripline-engine`) what each input means, runs
//! the steps it asks for, and commits each input's consequences at once.

pub mod bench;
pub mod bench_timers;
pub mod bindings;
pub mod channels;
pub mod clock;
pub mod commands;
pub mod contacts;
pub mod crash;
pub mod dispatch;
pub mod gateway;
pub mod journeys;
pub mod plugins;
pub mod policy;
pub mod runner;
pub mod sandbox;
pub mod server;
pub mod step_plugin;
pub mod tracking;
pub mod trigger_plugin;

pub use plugins::Plugins;
pub use sandbox::{PluginError, Sandbox, SandboxConfig};
pub use step_plugin::{AcceptAll, Decision, Effect, Messenger, StepPlugin, StepRun};
pub use trigger_plugin::TriggerPlugin;

//! The Rust side of the WIT contract in `wit/`: one `bindgen!` per world, in
//! this one module, re-exported for the rest of the runtime. The trigger world
//! reuses the step world's shared types so that an `Event` is one Rust type.

/// Bindings for the `step` world: the exports a step component provides and the
/// host interfaces (`log`, `contacts`, `messaging`, `http-out`) it may import.
#[allow(missing_docs)] // generated; the WIT carries the docs
pub mod step {
    wasmtime::component::bindgen!({
        world: "step",
        path: "../../wit",
        additional_derives: [PartialEq],
    });
}

/// Bindings for the `trigger` world.
#[allow(missing_docs)] // generated; the WIT carries the docs
pub mod trigger {
    wasmtime::component::bindgen!({
        world: "trigger",
        path: "../../wit",
        with: {
            "dripline:journey/types": super::step::dripline::journey::types,
            "dripline:journey/log": super::step::dripline::journey::log,
        },
    });
}

pub use step::dripline::journey::types::{
    ChannelConsent, ConsentState, Contact, Error as HostError, Event, Identities,
};
pub use step::dripline::journey::{contacts, http_out, log, messaging};
pub use step::exports::dripline::journey::step_handler::{
    EventWait, Outcome, RetryLater, StepContext, StepError, WaitFor,
};
pub use trigger::exports::dripline::journey::trigger_handler::{InboundRequest, TriggerError};

/// The fully qualified name of the interface a step component must export.
pub const STEP_EXPORT: &str = "dripline:journey/step-handler@0.1.0";
/// The fully qualified name of the interface a trigger component must export.
pub const TRIGGER_EXPORT: &str = "dripline:journey/trigger-handler@0.1.0";

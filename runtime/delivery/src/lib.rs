//! What happens to a message once a step asks to send it.
//!
//! A send is decided while the step runs, by the [`policy`] (consent, caps,
//! quiet hours in the contact's zone, dedupe, priority); the decision is kept
//! in the step's outbox row, an [`outbox_record::OutboxRecord`], written with
//! the step's completion. The [`dispatcher`] later delivers due rows through
//! their [`channels`] (SMTP, HTTP providers, the embedded outbox), retries
//! transient failures with backoff and raises [`alerts`] on failure rates.
//! Emails are instrumented for open and click [`tracking`] on their way into
//! the outbox.
//!
//! This crate does not know how journeys run: it is called by the runner and
//! the admin API, never the other way round.

pub mod alerts;
pub mod analytics;
pub mod channels;
pub mod dispatcher;
pub mod links;
pub mod names;
pub mod outbox_record;
pub mod policy;
pub mod recipient;
pub mod tracking;

pub use dispatcher::{DispatchReport, Dispatcher, Lane};
pub use outbox_record::{Category, DeliveryDecision, OutboxRecord};
pub use policy::DeliveryPolicy;

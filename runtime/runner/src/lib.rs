//! The runtime's worker: it consumes the inbox ([`inbox`]) and fires due
//! timers ([`timers`]), asks the journey engine what each input means, carries
//! out the actions it returns ([`actions`]), runs the step components they ask
//! for ([`step_run`]), and makes all of one input's consequences durable in
//! one store transaction ([`unit`]), together with the removal of the input
//! itself.
//!
//! That transaction is the whole crash story. Execution is at-least-once: a
//! crash before the commit loses nothing (the inbox record or the claimed timer
//! is still there and is processed again) and a crash after it repeats nothing
//! (the input is gone). A repeated run produces the same result because the
//! engine is deterministic (enrollment ids, timer keys and idempotency keys are
//! derived from the input) and steps do not act while they run: they return
//! effects, which are applied here, in the same transaction.
//!
//! A store failure while an input is processed is not the input's fault: the
//! input stays where it is and is retried ([`RunnerError`]); only an input
//! that cannot be processed as it is gets set aside.

mod actions;
pub mod audience;
pub mod catalog;
pub mod contacts;
pub mod dead_letters;
pub mod erasure;
mod error;
pub mod import;
mod inbox;
pub mod merge;
pub mod retention;
pub mod retries;
mod step_run;
pub mod templates;
mod timers;
mod unit;
pub mod worker;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use dripline_clock::Clock;
use dripline_delivery::DeliveryPolicy;
use dripline_delivery::alerts::{Alerts, Failing};
use dripline_delivery::channels::AlertConfig;
use dripline_delivery::tracking::Tracker;
use dripline_engine::{Enrollment, Journey};
use dripline_sandbox::Plugins;
use dripline_store::{Store, StoreError};

pub use catalog::Journeys;
pub use error::RunnerError;
pub use retries::RetryPolicy;
pub use templates::Templates;
pub use timers::{TIMER_LEASE_MS, TIMERS_FIRED};

use error::InputError;

/// The worker and everything it needs.
pub struct Runner {
    store: Arc<dyn Store>,
    plugins: Arc<Plugins>,
    journeys: Journeys,
    templates: Templates,
    clock: Arc<dyn Clock>,
    policy: Arc<DeliveryPolicy>,
    tracker: Option<Tracker>,
    /// Hosts every step may post to (`[http_out] allowed_hosts`).
    allowed_hosts: Vec<String>,
    /// Failure rates of each journey's step runs (the dispatcher keeps its
    /// own for deliveries).
    alerts: Mutex<Alerts>,
    /// Set when the process is stopping: a pass ends after the input in hand
    /// instead of working through the whole backlog.
    stop: Arc<AtomicBool>,
    /// The wall-clock time after each batch, for the readiness probe to tell
    /// a busy worker from a dead one.
    heartbeat: Arc<AtomicI64>,
    /// Failed attempts of inputs that wait for another try.
    retries: retries::Retries,
    /// How long a claimed timer stays this runner's ([`timers::TIMER_LEASE_MS`]).
    timer_lease_ms: i64,
    /// When other workers share the store: the inbox records this runner
    /// claimed, until when ([`Runner::with_inbox_claims`]).
    inbox_claims: Option<inbox::Claims>,
    /// Where every engine action is written down as it is carried out, for
    /// `dripline simulate` ([`Runner::with_trace`]).
    trace: Option<Trace>,
    /// How new contacts are named, read from the store at the first need.
    contact_ids: std::sync::OnceLock<contacts::ContactIds>,
}

/// The engine's actions as a runner carried them out, each with the time of
/// the unit it belonged to. A unit done again (a conflict, a failed timer
/// batch) is written down again: meant for one runner on a throwaway store.
pub type Trace = Arc<Mutex<Vec<(i64, dripline_engine::Action)>>>;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Inbox events processed.
    pub events: usize,
    /// Timers fired.
    pub timers: usize,
}

impl Runner {
    /// A runner over `store`, with the given plugins and journeys.
    pub fn new(
        store: Arc<dyn Store>,
        plugins: Arc<Plugins>,
        journeys: Journeys,
        templates: Templates,
        clock: Arc<dyn Clock>,
        policy: Arc<DeliveryPolicy>,
    ) -> Self {
        Self {
            store,
            plugins,
            journeys,
            templates,
            clock,
            policy,
            tracker: None,
            allowed_hosts: Vec::new(),
            alerts: Mutex::new(Alerts::new(Failing::StepRuns, AlertConfig::default())),
            stop: Arc::new(AtomicBool::new(false)),
            heartbeat: Arc::new(AtomicI64::new(0)),
            retries: retries::Retries::new(RetryPolicy::default()),
            timer_lease_ms: timers::TIMER_LEASE_MS,
            inbox_claims: None,
            trace: None,
            contact_ids: std::sync::OnceLock::new(),
        }
    }

    /// Applies `[retention]` of the delivery policy once, now; a failure is
    /// logged and the next pass tries again.
    pub fn apply_retention(&self) {
        let rules = &self.policy.retention;
        if rules.contacts_inactive_for.is_none() && rules.messages_older_than.is_none() {
            return;
        }
        if let Err(e) = retention::run(self.store.as_ref(), rules, self.clock.now_ms()) {
            tracing::error!("retention: {e}");
        }
    }

    /// How this deployment names new contacts.
    fn contact_ids(&self) -> Result<&contacts::ContactIds, StoreError> {
        if let Some(ids) = self.contact_ids.get() {
            return Ok(ids);
        }
        let ids = contacts::ContactIds::for_store(self.store.as_ref())?;
        Ok(self.contact_ids.get_or_init(|| ids))
    }

    /// Writes every action carried out to `trace`.
    pub fn with_trace(mut self, trace: Trace) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Claims each inbox record for `lease_ms` before processing it, for
    /// workers that share a store: they then split the inbox between them
    /// instead of all working on its head, the losers throwing their work
    /// away at the commit. A worker that dies leaves its records to the
    /// others once the lease ends.
    pub fn with_inbox_claims(mut self, lease_ms: i64) -> Self {
        self.inbox_claims = Some(inbox::Claims::new(lease_ms));
        self
    }

    /// Claims timers for `lease_ms` instead of a minute: how long the timers
    /// of a worker that dies wait before another worker fires them. It must
    /// outlast the longest batch, or a slow batch's timers fire twice.
    pub fn with_timer_lease(mut self, lease_ms: i64) -> Self {
        self.timer_lease_ms = lease_ms.max(1);
        self
    }

    /// Tries an input that cannot be processed by `policy` before setting it
    /// aside (the default: four attempts, 1 s, 4 s and 16 s apart).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retries = retries::Retries::new(policy);
        self
    }

    /// Writes the wall-clock time to `heartbeat` after every batch.
    pub fn with_heartbeat(mut self, heartbeat: Arc<AtomicI64>) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Records that the worker is alive now, in wall-clock time: a
    /// demonstration's scaled clock would make any pause look like death.
    pub fn beat(&self) {
        self.heartbeat
            .store(dripline_clock::SystemClock.now_ms(), Ordering::Relaxed);
    }

    /// Ends each pass early once `stop` is set: what is left stays in the
    /// inbox and the timer index for the next start.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = stop;
        self
    }

    /// Whether the process is stopping.
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Alerts on a journey's failing step runs by `config` (`[alerts]` in
    /// channels.toml), as the dispatcher does on its failing deliveries.
    pub fn with_alerts(mut self, config: AlertConfig) -> Self {
        self.alerts = Mutex::new(Alerts::new(Failing::StepRuns, config));
        self
    }

    /// Grants every step's outbound posts these hosts, besides what each step's
    /// own config grants.
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = hosts;
        self
    }

    /// Rewrites the links of outgoing emails into signed tracking links and adds
    /// the open pixel (see [`dripline_delivery::tracking`]).
    pub fn with_tracker(mut self, tracker: Tracker) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// The tracker emails are instrumented with, if tracking is on.
    pub fn tracker(&self) -> Option<&Tracker> {
        self.tracker.as_ref()
    }

    /// Re-reads journey files that changed; returns the problems found.
    pub fn reload_journeys(&mut self) -> Result<Vec<String>, StoreError> {
        self.journeys.reload(self.store.as_ref())
    }

    /// The journeys it runs, every version still in flight included.
    pub fn journeys(&self) -> &Journeys {
        &self.journeys
    }

    /// The store the runner works on.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Processes inbox events and due timers until neither is left.
    pub fn run_until_idle(&mut self) -> Result<Progress, RunnerError> {
        let mut total = Progress::default();
        while !self.stopping() {
            self.beat();
            let events = self.process_inbox(256)?;
            let timers = self.fire_due_timers(1024)?;
            total.events += events;
            total.timers += timers;
            if events == 0 && timers == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// The version of its journey an enrollment is on.
    fn journey_of(&self, enrollment: &Enrollment) -> Result<&Arc<Journey>, InputError> {
        self.journeys
            .version(&enrollment.journey, enrollment.journey_version)
            .ok_or_else(|| {
                InputError::bad(format!(
                    "journey {} v{} is not known",
                    enrollment.journey, enrollment.journey_version
                ))
            })
    }
}

//! A deployment's parts, and the one place they are opened: the database once,
//! each component once, each configuration file once. `dripline up`,
//! `dripline process` and the end-to-end tests all build a deployment through
//! [`Parts::open`], then take from it the runner, the dispatcher, the gateway's
//! store and the admin server's state, which share what was opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dripline_clock::Clock;
use dripline_delivery::channels::{Channels, ChannelsConfig};
use dripline_delivery::names::PREFERRED;
use dripline_delivery::policy::DELIVERY_FILE;
use dripline_delivery::tracking::Tracker;
use dripline_delivery::{DeliveryPolicy, Dispatcher, Lane};
use dripline_engine::StepKind;
use dripline_runner::{Journeys, Runner, Templates};
use dripline_sandbox::{Plugins, Sandbox};
use dripline_store::{Store, Write};

use crate::store_url::{OpenStore, StoreUrl};

/// Where a deployment's parts are.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The component files.
    pub components: PathBuf,
    /// The journey files.
    pub journeys: PathBuf,
    /// The message templates.
    pub templates: PathBuf,
    /// The delivery rules (`delivery.toml`); the defaults if the file is absent.
    pub delivery: PathBuf,
    /// The store.
    pub store: StoreUrl,
    /// Whether other workers share the store: then timer claims are left to
    /// lapse rather than released at start, and each delivery is claimed
    /// first, so that no two workers fire one timer or deliver one message.
    pub shared: bool,
    /// How long a claimed timer (and, when shared, a claimed message) stays
    /// this process's before another may take it.
    pub lease_ms: i64,
    /// The channels file (`channels.toml`); absent means the embedded default,
    /// where every message stays in the outbox.
    pub channels: PathBuf,
}

impl Deployment {
    /// The default layout of a deployment rooted at `root`, on the store
    /// `store` (default: the SQLite file `<data>/dripline.db`). A Redis store
    /// is taken to be shared with other workers; a SQLite file is not unless
    /// the caller says so (`dripline worker`).
    pub fn at(root: &Path, components: PathBuf, data: &Path, store: Option<StoreUrl>) -> Self {
        let store = store.unwrap_or_else(|| StoreUrl::Sqlite(data.join("dripline.db")));
        Self {
            shared: matches!(store, StoreUrl::Redis(_)),
            components,
            journeys: root.join("journeys"),
            templates: root.join("templates"),
            delivery: root.join(DELIVERY_FILE),
            store,
            lease_ms: dripline_runner::TIMER_LEASE_MS,
            channels: root.join("channels.toml"),
        }
    }
}

/// Everything a deployment is made of, each opened or read once.
pub struct Parts {
    /// The deployment's paths (the runner re-reads its journey files).
    pub deployment: Deployment,
    /// The one store.
    pub store: OpenStore,
    /// The step and trigger components, compiled once.
    pub plugins: Arc<Plugins>,
    /// `delivery.toml`.
    pub policy: Arc<DeliveryPolicy>,
    /// `channels.toml`, if there is one.
    pub channels: Option<ChannelsConfig>,
    /// Email tracking, when `delivery.toml` gives it a base URL.
    pub tracker: Option<Tracker>,
}

impl Parts {
    /// Opens the database (creating its directory), loads the components and
    /// reads the configuration files; any problem stops the start, naming the
    /// file.
    pub fn open(deployment: &Deployment, sandbox: &Arc<Sandbox>) -> anyhow::Result<Self> {
        let open = OpenStore::open(&deployment.store)?;
        let store = open.store();
        if !deployment.shared {
            // A deployment with one scheduler: claims left by a predecessor
            // that crashed are released, so its timers fire now, not a lease
            // later. Workers that share a store never do this: the claims
            // may be another worker's, in flight.
            store.apply(&[Write::TimerReleaseClaims])?;
        }
        let plugins = Arc::new(Plugins::load_dir(sandbox, &deployment.components)?);
        let policy = DeliveryPolicy::load(&deployment.delivery)?;
        let base = policy
            .tracking
            .checked_base()
            .map_err(|e| anyhow::anyhow!("{}: [tracking] {e}", deployment.delivery.display()))?;
        let tracker = match base {
            Some(base) => Some(Tracker::for_deployment(base, store.as_ref())?),
            None => None,
        };
        let channels = ChannelsConfig::load(&deployment.channels)?;
        Ok(Self {
            deployment: deployment.clone(),
            plugins,
            policy: Arc::new(policy),
            channels,
            tracker,
            store: open,
        })
    }

    /// The store as the runner, the dispatcher and the admin API hold it.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.store()
    }

    /// The runner of the deployment's journeys, on `clock`.
    pub fn runner(&self, clock: Arc<dyn Clock>) -> anyhow::Result<Runner> {
        let (journeys, problems) =
            Journeys::load(&self.deployment.journeys, self.store().as_ref())?;
        for problem in problems {
            tracing::error!("journey not loaded: {problem}");
        }
        let templates = Templates::load(&self.deployment.templates);
        let allowed_hosts = self
            .channels
            .as_ref()
            .map(|c| c.http_out.allowed_hosts.clone())
            .unwrap_or_default();
        let alerts = self
            .channels
            .as_ref()
            .map(|c| c.alerts.clone())
            .unwrap_or_default();
        let runner = Runner::new(
            self.store(),
            self.plugins.clone(),
            journeys,
            templates,
            clock,
            self.policy.clone(),
        )
        .with_allowed_hosts(allowed_hosts)
        .with_alerts(alerts)
        .with_timer_lease(self.deployment.lease_ms);
        let runner = match self.deployment.shared {
            true => runner.with_inbox_claims(self.deployment.lease_ms),
            false => runner,
        };
        Ok(match &self.tracker {
            Some(tracker) => runner.with_tracker(tracker.clone()),
            None => runner,
        })
    }

    /// The dispatcher of the outbox through the deployment's channels. A
    /// channel a step of `journeys` names that `channels.toml` does not
    /// configure is reported here, at start, rather than at the first send.
    pub fn dispatcher(
        &self,
        clock: Arc<dyn Clock>,
        journeys: &Journeys,
    ) -> anyhow::Result<Dispatcher> {
        let path = &self.deployment.channels;
        if let Some(config) = &self.channels {
            tracing::info!(
                channels = ?config.channels.keys().collect::<Vec<_>>(),
                "channels from {}",
                path.display()
            );
        }
        let channels = self.channels()?;
        for (journey, step, channel) in channels_named_by(journeys) {
            if channels.get(channel).is_none() {
                tracing::error!(
                    "journey {journey}, step {step}: channel `{channel}` is not configured in {}; its sends will fail",
                    path.display()
                );
            }
        }
        Ok(self.claiming(Dispatcher::new(self.store(), channels, clock)))
    }

    /// The dispatcher, claiming what it delivers when the store is shared.
    fn claiming(&self, dispatcher: Dispatcher) -> Dispatcher {
        match self.deployment.shared {
            true => dispatcher.with_claims(self.deployment.lease_ms),
            false => dispatcher,
        }
    }
}

impl Parts {
    /// A dispatcher of one lane (see [`Lane`]), with channels of its own:
    /// `dripline up` runs one per lane, each on its own thread. The checks and
    /// the log lines of [`Parts::dispatcher`] are not repeated.
    pub fn lane_dispatcher(&self, clock: Arc<dyn Clock>, lane: Lane) -> anyhow::Result<Dispatcher> {
        let dispatcher = Dispatcher::new(self.store(), self.channels()?, clock).on_lane(lane);
        Ok(self.claiming(dispatcher))
    }

    /// The channels `channels.toml` describes, or the embedded outbox.
    fn channels(&self) -> anyhow::Result<Channels> {
        Ok(match &self.channels {
            Some(config) => Channels::from_config(config.clone())?,
            None => Channels::embedded(),
        })
    }
}

/// (journey, step, channel) for every `channel = "..."` in a step's config
/// of the journeys' current versions, `preferred` aside.
fn channels_named_by(journeys: &Journeys) -> Vec<(&str, &str, &str)> {
    let mut found = Vec::new();
    for journey in journeys.current() {
        for step in &journey.steps {
            let StepKind::Run { config, .. } = &step.kind else {
                continue;
            };
            let channel = config.get("channel").and_then(|c| c.as_str());
            if let Some(channel) = channel.filter(|c| *c != PREFERRED) {
                found.push((journey.id.as_str(), step.id.as_str(), channel));
            }
        }
    }
    found
}

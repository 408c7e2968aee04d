#![allow(clippy::panic)] // a harness that cannot set up fails the test, loudly
//! The test harness: where the components built by `build.rs` are, and a
//! sandbox set up the way the tests need it.

pub mod flaky;
pub mod gateway;
pub mod http_sink;
pub mod process;
pub mod shop;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dripline_clock::Clock as _;
use dripline_sandbox::{Sandbox, SandboxConfig, StepPlugin, TriggerPlugin};

/// The directory of freshly built components.
pub fn components_dir() -> &'static Path {
    Path::new(env!("DRIPLINE_TEST_COMPONENTS"))
}

/// The component file of a crate in `components/` (`"spin-forever"`).
pub fn component(name: &str) -> PathBuf {
    components_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// The `dripline` binary of this build: `cargo test` builds it beside the test
/// executables (`target/<profile>/deps/..` -> `target/<profile>/dripline`).
pub fn dripline_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("dripline"))
        .unwrap_or_default();
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        binary.display()
    );
    binary
}

/// The SQLite store of a deployment whose data directory holds `database`,
/// opened as `dripline` opens it: sealed under the keyring beside it.
pub fn deployment_store(database: &Path) -> dripline_store::SqliteStore {
    let keys = dripline_store::seal::Keyring::for_store(&database.with_file_name("store.key"))
        .unwrap_or_else(|e| panic!("{e}"));
    dripline_store::SqliteStore::open_sealed(database, keys).unwrap_or_else(|e| panic!("{e}"))
}

/// The repository's root.
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A sandbox with the given deadline and memory limit, sharing the compiled
/// component cache with every other test.
pub fn sandbox(deadline: Duration, memory_limit: usize) -> Arc<Sandbox> {
    let config = SandboxConfig {
        deadline,
        memory_limit,
        cache_dir: Some(PathBuf::from(env!("DRIPLINE_TEST_CACHE"))),
        max_instances: 32,
    };
    match Sandbox::new(config) {
        Ok(sandbox) => Arc::new(sandbox),
        Err(e) => panic!("the sandbox could not start: {e:#}"),
    }
}

/// Loads a component from `components/` as a step, failing the test on error.
pub fn step(sandbox: &Arc<Sandbox>, name: &str) -> StepPlugin {
    let loaded = sandbox
        .compile_file(name, &component(name))
        .and_then(|c| StepPlugin::new(sandbox.clone(), name, &c));
    loaded.unwrap_or_else(|e| panic!("{e}"))
}

/// Loads a component from `components/` as a trigger, failing the test on error.
pub fn trigger(sandbox: &Arc<Sandbox>, name: &str) -> TriggerPlugin {
    let loaded = sandbox
        .compile_file(name, &component(name))
        .and_then(|c| TriggerPlugin::new(sandbox.clone(), name, &c));
    loaded.unwrap_or_else(|e| panic!("{e}"))
}

/// A runtime with `workers` threads and a listener on a free loopback port:
/// where the tests serve real HTTP.
pub fn loopback(workers: usize) -> (tokio::runtime::Runtime, tokio::net::TcpListener) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("binding a loopback port: {e}"));
    (runtime, listener)
}

/// Names of the hostile fixtures in `components/fixtures/`.
pub fn fixtures() -> Vec<String> {
    let dir = repo_root().join("components/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The source an event of this name has in a deployment, for tests that put
/// events straight into the inbox: the owner's (`shopify` for a checkout,
/// `form` for a form, `dripline` for a click or a reply), orders from the
/// store (the cart journey's goal asks for the store's), the rest from the
/// track API.
pub fn source_of(name: &str) -> &'static str {
    match dripline_engine::trust::usual_source(name) {
        Some(source) => source,
        None if name.starts_with("order.") => "shopify",
        None => "api",
    }
}

/// Tracking on for one machine, as the harness's deployments have it.
pub const LOCAL_TRACKING: &str = "[tracking]\nbase_url = \"http://127.0.0.1:8080\"\nlocal = true\n";

/// A deployment in a temporary directory: the repository's journeys and
/// templates, the shipped step components, a fresh SQLite file, and a manual
/// clock. What `dripline up` runs, minus the HTTP.
pub struct Deployment {
    /// Owns the temporary directory for the deployment's lifetime.
    pub dir: tempfile::TempDir,
    /// The runner, driven by the test.
    pub runner: dripline_runner::Runner,
    /// The store it writes.
    pub store: Arc<dyn dripline_store::Store>,
    /// The clock it reads.
    pub clock: Arc<dripline_clock::ManualClock>,
    /// The outbox's dispatcher, on the same store and clock; the test decides
    /// when it runs ([`Deployment::dispatch_at`]).
    pub dispatcher: dripline_delivery::Dispatcher,
    /// Where its parts are, to open them again on a restart.
    paths: dripline::Deployment,
    /// The store as the webhook gateway writes it.
    gateway_store: Arc<dyn dripline_gateway_host::GatewayStore>,
}

/// A deployment root in `dir` for `dripline up`: the shipped journeys and
/// templates in `journeys/` and `templates/`, and the gateway, the triggers
/// and the shipped steps in `components/`.
pub fn deployment_root(dir: &Path) {
    for folder in ["journeys", "templates"] {
        std::fs::create_dir_all(dir.join(folder)).unwrap_or_else(|e| panic!("{e}"));
        let entries = std::fs::read_dir(repo_root().join(folder)).unwrap_or_else(|e| panic!("{e}"));
        for entry in entries.flatten() {
            std::fs::copy(entry.path(), dir.join(folder).join(entry.file_name()))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let components = dir.join("components");
    std::fs::create_dir_all(&components).unwrap_or_else(|e| panic!("{e}"));
    for name in ["gateway", "shopify", "forms", "track"]
        .iter()
        .chain(SHIPPED_STEPS)
    {
        let file = component(name);
        let Some(file_name) = file.file_name() else {
            panic!("{} has no file name", file.display());
        };
        std::fs::copy(&file, components.join(file_name)).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// An admin API served for a test ([`Deployment::serve_admin`]).
pub struct AdminDoor {
    /// Where it listens.
    pub addr: String,
    _runtime: tokio::runtime::Runtime,
}

/// `dripline up`'s public server (tracking, unsubscribe and confirmation
/// links) served for a test ([`Deployment::serve_public`]).
pub struct PublicDoor {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl PublicDoor {
    /// A link an email names (on the configured base URL,
    /// `http://127.0.0.1:8080`), on this server's port.
    pub fn on(&self, link: &str) -> String {
        let path = link
            .strip_prefix("http://127.0.0.1:8080")
            .unwrap_or_else(|| panic!("not a tracking link: {link}"));
        format!("http://{}{path}", self.addr)
    }
}

/// The step components a deployment ships (the fixtures are not among them).
pub const SHIPPED_STEPS: &[&str] = &["tag", "untag", "set-attribute", "score", "send", "webhook"];

impl Deployment {
    /// A deployment of the repository's `journeys/` at time `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self::with_journeys(&repo_root().join("journeys"), now_ms)
    }

    /// A deployment of the journeys in `journeys` at time `now_ms`.
    pub fn with_journeys(journeys: &Path, now_ms: i64) -> Self {
        Self::with_channels(journeys, None, now_ms)
    }

    /// A deployment of the journeys and templates in these directories, with
    /// the repository's `delivery.toml`, at time `now_ms`.
    pub fn with_dirs(journeys: &Path, templates: &Path, now_ms: i64) -> Self {
        Self::with_files(journeys, templates, None, now_ms)
    }

    /// A deployment of the journeys in `journeys` whose `channels.toml` is
    /// `channels` (none: the embedded default, everything stays in the outbox).
    pub fn with_channels(journeys: &Path, channels: Option<&str>, now_ms: i64) -> Self {
        Self::with_files(journeys, &repo_root().join("templates"), channels, now_ms)
    }

    /// [`Deployment::with_channels`] with the templates in `templates`.
    pub fn with_files(
        journeys: &Path,
        templates: &Path,
        channels: Option<&str>,
        now_ms: i64,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let channels_file = dir.path().join("channels.toml");
        if let Some(text) = channels {
            std::fs::write(&channels_file, text).unwrap_or_else(|e| panic!("{e}"));
        }
        // The shipped rules, with tracking on for this machine: links to
        // `dripline up`'s listener on loopback, as the tracking tests follow.
        let delivery = dir.path().join("delivery.toml");
        let shipped = std::fs::read_to_string(repo_root().join("delivery.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&delivery, format!("{shipped}\n{LOCAL_TRACKING}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let components = dir.path().join("components");
        std::fs::create_dir_all(&components).unwrap_or_else(|e| panic!("{e}"));
        for name in SHIPPED_STEPS {
            std::fs::copy(component(name), components.join(format!("{name}.wasm")))
                .unwrap_or_else(|e| panic!("copying {name}: {e}"));
        }
        let deployment = dripline::Deployment {
            components,
            journeys: journeys.to_path_buf(),
            templates: templates.to_path_buf(),
            delivery,
            store: dripline::StoreUrl::Sqlite(dir.path().join("dripline.db")),
            shared: false,
            lease_ms: dripline_runner::TIMER_LEASE_MS,
            channels: channels_file,
        };
        let clock = Arc::new(dripline_clock::ManualClock::new(now_ms));
        let (runner, store, dispatcher, gateway_store) = open(&deployment, &clock);
        Self {
            dir,
            runner,
            store,
            clock,
            dispatcher,
            paths: deployment,
            gateway_store,
        }
    }

    /// The repository's `spin.toml` served over loopback HTTP into this
    /// deployment's inbox, on its manual clock, with the test secrets of
    /// [`gateway`]: the front door of a deployment whose time the test moves.
    pub fn serve_gateway(&self) -> gateway::FrontDoor {
        gateway::serve_into(self.gateway_store.clone(), self.clock.clone())
    }

    /// The admin API over this deployment's store on loopback HTTP, letting
    /// in `tokens`: what `dripline up` serves on its admin listener.
    pub fn serve_admin(&self, tokens: Vec<dripline_admin::auth::StoredToken>) -> AdminDoor {
        let state = Arc::new(dripline_admin::api::AdminState {
            store: self.store.clone(),
            tokens: dripline_admin::auth::Tokens::fixed(tokens),
            clock: self.clock.clone(),
            simulator: None,
        });
        let (runtime, listener) = loopback(2);
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        runtime.spawn(dripline_admin::serve_admin(
            listener,
            state,
            std::future::pending(),
        ));
        AdminDoor {
            addr: addr.to_string(),
            _runtime: runtime,
        }
    }

    /// `dripline up`'s public server over this deployment's store on
    /// loopback HTTP: what answers the links in its emails.
    pub fn serve_public(&self) -> PublicDoor {
        let tracker = self
            .runner
            .tracker()
            .cloned()
            .unwrap_or_else(|| panic!("delivery.toml turns tracking on"));
        let state = Arc::new(dripline_admin::ServerState {
            steps: Vec::new(),
            triggers: Vec::new(),
            tracking: Some(dripline_admin::TrackingState {
                store: self.store.clone(),
                tracker,
                clock: self.clock.clone(),
            }),
            readiness: None,
        });
        let (runtime, listener) = loopback(1);
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        runtime.spawn(dripline_admin::serve(
            listener,
            state,
            std::future::pending(),
        ));
        PublicDoor {
            addr,
            _runtime: runtime,
        }
    }

    /// Adds the component `name` (a fixture, say) to the deployment's
    /// components and restarts it.
    pub fn add_component(&mut self, name: &str) {
        std::fs::copy(
            component(name),
            self.paths.components.join(format!("{name}.wasm")),
        )
        .unwrap_or_else(|e| panic!("copying {name}: {e}"));
        self.restart();
    }

    /// Stops the runner and starts a new one on the same files, as a restart
    /// of `dripline up` does: a new store handle, plugins and journey catalog,
    /// with only what the SQLite file and the journey files hold.
    pub fn restart(&mut self) {
        let (runner, store, dispatcher, _) = open(&self.paths, &self.clock);
        self.runner = runner;
        self.store = store;
        self.dispatcher = dispatcher;
    }

    /// Another runner on the same files, store and clock: a second worker.
    pub fn another_runner(&self) -> dripline_runner::Runner {
        open(&self.paths, &self.clock).0
    }

    /// Puts a canonical event (JSON) in the inbox, as the gateway does.
    pub fn receive(&self, event: serde_json::Value) {
        let id = event["id"].as_str().unwrap_or_default().to_string();
        let received = event["received_at"]
            .as_i64()
            .unwrap_or_else(|| self.clock.now_ms());
        let write = dripline_store::Write::inbox_put(received, &id, event.to_string().into_bytes());
        self.store
            .apply(&[write])
            .unwrap_or_else(|e| panic!("inbox: {e}"));
    }

    /// Moves the clock to `now_ms` and processes everything due by then.
    pub fn run_at(&mut self, now_ms: i64) {
        assert!(
            now_ms >= self.clock.now_ms(),
            "the clock only moves forward"
        );
        self.clock.set(now_ms);
        self.runner
            .run_until_idle()
            .unwrap_or_else(|e| panic!("runner: {e}"));
    }

    /// Moves the clock to `now_ms` and delivers every outbox message due by
    /// then, as `dripline up`'s worker does after each pass.
    pub fn dispatch_at(&mut self, now_ms: i64) -> dripline_delivery::DispatchReport {
        assert!(
            now_ms >= self.clock.now_ms(),
            "the clock only moves forward"
        );
        self.clock.set(now_ms);
        self.dispatcher
            .run_until_idle()
            .unwrap_or_else(|e| panic!("dispatcher: {e}"))
    }

    /// Every outbox message so far, oldest first.
    pub fn outbox(&self) -> Vec<dripline_store::OutboxMessage> {
        self.store
            .outbox_list(None, 10_000)
            .unwrap_or_else(|e| panic!("outbox: {e}"))
    }

    /// The stored contact with this email.
    pub fn contact_by_email(&self, email: &str) -> dripline_runner::contacts::ContactRecord {
        let identity = dripline_store::Identity::Email(email.to_string());
        let found = self
            .store
            .contact_find_by_identity(&identity)
            .unwrap_or_else(|e| panic!("{e}"));
        dripline_runner::contacts::ContactRecord::from_stored(
            found.unwrap_or_else(|| panic!("no contact {email}")),
        )
    }
}

fn open(
    deployment: &dripline::Deployment,
    clock: &Arc<dripline_clock::ManualClock>,
) -> (
    dripline_runner::Runner,
    Arc<dyn dripline_store::Store>,
    dripline_delivery::Dispatcher,
    Arc<dyn dripline_gateway_host::GatewayStore>,
) {
    let sandbox = sandbox(Duration::from_secs(1), 64 << 20);
    let parts = dripline::Parts::open(deployment, &sandbox)
        .unwrap_or_else(|e| panic!("opening the deployment: {e:#}"));
    let runner = parts
        .runner(clock.clone())
        .unwrap_or_else(|e| panic!("opening the runner: {e:#}"));
    let dispatcher = parts
        .dispatcher(clock.clone(), runner.journeys())
        .unwrap_or_else(|e| panic!("opening the dispatcher: {e:#}"));
    (runner, parts.store(), dispatcher, parts.store.gateway())
}

//! The command line: subcommands and their arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use dripline::StoreUrl;

/// `dripline`: customer journeys as WebAssembly components.
#[derive(Parser)]
#[command(
    name = "dripline",
    version,
    about = "Customer journeys as WebAssembly components"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where a deployment is: what `up` and `process` both read.
#[derive(clap::Args)]
pub struct DeploymentArgs {
    /// Directory of component files (`*.wasm`) to load.
    #[arg(
        long,
        env = "DRIPLINE_COMPONENTS",
        default_value = "target/dripline/components"
    )]
    pub components: PathBuf,
    /// Directory for the database and the compiled-component cache.
    #[arg(long, env = "DRIPLINE_DATA", default_value = ".dripline")]
    pub data: PathBuf,
    /// The store: `sqlite:<path>` (default: `sqlite:<data>/dripline.db`) or
    /// `redis://host:port[/db]`, the store a gateway under Spin and any number
    /// of `dripline worker`s share.
    #[arg(long, env = "DRIPLINE_STORE")]
    pub store: Option<StoreUrl>,
    /// The deployment's root: `journeys/`, `templates/`, `delivery.toml` and
    /// `channels.toml` are read from it.
    #[arg(long, env = "DRIPLINE_ROOT", default_value = ".")]
    pub root: PathBuf,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Load the components and serve: webhooks in, journeys run, messages out.
    Up(UpArgs),
    /// Run journeys and deliver messages, without the webhook gateway: one of
    /// any number of workers on one shared store (Redis, or one SQLite file),
    /// beside a gateway under Spin or `dripline up`.
    Worker(WorkerArgs),
    /// Process the inbox and the due timers until nothing is left, then exit.
    Process {
        #[command(flatten)]
        deployment: DeploymentArgs,
        /// Process as if the time were this (ms since the epoch); default: now.
        #[arg(long)]
        now_ms: Option<i64>,
        /// Directory of compiled components; default: `<data>/cache`.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// How long a claimed timer or message stays this process's, in
        /// milliseconds (see `worker --lease-ms`).
        #[arg(long, default_value_t = 60_000)]
        lease_ms: i64,
    },
    /// Check journey and segment files (those in a `segments` directory);
    /// every error is printed with its file, line and field.
    Validate {
        /// The journey and segment files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The component files the journeys' steps use (default
        /// `target/dripline/components`, whose absence is only noted).
        #[arg(long, env = "DRIPLINE_COMPONENTS")]
        components: Option<PathBuf>,
        /// The templates (default: `templates/` beside each journey's
        /// directory).
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// Print the JSON Schema of journey files.
    Schema,
    /// Events the runner set aside: list them, read one, or put one back in
    /// the inbox once its cause is fixed. Safe while `dripline up` runs.
    Deadletters {
        /// Directory of the database.
        #[arg(long, env = "DRIPLINE_DATA", default_value = ".dripline")]
        data: PathBuf,
        /// The store, if not the database in `--data` (see `up --store`).
        #[arg(long, env = "DRIPLINE_STORE")]
        store: Option<StoreUrl>,
        /// What to do.
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Bring a customer list in: a CSV file (with a header row) or JSON lines
    /// (`.jsonl`), each row a contact. Safe while `dripline up` runs.
    Import(ImportArgs),
    /// Contacts: merge two that are one person. Safe while `dripline up`
    /// runs: the merge is queued for the runner, which carries it out.
    Contacts {
        /// Directory of the database.
        #[arg(long, env = "DRIPLINE_DATA", default_value = ".dripline")]
        data: PathBuf,
        /// The store, if not the database in `--data` (see `up --store`).
        #[arg(long, env = "DRIPLINE_STORE")]
        store: Option<StoreUrl>,
        /// What to do.
        #[command(subcommand)]
        action: ContactAction,
    },
    /// Run one journey for a test contact through a script of timed events,
    /// on a virtual clock, with the real components and delivery policy and
    /// a throwaway store; no message leaves. Prints the timeline.
    Simulate(SimulateArgs),
    /// Render one template for one test contact, as the send step would.
    Preview(PreviewArgs),
    /// Admin API tokens: make one (printed once; only its hash is kept in
    /// `<data>/admin-tokens.toml`), list them, revoke one. Takes effect in a
    /// running `dripline up` at once.
    Token {
        /// Directory of the database, beside which the tokens file is kept.
        #[arg(long, env = "DRIPLINE_DATA", default_value = ".dripline")]
        data: PathBuf,
        /// What to do.
        #[command(subcommand)]
        action: TokenAction,
    },
}

/// `dripline simulate`.
#[derive(clap::Args)]
pub struct SimulateArgs {
    /// The journey file.
    pub journey: PathBuf,
    /// The test contact, JSON or TOML: `email`, `phone`, `time_zone`,
    /// `attributes`, `consent`.
    #[arg(long)]
    pub contact: PathBuf,
    /// The events, JSON or TOML: `start` (RFC 3339), `until` (how long after
    /// the last event to go on, default 30d) and `[[events]]` with `after`,
    /// `name`, `source`, `properties`.
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// The deployment's root (templates, `delivery.toml`).
    #[arg(long, env = "DRIPLINE_ROOT", default_value = ".")]
    pub root: PathBuf,
    /// Directory of component files.
    #[arg(
        long,
        env = "DRIPLINE_COMPONENTS",
        default_value = "target/dripline/components"
    )]
    pub components: PathBuf,
    /// Print the timeline as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `dripline preview`.
#[derive(clap::Args)]
pub struct PreviewArgs {
    /// The template's name (`checkout-reminder`).
    pub template: String,
    /// The channel (`email`, `sms`).
    #[arg(long, default_value = "email")]
    pub channel: String,
    /// The test contact (see `simulate --contact`).
    #[arg(long)]
    pub contact: PathBuf,
    /// The trigger event's properties (JSON or TOML): what the template reads.
    #[arg(long)]
    pub properties: Option<PathBuf>,
    /// The deployment's root (templates, `delivery.toml`).
    #[arg(long, env = "DRIPLINE_ROOT", default_value = ".")]
    pub root: PathBuf,
    /// Directory of component files.
    #[arg(
        long,
        env = "DRIPLINE_COMPONENTS",
        default_value = "target/dripline/components"
    )]
    pub components: PathBuf,
}

/// `dripline token ...`.
#[derive(Subcommand)]
pub enum TokenAction {
    /// Make a token and print it.
    New {
        /// Who or what holds it (unique; shown in the logs).
        #[arg(long)]
        name: String,
        /// `marketing` (journeys and figures, contacts masked), `operations`
        /// (also runs journeys, reads personal data and the outbox) or
        /// `engineering` (everything).
        #[arg(long)]
        role: String,
    },
    /// The tokens' names and roles.
    List,
    /// Revoke the token named `name`.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// `dripline contacts ...`.
#[derive(Subcommand)]
pub enum ContactAction {
    /// Merge `from` into `into`: identities, profile, facts and consent
    /// move over, active enrollments follow (except into a journey `into` is
    /// already in), `from` is left as a pointer. Each is a contact id or an
    /// email address.
    Merge {
        /// The contact that stays.
        into: String,
        /// The contact merged into it.
        from: String,
    },
    /// Erase a contact everywhere (profile, identities, enrollments, timers,
    /// messages, dead letters, waiting events), leaving an anonymous
    /// tombstone that keeps the same person from being imported or enrolled
    /// again by a replay. The runner carries it out in its turn.
    Erase {
        /// A contact id or an email address.
        who: String,
    },
    /// Print what is kept of a contact, as JSON (a data subject's request).
    Export {
        /// A contact id or an email address.
        who: String,
    },
    /// Apply `[retention]` of `delivery.toml` now: queue the erasure of every
    /// contact inactive past its limit, delete old messages. `dripline up`
    /// does this once an hour by itself.
    Retention {
        /// The deployment's root, where `delivery.toml` is.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// The time to measure ages from (ms since the epoch; default: now).
        #[arg(long)]
        now_ms: Option<i64>,
    },
}

/// `dripline import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// The file: `.csv` (a header row, then one contact a row) or `.jsonl`
    /// (one JSON object a line).
    pub file: PathBuf,
    /// A TOML file saying which column is what (see the README's "Import");
    /// without one, `email`, `phone`, `time_zone` and `tags` are read by name
    /// and the other columns become attributes.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Directory of the database.
    #[arg(long, env = "DRIPLINE_DATA", default_value = ".dripline")]
    pub data: PathBuf,
    /// The store, if not the database in `--data` (see `up --store`).
    #[arg(long, env = "DRIPLINE_STORE")]
    pub store: Option<StoreUrl>,
    /// No progress bar (for scripts and logs).
    #[arg(long)]
    pub quiet: bool,
    /// The time the import is recorded at (ms since the epoch; default:
    /// now): its consent changes, and the new contacts' first activity.
    #[arg(long)]
    pub now_ms: Option<i64>,
}

/// `dripline deadletters ...`.
#[derive(Subcommand)]
pub enum DeadLetterAction {
    /// One line per dead letter, oldest first: its key and its problem.
    List,
    /// One dead letter in full, as JSON.
    Show {
        /// The key `list` prints.
        key: String,
    },
    /// Put a dead letter back into the inbox, where the runner takes it again.
    Replay {
        /// The key `list` prints.
        key: String,
    },
}

/// `dripline up`.
#[derive(clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// Address of the public listener: health, tracking links and the
    /// unsubscribe page, nothing else (it may face the internet).
    #[arg(long, env = "DRIPLINE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the admin API (tokens from `dripline token new`). Keep it
    /// off the internet.
    #[arg(long, env = "DRIPLINE_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    /// Most wall-clock time one plugin call may take, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub deadline_ms: u64,
    /// Most memory one plugin instance may use, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
    /// Address the webhook gateway (the HTTP routes of `spin.toml`) listens on.
    #[arg(
        long,
        env = "DRIPLINE_GATEWAY_LISTEN",
        default_value = "127.0.0.1:3000"
    )]
    pub gateway_listen: SocketAddr,
    /// The Spin manifest whose HTTP routes the gateway serves.
    #[arg(long, env = "DRIPLINE_SPIN", default_value = "spin.toml")]
    pub spin: PathBuf,
    /// A TOML file of Spin variable values (`shopify_secret = "..."`);
    /// `SPIN_VARIABLE_<NAME>` in the environment wins over it.
    #[arg(long, env = "DRIPLINE_VARIABLES_FILE")]
    pub variables_file: Option<PathBuf>,
    /// Run the clock this many times faster than the wall clock, for
    /// demonstrations (3600: an hour a second). Deployments leave it at 1.
    #[arg(long, default_value_t = 1.0)]
    pub clock_speed: f64,
}

/// `dripline worker`.
#[derive(clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// Serve `/health/live` and `/health/ready` on this address (for a
    /// supervisor's probes); none by default.
    #[arg(long, env = "DRIPLINE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// How long a claimed timer or message stays this worker's, in
    /// milliseconds: when a worker dies, what it held is taken by another
    /// after this long. It must outlast a batch and a delivery's timeout.
    #[arg(long, default_value_t = 60_000)]
    pub lease_ms: i64,
    /// Most wall-clock time one plugin call may take, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub deadline_ms: u64,
    /// Most memory one plugin instance may use, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
}

//! The genuine Spin runs the project's own `spin.toml`: `spin build`, then
//! `spin up` with its key-value store pointed at a Dripline data directory,
//! then signed Shopify, Typeform, Tally, HTML form and track deliveries over
//! loopback. Spin must answer each as `dripline up`'s gateway does and store
//! the same inbox records (id, name, identities, properties); `dripline
//! process` on that data directory must then enroll the shopper.
//!
//! Spin is found through `SPIN_BIN` (`.ci/run` points it at the genuine Spin
//! 3.6.3 in `../shared/tools/spin` when that exists). Without `SPIN_BIN` the
//! test says so and passes; with it, anything Spin rejects fails it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dripline_store::prelude::*;
use dripline_store::redis::RedisServer;
use dripline_store::{Identity, RedisStore, SqliteStore, Store};
use dripline_tests::gateway::{
    SHOPIFY_SECRET, TALLY_SECRET, TRACK_KEY, TYPEFORM_SECRET, serve, signed_deliveries,
};
use dripline_tests::process::{Up, http};
use dripline_tests::{SHIPPED_STEPS, component, dripline_binary, repo_root};
use serde_json::Value;

/// A running `spin up`, stopped when dropped. `spin up` runs the app in a
/// child process of its own (`spin trigger http`), so it is started as the
/// leader of a process group and the whole group is stopped.
struct Spin(Child);

impl Drop for Spin {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// `spin up` of the repository's `spin.toml` on a free loopback port, with
/// the runtime config `runtime_config` (where its `default` key-value store
/// is); returns it and its address once it serves.
fn spin_up(spin: &Path, dir: &Path, runtime_config: &str) -> (Spin, String) {
    spin_up_with(spin, dir, runtime_config, &[])
}

/// [`spin_up`] with more Spin variables (`SPIN_VARIABLE_*`) in `env`.
fn spin_up_with(
    spin: &Path,
    dir: &Path,
    runtime_config: &str,
    env: &[(&str, &str)],
) -> (Spin, String) {
    let config = dir.join("runtime-config.toml");
    std::fs::write(&config, runtime_config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = Command::new(spin)
        .arg("up")
        .arg("-f")
        .arg(repo_root().join("spin.toml"))
        .arg("--runtime-config-file")
        .arg(&config)
        .args(["--listen", &address])
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .envs([
            ("SPIN_VARIABLE_SHOPIFY_SECRET", SHOPIFY_SECRET),
            ("SPIN_VARIABLE_TRACK_WRITE_KEY", TRACK_KEY),
            ("SPIN_VARIABLE_TYPEFORM_SECRET", TYPEFORM_SECRET),
            ("SPIN_VARIABLE_TALLY_SECRET", TALLY_SECRET),
            ("SPIN_VARIABLE_FORM_REDIRECT_HOSTS", "example.com"),
        ])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", spin.display()));
    let stdout = child.stdout.take().unwrap();
    let spin = Spin(child);
    let (serving, serves) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("Serving http://") {
                let _ = serving.send(());
            }
        }
    });
    // Spin compiles every component before it serves.
    serves
        .recv_timeout(Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("spin up did not serve within three minutes: {e}"));
    (spin, address)
}

/// The inbox's records without the time they were received, by id.
fn inbox_records(store: &dyn Store) -> Vec<Value> {
    let mut records: Vec<Value> = store
        .inbox_peek(1_000)
        .unwrap()
        .into_iter()
        .map(|(_, bytes)| {
            let event: Value = serde_json::from_slice(&bytes).unwrap();
            // An HTML form post carries no delivery id, so its event's id
            // includes the time it was received (two equal posts are two
            // submissions): the one field that differs by design.
            let id = match event["source"].as_str() {
                Some("form") => Value::from("form-(by its time of receipt)"),
                _ => event["id"].clone(),
            };
            serde_json::json!({
                "id": id,
                "name": event["name"],
                "source": event["source"],
                "identities": event["identities"],
                "properties": event["properties"],
            })
        })
        .collect();
    records.sort_by_key(|r| r["id"].to_string());
    records
}

/// The genuine Spin `SPIN_BIN` names, after `spin build`; None (the test
/// says it is skipped) without `SPIN_BIN`.
fn genuine_spin() -> Option<PathBuf> {
    let Some(spin) = std::env::var_os("SPIN_BIN").map(PathBuf::from) else {
        eprintln!("SPIN_BIN is not set: the test under genuine Spin is skipped");
        return None;
    };
    spin_build(&spin);
    Some(spin)
}

/// `spin build` runs each component's build command; after `./dev build`
/// (whose components/target is the shared build) it finds nothing to do.
fn spin_build(spin: &Path) {
    let started = Instant::now();
    let built = Command::new(spin)
        .args(["build", "-f"])
        .arg(repo_root().join("spin.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .current_dir(repo_root())
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", spin.display()));
    assert!(built.success(), "spin build failed: {built:?}");
    eprintln!("spin build: {:?}", started.elapsed());
}

/// The shipped step components, copied into `dir/components`.
fn step_components(dir: &Path) -> PathBuf {
    let components = dir.join("components");
    std::fs::create_dir_all(&components).unwrap();
    for name in SHIPPED_STEPS {
        let file = component(name);
        std::fs::copy(&file, components.join(file.file_name().unwrap())).unwrap();
    }
    components
}

#[test]
fn genuine_spin_stores_what_dripline_up_stores_and_dripline_runs_journeys_on_it() {
    let Some(spin) = genuine_spin() else {
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = format!(
        "[key_value_store.default]\ntype = \"spin\"\npath = \"{}\"\n",
        data.join("dripline.db").display()
    );
    let (spin_up, spin_address) = spin_up(&spin, dir.path(), &config);
    let ours = serve();
    let ours_address = ours.addr.to_string();
    for (head, body) in signed_deliveries() {
        let under_spin = http(&spin_address, &head, &body);
        let under_dripline = http(&ours_address, &head, &body);
        assert_eq!(under_spin, under_dripline, "{head}");
        assert!([200, 303].contains(&under_spin.0), "{head}: {under_spin:?}");
    }
    drop(spin_up);

    let spin_store = dripline_tests::deployment_store(&data.join("dripline.db"));
    let stored = inbox_records(&spin_store);
    assert_eq!(stored.len(), 5, "{stored:#?}");
    assert_eq!(stored, inbox_records(ours.store.as_ref()));
    drop(spin_store);

    // The runtime beside Spin turns its inbox into enrollments.
    let components = step_components(dir.path());
    let processed = Command::new(dripline_binary())
        .arg("process")
        .arg("--data")
        .arg(&data)
        .arg("--components")
        .arg(&components)
        .arg("--root")
        .arg(repo_root())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        processed.status.success(),
        "{}",
        String::from_utf8_lossy(&processed.stderr)
    );
    let store = dripline_tests::deployment_store(&data.join("dripline.db"));
    assert!(
        store.inbox_peek(10).unwrap().is_empty(),
        "the inbox is consumed"
    );
    let shopper = store
        .contact_find_by_identity(&Identity::Email("li.wei@example.com".into()))
        .unwrap()
        .expect("the shopper is a contact");
    let journeys: Vec<String> = store
        .enrollments_of_contact(&shopper.id)
        .unwrap()
        .into_iter()
        .filter(|e| e.active)
        .map(|e| e.journey)
        .collect();
    assert!(
        journeys.iter().any(|j| j == "abandoned-checkout"),
        "{journeys:?}"
    );
}

/// Posts every signed delivery to Spin at `spin_address` and to `dripline
/// up`'s gateway in this process: the answers must be the same.
fn answers_as_dripline_up(spin_address: &str) {
    let ours = serve();
    for (head, body) in signed_deliveries() {
        let under_spin = http(spin_address, &head, &body);
        let under_dripline = http(&ours.addr.to_string(), &head, &body);
        assert_eq!(under_spin, under_dripline, "{head}");
    }
}

/// The workers on the Redis at `url` took every event and enrolled the
/// shopper, processing the checkout once; then they are stopped.
fn assert_enrolled_once(url: &str, workers: Vec<Up>) {
    let store = RedisStore::open(url).unwrap();
    let enrolled = enrolled_once_consumed(&store);
    drop(workers);
    assert!(
        enrolled.iter().any(|j| j == "abandoned-checkout"),
        "{enrolled:?}"
    );
    assert!(
        store.inbox_peek(10).unwrap().is_empty(),
        "the inbox is consumed"
    );
    assert_eq!(
        store.metric_get("events.checkout.created").unwrap(),
        1,
        "the checkout was processed once"
    );
}

/// The shopper's active journeys once the inbox is consumed and the shopper
/// is in the abandoned-checkout journey, or after a minute, whichever first.
fn enrolled_once_consumed(store: &RedisStore) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shopper = store
            .contact_find_by_identity(&Identity::Email("li.wei@example.com".into()))
            .unwrap();
        let journeys: Vec<String> = match &shopper {
            Some(shopper) => store
                .enrollments_of_contact(&shopper.id)
                .unwrap()
                .into_iter()
                .filter(|e| e.active)
                .map(|e| e.journey)
                .collect(),
            None => Vec::new(),
        };
        let consumed = store.inbox_peek(10).unwrap().is_empty();
        let done = consumed && journeys.iter().any(|j| j == "abandoned-checkout");
        if done || Instant::now() > deadline {
            return journeys;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `dripline worker`s on the Redis at `url`, their data directories in `dir`.
fn workers_on(url: &str, dir: &Path, count: usize) -> Vec<Up> {
    let components = step_components(dir);
    let root = repo_root().to_str().unwrap();
    let workers: Vec<Up> = (0..count)
        .map(|i| {
            let data = dir.join(format!("worker-{i}"));
            Up::worker(
                dir,
                &[
                    "--store",
                    url,
                    "--components",
                    components.to_str().unwrap(),
                    "--root",
                    root,
                    "--data",
                    data.to_str().unwrap(),
                ],
                &[],
            )
        })
        .collect();
    for worker in &workers {
        worker.address_after("the worker is up");
    }
    workers
}

#[test]
fn genuine_spin_on_redis_feeds_two_workers_that_share_that_redis() {
    let Some(spin) = genuine_spin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let url = redis.url(0);
    // Spin's own Redis key-value backend: what a SpinKube deployment's
    // runtime config names.
    let config = format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{url}\"\n");
    let workers = workers_on(&url, dir.path(), 2);
    let (spin_up, spin_address) = spin_up(&spin, dir.path(), &config);
    answers_as_dripline_up(&spin_address);
    drop(spin_up);

    // The workers take the events from Spin's keys, and the shopper is enrolled.
    assert_enrolled_once(&url, workers);
}

#[test]
fn genuine_spin_at_the_edge_writes_its_inbox_to_the_workers_redis_through_outbound_redis() {
    let Some(spin) = genuine_spin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let url = redis.url(0);
    let host = format!("redis://127.0.0.1:{}", redis.port());
    // The platform's own key-value store, which nothing outside can read.
    let platform = dir.path().join("platform-kv.db");
    let config = format!(
        "[key_value_store.default]\ntype = \"spin\"\npath = \"{}\"\n",
        platform.display()
    );
    let workers = workers_on(&url, dir.path(), 1);
    let (spin_up, spin_address) = spin_up_with(
        &spin,
        dir.path(),
        &config,
        &[
            ("SPIN_VARIABLE_INBOX_REDIS_URL", &url),
            ("SPIN_VARIABLE_INBOX_REDIS_HOST", &host),
        ],
    );
    answers_as_dripline_up(&spin_address);
    // A delivery sent again is known by its mark, kept in the Redis too.
    let (head, body) = signed_deliveries().remove(0);
    assert_eq!(http(&spin_address, &head, &body).0, 200);
    drop(spin_up);

    assert_enrolled_once(&url, workers);
    let platform = SqliteStore::open(&platform).unwrap();
    assert!(
        platform.kv_keys("default").unwrap().is_empty(),
        "nothing went to the platform's key-value store"
    );
}

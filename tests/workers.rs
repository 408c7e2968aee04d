//! Many workers on one Redis, through the front door: `dripline up` on Redis
//! serves the webhooks (and runs journeys too), three `dripline worker`s run
//! beside it on the same Redis, and signed track calls start a journey of two
//! waits and two posts to a CRM on loopback. Every timer must fire once and
//! every post must arrive once, however the four processes share the work.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use dripline_store::RedisStore;
use dripline_store::prelude::*;
use dripline_store::redis::RedisServer;
use dripline_tests::gateway::TRACK_KEY;
use dripline_tests::http_sink::Receiver;
use dripline_tests::process::{Up, http};
use dripline_tests::{SHIPPED_STEPS, component, repo_root};
use serde_json::{Value, json};

const CONTACTS: usize = 30;

/// A deployment in `dir` with one journey: a trial start waits a second,
/// posts to the CRM, waits another second and posts again.
fn deployment(dir: &Path, crm: &str) {
    std::fs::create_dir_all(dir.join("journeys")).unwrap();
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    let post = |n: u32| {
        format!(
            "[[steps]]\nid = \"post-{n}\"\nuses = \"webhook\"\n{next}\
             [steps.config]\nurl = \"{crm}/api/tasks\"\nallowed_hosts = [\"127.0.0.1\"]\n\
             [steps.config.body]\nemail = \"{{{{ contact.email }}}}\"\npost = \"{n}\"\n\n",
            next = if n == 1 { "next = \"wait-2\"\n" } else { "" }
        )
    };
    let journey = format!(
        "name = \"Trial follow-ups\"\nversion = 1\n\n[trigger]\nevent = \"trial.started\"\n\n\
         [entry]\none_active_per = \"contact\"\n\n\
         [[steps]]\nid = \"wait-1\"\nwait = \"1s\"\nnext = \"post-1\"\n\n{}\
         [[steps]]\nid = \"wait-2\"\nwait = \"1s\"\nnext = \"post-2\"\n\n{}",
        post(1),
        post(2)
    );
    std::fs::write(dir.join("journeys/trial-follow-ups.toml"), journey).unwrap();
    std::fs::write(
        dir.join("channels.toml"),
        "[http_out]\nsecret = \"the CRM's shared secret\"\n",
    )
    .unwrap();
    let components = dir.join("components");
    std::fs::create_dir_all(&components).unwrap();
    for name in ["gateway", "track"].iter().chain(SHIPPED_STEPS) {
        let file = component(name);
        std::fs::copy(&file, components.join(file.file_name().unwrap())).unwrap();
    }
}

fn track(gateway: &str, email: &str) -> (u16, String) {
    let body = json!({
        "type": "track",
        "messageId": format!("msg-trial-{email}"),
        "event": "Trial Started",
        "properties": {},
        "context": { "traits": { "email": email } },
    })
    .to_string();
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {TRACK_KEY}"
    );
    http(gateway, &head, body.as_bytes())
}

#[test]
fn four_workers_on_one_redis_fire_every_timer_once_and_deliver_every_post_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let url = redis.url(0);
    let crm = Receiver::start();
    deployment(dir.path(), &crm.url);
    let spin = repo_root().join("spin.toml");
    let common = ["--components", "components", "--root", ".", "--store", &url];
    let up = Up::start(
        dir.path(),
        &[
            &common[..],
            &["--data", "data-up", "--spin", spin.to_str().unwrap()],
        ]
        .concat(),
        &[("SPIN_VARIABLE_TRACK_WRITE_KEY", TRACK_KEY)],
    );
    let workers: Vec<Up> = (0..3)
        .map(|i| {
            let data = format!("data-{i}");
            Up::worker(
                dir.path(),
                &[&common[..], &["--data", &data, "--lease-ms", "10000"]].concat(),
                &[],
            )
        })
        .collect();
    for worker in &workers {
        worker.address_after("the worker is up");
    }
    let gateway = up.gateway();

    let emails: Vec<String> = (0..CONTACTS)
        .map(|i| format!("trial-{i:02}@example.com"))
        .collect();
    for email in &emails {
        let (status, body) = track(&gateway, email);
        assert_eq!(status, 200, "{body}");
    }
    let expected = 2 * CONTACTS;
    let deadline = Instant::now() + Duration::from_secs(90);
    while crm.hits().len() < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Time for a second delivery of anything, were there one.
    std::thread::sleep(Duration::from_secs(3));
    let store = RedisStore::open(&url).unwrap();
    let fired = store.metric_get(dripline_runner::TIMERS_FIRED).unwrap();
    let pending = store.timers_pending_count().unwrap();
    drop((up, workers));

    let mut posts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for hit in crm.hits() {
        let body: Value = serde_json::from_str(&hit.body).unwrap();
        let key = (
            body["email"].as_str().unwrap_or_default().to_string(),
            body["post"].as_str().unwrap_or_default().to_string(),
        );
        *posts.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = posts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(posts.len(), expected, "posts that arrived: {posts:?}");
    for email in &emails {
        for post in ["1", "2"] {
            assert!(
                posts.contains_key(&(email.clone(), post.to_string())),
                "{email} {post}"
            );
        }
    }
    assert_eq!(fired, i64::try_from(expected).unwrap(), "timers fired");
    assert_eq!(pending, 0, "timers left");
}

#[test]
fn the_spinkube_manifests_name_only_flags_and_variables_that_exist() {
    let deploy = repo_root().join("deploy/spinkube");
    let worker = std::fs::read_to_string(deploy.join("worker.yaml")).unwrap();
    let flags: Vec<&str> = worker
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .map(|f| f.split('=').next().unwrap_or_default())
        .collect();
    assert!(flags.contains(&"store"), "{flags:?}");
    let help = std::process::Command::new(dripline_tests::dripline_binary())
        .args(["worker", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in &flags {
        assert!(
            help.contains(&format!("--{flag}")),
            "`dripline worker` has no --{flag}"
        );
    }
    assert!(
        worker.contains("args:\n            - worker"),
        "the worker runs `dripline worker`"
    );

    let app = std::fs::read_to_string(deploy.join("spinapp.yaml")).unwrap();
    let spin = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
    let variables: Vec<&str> = app
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .collect();
    assert!(!variables.is_empty());
    for variable in variables {
        assert!(
            spin.contains(&format!("\n{variable} = {{")),
            "spin.toml declares no variable `{variable}`"
        );
    }
    let config = std::fs::read_to_string(deploy.join("runtime-config.yaml")).unwrap();
    assert!(
        config.contains("[key_value_store.default]\n    type = \"redis\""),
        "{config}"
    );
}

//! The `dripline` command as a user runs it: `validate` on the shipped journeys
//! and on the broken fixtures of `tests/cases/journeys/`, and `schema`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dripline(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dripline"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn validate_passes_every_shipped_journey() {
    let mut files: Vec<String> = std::fs::read_dir(repo().join("journeys"))
        .unwrap()
        .map(|e| format!("journeys/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".toml"))
        .collect();
    files.sort();
    let args: Vec<&str> = std::iter::once("validate")
        .chain(files.iter().map(String::as_str))
        .collect();
    let (ok, out) = dripline(&args);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains(": ok (")).count(),
        files.len(),
        "{out}"
    );
}

#[test]
fn validate_locates_every_error_of_each_broken_fixture() {
    let dir = repo().join("tests/cases/journeys");
    let mut fixtures = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        fixtures += 1;
        let relative = format!(
            "tests/cases/journeys/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let (ok, out) = dripline(&["validate", &relative]);
        assert!(!ok, "{relative} was accepted");
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                out.lines().any(|l| l == line),
                "{relative}: missing `{line}` in:\n{out}"
            );
        }
        for line in out.lines() {
            assert!(
                line.starts_with(&format!("{relative}:")),
                "{relative}: unlocated error `{line}`"
            );
        }
    }
    assert!(fixtures > 0);
}

#[test]
fn schema_prints_the_json_schema_of_journey_files() {
    let (ok, out) = dripline(&["schema"]);
    assert!(ok);
    let schema: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(schema["properties"]["steps"].is_object(), "{schema}");
    let committed = std::fs::read_to_string(repo().join("journeys/journey.schema.json")).unwrap();
    assert_eq!(
        committed.trim(),
        out.trim(),
        "journeys/journey.schema.json is stale: run `dripline schema > journeys/journey.schema.json`"
    );
}

/// `dripline up` on an empty deployment in `dir` (no components, journeys or
/// manifest), on free ports, its log lines (stdout) sent to the channel.
fn up_in(dir: &Path) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead as _;
    std::fs::create_dir_all(dir.join("components")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dripline"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--data",
            "data",
            "--components",
            "components",
            "--root",
            ".",
        ])
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, received)
}

/// Waits until the log says `dripline up` serves; returns the address of its
/// admin listener.
fn wait_until_up(lines: &std::sync::mpsc::Receiver<String>) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("dripline is up on http://") => {
                // The log may be coloured: the address ends where its
                // characters do.
                let address = line.rsplit("http://").next().unwrap_or_default();
                return address
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
            }
            Ok(_) => {}
            Err(e) => panic!("dripline up did not come up: {e}"),
        }
    }
    panic!("dripline up did not come up within a minute");
}

#[test]
fn a_second_dripline_on_the_same_data_directory_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, lines) = up_in(dir.path());
    let _ = wait_until_up(&lines);
    let second = Command::new(env!("CARGO_BIN_EXE_dripline"))
        .args([
            "process",
            "--data",
            "data",
            "--components",
            "components",
            "--root",
            ".",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&second.stderr).into_owned();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!second.status.success(), "the second process ran: {said}");
    assert!(
        said.contains("in use by another dripline process")
            && said.contains(&format!("pid {}", first.id())),
        "{said}"
    );
    // Once the first is gone, the directory is free again.
    let third = Command::new(env!("CARGO_BIN_EXE_dripline"))
        .args([
            "process",
            "--data",
            "data",
            "--components",
            "components",
            "--root",
            ".",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
}

#[test]
fn sigterm_stops_dripline_up_with_exit_code_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = up_in(dir.path());
    let _ = wait_until_up(&lines);
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn a_dead_letter_is_listed_shown_and_replayed_into_the_inbox_from_the_command_line() {
    use dripline_store::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("components")).unwrap();
    let database = dir.path().join("data/dripline.db");
    std::fs::create_dir_all(database.parent().unwrap()).unwrap();
    {
        let store = dripline_store::SqliteStore::open(&database).unwrap();
        let write = dripline_store::Write::inbox_put(1_000, "broken-1", b"{not json".to_vec());
        store.apply(&[write]).unwrap();
    }
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dripline"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let process = [
        "process",
        "--data",
        "data",
        "--components",
        "components",
        "--root",
        ".",
    ];
    assert!(run(&process).0);

    let (ok, listed) = run(&["deadletters", "--data", "data", "list"]);
    assert!(ok, "{listed}");
    let line = listed.lines().next().unwrap_or_default().to_string();
    let (key, problem) = line.split_once('\t').unwrap();
    assert_eq!(key, "0000000001000/broken-1");
    assert!(problem.contains("not a canonical event"), "{line}");

    let (ok, shown) = run(&["deadletters", "--data", "data", "show", key]);
    assert!(ok, "{shown}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["record"], "{not json");

    let (ok, said) = run(&["deadletters", "--data", "data", "replay", key]);
    assert!(ok, "{said}");
    let store = dripline_store::SqliteStore::open(&database).unwrap();
    assert_eq!(store.inbox_peek(10).unwrap().len(), 1, "back in the inbox");
    assert!(
        run(&["deadletters", "--data", "data", "list"])
            .1
            .trim()
            .is_empty()
    );

    let (ok, said) = run(&["deadletters", "--data", "data", "replay", key]);
    assert!(
        !ok && said.contains(&format!("no dead letter `{key}`")),
        "{said}"
    );
}

/// `GET path` on `address` over plain HTTP/1.0: (status, body).
fn get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[test]
fn readiness_reports_a_live_worker_and_the_backlog_and_liveness_answers_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = up_in(dir.path());
    let address = wait_until_up(&lines);
    let (status, body) = get(&address, "/health/live");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    // The worker beats once it has finished its first pass.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let report = loop {
        let (status, body) = get(&address, "/health/ready");
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        if status == 200 {
            break report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready: {report}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(report["status"], "ready", "{report}");
    assert_eq!(report["worker_alive"], true);
    assert_eq!(report["worker_restarts"], 0);
    assert_eq!(report["inbox_depth"], 0);
    assert_eq!(report["dead_letters"], 0);
    assert_eq!(report["dispatch_backlog"], 0);
}

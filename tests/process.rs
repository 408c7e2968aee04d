//! `dripline up` as an operator runs it: one owner per data directory, a
//! clean stop on SIGTERM, and a readiness probe that tells the truth. The
//! real binary, on an empty deployment, over real HTTP on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dripline_tests::dripline_binary;
use dripline_tests::process::{Up, http};

/// `dripline up` on an empty deployment in `dir` (no components, journeys or
/// manifest).
fn up_in(dir: &Path) -> Up {
    std::fs::create_dir_all(dir.join("components")).unwrap();
    Up::start(
        dir,
        &[
            "--data",
            "data",
            "--components",
            "components",
            "--root",
            ".",
        ],
        &[],
    )
}

/// `dripline process` on the same deployment: (success, stderr).
fn process_in(dir: &Path) -> (bool, String) {
    let out = Command::new(dripline_binary())
        .args([
            "process",
            "--data",
            "data",
            "--components",
            "components",
            "--root",
            ".",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_second_dripline_on_the_same_data_directory_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let first = up_in(dir.path());
    let _ = first.admin();
    let (ok, said) = process_in(dir.path());
    let pid = first.child.id();
    drop(first);
    assert!(!ok, "the second process ran: {said}");
    assert!(
        said.contains("in use by another dripline process") && said.contains(&format!("pid {pid}")),
        "{said}"
    );
    // Once the first is gone, the directory is free again.
    let (ok, said) = process_in(dir.path());
    assert!(ok, "{said}");
}

#[test]
fn sigterm_stops_dripline_up_with_exit_code_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = up_in(dir.path());
    let _ = up.admin();
    up.terminate();
    let status = up.exited_within(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn readiness_reports_a_live_worker_and_the_backlog_and_liveness_answers_alone() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_in(dir.path());
    let admin = up.admin();
    let (status, body) = http(&admin, "GET /health/live HTTP/1.1", b"");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    // The worker beats once it has started its first pass.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let (status, body) = http(&admin, "GET /health/ready HTTP/1.1", b"");
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        if status == 200 {
            break report;
        }
        assert!(Instant::now() < deadline, "never ready: {report}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(report["status"], "ready", "{report}");
    assert_eq!(report["worker_alive"], true);
    assert_eq!(report["worker_restarts"], 0);
    assert_eq!(report["inbox_depth"], 0);
    assert_eq!(report["dead_letters"], 0);
    assert_eq!(report["dispatch_backlog"], 0);
}

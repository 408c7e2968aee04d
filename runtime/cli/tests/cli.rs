//! The `dripline` command as a user runs it: `validate` on the shipped journeys
//! and on the broken fixtures of `tests/cases/journeys/`, and `schema`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dripline(args: &[&str]) -> (bool, String) {
    let (ok, stdout, _) = dripline_in(&repo(), args);
    (ok, stdout)
}

/// `dripline args` in `dir`: (success, stdout, stderr).
fn dripline_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dripline"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
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

#[test]
fn a_dead_letter_is_listed_shown_and_replayed_into_the_inbox_from_the_command_line() {
    use dripline_store::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("components")).unwrap();
    let database = dir.path().join("data/dripline.db");
    std::fs::create_dir_all(database.parent().unwrap()).unwrap();
    {
        let store = sealed_store(&database);
        let write = dripline_store::Write::inbox_put(1_000, "broken-1", b"{not json".to_vec());
        store.apply(&[write]).unwrap();
    }
    let run = |args: &[&str]| {
        let (ok, stdout, stderr) = dripline_in(dir.path(), args);
        (ok, stdout + &stderr)
    };
    // Four attempts, 1 s, 4 s and 16 s apart; the last one sets it aside.
    for now in ["2000", "3000", "7000", "23000"] {
        let listed = run(&["deadletters", "--data", "data", "list"]).1;
        assert!(listed.trim().is_empty(), "set aside before {now}: {listed}");
        let process = [
            "process",
            "--data",
            "data",
            "--components",
            "components",
            "--root",
            ".",
            "--now-ms",
            now,
        ];
        assert!(run(&process).0);
    }

    let (ok, listed) = run(&["deadletters", "--data", "data", "list"]);
    assert!(ok, "{listed}");
    let line = listed.lines().next().unwrap_or_default().to_string();
    let fields: Vec<&str> = line.split('\t').collect();
    let [key, attempts, problem] = fields[..] else {
        panic!("{line}");
    };
    assert_eq!(key, "0000000001000/broken-1");
    assert_eq!(attempts, "4 attempts");
    assert!(problem.contains("not a canonical event"), "{line}");

    let (ok, shown) = run(&["deadletters", "--data", "data", "show", key]);
    assert!(ok, "{shown}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["record"], "{not json");
    assert_eq!(shown["attempts"], 4);

    let (ok, said) = run(&["deadletters", "--data", "data", "replay", key]);
    assert!(ok, "{said}");
    let store = sealed_store(&database);
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

/// The deployment's store, opened as `dripline` opens it: sealed under the
/// keyring beside the database (made here if the command has not made it).
fn sealed_store(database: &std::path::Path) -> dripline_store::SqliteStore {
    let keys =
        dripline_store::seal::Keyring::for_store(&database.with_file_name("store.key")).unwrap();
    dripline_store::SqliteStore::open_sealed(database, keys).unwrap()
}

//! Conformance cases for the journey loader: every `tests/cases/journeys/*.toml`
//! at the repository root is a broken journey file, and `<name>.expected` beside
//! it holds the error lines it must produce, in order. The shipped journeys in
//! `journeys/` must load without error.
//!
//! Run with `DRIPLINE_BLESS=1` to write the `.expected` files from the current
//! output (then review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_broken_journey_fixture_reports_exactly_its_expected_errors() {
    let dir = repo_root().join("tests/cases/journeys");
    let bless = std::env::var_os("DRIPLINE_BLESS").is_some();
    let fixtures = toml_files(&dir);
    assert!(!fixtures.is_empty(), "no fixtures in {}", dir.display());
    let mut failures = Vec::new();
    for fixture in fixtures {
        let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
        let shown_as = format!("tests/cases/journeys/{name}");
        let text = std::fs::read_to_string(&fixture).unwrap();
        let actual = match dripline_engine::parse_journey(&shown_as, &text) {
            Ok(_) => String::from("(no errors)\n"),
            Err(errors) => errors.iter().map(|error| format!("{error}\n")).collect(),
        };
        let expected_path = fixture.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        // A fixture without its expectation is a test nobody wrote.
        let Ok(expected) = std::fs::read_to_string(&expected_path) else {
            failures.push(format!("{name}: missing {}", expected_path.display()));
            continue;
        };
        if expected != actual {
            failures.push(format!(
                "{name}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_shipped_journeys_load_without_errors() {
    let files = toml_files(&repo_root().join("journeys"));
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown_as = format!("journeys/{}", file.file_name().unwrap().to_string_lossy());
        if let Err(errors) = dripline_engine::parse_journey(&shown_as, &text) {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("{}", lines.join("\n"));
        }
    }
}

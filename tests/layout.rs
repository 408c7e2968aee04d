//! The crate graph keeps the stages of `DESIGN.md` apart: each host crate may
//! depend only on the Dripline crates its row allows (`README.md`, "Layout"),
//! and the `dripline` binary links no benchmark code and no guest crate. Read
//! from the manifests, so a dependency added against the rules fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use dripline_tests::repo_root;

/// (crate folder, the Dripline crates it may depend on).
const ALLOWED: &[(&str, &[&str])] = &[
    ("engine", &["dripline-event"]),
    ("store", &[]),
    ("clock", &[]),
    ("sandbox", &[]),
    (
        "gateway-host",
        &[
            "dripline-sandbox",
            "dripline-store",
            "dripline-clock",
            "dedupe-mark",
        ],
    ),
    (
        "delivery",
        &[
            "dripline-sandbox",
            "dripline-store",
            "dripline-engine",
            "dripline-clock",
        ],
    ),
    (
        "runner",
        &[
            "dripline-delivery",
            "dripline-sandbox",
            "dripline-store",
            "dripline-engine",
            "dripline-clock",
        ],
    ),
    (
        "admin",
        &["dripline-delivery", "dripline-store", "dripline-clock"],
    ),
    (
        "cli",
        &[
            "dripline-engine",
            "dripline-store",
            "dripline-clock",
            "dripline-sandbox",
            "dripline-gateway-host",
            "dripline-delivery",
            "dripline-runner",
            "dripline-admin",
        ],
    ),
];

/// Every crate of ours: the host's and the guests'.
fn ours() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in [
        "runtime",
        "components",
        "components/triggers",
        "components/steps",
        "components/shared",
        "components/fixtures",
    ] {
        for entry in std::fs::read_dir(repo_root().join(dir)).unwrap().flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            let doc: toml::Table = text.parse().unwrap();
            if let Some(name) = doc.get("package").and_then(|p| p.get("name")) {
                names.insert(name.as_str().unwrap().to_string());
            }
        }
    }
    names
}

#[test]
fn each_host_crate_depends_only_on_the_stages_its_row_allows() {
    let ours = ours();
    assert!(ours.contains("tag") && ours.contains("dripline-runner"));
    let mut folders: Vec<String> = std::fs::read_dir(repo_root().join("runtime"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    for folder in &folders {
        if folder == "bench" {
            continue; // may use everything, guest crates included
        }
        let Some((_, allowed)) = ALLOWED.iter().find(|(f, _)| f == folder) else {
            panic!("runtime/{folder} has no row in this test: say what it may depend on");
        };
        let text =
            std::fs::read_to_string(repo_root().join("runtime").join(folder).join("Cargo.toml"))
                .unwrap();
        let doc: toml::Table = text.parse().unwrap();
        let deps = doc
            .get("dependencies")
            .and_then(|d| d.as_table())
            .cloned()
            .unwrap_or_default();
        for name in deps.keys().filter(|n| ours.contains(*n)) {
            assert!(
                allowed.contains(&name.as_str()),
                "runtime/{folder} must not depend on {name} (allowed: {allowed:?})"
            );
        }
    }
}

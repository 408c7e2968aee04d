//! `dripline validate`: checks journey and segment files without running
//! them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Checks journey files (and segment files, those under a `segments`
/// directory) and prints every error with its file, line and field. A
/// journey that starts on a segment must name one of the segment files
/// beside its own directory (`../segments/<id>.toml`). Returns whether all
/// were valid.
pub fn run(files: &[PathBuf]) -> anyhow::Result<bool> {
    let mut valid = true;
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
        let in_segments = file
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|dir| dir == "segments");
        if in_segments {
            match dripline_engine::Segment::parse(&name, &text) {
                Ok(segment) => println!("{name}: ok (segment {})", segment.id),
                Err(error) => {
                    valid = false;
                    println!("{error}");
                }
            }
            continue;
        }
        match dripline_engine::parse_journey(&name, &text) {
            Ok(journey) => {
                let wanted = journey.trigger.as_ref().and_then(|t| t.segment.as_ref());
                if let Some(segment) = wanted {
                    let known = segments_beside(file);
                    if !known.contains(segment) {
                        valid = false;
                        println!(
                            "{name}: trigger.segment: no segment {segment:?} (known: {})",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.into_iter().collect::<Vec<_>>().join(", ")
                            }
                        );
                        continue;
                    }
                }
                println!(
                    "{name}: ok ({} v{}, {} steps)",
                    journey.id,
                    journey.version,
                    journey.steps.len()
                );
            }
            Err(errors) => {
                valid = false;
                for error in errors {
                    println!("{error}");
                }
            }
        }
    }
    Ok(valid)
}

/// The ids of the segment files that load beside a journey's directory.
fn segments_beside(journey: &Path) -> BTreeSet<String> {
    let dir = journey
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .with_file_name("segments");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            dripline_engine::Segment::parse(&p.display().to_string(), &text)
                .ok()
                .map(|s| s.id)
        })
        .collect()
}

//! `dripline validate`: checks journey files without running them.

use std::path::PathBuf;

use anyhow::Context as _;

/// Checks journey files and prints every error with its file, line and field.
/// Returns whether all were valid.
pub fn run(files: &[PathBuf]) -> anyhow::Result<bool> {
    let mut valid = true;
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
        match dripline_engine::parse_journey(&name, &text) {
            Ok(journey) => println!(
                "{name}: ok ({} v{}, {} steps)",
                journey.id,
                journey.version,
                journey.steps.len()
            ),
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

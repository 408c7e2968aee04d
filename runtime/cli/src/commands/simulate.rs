//! `dripline simulate` and `dripline preview`: reading their files and
//! printing what [`dripline::simulate`] found.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use dripline::simulate::{self, Script, Simulator, TestContact};
use dripline_sandbox::{Sandbox, SandboxConfig};
use serde::de::DeserializeOwned;

use crate::cli::{PreviewArgs, SimulateArgs};

/// Reads a JSON or TOML file (by its extension) into `T`.
fn read<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display())),
        _ => serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display())),
    }
}

fn simulator(components: &Path, root: &Path) -> anyhow::Result<Simulator> {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default())?);
    Simulator::new(&sandbox, components, root)
}

/// The journeys `journey` hands contacts to, from the files beside it.
fn hand_off_targets(journey: &Path, text: &str) -> Vec<(String, String)> {
    let Ok(parsed) = dripline_engine::parse_journey(&journey.display().to_string(), text) else {
        return Vec::new();
    };
    let mut targets: Vec<String> = parsed
        .goal
        .iter()
        .filter_map(|g| g.hand_off.clone())
        .collect();
    for step in &parsed.steps {
        if let dripline_engine::StepKind::HandOff { journey } = &step.kind {
            targets.push(journey.clone());
        }
    }
    let dir = journey
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    targets
        .into_iter()
        .filter_map(|target| {
            let path = dir.join(format!("{target}.toml"));
            let text = std::fs::read_to_string(&path).ok()?;
            Some((path.display().to_string(), text))
        })
        .collect()
}

/// Runs `dripline simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.journey)
        .with_context(|| format!("reading {}", args.journey.display()))?;
    let contact: TestContact = read(&args.contact)?;
    let script: Script = match &args.script {
        Some(path) => read(path)?,
        None => Script::default(),
    };
    let segments = args
        .journey
        .parent()
        .map(|dir| dir.with_file_name("segments"))
        .unwrap_or_else(|| PathBuf::from("segments"));
    let simulator = simulator(&args.components, &args.root)?.with_segments_of(&segments)?;
    let others = hand_off_targets(&args.journey, &text);
    let moments = simulator.run(
        &args.journey.display().to_string(),
        &text,
        &others,
        &contact,
        &script,
    )?;
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&moments)?),
        false => print!("{}", simulate::render(&moments, simulate::zone_of(&text))),
    }
    Ok(())
}

/// Runs `dripline preview`.
pub fn preview(args: PreviewArgs) -> anyhow::Result<()> {
    let contact: TestContact = read(&args.contact)?;
    let properties = match &args.properties {
        Some(path) => read(path)?,
        None => serde_json::Map::new(),
    };
    let simulator = simulator(&args.components, &args.root)?;
    let moment = simulate::preview(
        &simulator,
        &args.template,
        &args.channel,
        &contact,
        properties,
    )?;
    println!("{}", moment.what);
    for line in &moment.detail {
        println!("{line}");
    }
    Ok(())
}

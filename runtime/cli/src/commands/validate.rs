//! `dripline validate`: checks journey and segment files without running
//! them: their shape, and that what they name exists. Each step's component
//! is loaded and asked (its WIT `validate`) whether it accepts the step's
//! config with the templates the runtime would give it; every hand-off
//! names a journey; every SMS template says how many segments its fixed
//! text makes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use dripline_engine::{Journey, StepKind};
use dripline_runner::Templates;
use dripline_sandbox::bindings::StepError;
use dripline_sandbox::{Plugins, Sandbox, SandboxConfig};
use serde_json::Value;

/// Where the components and templates the journeys name are.
pub struct Against {
    /// The component files; `None`: the default directory, whose absence
    /// is then only noted.
    pub components: Option<PathBuf>,
    /// The templates; `None`: `templates/` beside each journey's directory.
    pub templates: Option<PathBuf>,
}

/// The default components directory (`dripline up`'s).
const DEFAULT_COMPONENTS: &str = "target/dripline/components";

/// Checks journey files (and segment files, those under a `segments`
/// directory) and prints every error with its file, line and field. A
/// journey that starts on a segment must name one of the segment files
/// beside its own directory (`../segments/<id>.toml`); one that hands
/// contacts over must name a journey beside it. Returns whether all were
/// valid.
pub fn run(files: &[PathBuf], against: &Against) -> anyhow::Result<bool> {
    let plugins = load_components(against)?;
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
        let journey = match dripline_engine::parse_journey(&name, &text) {
            Ok(journey) => journey,
            Err(errors) => {
                valid = false;
                for error in errors {
                    println!("{error}");
                }
                continue;
            }
        };
        let mut problems = Vec::new();
        if let Some(segment) = journey.trigger.as_ref().and_then(|t| t.segment.as_ref()) {
            let known = segments_beside(file);
            if !known.contains(segment) {
                problems.push(format!(
                    "{name}: trigger.segment: no segment {segment:?} (known: {})",
                    listed(&known)
                ));
            }
        }
        problems.extend(hand_offs(file, &name, &text, &journey, files));
        let mut notes = Vec::new();
        if let Some(plugins) = &plugins {
            let templates_dir = against.templates.clone().unwrap_or_else(|| {
                file.parent()
                    .unwrap_or_else(|| Path::new("."))
                    .with_file_name("templates")
            });
            let templates = Templates::load(&templates_dir);
            for step in &journey.steps {
                let StepKind::Run { uses, config, .. } = &step.kind else {
                    continue;
                };
                let at = format!("{name}:{}", line_of_step(&text, &step.id));
                let config = Value::Object(config.clone());
                let config = &config;
                match check_step(plugins, &templates, uses, config) {
                    Ok(()) => {}
                    Err((field, message)) => {
                        problems.push(format!("{at}: steps.{}.{field}: {message}", step.id))
                    }
                }
                if let Some(note) = sms_segments(&templates, config) {
                    notes.push(format!("{at}: steps.{}: {note}", step.id));
                }
            }
        }
        if problems.is_empty() {
            println!(
                "{name}: ok ({} v{}, {} steps)",
                journey.id,
                journey.version,
                journey.steps.len()
            );
        } else {
            valid = false;
            problems.iter().for_each(|p| println!("{p}"));
        }
        notes.iter().for_each(|n| println!("{n}"));
    }
    Ok(valid)
}

fn listed(known: &BTreeSet<String>) -> String {
    if known.is_empty() {
        "none".to_owned()
    } else {
        known.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The step components, compiled once (into a cache in the temporary
/// directory, so that a second run is quick). `None` when the default
/// directory is absent: then only the files' shape is checked, and that is
/// said.
fn load_components(against: &Against) -> anyhow::Result<Option<Plugins>> {
    let dir = match &against.components {
        Some(dir) => dir.clone(),
        None => {
            let dir = PathBuf::from(DEFAULT_COMPONENTS);
            if !dir.is_dir() {
                eprintln!(
                    "note: components not checked: no {DEFAULT_COMPONENTS} here (pass --components)"
                );
                return Ok(None);
            }
            dir
        }
    };
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        cache_dir: Some(std::env::temp_dir().join("dripline-validate-cache")),
        ..SandboxConfig::default()
    })?);
    Ok(Some(Plugins::load_dir(&sandbox, &dir)?))
}

/// Asks the step's component about its config, with the template files the
/// runtime adds: `Err((field, message))`.
fn check_step(
    plugins: &Plugins,
    templates: &Templates,
    uses: &str,
    config: &Value,
) -> Result<(), (String, String)> {
    let Some(plugin) = plugins.steps.get(uses) else {
        let loaded: BTreeSet<String> = plugins.steps.keys().cloned().collect();
        return Err((
            "uses".into(),
            format!("no component {uses:?} (loaded: {})", listed(&loaded)),
        ));
    };
    let mut config = config.clone();
    templates.add_to(&mut config);
    match plugin.validate(&config.to_string()) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(StepError::InvalidConfig(message) | StepError::Other(message))) => {
            Err(("config".into(), message))
        }
        Err(e) => Err(("uses".into(), format!("the component {uses:?} failed: {e}"))),
    }
}

/// The hand-off targets (the goal's and each `hand_off` step's) that are not
/// a journey beside this one nor among the files checked.
fn hand_offs(
    file: &Path,
    name: &str,
    text: &str,
    journey: &Journey,
    files: &[PathBuf],
) -> Vec<String> {
    let mut known = journeys_beside(file);
    known.extend(
        files
            .iter()
            .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned())),
    );
    let mut problems = Vec::new();
    if let Some(target) = journey.goal.as_ref().and_then(|g| g.hand_off.as_ref())
        && !known.contains(target)
    {
        problems.push(format!(
            "{name}:{}: goal.hand_off: no journey {target:?} (known: {})",
            line_of(text, "hand_off"),
            listed(&known)
        ));
    }
    for step in &journey.steps {
        if let StepKind::HandOff { journey: target } = &step.kind
            && !known.contains(target)
        {
            problems.push(format!(
                "{name}:{}: steps.{}.hand_off: no journey {target:?} (known: {})",
                line_of_step(text, &step.id),
                step.id,
                listed(&known)
            ));
        }
    }
    problems
}

/// The ids of the journey files beside `journey` (their stems, or their `id`).
fn journeys_beside(journey: &Path) -> BTreeSet<String> {
    let dir = journey.parent().unwrap_or_else(|| Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            dripline_engine::parse_journey(&p.display().to_string(), &text)
                .ok()
                .map(|j| j.id)
        })
        .collect()
}

/// The 1-based line where step `id` is declared (1 if it cannot be found).
fn line_of_step(text: &str, id: &str) -> usize {
    let quoted = format!("\"{id}\"");
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            line.starts_with("id") && line.contains(&quoted)
        })
        .map_or(1, |i| i + 1)
}

/// The 1-based line of the first line that starts with `key`.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| line.trim_start().starts_with(key))
        .map_or(1, |i| i + 1)
}

/// How many segments an SMS template's fixed text makes (what the values
/// add is known only when it renders), counted as the `send` step counts
/// them (`sms_splitter`): GSM-7 text takes 160 characters in one segment and
/// 153 in each of several, anything else (Chinese, emoji) UCS-2, 70 and 67.
fn sms_segments(templates: &Templates, config: &Value) -> Option<String> {
    if config.get("channel").and_then(Value::as_str) != Some("sms") {
        return None;
    }
    let template = config.get("template").and_then(Value::as_str)?;
    let fixed = fixed_text(templates.file(&format!("{template}.sms.liquid"))?);
    if fixed.is_empty() {
        return None;
    }
    let length = fixed.chars().count();
    let split = sms_splitter::SplitSms::default().split(fixed);
    let segments = split.parts.len();
    Some(format!(
        "SMS {template:?}: {length} characters of fixed text ({}), {segments} segment{}, more with its values",
        if split.character_set == "GSM" {
            "GSM-7"
        } else {
            "UCS-2"
        },
        if segments == 1 { "" } else { "s" }
    ))
}

/// A Liquid template's text outside its `{{ }}` and `{% %}` tags.
fn fixed_text(source: &str) -> String {
    let mut out = String::new();
    let mut rest = source;
    while let Some(start) = rest.find(['{']) {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let close = match after.get(..2) {
            Some("{{") => "}}",
            Some("{%") => "%}",
            _ => {
                out.push('{');
                rest = &after[1..];
                continue;
            }
        };
        match after.find(close) {
            Some(end) => rest = &after[end + 2..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
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

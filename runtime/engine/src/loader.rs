//! Loading journey files: TOML text to a checked [`Journey`], with every error
//! located by file, line, column and field path
//! (`journeys/x.toml:12:9: steps[2].wait: invalid duration "3x": ...`), and the
//! JSON Schema of the format.
//!
//! Serde stops at the first error, so the file is read in pieces (the header,
//! each section, each step), each piece reporting its own first error; the
//! checks that need the whole journey (step references, reachability, split
//! percents) then run on the pieces that did read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::journey::{Entry, Goal, Journey, JourneyDelivery, Step, StepKind, Trigger};

/// One problem in a journey file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyError {
    /// The file name as given to [`parse_journey`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The field path, such as `steps[2].wait`; empty for the file as a whole.
    pub path: String,
    /// What is wrong, for the author.
    pub message: String,
}

impl fmt::Display for JourneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for JourneyError {}

/// Reads and checks one journey file. `file_name` is used in error messages and,
/// when the file sets no `id`, its stem (`abandoned-checkout` for
/// `journeys/abandoned-checkout.toml`) becomes the journey's id.
///
/// Returns every error found, sorted by position.
pub fn parse_journey(file_name: &str, text: &str) -> Result<Journey, Vec<JourneyError>> {
    let locator = Locator {
        file: file_name,
        text,
    };
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        // A broken document reads as a half-built table; checking its meaning
        // would report errors that are only echoes of the syntax error.
        let mut errors: Vec<JourneyError> = syntax_errors
            .iter()
            .map(|error| locator.toml_error(root.get_ref(), error))
            .collect();
        sort_and_dedup(&mut errors);
        return Err(errors);
    }
    let table = root.get_ref();
    let mut errors = Vec::new();

    let trigger: Option<Option<Trigger>> = section(table, "trigger", &locator, &mut errors);
    let entry: Option<Option<Entry>> = section(table, "entry", &locator, &mut errors);
    let goal: Option<Option<Goal>> = section(table, "goal", &locator, &mut errors);
    let delivery: Option<Option<JourneyDelivery>> =
        section(table, "delivery", &locator, &mut errors);

    // Each step on its own, keeping its index in the file.
    let mut steps: Vec<(usize, Step)> = Vec::new();
    let mut raw_step_ids: BTreeSet<String> = BTreeSet::new();
    let mut all_steps_read = true;
    if let Some(array) = table
        .get("steps")
        .and_then(|value| value.get_ref().as_array())
    {
        for (index, value) in array.iter().enumerate() {
            if let Some(id) = value
                .get_ref()
                .get("id")
                .and_then(|id| id.get_ref().as_str())
            {
                raw_step_ids.insert(id.to_owned());
            }
            match deserialize::<Step>(value.clone()) {
                Ok(step) => steps.push((index, step)),
                Err(error) => {
                    all_steps_read = false;
                    // Errors raised after the step's keys were read (a step
                    // with two kinds, say) come without a place: the step's.
                    errors.push(locator.toml_error_or(table, &error, value.span()));
                }
            }
        }
    }

    // The header: everything but the sections read above.
    let mut header = table.clone();
    for key in ["trigger", "entry", "goal", "delivery"] {
        header.remove(key);
    }
    if let Some(steps_value) = header.get_mut("steps")
        && steps_value.get_ref().is_array()
    {
        let span = steps_value.span();
        *steps_value = Spanned::new(span, DeValue::Array(toml::de::DeArray::new()));
    }
    let (header, stood_in) = read_header(header, root.span(), table, &locator, &mut errors);

    let header_read = header.is_some();
    let mut journey = header.unwrap_or_else(|| Journey {
        id: String::new(),
        name: String::new(),
        version: 1,
        priority: 0,
        canary: None,
        time_zone: None,
        trigger: None,
        entry: Entry::default(),
        goal: None,
        delivery: JourneyDelivery::default(),
        steps: Vec::new(),
    });
    if journey.id.is_empty() {
        journey.id = file_stem(file_name).to_owned();
    }
    let sections_read =
        trigger.is_some() && entry.is_some() && goal.is_some() && delivery.is_some();
    journey.trigger = trigger.flatten();
    journey.entry = entry.flatten().unwrap_or_default();
    journey.delivery = delivery.flatten().unwrap_or_default();
    journey.goal = goal.flatten();
    let step_indices: Vec<usize> = steps.iter().map(|(index, _)| *index).collect();
    journey.steps = steps.into_iter().map(|(_, step)| step).collect();

    let complete = errors.is_empty() && all_steps_read && sections_read;
    let version_read = header_read && !stood_in.contains("version");
    let problems = check(
        &journey,
        &step_indices,
        &raw_step_ids,
        complete,
        version_read,
    );
    errors.extend(
        problems
            .into_iter()
            .map(|(path, message)| locator.at_path(table, &path, message)),
    );

    if errors.is_empty() {
        Ok(journey)
    } else {
        sort_and_dedup(&mut errors);
        Err(errors)
    }
}

/// Reads the top-level keys. After an error in one key, that key is set aside
/// (or, for a required one, replaced by a stand-in) and the rest read again, so
/// that one bad key does not hide the errors of the others.
fn read_header(
    mut header: DeTable<'_>,
    span: Range<usize>,
    table: &DeTable<'_>,
    locator: &Locator<'_>,
    errors: &mut Vec<JourneyError>,
) -> (Option<Journey>, BTreeSet<String>) {
    let mut stood_in = BTreeSet::new();
    for _ in 0..=table.len() {
        let attempt = Journey::deserialize(toml::de::Deserializer::from(Spanned::new(
            span.clone(),
            header.clone(),
        )));
        let error = match attempt {
            Ok(journey) => return (Some(journey), stood_in),
            Err(error) => error,
        };
        errors.push(locator.toml_error(table, &error));
        let key = error
            .span()
            .map(|span| path_at(table, &span))
            .and_then(|path| match path.first() {
                Some(Segment::Key(key)) => Some(key.clone()),
                _ => None,
            });
        let Some(key) = key else {
            return (None, stood_in);
        };
        let stand_in = match key.as_str() {
            "name" | "id" => Some(DeValue::String("-".into())),
            "version" => Some(DeValue::Integer(toml::de::DeInteger::default())),
            "steps" => Some(DeValue::Array(toml::de::DeArray::new())),
            _ => None,
        };
        match stand_in {
            Some(value) => {
                stood_in.insert(key.clone());
                if let Some(slot) = header.get_mut(key.as_str()) {
                    let span = slot.span();
                    *slot = Spanned::new(span, value);
                }
            }
            None => {
                header.remove(key.as_str());
            }
        }
    }
    (None, stood_in)
}

/// Reads the optional section `key`: `Some(None)` when absent, `None` when it
/// did not read (the error is recorded).
fn section<T: DeserializeOwned>(
    table: &DeTable<'_>,
    key: &str,
    locator: &Locator<'_>,
    errors: &mut Vec<JourneyError>,
) -> Option<Option<T>> {
    let Some(value) = table.get(key) else {
        return Some(None);
    };
    match deserialize::<T>(value.clone()) {
        Ok(section) => Some(Some(section)),
        Err(error) => {
            errors.push(locator.toml_error(table, &error));
            None
        }
    }
}

fn deserialize<T: DeserializeOwned>(value: Spanned<DeValue<'_>>) -> Result<T, toml::de::Error> {
    let mut value = value;
    value.get_mut().make_owned();
    T::deserialize(toml::de::ValueDeserializer::from(value))
}

fn file_stem(file_name: &str) -> &str {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    base.strip_suffix(".toml").unwrap_or(base)
}

fn sort_and_dedup(errors: &mut Vec<JourneyError>) {
    errors.sort_by(|a, b| {
        (a.line, a.column, &a.path, &a.message).cmp(&(b.line, b.column, &b.path, &b.message))
    });
    errors.dedup();
}

/// One segment of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn render_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => {
                out.push_str(&format!("[{index}]"));
            }
        }
    }
    out
}

/// Parses `steps[2].branch[0].next` into segments.
fn parse_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next()
            && !key.is_empty()
        {
            segments.push(Segment::Key(key.to_owned()));
        }
        for index in pieces {
            if let Ok(index) = index.trim_end_matches(']').parse() {
                segments.push(Segment::Index(index));
            }
        }
    }
    segments
}

/// Turns spans and paths into line, column and path.
struct Locator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, offset: usize, path: String, message: String) -> JourneyError {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before
            .get(line_start..)
            .map_or(0, |rest| rest.chars().count())
            + 1;
        JourneyError {
            file: self.file.to_owned(),
            line,
            column,
            path,
            message,
        }
    }

    fn toml_error(&self, root: &DeTable<'_>, error: &toml::de::Error) -> JourneyError {
        self.toml_error_at(root, error, error.span())
    }

    /// Like [`Self::toml_error`], at `fallback` when the error has no span.
    fn toml_error_or(
        &self,
        root: &DeTable<'_>,
        error: &toml::de::Error,
        fallback: Range<usize>,
    ) -> JourneyError {
        self.toml_error_at(root, error, error.span().or(Some(fallback)))
    }

    fn toml_error_at(
        &self,
        root: &DeTable<'_>,
        error: &toml::de::Error,
        span: Option<Range<usize>>,
    ) -> JourneyError {
        let message = error.message().trim().to_owned();
        match span {
            Some(span) => {
                let path = render_path(&path_at(root, &span));
                self.error(span.start, path, message)
            }
            None => self.error(0, String::new(), message),
        }
    }

    /// Locates `path`, or the deepest part of it present in the file.
    fn at_path(&self, root: &DeTable<'_>, path: &str, message: String) -> JourneyError {
        let segments = parse_path(path);
        let offset = span_of(root, &segments).map_or(0, |span| span.start);
        self.error(offset, path.to_owned(), message)
    }
}

/// The path of the innermost key or value whose span holds `target`.
fn path_at(root: &DeTable<'_>, target: &Range<usize>) -> Vec<Segment> {
    let mut path = Vec::new();
    table_path_at(root, target, &mut path);
    path
}

fn holds(span: &Range<usize>, target: &Range<usize>) -> bool {
    span.start <= target.start && target.end <= span.end
}

/// Depth first, because the span of a `[section]` table is its header line
/// only: it does not enclose the keys below it.
fn table_path_at(table: &DeTable<'_>, target: &Range<usize>, path: &mut Vec<Segment>) -> bool {
    for (key, value) in table.iter() {
        path.push(Segment::Key(key.get_ref().to_string()));
        if holds(&key.span(), target) || value_path_at(value, target, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn value_path_at(
    value: &Spanned<DeValue<'_>>,
    target: &Range<usize>,
    path: &mut Vec<Segment>,
) -> bool {
    let found_inside = match value.get_ref() {
        DeValue::Table(table) => table_path_at(table, target, path),
        DeValue::Array(items) => items.iter().enumerate().any(|(index, item)| {
            path.push(Segment::Index(index));
            let found = value_path_at(item, target, path);
            if !found {
                path.pop();
            }
            found
        }),
        _ => false,
    };
    found_inside || holds(&value.span(), target)
}

/// The span of the value at `path`, or of the deepest part of it present.
fn span_of(root: &DeTable<'_>, path: &[Segment]) -> Option<Range<usize>> {
    let mut best: Option<Range<usize>> = None;
    let mut table = Some(root);
    let mut current: Option<&DeValue<'_>> = None;
    for segment in path {
        let next = match (segment, table, current) {
            (Segment::Key(key), Some(table), _) => table.get(key.as_str()),
            (Segment::Index(index), _, Some(DeValue::Array(items))) => items.get(*index),
            _ => None,
        };
        let Some(next) = next else { break };
        best = Some(next.span());
        current = Some(next.get_ref());
        table = next.get_ref().as_table();
    }
    best
}

/// The checks that need the journey as a whole. `indices[k]` is the position in
/// the file of `journey.steps[k]`; `raw_ids` holds the ids of every step in the
/// file, read or not, so a step that failed to read is not reported as missing.
fn check(
    journey: &Journey,
    indices: &[usize],
    raw_ids: &BTreeSet<String>,
    complete: bool,
    version_read: bool,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if version_read && journey.version == 0 {
        problems.push((
            "version".into(),
            "version must be a positive integer: 1, 2, ...".into(),
        ));
    }
    if journey.canary.is_some_and(|p| !(1..=99).contains(&p)) {
        problems.push((
            "canary".into(),
            "canary is the percentage of new enrollments the version takes: 1 to 99".into(),
        ));
    }
    if complete && journey.steps.is_empty() {
        problems.push(("steps".into(), "a journey needs at least one step".into()));
    }
    if let Some(problem) = journey.trigger.as_ref().and_then(Trigger::problem) {
        problems.push(("trigger".into(), problem));
    }

    let mut first_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (step, index) in journey.steps.iter().zip(indices) {
        if let Some(first) = first_seen.get(step.id.as_str()) {
            problems.push((
                format!("steps[{index}].id"),
                format!(
                    "duplicate step id {:?}, first used by steps[{first}]",
                    step.id
                ),
            ));
        } else {
            first_seen.insert(&step.id, *index);
        }
    }

    let known = |id: &str| raw_ids.contains(id);
    for (step, index) in journey.steps.iter().zip(indices) {
        for (key, target) in step.kind.targets() {
            if !known(target) {
                problems.push((
                    format!("steps[{index}].{key}"),
                    format!("no step has id {target:?}"),
                ));
            }
        }
        match &step.kind {
            StepKind::Branch { ways } => {
                if ways.len() < 2 {
                    problems.push((
                        format!("steps[{index}].branch"),
                        "a branch needs two or more ways".into(),
                    ));
                }
                for (way_index, way) in ways.iter().enumerate() {
                    let last = way_index + 1 == ways.len();
                    match (&way.when, last) {
                        (None, false) => problems.push((
                            format!("steps[{index}].branch[{way_index}]"),
                            "only the last way may leave out `when`".into(),
                        )),
                        (Some(_), true) => problems.push((
                            format!("steps[{index}].branch[{way_index}].when"),
                            "the last way has no `when`: it takes everyone the ways above did not"
                                .into(),
                        )),
                        _ => {}
                    }
                }
            }
            StepKind::Split { ways } => {
                if ways.len() < 2 {
                    problems.push((
                        format!("steps[{index}].split"),
                        "a split needs two or more ways".into(),
                    ));
                }
                let total: u64 = ways.iter().map(|way| u64::from(way.percent)).sum();
                if total != 100 {
                    problems.push((
                        format!("steps[{index}].split"),
                        format!("split percents add up to {total}, not 100"),
                    ));
                }
                for (way_index, way) in ways.iter().enumerate() {
                    if way.percent == 0 {
                        problems.push((
                            format!("steps[{index}].split[{way_index}].percent"),
                            "a way's percent must be at least 1".into(),
                        ));
                    }
                    if way.holdout == way.next.is_some() {
                        problems.push((
                            format!("steps[{index}].split[{way_index}]"),
                            "a way has either `next` or `holdout = true`".into(),
                        ));
                    }
                }
            }
            StepKind::HandOff { journey: target } if *target == journey.id => {
                problems.push((
                    format!("steps[{index}].hand_off"),
                    "a journey cannot hand off to itself".into(),
                ));
            }
            _ => {}
        }
    }

    if let Some(goal) = &journey.goal {
        if goal.event == crate::EventNames::Any(Vec::new()) {
            problems.push(("goal.event".into(), "name at least one event".into()));
        }
        if goal.next.is_some() && goal.hand_off.is_some() {
            problems.push((
                "goal.next".into(),
                "`next` and `hand_off` do not go together: end the goal's steps with a hand_off step".into(),
            ));
        }
        if let Some(target) = &goal.next
            && !known(target)
        {
            problems.push(("goal.next".into(), format!("no step has id {target:?}")));
        }
        if goal.hand_off.as_deref() == Some(journey.id.as_str()) {
            problems.push((
                "goal.hand_off".into(),
                "a journey cannot hand off to itself".into(),
            ));
        }
    }

    // A typo in a `next` also leaves its target unreached; say it once.
    if complete && problems.is_empty() {
        for (index, id) in unreachable(journey) {
            problems.push((
                format!("steps[{index}].id"),
                format!("step {id:?} is never reached"),
            ));
        }
    }
    problems
}

/// Steps no path reaches from the first step or the goal's `next`.
fn unreachable(journey: &Journey) -> Vec<(usize, &str)> {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = Vec::new();
    if let Some(first) = journey.steps.first() {
        todo.push(&first.id);
    }
    if let Some(next) = journey.goal.as_ref().and_then(|goal| goal.next.as_deref()) {
        todo.push(next);
    }
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(step) = journey.step(id) {
            todo.extend(step.kind.targets().into_iter().map(|(_, target)| target));
        }
    }
    journey
        .steps
        .iter()
        .enumerate()
        .filter(|(_, step)| !seen.contains(step.id.as_str()))
        .map(|(index, step)| (index, step.id.as_str()))
        .collect()
}

/// The JSON Schema of journey files, generated from the Rust types.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Journey);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

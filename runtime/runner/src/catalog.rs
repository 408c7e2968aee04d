//! The journeys a deployment runs, and every version of them that a contact may
//! still be on. Files in `journeys/` are read at start and re-read when they
//! change; each version loaded is also kept in the store, so a contact in flight
//! finishes the version it entered even after the file moved on or the process
//! restarted. A version, once stored, never changes: a file edited without a
//! version bump is refused until its `version` is raised.
//!
//! The stored versions are in the runtime's own key-value store, which no
//! component is granted: a webhook's component cannot plant a version, nor
//! block a journey by writing a different text under its key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use dripline_engine::{Journey, Segment, parse_journey};
use dripline_store::control::{
    JOURNEY_VERSIONS_PREFIX, JourneyControl, JourneyState, journey_controls, journey_version_key,
    journey_version_of,
};
use dripline_store::{KeyValue, RUNTIME_KV_STORE, StoreError, Write};

/// All journey versions known, and which one new enrollments get.
pub struct Journeys {
    dir: PathBuf,
    versions: HashMap<(String, u32), Arc<Journey>>,
    current: BTreeMap<String, u32>,
    seen: HashMap<PathBuf, SystemTime>,
    /// The segments of `segments/` beside the journeys' directory, by id.
    segments: BTreeMap<String, Arc<Segment>>,
    /// The id each segment file that loaded holds.
    segment_files: HashMap<PathBuf, String>,
    /// What operators set through the admin API (paused, draining, a
    /// canary), by journey, as last read from the store.
    controls: BTreeMap<String, JourneyControl>,
}

impl Journeys {
    /// Reads the stored versions, then the files in `dir`. Returns the catalog
    /// and the problems found (each names its file), which do not stop the rest.
    pub fn load(dir: &Path, store: &dyn KeyValue) -> Result<(Self, Vec<String>), StoreError> {
        let mut journeys = Self {
            dir: dir.to_path_buf(),
            versions: HashMap::new(),
            current: BTreeMap::new(),
            seen: HashMap::new(),
            segments: BTreeMap::new(),
            segment_files: HashMap::new(),
            controls: BTreeMap::new(),
        };
        for (key, source) in
            store.kv_scan_prefix(RUNTIME_KV_STORE, JOURNEY_VERSIONS_PREFIX, None, usize::MAX)?
        {
            let text = String::from_utf8_lossy(&source);
            // A journey without an explicit `id` takes its file's stem: name the
            // stored copy after the journey (`journey/<id>/v..` -> `<id>.toml`),
            // not after its version.
            let id = journey_version_of(&key).map_or("", |(id, _)| id);
            if let Ok(journey) = parse_journey(&format!("{id}.toml"), &text) {
                journeys
                    .versions
                    .insert((journey.id.clone(), journey.version), Arc::new(journey));
            }
        }
        let problems = journeys.reload(store)?;
        Ok((journeys, problems))
    }

    /// Re-reads files that changed since the last look.
    pub fn reload(&mut self, store: &dyn KeyValue) -> Result<Vec<String>, StoreError> {
        self.controls = journey_controls(store)?;
        let mut problems = self.reload_segments();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(vec![format!(
                "{}: cannot read the journeys directory",
                self.dir.display()
            )]);
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for path in files {
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if modified.is_some() && self.seen.get(&path) == modified.as_ref() {
                continue;
            }
            if let Some(modified) = modified {
                self.seen.insert(path.clone(), modified);
            }
            if let Err(problem) = self.load_file(&path, store)? {
                problems.push(problem);
            }
        }
        Ok(problems)
    }

    fn load_file(
        &mut self,
        path: &Path,
        store: &dyn KeyValue,
    ) -> Result<Result<(), String>, StoreError> {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => return Ok(Err(format!("{name}: {e}"))),
        };
        let journey = match parse_journey(&name, &text) {
            Ok(journey) => journey,
            Err(errors) => {
                return Ok(Err(errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")));
            }
        };
        let key = journey_version_key(&journey.id, journey.version);
        match store.kv_get(RUNTIME_KV_STORE, &key)? {
            Some(stored) if stored != text.as_bytes() => {
                return Ok(Err(format!(
                    "{name}: changed without a version bump; contacts in flight stay on the stored version {} — raise `version` to publish the change",
                    journey.version
                )));
            }
            Some(_) => {}
            None => {
                store.apply(&[Write::KvSet {
                    store: RUNTIME_KV_STORE.into(),
                    key,
                    value: text.into_bytes(),
                }])?;
            }
        }
        let current = self
            .current
            .entry(journey.id.clone())
            .or_insert(journey.version);
        if journey.version >= *current {
            *current = journey.version;
        }
        self.versions
            .insert((journey.id.clone(), journey.version), Arc::new(journey));
        Ok(Ok(()))
    }

    /// The segments directory: `segments/` beside `journeys/`.
    pub fn segments_dir(&self) -> PathBuf {
        self.dir.with_file_name("segments")
    }

    /// Re-reads the segment files that changed; a segment whose file is gone
    /// is dropped (its members keep the name until they are next evaluated).
    fn reload_segments(&mut self) -> Vec<String> {
        let dir = self.segments_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            // No segments directory: a deployment without segments.
            self.segments.clear();
            return Vec::new();
        };
        let mut problems = Vec::new();
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut present = Vec::new();
        for path in files {
            // As journey files: one that did not change since the last look
            // is not read again (nor its problem reported again).
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let unchanged = modified.is_some() && self.seen.get(&path) == modified.as_ref();
            if !unchanged {
                if let Some(modified) = modified {
                    self.seen.insert(path.clone(), modified);
                }
                let name = path.display().to_string();
                let parsed = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{name}: {e}"))
                    .and_then(|text| Segment::parse(&name, &text));
                match parsed {
                    Ok(segment) => {
                        self.segment_files.insert(path.clone(), segment.id.clone());
                        self.segments.insert(segment.id.clone(), Arc::new(segment));
                    }
                    Err(problem) => {
                        self.segment_files.remove(&path);
                        problems.push(problem);
                    }
                }
            }
            present.extend(self.segment_files.get(&path).cloned());
        }
        self.segments.retain(|id, _| present.contains(id));
        problems
    }

    /// The segments, by id.
    pub fn segments(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.segments.values()
    }

    /// One segment.
    pub fn segment(&self, id: &str) -> Option<&Arc<Segment>> {
        self.segments.get(id)
    }

    /// The version new enrollments of each journey get.
    pub fn current(&self) -> impl Iterator<Item = &Arc<Journey>> {
        self.current
            .iter()
            .filter_map(|(id, version)| self.versions.get(&(id.clone(), *version)))
    }

    /// The current version of one journey.
    pub fn current_of(&self, id: &str) -> Option<&Arc<Journey>> {
        let version = self.current.get(id)?;
        self.versions.get(&(id.to_string(), *version))
    }

    /// The version of journey `id` a new enrollment of `contact_id` gets: the
    /// current one, unless a canary splits new enrollments between it and
    /// the version before (by contact, so that one contact always gets the
    /// same), or the current one was rolled back.
    pub fn for_contact(&self, id: &str, contact_id: &str) -> Option<&Arc<Journey>> {
        let newest = self.current_of(id)?;
        let control = self.controls.get(id);
        // Most journeys have neither: no hash per event for them.
        if newest.canary.is_none() && control.is_none() {
            return Some(newest);
        }
        let bucket = dripline_engine::split::bucket(contact_id, id, "canary");
        let chosen = control.cloned().unwrap_or_default().version_for(
            bucket,
            newest.version,
            newest.canary,
            self.before(id, newest.version),
        );
        self.versions.get(&(id.to_owned(), chosen)).or(Some(newest))
    }

    /// For every journey, the version a new enrollment of `contact_id` gets.
    pub fn current_for<'a>(
        &'a self,
        contact_id: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Journey>> + 'a {
        self.current
            .keys()
            .filter_map(move |id| self.for_contact(id, contact_id))
    }

    /// The highest loaded version of `id` below `version`.
    fn before(&self, id: &str, version: u32) -> Option<u32> {
        self.versions
            .keys()
            .filter(|(j, v)| j == id && *v < version)
            .map(|(_, v)| *v)
            .max()
    }

    /// Whether a journey takes new contacts and moves the ones it has.
    pub fn state(&self, id: &str) -> JourneyState {
        self.controls.get(id).map(|c| c.state).unwrap_or_default()
    }

    /// A specific version, as an enrollment on it needs.
    pub fn version(&self, id: &str, version: u32) -> Option<&Arc<Journey>> {
        self.versions.get(&(id.to_string(), version))
    }
}

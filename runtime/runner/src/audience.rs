//! Who a contact is, kept current: its segments and its date triggers.
//!
//! Whenever an input changes a contact, [`Runner::refresh_audience`]
//! evaluates every segment for it. A segment it came into or left is shown to
//! the journeys as a `segment.entered` or `segment.exited` event, so journeys
//! start on it like on any event. Time alone changes some answers ("no order
//! in 90 days"): the segment's condition says when that can next happen
//! ([`dripline_engine::CelExpr::next_change`]), and one timer per contact,
//! `audience/segments/<contact>`, re-evaluates it then. Nobody else is looked
//! at: a contact enters "dormant" the moment its own 90 days run out.
//!
//! Date triggers work the same way: each journey whose trigger is a date of
//! the contact's gets a timer for the contact's next occurrence,
//! `audience/date/<journey>/<contact>`, which shows the contact a
//! `date.reached` event naming the journey and sets the next one.

use std::collections::BTreeMap;

use dripline_engine::dates::{DATE_REACHED, next_occurrence, parse_date};
use dripline_engine::local_time::zone_for;
use dripline_engine::{Event, SEGMENT_ENTERED, SEGMENT_EXITED};
use dripline_store::{RUNTIME_KV_STORE, StoreError, Write};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::contacts::ContactRecord;
use crate::error::InputError;
use crate::inbox::MAX_CONFLICTS;
use crate::unit::Unit;
use crate::{Runner, RunnerError};

/// Where the runtime keeps the text of each segment its members were last
/// evaluated against, fully: a segment whose file differs needs a full pass.
const EVALUATED_PREFIX: &str = "segment/";

/// The counter of contacts evaluated by full passes, ever: a pass in
/// progress shows as it growing.
pub const PASS_PROGRESS: &str = "audience.pass.contacts";

/// Set (to who asked) when contacts changed outside the runner, an import:
/// every contact's segments and dates are evaluated again.
const FULL_PASS_WANTED: &str = "audience/full-pass";

/// The write that asks for a full pass; `by` says who asked.
pub fn full_pass_wanted(by: &str) -> Write {
    Write::KvSet {
        store: RUNTIME_KV_STORE.into(),
        key: FULL_PASS_WANTED.into(),
        value: by.as_bytes().to_vec(),
    }
}

/// A full re-evaluation of every contact's segments, a page at a time
/// ([`Runner::reevaluate_page`]), for a segment that is new or was edited:
/// the per-contact re-checks only cover what time and each contact's own
/// changes do to segments already evaluated.
#[derive(Debug, Default, Clone)]
pub struct Reevaluation {
    cursor: Option<String>,
    done: bool,
    /// The full-pass request seen when the pass began.
    asked_by: Option<Vec<u8>>,
    /// Contacts evaluated so far.
    pub contacts: usize,
    /// Contacts whose segments or re-check changed.
    pub changed: usize,
}

impl Reevaluation {
    /// A pass from the first contact, answering the requests made so far.
    pub fn start(runner: &Runner) -> Result<Self, StoreError> {
        Ok(Self {
            asked_by: runner.store.kv_get(RUNTIME_KV_STORE, FULL_PASS_WANTED)?,
            ..Self::default()
        })
    }
}

/// The prefix of the audience timers' keys.
pub const AUDIENCE_TIMERS: &str = "audience/";

/// The key in a profile's `scheduled` of the segments' re-check.
const SEGMENTS: &str = "segments";

/// How many rounds of segment changes one input may set off (a journey that
/// starts on entry may change the contact, which may move it again).
const MAX_ROUNDS: usize = 3;

/// What an audience timer is for: its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "audience", rename_all = "snake_case")]
pub enum AudienceTimer {
    /// Evaluate the contact's segments again.
    Segments {
        /// The contact.
        contact_id: String,
    },
    /// A date trigger's occurrence.
    Date {
        /// The journey whose trigger it is.
        journey: String,
        /// The contact.
        contact_id: String,
        /// The attribute the date is from.
        attribute: String,
        /// The anniversary the occurrence is for (`2026-06-20`).
        date: String,
    },
}

impl AudienceTimer {
    /// The timer's key: one per contact and purpose.
    pub fn key(&self) -> String {
        match self {
            AudienceTimer::Segments { contact_id } => {
                format!("{AUDIENCE_TIMERS}segments/{contact_id}")
            }
            AudienceTimer::Date {
                journey,
                contact_id,
                ..
            } => format!("{AUDIENCE_TIMERS}date/{journey}/{contact_id}"),
        }
    }
}

impl Runner {
    /// Brings the contact's segments and date triggers up to date after it
    /// changed, showing the journeys each segment it entered or left.
    pub(crate) fn refresh_audience(
        &self,
        unit: &mut Unit<'_>,
        contact_id: &str,
    ) -> Result<(), InputError> {
        for _ in 0..MAX_ROUNDS {
            let moves = self.evaluate_segments(unit, contact_id)?;
            if moves.is_empty() {
                break;
            }
            for event in moves {
                self.show_event(unit, contact_id, &event)?;
            }
        }
        self.schedule_dates(unit, contact_id)
    }

    /// Evaluates every segment for the contact, records where it stands and
    /// sets the next re-check; the entries and exits, as events.
    fn evaluate_segments(
        &self,
        unit: &mut Unit<'_>,
        contact_id: &str,
    ) -> Result<Vec<Event>, InputError> {
        let now = unit.now;
        let record = unit.contact(contact_id)?;
        let view = record.view();
        let scheduled = record.profile.scheduled.get(SEGMENTS).copied();
        let mut moves = Vec::new();
        let mut recheck: Option<i64> = None;
        let mut members = view.segments.clone();
        for segment in self.journeys.segments() {
            let standing = match segment.evaluate(&view, now) {
                Ok(standing) => standing,
                Err(problem) => {
                    // A condition that fails for this contact (a missing
                    // attribute of an unexpected type) leaves it as it was.
                    tracing::debug!(segment = %segment.id, contact = %contact_id, "{problem}");
                    continue;
                }
            };
            if let Some(at) = standing.recheck_at {
                recheck = Some(recheck.map_or(at, |r| r.min(at)));
            }
            let was = members.contains(&segment.id);
            if standing.member != was {
                let name = if standing.member {
                    members.insert(segment.id.clone());
                    SEGMENT_ENTERED
                } else {
                    members.remove(&segment.id);
                    SEGMENT_EXITED
                };
                unit.metric(format!(
                    "segment.{}.{}",
                    segment.id,
                    if standing.member { "entered" } else { "exited" }
                ));
                moves.push(Event {
                    id: format!("{name}:{}:{contact_id}:{now}", segment.id),
                    source: "dripline".into(),
                    name: name.into(),
                    identities: view.identities.clone(),
                    properties: json!({ "segment": segment.id, "name": segment.name }),
                    occurred_at: now,
                    received_at: now,
                });
            }
        }
        // Segments whose file is gone are left behind by nobody's move.
        members.retain(|id| self.journeys.segment(id).is_some());
        if members != view.segments || recheck != scheduled {
            let record = unit.contact_mut(contact_id)?;
            record.profile.segments = members;
            match recheck {
                Some(at) => record.profile.scheduled.insert(SEGMENTS.into(), at),
                None => record.profile.scheduled.remove(SEGMENTS),
            };
        }
        if recheck != scheduled {
            let timer = AudienceTimer::Segments {
                contact_id: contact_id.to_owned(),
            };
            set_or_cancel(unit, &timer, recheck);
        }
        Ok(moves)
    }

    /// Sets, moves or cancels the timer of each date trigger for the contact.
    fn schedule_dates(&self, unit: &mut Unit<'_>, contact_id: &str) -> Result<(), InputError> {
        let now = unit.now;
        let record = unit.contact(contact_id)?;
        let mut wanted: BTreeMap<String, Option<(i64, AudienceTimer)>> = BTreeMap::new();
        for journey in self.journeys.current() {
            let Some(trigger) = journey.trigger.as_ref().and_then(|t| t.date.as_ref()) else {
                continue;
            };
            let zone = zone_for(
                record.profile.time_zone.as_deref(),
                journey.time_zone.as_ref(),
            );
            let next = record
                .profile
                .attributes
                .get(&trigger.attribute)
                .and_then(|value| parse_date(value, zone))
                .and_then(|date| next_occurrence(trigger, date, zone, now));
            wanted.insert(
                journey.id.clone(),
                next.map(|occurrence| {
                    (
                        occurrence.at,
                        AudienceTimer::Date {
                            journey: journey.id.clone(),
                            contact_id: contact_id.to_owned(),
                            attribute: trigger.attribute.clone(),
                            date: occurrence.date.to_string(),
                        },
                    )
                }),
            );
        }
        let scheduled = record.profile.scheduled.clone();
        let mut changed = Vec::new();
        for (journey, next) in wanted {
            let key = format!("date/{journey}");
            let due = next.as_ref().map(|(at, _)| *at);
            if scheduled.get(&key).copied() == due {
                continue;
            }
            let timer = match next {
                Some((_, timer)) => timer,
                None => AudienceTimer::Date {
                    journey: journey.clone(),
                    contact_id: contact_id.to_owned(),
                    attribute: String::new(),
                    date: String::new(),
                },
            };
            set_or_cancel(unit, &timer, due);
            changed.push((key, due));
        }
        if !changed.is_empty() {
            let record = unit.contact_mut(contact_id)?;
            for (key, due) in changed {
                match due {
                    Some(at) => record.profile.scheduled.insert(key, at),
                    None => record.profile.scheduled.remove(&key),
                };
            }
        }
        Ok(())
    }

    /// Fires an audience timer: a segments re-check, or a date trigger's
    /// occurrence (then the next one is set).
    pub(crate) fn on_audience_timer(
        &self,
        unit: &mut Unit<'_>,
        timer: &AudienceTimer,
    ) -> Result<(), InputError> {
        let contact_id = match timer {
            AudienceTimer::Segments { contact_id } | AudienceTimer::Date { contact_id, .. } => {
                contact_id
            }
        };
        match unit.contact(contact_id) {
            // Merged into another (whose own timers cover it): nothing to do.
            Ok(record) if record.is_tombstone() => return Ok(()),
            Ok(_) => {}
            // The contact is gone (erased): nothing to look at.
            Err(InputError::Bad(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        let slot = match timer {
            AudienceTimer::Segments { .. } => SEGMENTS.to_owned(),
            AudienceTimer::Date { journey, .. } => format!("date/{journey}"),
        };
        // This timer is spent: whatever comes next is set anew.
        unit.contact_mut(contact_id)?
            .profile
            .scheduled
            .remove(&slot);
        if let AudienceTimer::Date {
            journey,
            attribute,
            date,
            ..
        } = timer
        {
            let identities = unit.contact(contact_id)?.identities();
            let event = Event {
                id: format!("{DATE_REACHED}:{journey}:{contact_id}:{date}"),
                source: "dripline".into(),
                name: DATE_REACHED.into(),
                identities,
                properties: json!({ "journey": journey, "attribute": attribute, "date": date }),
                occurred_at: unit.now,
                received_at: unit.now,
            };
            self.show_event(unit, contact_id, &event)?;
        }
        self.refresh_audience(unit, contact_id)
    }
}

impl Runner {
    /// Why every contact's segments and dates need evaluating again: the
    /// segments whose text differs from what every contact was last evaluated
    /// against (new or edited ones), by id, and who asked for a full pass
    /// (an import). Empty when nothing does.
    pub fn segments_to_reevaluate(&self) -> Result<Vec<String>, StoreError> {
        let mut stale = Vec::new();
        if let Some(by) = self.store.kv_get(RUNTIME_KV_STORE, FULL_PASS_WANTED)? {
            stale.push(String::from_utf8_lossy(&by).into_owned());
        }
        for segment in self.journeys.segments() {
            let key = format!("{EVALUATED_PREFIX}{}", segment.id);
            let stored = self.store.kv_get(RUNTIME_KV_STORE, &key)?;
            if stored.as_deref() != Some(fingerprint(segment).as_bytes()) {
                stale.push(segment.id.clone());
            }
        }
        Ok(stale)
    }

    /// Records that every contact has been evaluated against the segments as
    /// they are now.
    ///
    /// An import that asked for a pass after this one started asks again:
    /// its request is only dropped if it is still the one the pass saw.
    pub fn segments_evaluated(&self, pass: &Reevaluation) -> Result<(), StoreError> {
        let mut writes: Vec<Write> = self
            .journeys
            .segments()
            .map(|segment| Write::KvSet {
                store: RUNTIME_KV_STORE.into(),
                key: format!("{EVALUATED_PREFIX}{}", segment.id),
                value: fingerprint(segment).into_bytes(),
            })
            .collect();
        let asked = self.store.kv_get(RUNTIME_KV_STORE, FULL_PASS_WANTED)?;
        if asked.is_some() && asked == pass.asked_by {
            writes.push(Write::KvDelete {
                store: RUNTIME_KV_STORE.into(),
                key: FULL_PASS_WANTED.into(),
            });
        }
        if !writes.is_empty() {
            self.store.apply(&writes)?;
        }
        Ok(())
    }

    /// Evaluates the segments of the next `limit` contacts of a full pass in
    /// one transaction (entries and exits start journeys as always, and each
    /// contact gets its next re-check); returns whether contacts are left.
    pub fn reevaluate_page(
        &mut self,
        pass: &mut Reevaluation,
        limit: usize,
    ) -> Result<bool, RunnerError> {
        if pass.done {
            return Ok(false);
        }
        let (page, next) = self.store.contacts_scan(pass.cursor.as_deref(), limit)?;
        let mut conflicts = 0;
        let changed = loop {
            let now = self.clock.now_ms();
            let mut unit = Unit::new(self.store.as_ref(), now);
            for contact in &page {
                unit.preload(ContactRecord::from_stored(contact.clone()));
            }
            for contact in page
                .iter()
                .filter(|c| c.profile.get("merged_into").is_none())
            {
                match self.refresh_audience(&mut unit, &contact.id) {
                    Ok(()) => {}
                    Err(InputError::Store(e)) => return Err(e.into()),
                    // One contact that cannot be evaluated does not stop the pass.
                    Err(InputError::Bad(problem)) => {
                        tracing::warn!(contact = %contact.id, "segments not evaluated: {problem}");
                    }
                }
            }
            let changed = unit.changed_contacts();
            // The pass's progress among the deployment's counters: contacts
            // evaluated, in the same commit as their page.
            unit.metric_by(
                PASS_PROGRESS.into(),
                i64::try_from(page.len()).unwrap_or(i64::MAX),
            );
            match unit.commit() {
                // A worker changed one of the page's contacts meanwhile: the
                // page is read and done again.
                Err(e) if e.is_conflict() && conflicts < MAX_CONFLICTS => conflicts += 1,
                Err(e) => return Err(e.into()),
                Ok(()) => break changed,
            }
        };
        pass.contacts += page.len();
        pass.changed += changed;
        pass.cursor = next;
        pass.done = pass.cursor.is_none();
        Ok(!pass.done)
    }
}

/// What a segment's members were evaluated against: its condition's text.
fn fingerprint(segment: &dripline_engine::Segment) -> String {
    hex::encode(Sha256::digest(segment.condition.as_str().as_bytes()))
}

fn set_or_cancel(unit: &mut Unit<'_>, timer: &AudienceTimer, due: Option<i64>) {
    let key = timer.key();
    match due {
        Some(due_at_ms) => unit.writes.push(Write::TimerSet {
            key,
            due_at_ms,
            payload: serde_json::to_vec(timer).unwrap_or_default(),
        }),
        None => unit.writes.push(Write::TimerCancel { key }),
    }
}

//! Contacts as the runtime keeps them: who an event is about (resolved by any
//! of its identities), the profile events and steps update, and the two views of
//! it that the engine and the step components read.

use std::collections::{BTreeMap, BTreeSet};

use dripline_delivery::DeliveryPolicy;
use dripline_delivery::names::{CHANNELS, PREFERRED_CHANNEL, PREFERS_TAG, UNSUBSCRIBED};
use dripline_engine::trust::{self, Consent};
use dripline_engine::{ConsentState, ContactView, Event, Facts, Identities};
use dripline_sandbox::{Effect, bindings};
use dripline_store::{Contact, Contacts, Identity, StoreError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

/// What Dripline knows of a contact beyond its identities: the store keeps it
/// as the contact's JSON profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Attributes from identify calls, forms and steps.
    #[serde(default)]
    pub attributes: Map<String, Value>,
    /// Tags, sorted.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Lead score.
    #[serde(default)]
    pub score: i64,
    /// Consent per channel.
    #[serde(default)]
    pub consent: BTreeMap<String, ConsentState>,
    /// Where each channel's consent came from, and when: the latest change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consent_source: BTreeMap<String, ConsentChange>,
    /// The contact's consent changes, oldest first, at most
    /// [`CONSENT_HISTORY`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consent_history: Vec<ConsentChange>,
    /// IANA time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The latest events of names that journeys' goals wait for, oldest
    /// first, at most [`RECENT_GOAL_EVENTS`] (see `ContactView::recent`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Event>,
    /// What the contact's events add up to, by name (`contact.facts`).
    #[serde(default, skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
    /// The segments the contact is in.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub segments: BTreeSet<String>,
    /// The audience timers set for the contact, by what they are for (a
    /// journey's date trigger, or `segments` for the next re-check), and
    /// when they are due: so that one already set is not set again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scheduled: BTreeMap<String, i64>,
    /// The contact's latest events, oldest first, at most [`TIMELINE_EVENTS`]:
    /// what the admin API's timeline shows beside enrollments and messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineEvent>,
    /// A test contact (an operator's own address): it goes through live
    /// journeys, its messages are marked as tests and it is left out of the
    /// analytics.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
    /// When an event about the contact or an import last touched it: what
    /// `[retention] contacts_inactive_for` is measured from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_at: Option<i64>,
}

/// How many events a contact's timeline keeps.
pub const TIMELINE_EVENTS: usize = 30;

/// One event of a contact's timeline: what it was, not what it carried (the
/// properties may be a whole checkout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// The event's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where it came from.
    pub source: String,
    /// When it occurred.
    pub at: i64,
}

/// One change of a channel's consent: what, from where, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentChange {
    /// The channel.
    pub channel: String,
    /// The new state.
    pub state: ConsentState,
    /// Who said so: the event's source and, for forms, which form
    /// (`form:whitepaper`), or `dripline` for an unsubscribe through
    /// Dripline's own links and replies.
    pub source: String,
    /// When (the event's time).
    pub at: i64,
}

/// The attribute listing the identity conflicts an event met on the contact.
pub const IDENTITY_CONFLICTS: &str = "identity_conflicts";

/// The attribute listing the contacts merged into this one, and when.
pub const MERGED_FROM: &str = "merged_from";

/// How many consent changes a contact keeps.
pub const CONSENT_HISTORY: usize = 20;

/// The source of the consent changes Dripline itself makes (an unsubscribe
/// link, a STOP reply).
pub const DRIPLINE: &str = trust::DRIPLINE;

/// How many of a contact's goal events are kept for the "goal already met"
/// check: orders for the checkouts a contact may still be in, not a history.
pub const RECENT_GOAL_EVENTS: usize = 10;

/// A contact record and its decoded profile, as one unit of work changes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRecord {
    /// The stored contact (identities; the profile is re-encoded on save).
    pub contact: Contact,
    /// The decoded profile.
    pub profile: Profile,
    /// The contact as it was read from the store (None: a new contact), so
    /// that saving it fails, rather than overwrites, when another worker
    /// changed it meanwhile.
    pub as_read: Option<Contact>,
}

impl ContactRecord {
    /// Decodes a stored contact; a profile that no longer parses starts empty
    /// rather than stopping every journey of the contact.
    pub fn from_stored(contact: Contact) -> Self {
        let profile = serde_json::from_value(contact.profile.clone()).unwrap_or_default();
        Self {
            as_read: Some(contact.clone()),
            contact,
            profile,
        }
    }

    /// The stored form, with the profile encoded.
    pub fn to_stored(&self) -> Contact {
        let mut contact = self.contact.clone();
        contact.profile = serde_json::to_value(&self.profile).unwrap_or(Value::Null);
        contact
    }

    /// The identities in the canonical event's shape.
    pub fn identities(&self) -> Identities {
        dripline_delivery::recipient::identities_of(&self.contact)
    }

    /// The snapshot the engine decides on.
    pub fn view(&self) -> ContactView {
        ContactView {
            id: self.contact.id.clone(),
            identities: self.identities(),
            attributes: Value::Object(self.profile.attributes.clone()),
            tags: self.profile.tags.clone(),
            score: self.profile.score,
            time_zone: self.profile.time_zone.clone(),
            consent: self.profile.consent.clone(),
            recent: self.profile.recent.clone(),
            facts: self.profile.facts.clone(),
            segments: self.profile.segments.clone(),
        }
    }

    /// Keeps `event` among the recent goal events, the oldest dropped past
    /// [`RECENT_GOAL_EVENTS`]; an event seen before is kept once.
    pub fn remember(&mut self, event: &Event) {
        if self.profile.recent.iter().any(|e| e.id == event.id) {
            return;
        }
        self.profile.recent.push(event.clone());
        let over = self.profile.recent.len().saturating_sub(RECENT_GOAL_EVENTS);
        self.profile.recent.drain(..over);
    }

    /// The snapshot a step component receives.
    pub fn wit(&self) -> bindings::Contact {
        let identities = self.identities();
        bindings::Contact {
            id: self.contact.id.clone(),
            identities: wit_identities(&identities),
            attributes: Value::Object(self.profile.attributes.clone()).to_string(),
            tags: self.profile.tags.iter().cloned().collect(),
            score: self.profile.score,
            consent: self
                .profile
                .consent
                .iter()
                .map(|(channel, state)| bindings::ChannelConsent {
                    channel: channel.clone(),
                    state: match state {
                        ConsentState::Granted => bindings::ConsentState::Granted,
                        ConsentState::Denied => bindings::ConsentState::Denied,
                        ConsentState::Unknown => bindings::ConsentState::Unknown,
                    },
                })
                .collect(),
            time_zone: self.profile.time_zone.clone(),
        }
    }

    /// Keeps `event` in the timeline, in time order, once.
    fn note_in_timeline(&mut self, event: &Event) {
        let timeline = &mut self.profile.timeline;
        if timeline.iter().any(|e| e.id == event.id) {
            return;
        }
        let place = timeline.partition_point(|e| e.at <= event.occurred_at);
        timeline.insert(
            place,
            TimelineEvent {
                id: event.id.clone(),
                name: event.name.clone(),
                source: event.source.clone(),
                at: event.occurred_at,
            },
        );
        if timeline.len() > TIMELINE_EVENTS {
            timeline.remove(0);
        }
    }

    /// Takes what an event says about its contact: its facts, new identities
    /// (unless another contact holds them), consent (`properties.consent`),
    /// traits (`properties.traits`) and time zone.
    ///
    /// An identity that belongs to another contact is not taken: it is
    /// returned with its holder, for the deployment's rule to decide
    /// (`[identities] on_conflict`). A weak one (a cart token) is never
    /// returned: it does not say two contacts are one person.
    pub fn absorb(
        &mut self,
        event: &Event,
        store: &dyn Contacts,
    ) -> Result<Vec<(Identity, String)>, StoreError> {
        dripline_engine::facts::record(&mut self.profile.facts, event);
        self.note_in_timeline(event);
        let trust = trust::of(&event.source);
        let mut conflicts = Vec::new();
        for identity in event_identities(&event.identities) {
            if self.contact.identities.contains(&identity) {
                continue;
            }
            match store.contact_find_by_identity(&identity)? {
                Some(owner) if owner.id != self.contact.id => {
                    if !is_weak(&identity) {
                        conflicts.push((identity, owner.id));
                    }
                }
                // Anyone can post an unsigned form naming someone's email and
                // their own phone: it may make a new contact of what it
                // names, never hang a new identity on one that exists (their
                // reminders and coupons would go to the poster).
                _ if !trust.links_identities && self.as_read.is_some() => {}
                _ => self.contact.identities.push(identity),
            }
        }
        let properties = &event.properties;
        let consent = properties
            .get("consent")
            .or_else(|| properties.pointer("/traits/consent"))
            .and_then(Value::as_object);
        if let Some(consent) = consent {
            let source = properties
                .get("consent_source")
                .and_then(Value::as_str)
                .filter(|_| matches!(event.source.as_str(), "form" | "typeform" | "tally"))
                .map_or_else(|| event.source.clone(), str::to_owned);
            for (channel, state) in consent {
                let state = match serde_json::from_value::<ConsentState>(state.clone()) {
                    // A source that says nothing about a channel's consent
                    // changes nothing: a later checkout without the box
                    // ticked must not erase an opt-out (or an opt-in).
                    Ok(ConsentState::Unknown) | Err(_) => continue,
                    Ok(state) => state,
                };
                let unsubscribed_here = self
                    .profile
                    .consent_source
                    .get(channel)
                    .is_some_and(|c| c.source == DRIPLINE && c.state == ConsentState::Denied);
                let taken = match (trust.consent, state) {
                    (Consent::Ignored, _) => false,
                    (_, ConsentState::Denied) => true,
                    (Consent::FirstParty, _) => true,
                    (Consent::Recorded, _) => !unsubscribed_here,
                    // Anyone can type anyone's address into an unsigned
                    // form: the grant is the address's own to give, by
                    // confirming (see [`CONFIRMED`]).
                    (Consent::Unconfirmed, _) => false,
                };
                if taken {
                    self.set_consent(channel, state, &source, event.occurred_at);
                }
            }
        }
        if let Some(traits) = properties.get("traits").and_then(Value::as_object) {
            for (name, value) in traits {
                self.profile.attributes.insert(name.clone(), value.clone());
            }
        }
        let zone = properties
            .get("time_zone")
            .or_else(|| properties.pointer("/traits/timezone"));
        if let Some(zone) = zone.and_then(Value::as_str)
            && zone.parse::<chrono_tz::Tz>().is_ok()
        {
            self.profile.time_zone = Some(zone.to_string());
        }
        Ok(conflicts)
    }

    /// Records that an event named `identity`, which `holder` has: the
    /// conflict a person may resolve by merging (`dripline contacts merge`).
    pub fn record_conflict(&mut self, identity: &Identity, holder: &str, event: &Event) {
        let conflicts = self
            .profile
            .attributes
            .entry(IDENTITY_CONFLICTS)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = conflicts {
            let entry = serde_json::json!({
                "identity": format!("{identity:?}"),
                "contact": holder,
                "event": event.id,
                "at": event.occurred_at,
            });
            if !list
                .iter()
                .any(|e| e["identity"] == entry["identity"] && e["contact"] == holder)
            {
                list.push(entry);
                let over = list.len().saturating_sub(10);
                list.drain(..over);
            }
        }
    }

    /// Takes `other` in: its identities, what it knows that this contact does
    /// not (attributes this one lacks, tags, the higher score), the newer
    /// consent of each channel (a denial wins a tie), its facts and recent
    /// events. The merge is recorded on this contact; `other` keeps only a
    /// pointer here ([`ContactRecord::tombstone_of`]).
    pub fn merge_from(&mut self, other: &ContactRecord, at: i64) {
        for identity in &other.contact.identities {
            if !self.contact.identities.contains(identity) {
                self.contact.identities.push(identity.clone());
            }
        }
        let theirs = &other.profile;
        let mine = &mut self.profile;
        for (name, value) in &theirs.attributes {
            mine.attributes
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
        mine.tags.extend(theirs.tags.iter().cloned());
        mine.score = mine.score.max(theirs.score);
        if mine.time_zone.is_none() {
            mine.time_zone = theirs.time_zone.clone();
        }
        for (channel, change) in &theirs.consent_source {
            let newer = match mine.consent_source.get(channel) {
                None => true,
                Some(current) => {
                    change.at > current.at
                        || (change.at == current.at && change.state == ConsentState::Denied)
                }
            };
            if newer {
                mine.consent.insert(channel.clone(), change.state);
                mine.consent_source.insert(channel.clone(), change.clone());
            }
        }
        for (channel, state) in &theirs.consent {
            mine.consent.entry(channel.clone()).or_insert(*state);
        }
        mine.consent_history
            .extend(theirs.consent_history.iter().cloned());
        mine.consent_history.sort_by_key(|c| c.at);
        let over = mine.consent_history.len().saturating_sub(CONSENT_HISTORY);
        mine.consent_history.drain(..over);
        for (name, fact) in &theirs.facts {
            let merged = mine.facts.entry(name.clone()).or_default();
            if merged.count == 0 {
                *merged = fact.clone();
                continue;
            }
            merged.count = merged.count.saturating_add(fact.count);
            merged.first = merged.first.min(fact.first);
            merged.last = merged.last.max(fact.last);
            merged.recent.extend(fact.recent.iter().copied());
            merged.recent.sort_by_key(|(t, _)| *t);
            let over = merged
                .recent
                .len()
                .saturating_sub(dripline_engine::facts::MAX_RECENT);
            merged.recent.drain(..over);
        }
        for event in &theirs.recent {
            self.remember(event);
        }
        let merges = self
            .profile
            .attributes
            .entry(MERGED_FROM)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = merges {
            list.push(serde_json::json!({ "contact": other.contact.id, "at": at }));
        }
    }

    /// Notes activity at `at` (an event, an import), for retention.
    pub fn touch(&mut self, at: i64) {
        self.profile.last_active_at = Some(self.profile.last_active_at.map_or(at, |l| l.max(at)));
    }

    /// Whether this is what is left of a contact merged into another.
    pub fn is_tombstone(&self) -> bool {
        self.contact.profile.get("merged_into").is_some()
    }

    /// What is left of a contact merged into `into`: no identities, and a
    /// pointer, so that its past enrollments and messages still lead to the
    /// person.
    pub fn tombstone_of(&self, into: &str, at: i64) -> Contact {
        Contact {
            id: self.contact.id.clone(),
            identities: Vec::new(),
            profile: serde_json::json!({ "merged_into": into, "merged_at": at }),
        }
    }

    /// Sets a channel's consent, keeping where the change came from; a state
    /// the channel already has from that source is no change.
    pub fn set_consent(&mut self, channel: &str, state: ConsentState, source: &str, at: i64) {
        let current = self.profile.consent.get(channel);
        if current == Some(&state)
            && self
                .profile
                .consent_source
                .get(channel)
                .is_some_and(|c| c.source == source)
        {
            return;
        }
        let change = ConsentChange {
            channel: channel.to_owned(),
            state,
            source: source.to_owned(),
            at,
        };
        self.profile.consent.insert(channel.to_owned(), state);
        self.profile
            .consent_source
            .insert(channel.to_owned(), change.clone());
        self.profile.consent_history.push(change);
        let over = self
            .profile
            .consent_history
            .len()
            .saturating_sub(CONSENT_HISTORY);
        self.profile.consent_history.drain(..over);
    }

    /// Applies a step's change to the profile (sends are the outbox's business).
    pub fn apply(&mut self, effect: &Effect) {
        match effect {
            Effect::SetAttribute { name, value } => {
                self.profile.attributes.insert(name.clone(), value.clone());
            }
            Effect::AddTag(tag) => {
                self.profile.tags.insert(tag.clone());
            }
            Effect::RemoveTag(tag) => {
                self.profile.tags.remove(tag);
            }
            Effect::AddScore(points) => {
                self.profile.score = self.profile.score.saturating_add(*points)
            }
            Effect::Send { .. } | Effect::Post { .. } => {}
        }
    }
}

/// What an engagement event changed, for the runner to act on.
#[derive(Debug, Default, PartialEq)]
pub struct Engagement {
    /// Channels whose consent this event withdrew.
    pub unsubscribed: Vec<String>,
}

impl ContactRecord {
    /// Takes what an engagement event says about the contact's channels:
    /// an open or click (`email.opened`, `wecom.clicked`, or `message.opened`
    /// with `properties.channel`) makes that channel the preferred one and adds
    /// the deployment's lead score for the event; an unsubscribe, or a reply
    /// that is an unsubscribe keyword (`sms.replied` with `properties.text`),
    /// withdraws consent on that channel at once; a confirmation
    /// (`contact.confirmed`) grants it.
    pub fn engage(&mut self, event: &Event, policy: &DeliveryPolicy) -> Engagement {
        let mut engagement = Engagement::default();
        if let Some(points) = policy.scoring.get(&event.name) {
            self.profile.score = self.profile.score.saturating_add(*points);
        }
        let (prefix, action) = event.name.rsplit_once('.').unwrap_or(("", ""));
        let channel = event
            .properties
            .get("channel")
            .and_then(Value::as_str)
            .unwrap_or(prefix)
            .to_string();
        let known = CHANNELS.contains(&channel.as_str());
        match action {
            "opened" | "clicked" if known => {
                self.profile
                    .attributes
                    .insert(PREFERRED_CHANNEL.into(), Value::String(channel.clone()));
                self.profile
                    .attributes
                    .insert("last_engaged_at".into(), Value::from(event.occurred_at));
                self.profile.tags.retain(|t| !t.starts_with(PREFERS_TAG));
                self.profile.tags.insert(format!("{PREFERS_TAG}{channel}"));
            }
            "replied" if known => {
                let text = event.properties.get("text").and_then(Value::as_str);
                if text.is_some_and(|t| policy.is_unsubscribe_reply(t)) {
                    engagement.unsubscribed.push(channel);
                }
            }
            // The address pressed the button of its confirmation link: the
            // grant an unsigned form could not give.
            "confirmed" if event.name == trust::CONFIRMED && known => {
                self.set_consent(&channel, ConsentState::Granted, DRIPLINE, event.occurred_at);
            }
            "unsubscribed" if event.name == UNSUBSCRIBED => {
                if known {
                    engagement.unsubscribed.push(channel);
                } else {
                    // An unsubscribe that names no channel is from everything.
                    engagement
                        .unsubscribed
                        .extend(CHANNELS.iter().map(|c| c.to_string()));
                }
            }
            _ => {}
        }
        for channel in &engagement.unsubscribed {
            self.set_consent(channel, ConsentState::Denied, DRIPLINE, event.occurred_at);
        }
        engagement
    }
}

/// External id systems that name a device or a cart rather than a person: the
/// Shopify cart token, the track API's anonymous id. Two people can share one
/// (a family's cart, a shared browser).
pub const WEAK_IDENTITIES: &[&str] = &["shopify_cart", "anonymous"];

pub(crate) fn is_weak(identity: &Identity) -> bool {
    matches!(identity, Identity::External { system, .. } if WEAK_IDENTITIES.contains(&system.as_str()))
}

/// Finds the contact an event is about, by email, then phone, then external
/// ids, then the weak ids ([`WEAK_IDENTITIES`]); `None` if nobody known
/// matches. A weak id alone never joins a person to a contact whose email or
/// phone disagrees with the event's: two shoppers on one cart stay two.
pub fn find(
    store: &dyn Contacts,
    identities: &Identities,
) -> Result<Option<ContactRecord>, StoreError> {
    let (weak, strong): (Vec<Identity>, Vec<Identity>) =
        event_identities(identities).into_iter().partition(is_weak);
    for identity in &strong {
        if let Some(contact) = store.contact_find_by_identity(identity)? {
            return Ok(Some(ContactRecord::from_stored(contact)));
        }
    }
    for identity in &weak {
        if let Some(contact) = store.contact_find_by_identity(identity)?
            && !disagrees(&contact, identities)
        {
            return Ok(Some(ContactRecord::from_stored(contact)));
        }
    }
    Ok(None)
}

/// [`find`] over identities already looked up: `owner` says who holds each,
/// `contact` gives a holder's record. The same order and the same rule for
/// weak ids; the id of the contact, or `None`.
pub fn pick<'c>(
    wanted: &[Identity],
    identities: &Identities,
    owner: &std::collections::HashMap<Identity, String>,
    contact: impl Fn(&str) -> Option<&'c Contact>,
) -> Option<String> {
    let (weak, strong): (Vec<&Identity>, Vec<&Identity>) = wanted.iter().partition(|i| is_weak(i));
    if let Some(id) = strong.iter().find_map(|i| owner.get(*i)) {
        return Some(id.clone());
    }
    weak.iter().find_map(|i| {
        let id = owner.get(*i)?;
        (!disagrees(contact(id)?, identities)).then(|| id.clone())
    })
}

/// Whether a contact found by a weak id is someone else: its email or phone
/// differs from the event's.
fn disagrees(known: &Contact, identities: &Identities) -> bool {
    known.identities.iter().any(|k| match k {
        Identity::Email(email) => identities.email.as_ref().is_some_and(|e| e != email),
        Identity::Phone(phone) => identities.phone.as_ref().is_some_and(|p| p != phone),
        _ => false,
    })
}

/// The ids of new contacts: derived from a contact's first identity, so
/// reprocessing an event after a crash creates the same id, and keyed by a
/// secret of the deployment, so an id tells nobody without the key whose
/// email it was made from (an unkeyed hash of a guessed address would match).
pub struct ContactIds {
    key: Vec<u8>,
}

/// The name of the deployment secret contact ids are keyed by.
pub const CONTACT_ID_KEY: &str = "contact-id-key";

impl ContactIds {
    /// The deployment's contact ids, keyed by the secret in its store (made
    /// the first time).
    pub fn for_store(store: &dyn dripline_store::KeyValue) -> Result<Self, StoreError> {
        Ok(Self {
            key: dripline_store::deployment_secret(store, CONTACT_ID_KEY)?,
        })
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// A new contact for an event nobody matched.
    pub fn new_for(&self, identities: &Identities) -> ContactRecord {
        let first = event_identities(identities).into_iter().next();
        let seed = first.map(|i| format!("{i:?}")).unwrap_or_default();
        let digest = self.mac(&[seed.as_bytes()]);
        let id = format!("c_{}", hex::encode(&digest[..10]));
        ContactRecord {
            contact: Contact {
                id,
                identities: Vec::new(),
                profile: Value::Null,
            },
            profile: Profile::default(),
            as_read: None,
        }
    }
}

impl ContactIds {
    /// What an erased contact keeps of `identity`: a keyed hash under the
    /// `erased` system, which the same identity gives again and nobody
    /// without the deployment's key can turn back into an address.
    pub fn erased(&self, identity: &Identity) -> Identity {
        let kind = identity.index_kind();
        let digest = self.mac(&[
            b"erased\x1f",
            kind.as_bytes(),
            b"\x1f",
            identity.index_value().as_bytes(),
        ]);
        Identity::External {
            system: ERASED_SYSTEM.into(),
            id: hex::encode(&digest[..16]),
        }
    }

    /// The anonymous tombstone an erasure leaves of contact `id`, which had
    /// `identities`.
    pub fn tombstone(&self, id: &str, identities: &[Identity], at: i64) -> Contact {
        let mut markers: Vec<Identity> = identities
            .iter()
            .filter(|i| !matches!(i, Identity::External { system, .. } if system == ERASED_SYSTEM))
            .map(|i| self.erased(i))
            .collect();
        markers.extend(
            identities
                .iter()
                .filter(
                    |i| matches!(i, Identity::External { system, .. } if system == ERASED_SYSTEM),
                )
                .cloned(),
        );
        Contact {
            id: id.to_owned(),
            identities: markers,
            profile: serde_json::json!({ "erased_at": at }),
        }
    }
}

/// The identity system of an erased contact's keyed hashes.
pub const ERASED_SYSTEM: &str = "erased";

/// An event's identities as the store indexes them: email, phone, then the
/// external ids.
pub(crate) fn event_identities(identities: &Identities) -> Vec<Identity> {
    let mut list = Vec::new();
    list.extend(identities.email.clone().map(Identity::Email));
    list.extend(identities.phone.clone().map(Identity::Phone));
    for (system, id) in &identities.external_ids {
        list.push(Identity::External {
            system: system.clone(),
            id: id.clone(),
        });
    }
    list
}

/// The canonical identities in the WIT shape.
pub fn wit_identities(identities: &Identities) -> bindings::Identities {
    bindings::Identities {
        email: identities.email.clone(),
        phone: identities.phone.clone(),
        external_ids: identities
            .external_ids
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The canonical event in the WIT shape.
pub fn wit_event(event: &Event) -> bindings::Event {
    bindings::Event {
        id: event.id.clone(),
        source: event.source.clone(),
        name: event.name.clone(),
        identities: wit_identities(&event.identities),
        properties: event.properties.to_string(),
        occurred_at: event.occurred_at,
        received_at: event.received_at,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use dripline_store::MemoryStore;
    use sha2::Digest as _;

    use super::*;

    #[test]
    fn the_trust_tables_admin_source_is_the_one_the_runtimes_commands_write() {
        assert_eq!(trust::ADMIN, dripline_store::control::ADMIN_SOURCE);
    }

    fn ana() -> Identities {
        Identities {
            email: Some("ana@example.com".into()),
            ..Identities::default()
        }
    }

    #[test]
    fn contact_ids_are_keyed_by_the_deployment_so_an_emails_hash_does_not_name_its_contact() {
        let one = ContactIds::for_store(&MemoryStore::new()).unwrap();
        let other = ContactIds::for_store(&MemoryStore::new()).unwrap();
        let id = one.new_for(&ana()).contact.id;
        // The same event makes the same id again (a replay after a crash).
        assert_eq!(one.new_for(&ana()).contact.id, id);
        // Another deployment's key makes another, and the unkeyed hash of
        // the address, which anyone can compute, is not it.
        assert_ne!(other.new_for(&ana()).contact.id, id);
        let seed = format!("{:?}", Identity::Email("ana@example.com".into()));
        let unkeyed = format!("c_{}", hex::encode(&Sha256::digest(seed.as_bytes())[..10]));
        assert_ne!(id, unkeyed);
    }

    #[test]
    fn an_erased_identity_is_kept_only_as_a_keyed_hash_the_same_address_finds_again() {
        let ids = ContactIds::for_store(&MemoryStore::new()).unwrap();
        let email = Identity::Email("ana@example.com".into());
        let tombstone = ids.tombstone("c_1", &[email.clone()], 5);
        assert!(!serde_json::to_string(&tombstone).unwrap().contains("ana"));
        assert_eq!(tombstone.identities, vec![ids.erased(&email)]);
        assert_ne!(
            ids.erased(&email),
            ids.erased(&Identity::Email("bo@example.com".into()))
        );
    }
}

//! Bringing an existing customer list in: each row becomes (or updates) a
//! contact, found by its identities as events find theirs, with attributes,
//! tags, a time zone and consent that remembers it came from the import.
//!
//! A mapping says which column is what; without one, `email`, `phone`,
//! `time_zone` and `tags` are read by name and every other column becomes an
//! attribute:
//!
//! ```toml
//! [identities]
//! email = "Email"
//! phone = "Mobile"
//! external = { shopify = "Customer ID" }
//!
//! [attributes]
//! first_name = "First name"
//! birthday = "Birthday"          # 1990-06-20: date triggers read it
//! registered_at = "Signed up"    # RFC 3339: segments read it
//!
//! [consent]
//! email = "Accepts email"        # yes/no, true/false, 1/0, granted/denied
//! sms = "Accepts SMS"
//!
//! tags = "Tags"                  # split on tag_separator (",")
//! time_zone = "Time zone"
//! ```
//!
//! A row that cannot be read (no identity, a consent that is neither yes nor
//! no, an unknown time zone) is reported with its line and the column at
//! fault, and the rest go in. Importing the same file twice changes nothing:
//! a contact whose row says nothing new is not written, and consent already
//! held from the import is not recorded again. An unsubscribe made through
//! Dripline is not undone by an imported "yes": lists go stale.
//!
//! An import that changed contacts asks the runner for a pass over every
//! contact's segments and date triggers (see
//! [`crate::audience::Reevaluation`]), which `dripline up` runs in the
//! background: a list of lapsed customers enters "dormant", and imported
//! birthdays get their offers, like any other contact's.

use std::collections::{BTreeMap, HashMap};

use dripline_engine::ConsentState;
use dripline_store::{Identity, Store, StoreError, Write};
use serde::Deserialize;
use serde_json::Value;

use crate::contacts::{self, ContactRecord, DRIPLINE};

/// Which column holds what.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The identity columns.
    #[serde(default)]
    pub identities: IdentityColumns,
    /// Attribute name to column.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Channel to the column that says yes or no to marketing on it.
    #[serde(default)]
    pub consent: BTreeMap<String, String>,
    /// The column of tags.
    #[serde(default)]
    pub tags: Option<String>,
    /// What separates tags in it.
    #[serde(default = "comma")]
    pub tag_separator: String,
    /// The column of IANA time zones.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Whether the columns mapped to nothing become attributes of their own
    /// name (the default without a mapping file).
    #[serde(default)]
    pub rest_as_attributes: bool,
}

fn comma() -> String {
    ",".into()
}

/// The columns of a row's identities.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityColumns {
    /// The email column.
    pub email: Option<String>,
    /// The phone column (E.164, `+8613800138000`; spaces and dashes are
    /// dropped).
    pub phone: Option<String>,
    /// System (`shopify`) to the column of its ids.
    #[serde(default)]
    pub external: BTreeMap<String, String>,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            identities: IdentityColumns {
                email: Some("email".into()),
                phone: Some("phone".into()),
                external: BTreeMap::new(),
            },
            attributes: BTreeMap::new(),
            consent: BTreeMap::new(),
            tags: Some("tags".into()),
            tag_separator: comma(),
            time_zone: Some("time_zone".into()),
            rest_as_attributes: true,
        }
    }
}

impl Mapping {
    /// Reads a mapping file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn mapped(&self, column: &str) -> bool {
        let is = |c: &Option<String>| c.as_deref() == Some(column);
        is(&self.identities.email)
            || is(&self.identities.phone)
            || self.identities.external.values().any(|c| c == column)
            || self.attributes.values().any(|c| c == column)
            || self.consent.values().any(|c| c == column)
            || is(&self.tags)
            || is(&self.time_zone)
    }
}

/// One row: its line in the file and its values by column.
#[derive(Debug, Clone)]
pub struct Row {
    /// The line it starts on (1 is the first line of the file).
    pub line: usize,
    /// Column to value; CSV values are text, JSON lines keep their types.
    pub values: BTreeMap<String, Value>,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// Rows read.
    pub rows: usize,
    /// Contacts created.
    pub created: usize,
    /// Contacts changed.
    pub updated: usize,
    /// Rows that changed nothing.
    pub unchanged: usize,
    /// Identities a row named that belong to another contact, left with it.
    pub identity_conflicts: usize,
    /// Rows about a person who was erased, skipped (see `dripline_runner::erasure`).
    pub erased: usize,
    /// Rows not imported: the line and why.
    pub failed: Vec<(usize, String)>,
}

/// Reads a CSV file (a header row, then a contact a row) or JSON lines
/// (`.jsonl`, `.ndjson`: an object a line) into `importer`; `read` is given
/// the reader, so a caller can count the bytes (a progress bar).
pub fn read_into(
    importer: &mut Importer<'_>,
    name: &str,
    read: impl std::io::Read,
) -> Result<(), ImportError> {
    use std::io::BufRead as _;
    if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        for (index, line) in std::io::BufReader::new(read).lines().enumerate() {
            let line_number = index + 1;
            let line = line.map_err(|e| ImportError::Read(format!("{name}:{line_number}: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(fields)) => importer.add(Row {
                    line: line_number,
                    values: fields.into_iter().collect(),
                })?,
                Ok(_) => importer.unreadable(line_number, "not a JSON object".into()),
                Err(e) => importer.unreadable(line_number, format!("not JSON: {e}")),
            }
        }
        return Ok(());
    }
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(read);
    let headers: Vec<String> = csv
        .headers()
        .map_err(|e| ImportError::Read(format!("{name}: the header row: {e}")))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line() as usize);
                let values = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (h.clone(), Value::String(v.to_owned())))
                    .collect();
                importer.add(Row { line, values })?;
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(ImportError::Read(format!("{name}:{line}: {e}")));
                }
                importer.unreadable(line, e.to_string());
            }
        }
    }
    Ok(())
}

/// Why an import stopped (a bad row does not stop it).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("{0}")]
    Read(String),
    /// The store failed; what was written so far stays.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many rows go into one transaction.
pub const BATCH: usize = 2_000;

/// A row read and checked, not yet matched to a contact.
struct Parsed {
    identities: dripline_engine::Identities,
    /// Its identities, strong ones first.
    wanted: Vec<Identity>,
    attributes: Vec<(String, Value)>,
    tags: Vec<String>,
    zone: Option<String>,
    consent: Vec<(String, ConsentState)>,
}

/// Imports rows into a store, a batch at a time: a batch's rows are read and
/// checked, the contacts their identities name are read together, and the
/// contacts that changed are written in one transaction.
pub struct Importer<'a> {
    store: &'a dyn Store,
    mapping: Mapping,
    /// The consent source recorded: `import:<name>`.
    source: String,
    now: i64,
    pending: Vec<Parsed>,
    report: Report,
    /// How new contacts are named, read from the store at the first flush.
    contact_ids: Option<contacts::ContactIds>,
}

impl<'a> Importer<'a> {
    /// An importer into `store` by `mapping`; `name` (the file's) is the
    /// source its consent is recorded with; `now` stamps the changes.
    pub fn new(store: &'a dyn Store, mapping: Mapping, name: &str, now: i64) -> Self {
        Self {
            store,
            mapping,
            source: format!("import:{name}"),
            now,
            pending: Vec::new(),
            report: Report::default(),
            contact_ids: None,
        }
    }

    /// Takes one row; a full batch is written.
    pub fn add(&mut self, row: Row) -> Result<(), StoreError> {
        self.report.rows += 1;
        match parse(&self.mapping, &row) {
            Ok(parsed) => self.pending.push(parsed),
            Err(problem) => self.report.failed.push((row.line, problem)),
        }
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// A row that cannot be read at all (a CSV line with a broken quote).
    pub fn unreadable(&mut self, line: usize, problem: String) {
        self.report.rows += 1;
        self.report.failed.push((line, problem));
    }

    /// Writes what is pending and returns the report.
    pub fn finish(mut self) -> Result<Report, StoreError> {
        self.flush()?;
        Ok(self.report)
    }

    /// Matches the pending rows to contacts and writes each contact that
    /// changed, guarded against a worker changing it meanwhile, and asks the
    /// runner for a pass over every contact's segments and dates.
    fn flush(&mut self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        if self.contact_ids.is_none() {
            self.contact_ids = Some(contacts::ContactIds::for_store(self.store)?);
        }
        // Every identity of the batch, looked up together.
        let mut seen = std::collections::HashSet::new();
        let asked: Vec<Identity> = pending
            .iter()
            .flat_map(|p| p.wanted.iter())
            .filter(|identity| seen.insert(*identity))
            .cloned()
            .collect();
        let found = self.store.contacts_find_by_identities(&asked)?;
        // Who holds each identity, as the batch goes: the store's answer,
        // then this batch's own records.
        let mut owner: HashMap<Identity, String> = HashMap::new();
        let mut records: Vec<ContactRecord> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        let ids = self
            .contact_ids
            .as_ref()
            .ok_or(StoreError::Internal("contact ids are read first"))?;
        // Identities nobody holds may be an erased person's: looked up by
        // their keyed hash, all at once.
        let unheld: Vec<&Identity> = asked
            .iter()
            .zip(&found)
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| i)
            .collect();
        let markers: Vec<Identity> = unheld.iter().map(|i| ids.erased(i)).collect();
        let erased: std::collections::HashSet<&Identity> = unheld
            .iter()
            .zip(self.store.contacts_find_by_identities(&markers)?)
            .filter(|(_, tombstone)| tombstone.is_some())
            .map(|(i, _)| *i)
            .collect();
        for (identity, contact) in asked.iter().zip(found) {
            if let Some(contact) = contact {
                owner.insert(identity.clone(), contact.id.clone());
                if !index_of.contains_key(&contact.id) {
                    index_of.insert(contact.id.clone(), records.len());
                    records.push(ContactRecord::from_stored(contact));
                }
            }
        }
        for row in pending {
            let index = match contacts::pick(&row.wanted, &row.identities, &owner, |id| {
                index_of.get(id).map(|i| &records[*i].contact)
            }) {
                Some(id) => index_of[&id],
                None if row.wanted.iter().any(|i| erased.contains(i)) => {
                    self.report.erased += 1;
                    continue;
                }
                None => {
                    let record = ids.new_for(&row.identities);
                    let id = record.contact.id.clone();
                    // A new contact's id comes from its first identity: a
                    // second row with that identity would have found it.
                    *index_of.entry(id).or_insert_with(|| {
                        records.push(record);
                        records.len() - 1
                    })
                }
            };
            let record = &mut records[index];
            for identity in &row.wanted {
                match owner.get(identity) {
                    Some(holder) if *holder != record.contact.id => {
                        self.report.identity_conflicts += 1;
                    }
                    Some(_) => {}
                    None => {
                        record.contact.identities.push(identity.clone());
                        owner.insert(identity.clone(), record.contact.id.clone());
                    }
                }
            }
            if record.as_read.is_none() {
                // A new contact's activity starts with its import (for
                // retention); importing a known one again says nothing of it.
                record.touch(self.now);
            }
            let profile = &mut record.profile;
            for (name, value) in row.attributes {
                profile.attributes.insert(name, value);
            }
            profile.tags.extend(row.tags);
            if let Some(zone) = row.zone {
                profile.time_zone = Some(zone);
            }
            for (channel, state) in row.consent {
                let unsubscribed_here = record
                    .profile
                    .consent_source
                    .get(&channel)
                    .is_some_and(|c| c.source == DRIPLINE && c.state == ConsentState::Denied);
                if state == ConsentState::Granted && unsubscribed_here {
                    continue;
                }
                record.set_consent(&channel, state, &self.source, self.now);
            }
        }
        let mut writes = Vec::with_capacity(records.len() * 3);
        for record in &records {
            let stored = record.to_stored();
            if record.as_read.as_ref() == Some(&stored) {
                self.report.unchanged += 1;
                continue;
            }
            if record.as_read.is_none() {
                self.report.created += 1;
            } else {
                self.report.updated += 1;
            }
            writes.push(Write::ContactUnchanged {
                id: stored.id.clone(),
                as_read: record.as_read.clone(),
            });
            writes.push(Write::ContactPut(stored));
        }
        if writes.is_empty() {
            return Ok(());
        }
        // With the contacts, in their transaction: the runner evaluates
        // everyone's segments and dates again once the import is in.
        writes.push(crate::audience::full_pass_wanted(&self.source));
        self.store.apply(&writes).map(drop)
    }
}

/// Reads and checks one row by the mapping.
fn parse(mapping: &Mapping, row: &Row) -> Result<Parsed, String> {
    let text = |column: &Option<String>| -> Option<String> {
        let value = row.values.get(column.as_deref()?)?;
        let text = match value {
            Value::String(s) => s.trim().to_owned(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        (!text.is_empty()).then_some(text)
    };
    let mut identities = dripline_engine::Identities::default();
    if let Some(email) = text(&mapping.identities.email) {
        if !email.contains('@') || email.contains(char::is_whitespace) {
            return Err(format!(
                "{}: {email:?} is not an email address",
                column_name(&mapping.identities.email)
            ));
        }
        identities.email = Some(email.to_lowercase());
    }
    if let Some(phone) = text(&mapping.identities.phone) {
        let digits: String = phone
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect();
        let valid = digits.starts_with('+')
            && (8..=16).contains(&digits.len())
            && digits[1..].chars().all(|c| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "{}: {phone:?} is not an E.164 number (+8613800138000)",
                column_name(&mapping.identities.phone)
            ));
        }
        identities.phone = Some(digits);
    }
    for (system, column) in &mapping.identities.external {
        if let Some(id) = text(&Some(column.clone())) {
            identities.external_ids.insert(system.clone(), id);
        }
    }
    let wanted = contacts::event_identities(&identities);
    if wanted.is_empty() {
        return Err("no identity: the row has no email, phone or external id".into());
    }
    let zone = match text(&mapping.time_zone) {
        Some(zone) if zone.parse::<chrono_tz::Tz>().is_err() => {
            return Err(format!(
                "{}: {zone:?} is not an IANA time zone (Asia/Shanghai)",
                column_name(&mapping.time_zone)
            ));
        }
        other => other,
    };
    let mut consent = Vec::new();
    for (channel, column) in &mapping.consent {
        let Some(answer) = text(&Some(column.clone())) else {
            continue;
        };
        let state = match answer.to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" | "1" | "granted" | "subscribed" | "opted_in" => {
                ConsentState::Granted
            }
            "no" | "n" | "false" | "0" | "denied" | "unsubscribed" | "not_subscribed" => {
                ConsentState::Denied
            }
            _ => return Err(format!("{column}: {answer:?} is neither yes nor no")),
        };
        consent.push((channel.clone(), state));
    }
    let mut attributes = Vec::new();
    for (name, column) in &mapping.attributes {
        if let Some(value) = row.values.get(column).filter(|v| !is_blank(v)) {
            attributes.push((name.clone(), trimmed(value)));
        }
    }
    if mapping.rest_as_attributes {
        for (column, value) in &row.values {
            if !mapping.mapped(column) && !is_blank(value) {
                attributes.push((column.clone(), trimmed(value)));
            }
        }
    }
    let tags = text(&mapping.tags)
        .map(|tags| {
            tags.split(mapping.tag_separator.as_str())
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Parsed {
        identities,
        wanted,
        attributes,
        tags,
        zone,
        consent,
    })
}

fn column_name(column: &Option<String>) -> &str {
    column.as_deref().unwrap_or("?")
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn trimmed(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.trim().to_owned()),
        other => other.clone(),
    }
}

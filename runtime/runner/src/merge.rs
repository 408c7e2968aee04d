//! Two contacts that are one person: what an event naming both does, and the
//! merge a person asks for.
//!
//! An event whose identities belong to two contacts (an email of one, the
//! phone of another) follows `[identities] on_conflict` in `delivery.toml`:
//! `keep_apart` (the default) leaves each identity with its contact and
//! records the conflict on the event's contact (`identity_conflicts`);
//! `merge` merges the other contact into the event's. A weak identity (a
//! cart token) never counts as a conflict: it does not say who a person is.
//!
//! A merge keeps both histories: the merged contact's profile, facts and
//! consent are taken in ([`ContactRecord::merge_from`]); its active
//! enrollments move over, except in a journey the other is already in,
//! where they end ("merged"); its past enrollments and messages stay under
//! its id, which is left as a pointer (`merged_into`). `dripline contacts
//! merge` asks for one by hand: an event only the runtime can write
//! ([`MERGE_REQUESTED`]), carried out by the runner like any other.

use dripline_delivery::policy::OnConflict;
use dripline_engine::{EnrollmentStatus, Event};
use dripline_store::Write;
use serde_json::Value;

use crate::Runner;
use crate::error::InputError;
use crate::unit::Unit;

/// The event `dripline contacts merge` writes into the inbox, from source
/// [`ADMIN`]: `properties.into` and `properties.from` are contact ids.
pub const MERGE_REQUESTED: &str = "contact.merge_requested";

/// The source of what the runtime's own commands write; no webhook route
/// has it.
pub const ADMIN: &str = dripline_store::control::ADMIN_SOURCE;

impl Runner {
    /// Applies the deployment's rule to the identities an event named that
    /// other contacts hold.
    pub(crate) fn resolve_conflicts(
        &self,
        unit: &mut Unit<'_>,
        contact_id: &str,
        conflicts: &[(dripline_store::Identity, String)],
        event: &Event,
    ) -> Result<(), InputError> {
        for (identity, holder) in conflicts {
            match self.policy.identities.on_conflict {
                OnConflict::KeepApart => {
                    unit.contact_mut(contact_id)?
                        .record_conflict(identity, holder, event);
                    unit.metric("contacts.identity_conflict".into());
                }
                OnConflict::Merge => self.merge_contacts(unit, contact_id, holder)?,
            }
        }
        Ok(())
    }

    /// Carries out a merge asked for by `dripline contacts merge`.
    pub(crate) fn on_merge_request(
        &self,
        unit: &mut Unit<'_>,
        event: &Event,
    ) -> Result<(), InputError> {
        let id = |name: &str| {
            event
                .properties
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| InputError::bad(format!("a merge request without `{name}`")))
        };
        let (into, from) = (id("into")?, id("from")?);
        self.merge_contacts(unit, &into, &from)?;
        self.refresh_audience(unit, &into)
    }

    /// Merges contact `from` into `into`, in this unit.
    pub(crate) fn merge_contacts(
        &self,
        unit: &mut Unit<'_>,
        into: &str,
        from: &str,
    ) -> Result<(), InputError> {
        if into == from {
            return Ok(());
        }
        let other = unit.contact(from)?.clone();
        if other.is_tombstone() {
            return Ok(());
        }
        unit.contact(into)?;
        let now = unit.now;
        let mine = unit.enrollments_of(into)?;
        for mut enrollment in unit.enrollments_of(from)? {
            if enrollment.is_done() {
                continue;
            }
            let already = mine
                .iter()
                .any(|m| !m.is_done() && m.journey == enrollment.journey);
            if already {
                enrollment.status = EnrollmentStatus::Done;
                enrollment.pending = None;
                enrollment.exited_at = Some(now);
                enrollment.exit_reason = Some(format!(
                    "merged into {into}, which is in this journey already"
                ));
            } else {
                enrollment.contact_id = into.to_owned();
            }
            unit.put_enrollment(enrollment);
        }
        // The merged contact lets go of its identities first, in the batch,
        // so that the other can take them.
        unit.writes.push(Write::ContactUnchanged {
            id: from.to_owned(),
            as_read: other.as_read.clone(),
        });
        unit.writes
            .push(Write::ContactPut(other.tombstone_of(into, now)));
        unit.forget_contact(from);
        unit.contact_mut(into)?.merge_from(&other, now);
        unit.metric("contacts.merged".into());
        tracing::info!(%into, %from, "contacts merged");
        Ok(())
    }
}

//! Segments (`segments/*.toml`): who a contact is, as a CEL condition over
//! the contact and its facts, kept current by the runtime.
//!
//! ```toml
//! name = "Dormant members"
//! # Registered over 180 days ago, no order in the last 90.
//! condition = """
//!   has(contact.attributes.registered_at)
//!   && timestamp(contact.attributes.registered_at) < now - days(180)
//!   && contact.facts['order.paid'].last < now - days(90)
//! """
//! ```
//!
//! The runtime evaluates a contact's segments whenever the contact changes,
//! and again at the moment time alone may change the answer
//! ([`CelExpr::next_change`]): "no order in 90 days" becomes true 90 days
//! after the last order, and that re-check is scheduled for that contact
//! instead of scanning everyone on a timetable. A journey starts on entry
//! with `[trigger] segment = "dormant"` (or on exit, with `on = "exit"`).

use serde::{Deserialize, Serialize};

use crate::condition::CelExpr;
use crate::event::{ContactView, Timestamp};

/// A segment as its file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// The segment's id: the file name without `.toml`.
    #[serde(default)]
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Who is in it: a CEL condition over `contact` and `now`.
    pub condition: CelExpr,
}

/// Where a contact stands with a segment now, and when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    /// Whether the contact is in the segment.
    pub member: bool,
    /// When time alone may change that, if it can.
    pub recheck_at: Option<Timestamp>,
}

impl Segment {
    /// Reads a segment file; the error says what is wrong, with its line.
    pub fn parse(file_name: &str, text: &str) -> Result<Self, String> {
        let mut segment: Segment = toml::from_str(text).map_err(|e| format!("{file_name}: {e}"))?;
        if segment.id.is_empty() {
            segment.id = std::path::Path::new(file_name)
                .file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or(file_name)
                .to_owned();
        }
        Ok(segment)
    }

    /// Whether `contact` is in the segment at `now`, and when to look again.
    /// A condition that fails to evaluate leaves the contact out (the error
    /// says why).
    pub fn evaluate(&self, contact: &ContactView, now: Timestamp) -> Result<Membership, String> {
        let member = self.condition.test_contact(contact, now)?;
        Ok(Membership {
            member,
            recheck_at: self.condition.next_change(contact, now),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_trigger_starts_on_entering_or_on_leaving_its_segment_only() {
        let journey = crate::parse_journey(
            "journeys/win-back.toml",
            "name = \"x\"\nversion = 1\n[trigger]\nsegment = \"dormant\"\non = \"exit\"\n[[steps]]\nid = \"a\"\nexit = \"done\"\n",
        )
        .unwrap();
        let trigger = journey.trigger.as_ref().unwrap();
        let moved = |name: &str, segment: &str| crate::Event {
            id: "e".into(),
            source: "dripline".into(),
            name: name.into(),
            identities: Default::default(),
            properties: serde_json::json!({ "segment": segment }),
            occurred_at: 0,
            received_at: 0,
        };
        assert!(trigger.starts_on("win-back", &moved(crate::SEGMENT_EXITED, "dormant")));
        assert!(!trigger.starts_on("win-back", &moved(crate::SEGMENT_ENTERED, "dormant")));
        assert!(!trigger.starts_on("win-back", &moved(crate::SEGMENT_EXITED, "vip")));
        let both = crate::parse_journey(
            "journeys/bad.toml",
            "name = \"x\"\nversion = 1\n[trigger]\nevent = \"a.b\"\nsegment = \"dormant\"\n[[steps]]\nid = \"a\"\nexit = \"done\"\n",
        )
        .unwrap_err();
        assert!(both[0].to_string().contains("not several"), "{}", both[0]);
    }

    #[test]
    fn a_segment_file_reads_with_its_id_from_the_file_name() {
        let segment = Segment::parse(
            "segments/dormant.toml",
            "name = \"Dormant\"\ncondition = \"contact.facts['order.paid'].last < now - days(90)\"\n",
        )
        .unwrap();
        assert_eq!(segment.id, "dormant");
        let error =
            Segment::parse("segments/bad.toml", "name = \"x\"\ncondition = \"1 +\"\n").unwrap_err();
        assert!(error.contains("invalid CEL"), "{error}");
    }
}

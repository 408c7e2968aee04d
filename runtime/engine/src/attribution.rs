//! Conversions: which of a contact's enrollments a goal event (an order) counts
//! for, and under which split way.
//!
//! Reaching the goal ends an active enrollment ([`crate::on_event`]); a
//! conversion is counted apart from that, for active and finished enrollments
//! alike, because a holdout exits at the split and would otherwise never
//! convert: the control group would measure nothing. Every enrollment counts
//! at most one conversion, the first goal event within the journey's
//! attribution window after it entered, under the way (`arm`) it was on at that
//! moment. Conversions before any split count for the journey only.

use serde::{Deserialize, Serialize};

use crate::condition::{Bindings, eval_bool};
use crate::enrollment::Enrollment;
use crate::event::{ContactView, Event, Timestamp};
use crate::facts::amount_of;
use crate::journey::{Journey, SplitWay};

/// The attribution window of a goal that names none: 7 days.
pub const DEFAULT_ATTRIBUTION_MS: i64 = 7 * 24 * 3_600_000;

/// What a split way is called in the figures: the step it leads to, or
/// `holdout`.
pub fn arm_name(ways: &[SplitWay], index: usize) -> String {
    match ways.get(index) {
        Some(SplitWay {
            next: Some(next),
            holdout: false,
            ..
        }) => next.clone(),
        Some(_) => crate::machine::HOLDOUT.to_owned(),
        None => format!("way {index}"),
    }
}

/// One enrollment's conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    /// The journey.
    pub journey: String,
    /// The version the enrollment is on.
    pub journey_version: u32,
    /// The enrollment.
    pub enrollment_id: String,
    /// The way it was on, if a split had placed it.
    pub arm: Option<String>,
    /// The goal event's amount (`total`, `value` or `amount`), in cents.
    pub revenue_cents: i64,
    /// When the goal event occurred.
    pub at: Timestamp,
}

/// Whether `event` is `enrollment`'s conversion. If it is, the enrollment is
/// marked (so that no later event counts again) and the conversion returned.
/// `journey` must be the version the enrollment is on.
pub fn attribute(
    journey: &Journey,
    enrollment: &mut Enrollment,
    contact: &ContactView,
    event: &Event,
) -> Option<Conversion> {
    let goal = journey.goal.as_ref()?;
    let window = goal
        .attribution
        .map_or(DEFAULT_ATTRIBUTION_MS, |d| d.as_offset());
    let counts = enrollment.journey == journey.id
        && enrollment.journey_version == journey.version
        && enrollment.converted_at.is_none()
        && event.id != enrollment.trigger.id
        && goal.matches(event)
        && event.occurred_at >= enrollment.entered_at
        && event.occurred_at <= enrollment.entered_at.saturating_add(window);
    if !counts {
        return None;
    }
    if let Some(condition) = &goal.condition {
        let bindings = Bindings {
            trigger: &enrollment.trigger,
            event,
            contact,
            data: &enrollment.data,
            now: event.occurred_at,
        };
        // A condition that fails to evaluate is reported where the goal
        // itself is checked; here it only does not count.
        if !eval_bool(condition, bindings).unwrap_or(false) {
            return None;
        }
    }
    enrollment.converted_at = Some(event.occurred_at);
    Some(Conversion {
        journey: journey.id.clone(),
        journey_version: journey.version,
        enrollment_id: enrollment.id.clone(),
        arm: enrollment.arm.clone(),
        revenue_cents: (amount_of(event) * 100.0).round() as i64,
        at: event.occurred_at,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Action, on_event, parse_journey};
    use serde_json::json;

    const JOURNEY: &str = r#"
        name = "Recovery"
        version = 1
        [trigger]
        event = "checkout.created"
        [goal]
        event = "order.paid"
        condition = "event.properties.checkout_token == trigger.properties.token"
        attribution = "2d"
        [[steps]]
        id = "offer"
        split = [{ percent = 50, next = "mail" }, { percent = 50, holdout = true }]
        [[steps]]
        id = "mail"
        wait = "1h"
    "#;

    fn event(id: &str, name: &str, at: i64, properties: serde_json::Value) -> Event {
        Event {
            id: id.into(),
            source: "shopify".into(),
            name: name.into(),
            identities: Default::default(),
            properties,
            occurred_at: at,
            received_at: at,
        }
    }

    fn enrolled(contact: &str) -> Enrollment {
        let journey = parse_journey("j.toml", JOURNEY).unwrap();
        let checkout = event("c", "checkout.created", 0, json!({ "token": "t1" }));
        let actions = on_event(&journey, &ContactView::new(contact), &checkout, &[], 0);
        actions
            .into_iter()
            .find_map(|a| match a {
                Action::Enroll(e) => Some(e),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn an_order_within_the_window_converts_once_under_the_way_the_split_chose() {
        let journey = parse_journey("j.toml", JOURNEY).unwrap();
        let contact = ContactView::new("c-1");
        let mut enrollment = enrolled("c-1");
        let arm = enrollment.arm.clone();
        assert!(arm.as_deref() == Some("mail") || arm.as_deref() == Some("holdout"));
        let order = event(
            "o1",
            "order.paid",
            3_600_000,
            json!({ "checkout_token": "t1", "total": "19.90" }),
        );
        let conversion = attribute(&journey, &mut enrollment, &contact, &order).unwrap();
        assert_eq!(conversion.revenue_cents, 1990);
        assert_eq!(conversion.arm, arm);
        let again = event(
            "o2",
            "order.paid",
            7_200_000,
            json!({ "checkout_token": "t1" }),
        );
        assert_eq!(attribute(&journey, &mut enrollment, &contact, &again), None);
    }

    #[test]
    fn an_order_after_the_window_or_for_another_checkout_does_not_convert() {
        let journey = parse_journey("j.toml", JOURNEY).unwrap();
        let contact = ContactView::new("c-1");
        let mut enrollment = enrolled("c-1");
        let late = event(
            "o1",
            "order.paid",
            3 * 86_400_000,
            json!({ "checkout_token": "t1" }),
        );
        assert_eq!(attribute(&journey, &mut enrollment, &contact, &late), None);
        let other = event("o2", "order.paid", 1_000, json!({ "checkout_token": "t2" }));
        assert_eq!(attribute(&journey, &mut enrollment, &contact, &other), None);
        assert_eq!(enrollment.converted_at, None);
    }
}

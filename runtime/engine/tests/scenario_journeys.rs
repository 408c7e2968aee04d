//! The shipped example journeys (SCENARIOS.md 1 and 2), driven through the engine
//! with events, timers and step outcomes on a manual clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{DAY, HOUR, MINUTE, Runtime, T0, effects, event, journey_file};
use dripline_engine::{Action, ContactView, StepOutcome};
use serde_json::json;

fn checkout_created(token: &str) -> dripline_engine::Event {
    event(
        &format!("checkout-{token}"),
        "checkout.created",
        json!({
            "token": token,
            "total": 239,
            "items": [{"title": "Oxford shirt", "category": "shirts", "price": 239}],
            "recovery_url": format!("https://shop.example/checkouts/{token}/recover"),
        }),
        T0,
    )
}

fn order_created(id: &str, token: &str, at: i64) -> dripline_engine::Event {
    event(
        id,
        "order.created",
        json!({"checkout_token": token, "total": 239}),
        at,
    )
}

#[test]
fn an_unpaid_checkout_gets_the_sms_the_items_email_and_a_coupon_at_30m_3h_and_24h() {
    let mut runtime = Runtime::new(journey_file("abandoned-checkout.toml"));
    let mut lines = effects(&runtime.event(checkout_created("tok-1")));
    lines.extend(effects(&runtime.run_until(T0 + 30 * MINUTE)));
    lines.extend(effects(&runtime.answer(StepOutcome::Continue)));
    lines.extend(effects(&runtime.run_until(T0 + 3 * HOUR)));
    lines.extend(effects(&runtime.answer(StepOutcome::Continue)));
    lines.extend(effects(&runtime.run_until(T0 + DAY)));
    let coupon = lines.last().unwrap().clone();
    lines.extend(effects(&runtime.answer(StepOutcome::Continue)));
    assert_eq!(
        lines,
        [
            "enroll at wait-30m",
            "timer wait-30m/1/wait at +30m",
            "run cart-reminder (send) attempt 1",
            "timer wait-3h/1/wait at +3h",
            "run abandoned-items (send) attempt 1",
            "timer wait-24h/1/wait at +1d",
            coupon.as_str(),
            "exit: completed",
        ]
    );
    assert!(
        coupon == "run coupon-email (send) attempt 1"
            || coupon == "run coupon-sms (send) attempt 1",
        "{coupon}"
    );
}

#[test]
fn the_coupon_variant_is_chosen_stably_and_both_variants_are_used() {
    let journey = journey_file("abandoned-checkout.toml");
    let variant = |contact: &str| {
        let mut runtime = Runtime::new(journey.clone());
        runtime.contact = ContactView::new(contact);
        runtime.event(checkout_created("tok-1"));
        runtime.run_until(T0 + 30 * MINUTE);
        runtime.answer(StepOutcome::Continue);
        runtime.run_until(T0 + 3 * HOUR);
        runtime.answer(StepOutcome::Continue);
        let actions = runtime.run_until(T0 + DAY);
        actions
            .iter()
            .find_map(|action| match action {
                Action::RunStep {
                    step_id, config, ..
                } => Some((step_id.clone(), config["channel"].to_string())),
                _ => None,
            })
            .unwrap()
    };
    let variants: std::collections::BTreeSet<_> =
        (0..40).map(|i| variant(&format!("c-{i}"))).collect();
    assert_eq!(
        variants.into_iter().collect::<Vec<_>>(),
        [
            ("coupon-email".to_owned(), "\"email\"".to_owned()),
            ("coupon-sms".to_owned(), "\"sms\"".to_owned())
        ]
    );
    assert_eq!(variant("c-7"), variant("c-7"));
}

#[test]
fn an_order_for_the_checkout_ends_the_journey_at_any_point_and_starts_new_customer_care() {
    let mut runtime = Runtime::new(journey_file("abandoned-checkout.toml"));
    runtime.event(checkout_created("tok-1"));
    runtime.run_until(T0 + 30 * MINUTE);
    runtime.answer(StepOutcome::Continue);
    // An order for another checkout is not this journey's goal.
    assert!(
        runtime
            .event(order_created("o-0", "tok-other", T0 + HOUR))
            .is_empty()
    );
    // Nor is one that a track call claims: the goal asks for the store's.
    let mut claimed = order_created("o-api", "tok-1", T0 + HOUR);
    claimed.source = "api".into();
    assert!(runtime.event(claimed).is_empty());
    let actions = runtime.event(order_created("o-1", "tok-1", T0 + 2 * HOUR));
    assert_eq!(
        effects(&actions),
        [
            "cancel wait-3h/1/wait",
            "exit: goal reached",
            "hand off to new-customer-care"
        ]
    );
    // Nothing more is sent, even when the 3 h and 24 h marks pass.
    assert!(runtime.run_until(T0 + 2 * DAY).is_empty());
}

#[test]
fn a_checkout_without_contact_info_starts_nothing_and_a_second_checkout_runs_beside_the_first() {
    let mut runtime = Runtime::new(journey_file("abandoned-checkout.toml"));
    let mut anonymous = checkout_created("tok-0");
    anonymous.identities = Default::default();
    assert!(runtime.event(anonymous).is_empty());
    runtime.event(checkout_created("tok-1"));
    let second = runtime.event(checkout_created("tok-2"));
    assert_eq!(effects(&second)[0], "enroll at wait-30m");
    assert!(
        runtime.event(checkout_created("tok-1")).is_empty(),
        "the same checkout again"
    );
    assert_eq!(runtime.enrollments.len(), 2);
}

fn whitepaper_download() -> dripline_engine::Event {
    event(
        "form-1",
        "form.submitted",
        json!({"form": "whitepaper-download", "paper": "state-of-retail-2024"}),
        T0,
    )
}

/// The lead-nurture journey for a contact whose email consent Dripline holds
/// (a signed form's, an earlier confirmation): the paper goes at once.
fn consenting_lead() -> Runtime {
    let mut runtime = Runtime::new(journey_file("lead-nurture.toml"));
    runtime
        .contact
        .consent
        .insert("email".into(), dripline_engine::ConsentState::Granted);
    runtime
}

#[test]
fn a_lead_without_consent_is_asked_to_confirm_and_gets_the_paper_only_once_confirmed() {
    let mut runtime = Runtime::new(journey_file("lead-nurture.toml"));
    let mut lines = effects(&runtime.event(whitepaper_download()));
    lines.extend(effects(&runtime.answer(StepOutcome::Continue)));
    let confirmed = event(
        "confirm-1",
        "contact.confirmed",
        json!({"channel": "email"}),
        T0 + HOUR,
    );
    lines.extend(effects(&runtime.event(confirmed)));
    assert_eq!(
        lines,
        [
            "enroll at ask-to-confirm",
            "run ask-to-confirm (send) attempt 1",
            "timer wait-confirmation/1/timeout at +3d",
            "cancel wait-confirmation/1/timeout",
            "run send-whitepaper (send) attempt 1",
        ]
    );
}

#[test]
fn a_lead_who_never_confirms_gets_nothing_after_the_one_request() {
    let mut runtime = Runtime::new(journey_file("lead-nurture.toml"));
    runtime.event(whitepaper_download());
    runtime.answer(StepOutcome::Continue);
    assert_eq!(
        effects(&runtime.run_until(T0 + 3 * DAY)),
        ["exit: address never confirmed"]
    );
    assert!(runtime.run_until(T0 + 10 * DAY).is_empty());
}

fn trial_invite_click(at: i64) -> dripline_engine::Event {
    event(
        "click-1",
        "email.clicked",
        json!({"template": "trial-invite", "url": "https://app.example/trial"}),
        at,
    )
}

#[test]
fn a_lead_who_clicks_the_trial_link_but_does_not_sign_up_gets_the_case_studies() {
    let mut runtime = consenting_lead();
    let mut lines = effects(&runtime.event(whitepaper_download()));
    lines.extend(effects(&runtime.answer(StepOutcome::Continue)));
    lines.extend(effects(&runtime.run_until(T0 + 2 * DAY)));
    lines.extend(effects(&runtime.answer(StepOutcome::Continue)));
    lines.extend(effects(&runtime.event(trial_invite_click(T0 + 3 * DAY))));
    lines.extend(effects(&runtime.run_until(T0 + 4 * DAY)));
    lines.extend(effects(&runtime.answer(StepOutcome::Continue)));
    assert_eq!(
        lines,
        [
            "enroll at send-whitepaper",
            "run send-whitepaper (send) attempt 1",
            "timer wait-2d/1/wait at +2d",
            "run trial-invite (send) attempt 1",
            "timer watch-trial-click/1/timeout at +5d",
            "cancel watch-trial-click/1/timeout",
            "timer give-a-day/1/wait at +4d",
            "run case-studies (send) attempt 1",
            "exit: completed",
        ]
    );
}

#[test]
fn a_lead_who_never_clicks_leaves_on_day_five() {
    let mut runtime = consenting_lead();
    runtime.event(whitepaper_download());
    runtime.answer(StepOutcome::Continue);
    runtime.run_until(T0 + 2 * DAY);
    runtime.answer(StepOutcome::Continue);
    // A click on another email is not the one awaited.
    let other = event(
        "click-0",
        "email.clicked",
        json!({"template": "newsletter"}),
        T0 + 3 * DAY,
    );
    assert!(runtime.event(other).is_empty());
    assert_eq!(
        effects(&runtime.run_until(T0 + 5 * DAY)),
        ["exit: no interest in the trial"]
    );
}

#[test]
fn a_trial_sign_up_at_any_step_tags_the_lead_notifies_sales_and_ends_the_journey() {
    let mut runtime = consenting_lead();
    runtime.contact.attributes = json!({"sales_rep": "wang.fang"});
    runtime.event(whitepaper_download());
    runtime.answer(StepOutcome::Continue);
    let sign_up = event("trial-1", "trial.started", json!({"plan": "pro"}), T0 + DAY);
    let mut lines = effects(&runtime.event(sign_up));
    lines.extend(effects(&runtime.answer(StepOutcome::Continue)));
    lines.extend(effects(&runtime.answer(StepOutcome::Continue)));
    assert_eq!(
        lines,
        [
            "cancel wait-2d/1/wait",
            "run tag-high-intent (tag) attempt 1",
            "run notify-sales (webhook) attempt 1",
            "exit: trial started",
        ]
    );
    // The 2-day timer is gone, so no trial invite follows.
    assert!(runtime.run_until(T0 + 10 * DAY).is_empty());
    // Downloading again within the month does not restart the series.
    let again = event(
        "form-2",
        "form.submitted",
        json!({"form": "whitepaper-download"}),
        T0 + 10 * DAY,
    );
    assert!(runtime.event(again).is_empty());
}

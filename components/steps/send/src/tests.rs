//! The step's behaviour end to end in plain Rust, and every template shipped
//! in `templates/` rendered against a sample contact, as the runtime would
//! pass it (every file whose name starts with `<template>.`).

use super::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../templates")
}

/// The files the runtime passes for a template, as it would read them.
fn template_files(template: &str) -> BTreeMap<String, String> {
    let prefix = format!("{template}.");
    std::fs::read_dir(templates_dir())
        .expect("templates/ exists")
        .map(|entry| {
            entry
                .expect("readable entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .filter(|name| name.starts_with(&prefix))
        .map(|name| {
            let text =
                std::fs::read_to_string(templates_dir().join(&name)).expect("readable template");
            (name, text)
        })
        .collect()
}

/// A config as the runtime passes it: the journey's keys plus `template_files`.
fn runtime_config(journey_config: Value) -> String {
    let mut config = journey_config;
    let template = config["template"].as_str().unwrap_or_default().to_string();
    config["template_files"] = json!(template_files(&template));
    config.to_string()
}

/// A Shopify checkout with contact info and two line items, as the shopify
/// trigger normalizes it.
fn checkout_context(journey_config: Value) -> Context {
    Context {
        journey: "abandoned-checkout".into(),
        journey_version: 1,
        enrollment_id: "enr-1".into(),
        step_id: "step".into(),
        attempt: 1,
        contact: Contact {
            id: "c-1".into(),
            email: Some("li.wei@example.com".into()),
            phone: Some("+8613800138000".into()),
            attributes: r#"{"first_name":"Li"}"#.into(),
            ..Contact::default()
        },
        trigger: Trigger {
            id: "shopify:acme:1".into(),
            source: "shopify".into(),
            name: "checkout.created".into(),
            email: Some("li.wei@example.com".into()),
            phone: Some("+8613800138000".into()),
            properties: json!({
                "shop": "acme.myshopify.com",
                "first_name": "Li",
                "token": "tok-1",
                "currency": "CNY",
                "total_price": "428.00",
                "abandoned_checkout_url": "https://acme.myshopify.com/1/checkouts/tok-1/recover?key=k",
                "line_items": [
                    {"title": "Oxford Shirt", "variant_title": "White / M", "quantity": 1, "price": "299.00",
                     "product_type": "Shirts", "image": "https://cdn.example.com/oxford.jpg"},
                    {"title": "Linen Pocket Square", "quantity": 2, "price": "64.50", "product_type": "Accessories"}
                ]
            })
            .to_string(),
            ..Trigger::default()
        },
        data: "{}".into(),
        config: runtime_config(journey_config),
        now: 1_763_856_000_000,
    }
}

/// A whitepaper download from a form.
fn lead_context(journey_config: Value) -> Context {
    Context {
        journey: "lead-nurture".into(),
        journey_version: 1,
        enrollment_id: "enr-2".into(),
        step_id: "step".into(),
        attempt: 1,
        contact: Contact {
            id: "c-2".into(),
            email: Some("ana@example.com".into()),
            attributes: r#"{"first_name":"Ana","sales_rep":"bob"}"#.into(),
            ..Contact::default()
        },
        trigger: Trigger {
            source: "form".into(),
            name: "form.submitted".into(),
            email: Some("ana@example.com".into()),
            properties: r#"{"form":"whitepaper-download","fields":{"company":"Acme"}}"#.into(),
            ..Trigger::default()
        },
        data: "{}".into(),
        config: runtime_config(journey_config),
        now: 0,
    }
}

/// Validates, then composes, as the runtime would.
fn send(context: &Context, file: &str) -> Message {
    check_config(&context.config).unwrap_or_else(|e| panic!("{file}: validate: {e}"));
    let message = compose(context).unwrap_or_else(|e| panic!("{file}: compose: {e:?}"));
    if message.channel == "sms" {
        let (segments, _) = template::sms_segments(&message.body);
        assert!(
            segments <= template::DEFAULT_SMS_SEGMENTS,
            "{file}: {segments} segments: {}",
            message.body
        );
    }
    message
}

fn coupon_email() -> Value {
    json!({"channel": "email", "template": "checkout-coupon",
           "coupon": {"percent_off": 10, "valid_for": "24h", "code": "BACK10"}})
}

fn coupon_sms() -> Value {
    json!({"channel": "sms", "template": "checkout-coupon-sms",
           "coupon": {"amount_off": 30, "minimum": 200, "code": "BACK30"}})
}

#[test]
fn the_cart_reminder_sms_fits_one_segment_and_greets_by_name() {
    let context = checkout_context(json!({"channel": "sms", "template": "checkout-reminder"}));
    let message = send(&context, "checkout-reminder.sms.liquid");
    assert_eq!(
        message.body,
        "Li, your items are still in your cart. See you soon!"
    );
    assert_eq!(
        (message.subject, message.html, message.category),
        (None, None, Category::Marketing)
    );
}

#[test]
fn the_cart_reminder_sms_stays_in_one_segment_with_a_long_name() {
    let mut context = checkout_context(json!({"channel": "sms", "template": "checkout-reminder"}));
    context.trigger.properties = context
        .trigger
        .properties
        .replace("\"Li\"", "\"Maximilianus-Alexander\"");
    let message = send(&context, "checkout-reminder.sms.liquid");
    assert!(
        message.body.starts_with("Maximilia..., your items"),
        "{}",
        message.body
    );
}

#[test]
fn the_abandoned_items_email_lists_items_link_and_a_category_suggestion() {
    let context = checkout_context(
        json!({"channel": "email", "template": "checkout-items", "recommend": "same-category"}),
    );
    let message = send(&context, "checkout-items.email.liquid");
    assert_eq!(
        message.subject.as_deref(),
        Some("Li, you left a few things in your cart")
    );
    let text = &message.body;
    assert!(
        text.contains("- Oxford Shirt (White / M): 299.00 CNY"),
        "{text}"
    );
    assert!(
        text.contains("- Linen Pocket Square x 2: 64.50 CNY"),
        "{text}"
    );
    assert!(
        text.contains(
            "Finish your order: https://acme.myshopify.com/1/checkouts/tok-1/recover?key=k"
        )
    );
    assert!(text.contains("Goes well with your Oxford Shirt: our ties, https://acme.myshopify.com/collections/ties"), "{text}");
    let html = message.html.expect("an HTML body");
    assert!(
        html.contains(
            r#"<img src="https://cdn.example.com/oxford.jpg" alt="Oxford Shirt" width="96">"#
        ),
        "{html}"
    );
    assert!(
        html.contains(r#"<a href="https://acme.myshopify.com/1/checkouts/tok-1/recover?key=k">"#)
    );
    assert!(html.contains("our ties</a>"));
}

#[test]
fn the_abandoned_items_email_suggests_nothing_for_an_unmapped_category() {
    let mut context = checkout_context(
        json!({"channel": "email", "template": "checkout-items", "recommend": "same-category"}),
    );
    context.trigger.properties = context
        .trigger
        .properties
        .replace("\"Shirts\"", "\"Candles\"");
    let message = send(&context, "checkout-items.email.liquid");
    assert!(!message.body.contains("Goes well"), "{}", message.body);
}

#[test]
fn the_abandoned_items_email_escapes_what_the_shopper_typed() {
    let mut context = checkout_context(
        json!({"channel": "email", "template": "checkout-items", "recommend": "none"}),
    );
    context.trigger.properties = context
        .trigger
        .properties
        .replace("\"Li\"", "\"<b>Li</b>\"");
    let html = send(&context, "checkout-items.email.liquid")
        .html
        .unwrap_or_default();
    assert!(html.contains("Hi &lt;b&gt;Li&lt;/b&gt;,"), "{html}");
}

#[test]
fn the_coupon_email_gives_ten_percent_for_24_hours() {
    let message = send(
        &checkout_context(coupon_email()),
        "checkout-coupon.email.liquid",
    );
    assert_eq!(
        message.subject.as_deref(),
        Some("10% off your cart, for the next 24h")
    );
    assert!(message.body.contains(
        "Use code BACK10 at checkout: https://acme.myshopify.com/1/checkouts/tok-1/recover?key=k"
    ));
    assert!(
        message
            .html
            .unwrap_or_default()
            .contains("<strong>BACK10</strong>")
    );
}

#[test]
fn the_coupon_sms_is_30_off_200_in_one_segment() {
    let message = send(
        &checkout_context(coupon_sms()),
        "checkout-coupon-sms.sms.liquid",
    );
    assert_eq!(
        message.body,
        "30 off 200 today with code BACK30. Your cart is waiting!"
    );
}

#[test]
fn a_coupon_without_a_code_is_refused_at_validate() {
    let mut config = coupon_email();
    config["coupon"].as_object_mut().map(|c| c.remove("code"));
    let error = check_config(&runtime_config(config)).unwrap_err();
    assert!(
        error.contains("unknown variable config.coupon.code"),
        "{error}"
    );
}

#[test]
fn the_confirmation_email_is_transactional_and_links_the_confirmation_placeholder() {
    let context = lead_context(
        json!({"channel": "email", "template": "confirm-download", "category": "transactional"}),
    );
    let message = send(&context, "confirm-download.email.liquid");
    assert_eq!(message.category, Category::Transactional);
    assert!(message.body.starts_with("Hi Ana,"));
    assert!(
        message.body.contains(crate::CONFIRM_LINK),
        "{}",
        message.body
    );
    let html = message.html.unwrap_or_default();
    assert!(
        html.contains(&format!("href=\"{}\"", crate::CONFIRM_LINK)),
        "{html}"
    );
}

#[test]
fn the_whitepaper_email_links_the_paper() {
    let context = lead_context(json!({"channel": "email", "template": "whitepaper-delivery"}));
    let message = send(&context, "whitepaper-delivery.email.liquid");
    assert_eq!(message.category, Category::Marketing);
    assert!(message.body.starts_with("Hi Ana,"));
    assert!(
        message
            .body
            .contains("https://example.com/whitepapers/lifecycle-marketing-playbook.pdf")
    );
    assert!(
        message
            .html
            .unwrap_or_default()
            .contains("href=\"https://example.com/whitepapers/")
    );
}

#[test]
fn the_sales_task_is_json_naming_the_lead() {
    let message = send(
        &lead_context(
            json!({"channel": "webhook", "template": "sales-task", "category": "transactional"}),
        ),
        "sales-task.webhook.liquid",
    );
    let task: serde_json::Value = serde_json::from_str(&message.body).expect("the task is JSON");
    assert!(task["task"].as_str().unwrap().starts_with("Follow up"));
    assert!(task["lead"]["email"].as_str().unwrap().contains('@'));
}

#[test]
fn the_order_thank_you_has_a_subject_and_both_bodies() {
    let message = send(
        &lead_context(
            json!({"channel": "email", "template": "order-thank-you", "category": "transactional"}),
        ),
        "order-thank-you.email.liquid",
    );
    assert!(
        message
            .subject
            .unwrap()
            .starts_with("Thank you for your order")
    );
    assert!(message.html.unwrap().contains("<p>Thank you"));
}

/// A dormant member, as the track API reports one (SCENARIOS.md 3).
fn dormant_context(journey_config: Value) -> Context {
    Context {
        journey: "dormant-wake-up".into(),
        journey_version: 1,
        enrollment_id: "enr-3".into(),
        step_id: "step".into(),
        attempt: 1,
        contact: Contact {
            id: "c-3".into(),
            email: Some("zhao@example.com".into()),
            phone: Some("+8613900139000".into()),
            attributes: r#"{"first_name":"Zhao"}"#.into(),
            ..Contact::default()
        },
        trigger: Trigger {
            source: "api".into(),
            name: "member.dormant".into(),
            properties: r#"{"days_since_signup":400,"days_since_order":120,"orders_6m":4}"#.into(),
            ..Trigger::default()
        },
        data: "{}".into(),
        config: runtime_config(journey_config),
        now: 0,
    }
}

#[test]
fn the_welcome_back_gift_sms_names_the_gift_in_one_segment() {
    for gift in ["a 100 yuan voucher", "double points"] {
        let message = send(
            &dormant_context(
                json!({"channel": "sms", "template": "welcome-back-gift", "gift": gift}),
            ),
            "welcome-back-gift.sms.liquid",
        );
        assert!(message.body.contains(gift), "{}", message.body);
        assert!(message.body.contains("TD"), "says how to opt out");
    }
}

#[test]
fn the_best_sellers_email_greets_by_name_and_links_the_best_sellers() {
    let message = send(
        &dormant_context(json!({"channel": "email", "template": "best-sellers"})),
        "best-sellers.email.liquid",
    );
    assert!(message.subject.unwrap().contains("everyone is buying"));
    let html = message.html.unwrap();
    assert!(
        html.contains("Hi Zhao") && html.contains("href=\"https://shop.example.com/best-sellers\"")
    );
}

#[test]
fn the_agent_care_task_names_the_members_phone_and_how_long_they_have_been_away() {
    let message = send(
        &dormant_context(
            json!({"channel": "wecom", "template": "agent-care-task", "category": "transactional"}),
        ),
        "agent-care-task.wecom.liquid",
    );
    assert!(
        message.body.contains("+8613900139000") && message.body.contains("120 days"),
        "{}",
        message.body
    );
}

#[test]
fn the_agent_care_task_of_a_member_who_entered_the_dormant_segment_says_over_90_days() {
    let mut context = dormant_context(
        json!({"channel": "wecom", "template": "agent-care-task", "category": "transactional"}),
    );
    context.trigger.name = "segment.entered".into();
    context.trigger.properties = r#"{"segment":"dormant","name":"Dormant members"}"#.into();
    let message = send(&context, "agent-care-task.wecom.liquid");
    assert!(
        message.body.contains("for over 90 days"),
        "{}",
        message.body
    );
}

#[test]
fn the_birthday_offer_greets_by_name_and_shows_the_points_only_when_known() {
    let mut context = dormant_context(json!({"channel": "email", "template": "birthday-offer"}));
    context.journey = "member-birthday".into();
    let message = send(&context, "birthday-offer.email.liquid");
    assert!(message.subject.unwrap().contains("birthday"));
    assert!(message.body.contains("Zhao") && !message.body.contains("points balance"));
    context.contact.attributes = r#"{"first_name":"Zhao","points":1200}"#.into();
    let message = send(&context, "birthday-offer.email.liquid");
    assert!(
        message.body.contains("points balance: 1200"),
        "{}",
        message.body
    );
}

fn member_context(journey: &str, journey_config: Value) -> Context {
    let mut context = dormant_context(journey_config);
    context.journey = journey.into();
    context
}

#[test]
fn the_member_lifecycle_emails_greet_by_name_and_carry_their_codes() {
    for (journey, template, code) in [
        ("member-welcome", "welcome-coupon", "WELCOME10"),
        ("member-miss-you", "miss-you-offer", "MISSYOU15"),
    ] {
        let message = send(
            &member_context(journey, json!({"channel": "email", "template": template})),
            &format!("{template}.email.liquid"),
        );
        assert!(
            message.body.contains("Zhao") && message.body.contains(code),
            "{}",
            message.body
        );
        assert_eq!(message.category, Category::Marketing);
    }
}

#[test]
fn the_sale_coupon_speaks_of_its_phase_and_the_expiry_sms_names_the_code() {
    for (phase, words) in [
        ("warm_up", "starts soon"),
        ("peak", "The sale is on"),
        ("after_sale", "still works"),
    ] {
        let mut context = member_context(
            "big-sale-coupon",
            json!({"channel": "email", "template": "coupon-issued"}),
        );
        context.trigger.name = "coupon.issued".into();
        context.trigger.properties = json!({
            "code": "SALE618", "expires_at": "2026-06-18T23:59:00+08:00", "phase": phase
        })
        .to_string();
        let message = send(&context, "coupon-issued.email.liquid");
        assert!(
            message
                .subject
                .unwrap()
                .contains(words.split(' ').last().unwrap_or(words))
                || message.body.contains(words),
            "{phase}: {}",
            message.body
        );
        assert!(message.body.contains("SALE618"));
        context.config = runtime_config(json!({"channel": "sms", "template": "coupon-expiring"}));
        let sms = send(&context, "coupon-expiring.sms.liquid");
        assert!(
            sms.body.contains("SALE618") && sms.body.contains("1 hour"),
            "{}",
            sms.body
        );
    }
}

#[test]
fn each_trial_lesson_email_has_its_own_subject_and_the_booking_link() {
    let mut subjects = BTreeSet::new();
    for lesson in 1..=3 {
        let message = send(
            &member_context(
                "interest-math",
                json!({"channel": "email", "template": "trial-lesson", "lesson": lesson}),
            ),
            "trial-lesson.email.liquid",
        );
        assert!(
            message
                .body
                .contains("https://school.example.com/trial/math")
        );
        subjects.insert(message.subject.unwrap());
    }
    assert_eq!(subjects.len(), 3, "{subjects:?}");
}

#[test]
fn the_value_tier_messages_reach_the_advisor_and_the_customer() {
    let task = send(
        &member_context(
            "value-high",
            json!({"channel": "wecom", "template": "advisor-task", "category": "transactional"}),
        ),
        "advisor-task.wecom.liquid",
    );
    assert!(
        task.body.contains("+8613900139000") && task.body.contains("high-value"),
        "{}",
        task.body
    );
    for template in ["tailored-product", "points-redemption"] {
        let message = send(
            &member_context(
                "value-low",
                json!({"channel": "email", "template": template}),
            ),
            &format!("{template}.email.liquid"),
        );
        assert!(message.body.contains("Zhao"), "{}", message.body);
    }
}

#[test]
fn the_trial_invite_links_the_trial() {
    let message = send(
        &lead_context(json!({"channel": "email", "template": "trial-invite"})),
        "trial-invite.email.liquid",
    );
    assert_eq!(message.category, Category::Marketing);
    assert!(
        message
            .body
            .contains("Start your trial: https://example.com/trial")
    );
}

#[test]
fn the_case_studies_email_lists_three_studies() {
    let mut context = lead_context(json!({"channel": "email", "template": "case-studies"}));
    context.contact.attributes = "{}".into();
    let message = send(&context, "case-studies.email.liquid");
    assert!(message.body.starts_with("Hi,\n"), "{}", message.body);
    assert_eq!(message.html.unwrap_or_default().matches("<li>").count(), 3);
}

#[test]
fn a_missing_value_at_run_time_is_a_step_error_not_a_blank() {
    let mut context = checkout_context(json!({"channel": "email", "template": "checkout-coupon",
        "coupon": {"percent_off": 10, "valid_for": "24h", "code": "BACK10"}}));
    context.trigger.properties = r#"{"line_items":[]}"#.into();
    let Err(Failure::Other(error)) = compose(&context) else {
        panic!("expected a step error")
    };
    assert!(
        error.contains("unknown variable trigger.properties.abandoned_checkout_url"),
        "{error}"
    );
}

#[test]
fn a_config_without_channel_or_template_is_refused() {
    assert!(
        check_config(r#"{"template":"x"}"#)
            .unwrap_err()
            .contains("channel")
    );
    assert!(
        check_config(r#"{"channel":"sms"}"#)
            .unwrap_err()
            .contains("template")
    );
}

#[test]
fn a_template_without_a_file_for_the_channel_is_refused() {
    let error = check_config(&runtime_config(
        json!({"channel": "sms", "template": "checkout-items"}),
    ))
    .unwrap_err();
    assert!(error.contains("no file for channel sms"), "{error}");
}

#[test]
fn a_template_name_with_a_path_in_it_is_refused() {
    assert!(check_config(r#"{"channel":"sms","template":"../etc"}"#).is_err());
}

#[test]
fn an_unknown_category_is_refused() {
    let error = check_config(&runtime_config(
        json!({"channel": "sms", "template": "checkout-reminder", "category": "urgent"}),
    ));
    assert!(error.unwrap_err().contains("urgent"));
}

#[test]
fn the_step_goes_on_whatever_the_policy_decided() {
    for result in [
        SendResult::Sent("m-1".into()),
        SendResult::Suppressed("no consent for sms".into()),
        SendResult::Deferred(5),
    ] {
        assert_eq!(next(result), Ok(Next::Continue));
    }
}

#[test]
fn an_unavailable_channel_is_retried_and_other_failures_are_errors() {
    assert_eq!(
        next(SendResult::Unavailable("smtp down".into())),
        Ok(Next::Retry("send: smtp down".into()))
    );
    assert!(matches!(
        next(SendResult::Failed("access-denied".into())),
        Err(Failure::Other(_))
    ));
}

/// Every send step in the shipped journeys validates against the shipped
/// templates, as `dripline validate` would run it.
#[test]
fn every_send_step_in_the_shipped_journeys_validates() {
    let journeys = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../journeys");
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(journeys).expect("journeys/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue; // the generated JSON Schema lives beside the journeys
        }
        let text = std::fs::read_to_string(&path).expect("readable journey");
        let journey: toml::Table = toml::from_str(&text).expect("a TOML journey");
        let steps = journey
            .get("steps")
            .and_then(|s| s.as_array())
            .cloned()
            .unwrap_or_default();
        for step in steps
            .iter()
            .filter(|s| s.get("uses").and_then(|u| u.as_str()) == Some("send"))
        {
            let config = serde_json::to_value(
                step.get("config")
                    .cloned()
                    .unwrap_or(toml::Value::Table(Default::default())),
            )
            .expect("config as JSON");
            if let Err(error) = check_config(&runtime_config(config)) {
                failures.push(format!(
                    "{}: {}: {error}",
                    path.display(),
                    step.get("id").map(|v| v.to_string()).unwrap_or_default()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A template added to `templates/` needs a rendering test above, and its
/// name in this list.
#[test]
fn every_shipped_template_has_a_rendering_test() {
    let tested: BTreeSet<&str> = [
        "checkout-reminder.sms.liquid",
        "checkout-items.email.liquid",
        "checkout-coupon.email.liquid",
        "checkout-coupon-sms.sms.liquid",
        "confirm-download.email.liquid",
        "whitepaper-delivery.email.liquid",
        "trial-invite.email.liquid",
        "case-studies.email.liquid",
        "sales-task.webhook.liquid",
        "order-thank-you.email.liquid",
        "welcome-back-gift.sms.liquid",
        "best-sellers.email.liquid",
        "agent-care-task.wecom.liquid",
        "birthday-offer.email.liquid",
        "welcome-coupon.email.liquid",
        "miss-you-offer.email.liquid",
        "coupon-issued.email.liquid",
        "coupon-expiring.sms.liquid",
        "trial-lesson.email.liquid",
        "advisor-task.wecom.liquid",
        "tailored-product.email.liquid",
        "points-redemption.email.liquid",
    ]
    .into();
    let shipped: BTreeSet<String> = std::fs::read_dir(templates_dir())
        .expect("templates/ exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".liquid"))
        .collect();
    let untested: Vec<&String> = shipped
        .iter()
        .filter(|n| !tested.contains(n.as_str()))
        .collect();
    assert!(
        untested.is_empty(),
        "templates without a rendering test: {untested:?}"
    );
}

#[test]
fn a_comment_left_open_around_a_block_is_refused_instead_of_crashing_the_parser() {
    // liquid 0.26 panics on these (a block still open inside a comment at the
    // end of the file); found by `./dev bench fuzz`.
    for source in [
        "{%comment%}{%if y%}",
        "Hi {%- comment -%} {% for x in y %} {{ x }}",
        "{% comment %}{% raw %}{% endcomment %}",
        "{%comment%}{%if n!=\"\"%}{%endcomment%}{%if n!=\"\"%}",
        "{%comment%}{%for m in s%}{%endcomment%}{%if n!=\"\"%}",
        "{%comment%}{%case y%}{%endcomment%}{%if n!=\"\"%}",
        "{%comment%}{%endcomment\n{%if e%}",
        "{%comment%}{%endcomment {%if e%}",
        "{%comment%}{%endcomment %%}{%if e%}",
    ] {
        let parts = template::split("t.liquid", source).unwrap();
        let error = parts.render("email", &liquid::Object::new()).unwrap_err();
        assert!(error.starts_with("template t.liquid:"), "{source}: {error}");
    }
    // A comment that closes may hold anything.
    let parts =
        template::split("t.liquid", "{%comment%}{%if y%}{%endif%}{%endcomment%}Hi").unwrap();
    assert_eq!(
        parts.render("email", &liquid::Object::new()).unwrap().text,
        "Hi"
    );
}

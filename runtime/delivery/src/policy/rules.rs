//! The delivery policy's rules, one function each, in the order `decide`
//! applies them: from the most to the least fundamental, so that the reason
//! a suppressed message keeps is the one that matters most. The channel and
//! consent come first; then, for marketing only, dedupe, priority, quiet
//! hours and the two daily caps. The caps look at the local day the message
//! would really arrive on.

use chrono::{DateTime, NaiveDate, NaiveTime};
use chrono_tz::Tz;
use dripline_engine::local_time::next_local_time;
use dripline_sandbox::bindings::{ConsentState, Contact, HostError, messaging};
use dripline_sandbox::step::Decision;

use super::{DeliveryPolicy, PastSend, QuietHours, SendContext};
use crate::names::{CHANNELS, PREFERRED};
use crate::outbox_record::fingerprint;

/// The decision for one message.
pub fn decide(
    policy: &DeliveryPolicy,
    context: &SendContext,
    contact: &Contact,
    message: &messaging::Message,
    idempotency_key: &str,
) -> Result<Decision, HostError> {
    let marketing = message.category == messaging::Category::Marketing;
    let channel = match channel(policy, contact, message, marketing)? {
        Ok(channel) => channel,
        Err(held_back) => return Ok(held_back),
    };
    let sent = |channel| Decision {
        channel,
        delivery: messaging::Delivery::Sent(idempotency_key.to_string()),
    };
    if !marketing {
        return Ok(sent(channel));
    }
    let print = fingerprint(message);
    if let Some(reason) = dedupe(policy, context, &print).or_else(|| priority(policy, context)) {
        return Ok(suppressed(channel, reason));
    }
    let deliver_at = quiet_hours(policy, context);
    if let Some(reason) =
        daily_cap(policy, context, deliver_at).or_else(|| journey_cap(context, deliver_at))
    {
        return Ok(suppressed(channel, reason));
    }
    if deliver_at > context.now {
        return Ok(Decision {
            channel,
            delivery: messaging::Delivery::Deferred(deliver_at),
        });
    }
    Ok(sent(channel))
}

/// The channel the message goes through: the one asked for, or the first of
/// the contact's preference order with consent and an address. `Err` holds
/// the suppression when none qualifies; an unknown channel is the step's
/// mistake.
fn channel(
    policy: &DeliveryPolicy,
    contact: &Contact,
    message: &messaging::Message,
    marketing: bool,
) -> Result<Result<String, Decision>, HostError> {
    let requested = message.channel.as_str();
    let candidates: Vec<String> = if requested == PREFERRED {
        policy.preference_order(contact)
    } else if CHANNELS.contains(&requested) {
        vec![requested.to_string()]
    } else {
        return Err(HostError::InvalidInput(format!(
            "channel `{requested}` is not configured (known: {}, or `{PREFERRED}`)",
            CHANNELS.join(", ")
        )));
    };
    let reachable = candidates
        .iter()
        .find(|c| consent_allows(contact, c, marketing) && can_reach(contact, c));
    if let Some(channel) = reachable {
        return Ok(Ok(channel.clone()));
    }
    let channel = candidates.first().cloned().unwrap_or_default();
    let reason = if requested == PREFERRED {
        policy.no_preferred_channel(contact)
    } else if !consent_allows(contact, &channel, marketing) {
        format!("no consent for {channel}")
    } else {
        format!("no {} address for {channel}", address_kind(&channel))
    };
    Ok(Err(suppressed(channel, reason)))
}

/// The same content to the same contact within the dedupe window.
fn dedupe(policy: &DeliveryPolicy, context: &SendContext, print: &str) -> Option<String> {
    let window = policy.dedupe_window.as_offset();
    let same = context
        .history
        .iter()
        .find(|p| p.fingerprint == print && (context.now - p.deliver_at).abs() < window)?;
    Some(format!(
        "same content already sent within {} (journey {})",
        policy.dedupe_window, same.journey
    ))
}

/// A higher-priority journey reaches the contact within the priority window.
fn priority(policy: &DeliveryPolicy, context: &SendContext) -> Option<String> {
    let window = policy.priority_window.as_offset();
    let higher = context.history.iter().find(|p| {
        p.journey != context.journey
            && p.priority > context.priority
            && (context.now - p.deliver_at).abs() < window
    })?;
    Some(format!(
        "priority: journey {} (priority {}) reaches this contact within {}",
        higher.journey, higher.priority, policy.priority_window
    ))
}

/// When the message may arrive: now, or the end of the contact's quiet hours.
fn quiet_hours(policy: &DeliveryPolicy, context: &SendContext) -> i64 {
    match &policy.quiet_hours {
        Some(quiet) if in_window(context.now, quiet, context.zone) => {
            next_local_time(context.now, quiet.end, context.zone)
        }
        _ => context.now,
    }
}

/// The deployment's cap on marketing messages per local day.
fn daily_cap(policy: &DeliveryPolicy, context: &SendContext, deliver_at: i64) -> Option<String> {
    let cap = policy.max_per_day?;
    let count = same_day(context, deliver_at).count();
    (count >= cap as usize).then(|| format!("frequency cap {cap}/day reached"))
}

/// The journey's own cap, counted over its messages alone.
fn journey_cap(context: &SendContext, deliver_at: i64) -> Option<String> {
    let cap = context.journey_max_per_day?;
    let count = same_day(context, deliver_at)
        .filter(|p| p.journey == context.journey)
        .count();
    (count >= cap as usize).then(|| format!("journey frequency cap {cap}/day reached"))
}

/// The marketing messages that arrive on the contact's local day of
/// `deliver_at`.
fn same_day(context: &SendContext, deliver_at: i64) -> impl Iterator<Item = &PastSend> {
    let day = local_date(deliver_at, context.zone);
    context
        .history
        .iter()
        .filter(move |p| p.marketing && local_date(p.deliver_at, context.zone) == day)
}

fn suppressed(channel: String, reason: String) -> Decision {
    Decision {
        channel,
        delivery: messaging::Delivery::Suppressed(reason),
    }
}

/// Marketing needs a yes; a transactional message stops only at an explicit no.
pub(super) fn consent_allows(contact: &Contact, channel: &str, marketing: bool) -> bool {
    let consent = contact
        .consent
        .iter()
        .find(|c| c.channel == channel)
        .map(|c| c.state)
        .unwrap_or(ConsentState::Unknown);
    if marketing {
        consent == ConsentState::Granted
    } else {
        consent != ConsentState::Denied
    }
}

pub(super) fn can_reach(contact: &Contact, channel: &str) -> bool {
    match channel {
        "email" => contact.identities.email.is_some(),
        "sms" => contact.identities.phone.is_some(),
        _ => true,
    }
}

fn address_kind(channel: &str) -> &'static str {
    match channel {
        "email" => "email",
        "sms" => "phone",
        _ => "known",
    }
}

fn local_date(at: i64, zone: Tz) -> Option<NaiveDate> {
    DateTime::from_timestamp_millis(at).map(|t| t.with_timezone(&zone).date_naive())
}

/// Whether `at` falls inside the quiet window in `zone`; a window whose end is
/// before its start spans midnight.
fn in_window(at: i64, quiet: &QuietHours, zone: Tz) -> bool {
    let Some(time) = DateTime::from_timestamp_millis(at).map(|t| t.with_timezone(&zone).time())
    else {
        return false;
    };
    let (start, end): (NaiveTime, NaiveTime) = (quiet.start.time(), quiet.end.time());
    if start <= end {
        start <= time && time < end
    } else {
        time >= start || time < end
    }
}

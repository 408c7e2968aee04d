//! The delivery policy every send passes, whatever plugin asks. A step's send
//! is decided here, while the step runs: which channel, and whether the message
//! goes now, later (quiet hours) or not at all (consent, caps, dedupe,
//! priority). Every "not now" and "not at all" carries a reason a marketer can
//! read, and it is kept with the outbox row. The send itself is an outbox row
//! written with the step's completion, so a step run twice still sends once.
//!
//! The deployment's rules come from `delivery.toml` at its root:
//!
//! ```toml
//! max_per_day = 3                         # marketing messages per contact per local day
//! quiet_hours = { start = "21:00", end = "08:00" }   # in the contact's zone
//! dedupe_window = "24h"                   # the same content is not sent twice within it
//! priority_window = "1h"                  # a higher-priority journey's send blocks others for this long
//! fallback = ["push", "sms", "wecom", "email"]      # for channel = "preferred"
//! unsubscribe_keywords = ["STOP", "TD", "退订"]       # replies that end consent
//! [scoring]                               # lead score per engagement event
//! "email.opened" = 1
//! "email.clicked" = 3
//! [tracking]
//! base_url = "https://t.example.com"      # where open pixels and click links point
//! ```
//!
//! Journeys can tighten the cap for themselves (`[delivery] max_per_day`), and
//! their `priority` decides between two journeys that reach one contact at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use dripline_engine::Duration;
use dripline_engine::local_time::LocalTime;
use dripline_sandbox::bindings::{Contact, HostError, messaging};
use dripline_sandbox::step::{Decision, Messenger};
use dripline_store::Outbox;
use serde::Deserialize;
use serde_json::Value;

use crate::names::{CHANNELS, PREFERRED_CHANNEL};
use crate::outbox_record::{OutboxRecord, fingerprint};

/// Why `delivery.toml` cannot be used; the text names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// The file exists but could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not describe a policy.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the field.
        message: String,
    },
}

/// The file of a deployment's rules, at its root.
pub const DELIVERY_FILE: &str = "delivery.toml";

/// The deployment's delivery rules (`delivery.toml`). Without the file only
/// consent and the 24 h dedupe apply: caps and quiet hours are business
/// choices, so a deployment opts into them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryPolicy {
    /// At most this many marketing messages per contact per day, counted in the
    /// contact's time zone.
    #[serde(default)]
    pub max_per_day: Option<u32>,
    /// No marketing message reaches a contact inside this window of their local
    /// time; it is deferred to the window's end, not dropped.
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// The same content to the same contact within this window is suppressed.
    #[serde(default = "default_dedupe_window")]
    pub dedupe_window: Duration,
    /// How long a send from a higher-priority journey keeps lower-priority
    /// journeys from messaging the same contact.
    #[serde(default = "default_priority_window")]
    pub priority_window: Duration,
    /// The order in which `channel = "preferred"` tries channels after the
    /// contact's own preference.
    #[serde(default = "default_fallback")]
    pub fallback: Vec<String>,
    /// Replies (SMS, WeCom) that withdraw consent on the channel they came from,
    /// compared without regard to case or surrounding space.
    #[serde(default = "default_unsubscribe_keywords")]
    pub unsubscribe_keywords: Vec<String>,
    /// Lead score added by each engagement event (`email.opened`, ...).
    #[serde(default)]
    pub scoring: BTreeMap<String, i64>,
    /// Open and click tracking for email.
    #[serde(default)]
    pub tracking: Tracking,
    /// What happens when one event names identities of two contacts
    /// (`[identities]`, beside the delivery rules since it decides who gets
    /// what).
    #[serde(default)]
    pub identities: IdentityRules,
    /// How long personal data is kept (`[retention]`); nothing is deleted
    /// by age unless it is set.
    #[serde(default)]
    pub retention: Retention,
}

/// `[retention]` in `delivery.toml`: what `dripline up` deletes by age, once
/// an hour (and `dripline contacts retention` at once).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// A contact with no event or import for this long is erased, as
    /// `dripline contacts erase` would (the guides: a year, `"365d"`).
    #[serde(default)]
    pub contacts_inactive_for: Option<Duration>,
    /// Messages older than this are deleted from the outbox once they are
    /// no longer pending (sent, failed or suppressed).
    #[serde(default)]
    pub messages_older_than: Option<Duration>,
}

/// `[identities]` in `delivery.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRules {
    /// `keep_apart` (the default: the identity stays with its contact and
    /// the conflict is recorded on the event's contact) or `merge` (the
    /// other contact is merged into the event's).
    #[serde(default)]
    pub on_conflict: OnConflict,
}

/// What an identity conflict does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Two contacts stay two; the conflict is recorded.
    #[default]
    KeepApart,
    /// The contact holding the identity is merged into the event's.
    Merge,
}

/// A daily window of local time, such as 21:00 to 08:00 (it may span midnight).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// When the quiet starts.
    pub start: LocalTime,
    /// When sending may resume.
    pub end: LocalTime,
}

/// Where tracking links point.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracking {
    /// The public base URL of `dripline up`'s HTTP listener, as recipients reach
    /// it: an `https` address on the internet ([`Tracking::checked_base`]).
    /// Without it emails go out untracked.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Accept an `http` or loopback `base_url`, for trying Dripline on one
    /// machine: links that only that machine can follow, sent in the clear.
    #[serde(default)]
    pub local: bool,
}

impl Tracking {
    /// The base URL, once it is one recipients can reach safely: `https`, and
    /// a host that is not `localhost` nor a loopback, private or link-local
    /// address, unless `local` is set. Every open pixel, click link and
    /// unsubscribe link of every email points there, so a wrong one is a
    /// start-up error, not a deployment that sends dead links.
    pub fn checked_base(&self) -> Result<Option<&str>, String> {
        let Some(base) = self.base_url.as_deref() else {
            return Ok(None);
        };
        if self.local {
            return Ok(Some(base));
        }
        let uri: ureq::http::Uri = base
            .parse()
            .map_err(|e| format!("base_url {base:?} is not a URL: {e}"))?;
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let private = host.eq_ignore_ascii_case("localhost")
            || host.ends_with(".localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| !crate::channels::http::is_public(ip));
        if uri.scheme_str() != Some("https") || host.is_empty() || private {
            return Err(format!(
                "base_url {base:?} must be a public https address, where recipients' mail \
                 clients reach `dripline up`'s public listener (`local = true` allows one \
                 for trying Dripline on one machine; no base_url sends emails untracked)"
            ));
        }
        Ok(Some(base))
    }
}

fn default_dedupe_window() -> Duration {
    Duration::from_millis(24 * 3_600_000)
}

fn default_priority_window() -> Duration {
    Duration::from_millis(3_600_000)
}

fn default_fallback() -> Vec<String> {
    ["push", "sms", "wecom", "email"].map(String::from).to_vec()
}

fn default_unsubscribe_keywords() -> Vec<String> {
    ["STOP", "UNSUBSCRIBE", "TD", "T", "退订"]
        .map(String::from)
        .to_vec()
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_per_day: None,
            quiet_hours: None,
            dedupe_window: default_dedupe_window(),
            priority_window: default_priority_window(),
            fallback: default_fallback(),
            unsubscribe_keywords: default_unsubscribe_keywords(),
            scoring: BTreeMap::new(),
            tracking: Tracking::default(),
            identities: IdentityRules::default(),
            retention: Retention::default(),
        }
    }
}

impl DeliveryPolicy {
    /// Reads a deployment's `delivery.toml`; the defaults if there is none. A
    /// file that does not read is an error naming the field, not a silently
    /// looser policy.
    pub fn load(path: &Path) -> Result<Self, PolicyFileError> {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(PolicyFileError::Read { path: name, source }),
        };
        let policy: Self = toml::from_str(&text).map_err(|e| PolicyFileError::Invalid {
            path: name.clone(),
            message: e.to_string(),
        })?;
        if let Some(channel) = policy
            .fallback
            .iter()
            .find(|c| !CHANNELS.contains(&c.as_str()))
        {
            return Err(PolicyFileError::Invalid {
                path: name,
                message: format!(
                    "fallback: unknown channel `{channel}` (known: {})",
                    CHANNELS.join(", ")
                ),
            });
        }
        Ok(policy)
    }

    /// The channels `preferred` tries for this contact, in order: the one they
    /// last engaged on, then the fallback order.
    pub fn preference_order(&self, contact: &Contact) -> Vec<String> {
        let mut list: Vec<String> = preferred_channel(contact).into_iter().collect();
        for channel in &self.fallback {
            if !list.contains(channel) {
                list.push(channel.clone());
            }
        }
        list
    }

    /// Why `preferred` reaches this contact on no channel: the reason a send
    /// to it is suppressed with.
    pub fn no_preferred_channel(&self, contact: &Contact) -> String {
        format!(
            "no channel with consent (tried {})",
            self.preference_order(contact).join(", ")
        )
    }

    /// The channel `preferred` means for this contact: the first in
    /// [`Self::preference_order`] with consent and an address; `None` if no
    /// channel qualifies.
    pub fn resolve_preferred(&self, contact: &Contact, marketing: bool) -> Option<String> {
        self.preference_order(contact)
            .into_iter()
            .find(|c| consent_allows(contact, c, marketing) && can_reach(contact, c))
    }

    /// Whether a reply's text withdraws consent.
    pub fn is_unsubscribe_reply(&self, text: &str) -> bool {
        let text = text.trim();
        self.unsubscribe_keywords
            .iter()
            .any(|k| k.trim().eq_ignore_ascii_case(text))
    }
}

/// A message already on its way to the contact (or already delivered), as the
/// policy weighs it against a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct PastSend {
    /// The journey that sent it.
    pub journey: String,
    /// That journey's priority when it sent.
    pub priority: i32,
    /// [`fingerprint`] of its content.
    pub fingerprint: String,
    /// When it was, or will be, delivered.
    pub deliver_at: i64,
    /// Whether it counts against caps (marketing).
    pub marketing: bool,
}

/// What the policy knows about the sending step beyond the message.
#[derive(Debug, Clone)]
pub struct SendContext {
    /// The sending journey.
    pub journey: String,
    /// Its priority.
    pub priority: i32,
    /// Its own daily cap, if it sets one.
    pub journey_max_per_day: Option<u32>,
    /// The contact's time zone (or the journey's, or UTC).
    pub zone: Tz,
    /// The time of the step.
    pub now: i64,
    /// The contact's messages within the windows that matter.
    pub history: Vec<PastSend>,
}

impl SendContext {
    /// How far back the history must reach for every rule to see what it needs:
    /// the dedupe and priority windows, and the two calendar days a local day
    /// can overlap in UTC.
    pub fn lookback_ms(policy: &DeliveryPolicy) -> i64 {
        policy
            .dedupe_window
            .as_offset()
            .max(policy.priority_window.as_offset())
            .max(2 * 24 * 3_600_000)
    }
}

/// Where a step call's stored history comes from: the contact's outbox, read
/// when the call's first send is decided, so steps that send nothing (tags,
/// scores, the timer path) never read it.
pub struct StoredHistory {
    /// The store holding the outbox.
    pub store: Arc<dyn Outbox>,
    /// The contact whose messages count.
    pub contact_id: String,
}

/// The policy applied to one step call: the deployment's rules, what the
/// contact already has coming, and each send of this call added to it so a
/// step's second message is weighed against its first. It also answers which
/// hosts the call's outbound posts may reach.
pub struct PolicyCall {
    policy: Arc<DeliveryPolicy>,
    state: Mutex<CallState>,
    allowed_hosts: Vec<String>,
    /// The category the journey's step config gives its messages.
    category: Option<messaging::Category>,
}

struct CallState {
    context: SendContext,
    unread: Option<StoredHistory>,
}

impl PolicyCall {
    /// The policy for one step call, on the history already in `context`.
    pub fn new(policy: Arc<DeliveryPolicy>, context: SendContext) -> Self {
        Self {
            policy,
            state: Mutex::new(CallState {
                context,
                unread: None,
            }),
            allowed_hosts: Vec::new(),
            category: None,
        }
    }

    /// Adds the stored outbox to the history, read at the first send.
    pub fn with_stored_history(mut self, stored: StoredHistory) -> Self {
        if let Ok(state) = self.state.get_mut() {
            state.unread = Some(stored);
        }
        self
    }

    /// Decides every send as `category`, whatever the plugin calls it: the
    /// journey's step config says what a message is, so that a plugin cannot
    /// skip consent, caps and quiet hours by calling a promotion
    /// transactional.
    pub fn with_category(mut self, category: messaging::Category) -> Self {
        self.category = Some(category);
        self
    }

    /// Grants outbound posts these hosts, besides what each step's config grants
    /// (`[http_out] allowed_hosts` in channels.toml).
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = hosts;
        self
    }
}

impl CallState {
    fn read_stored(&mut self, policy: &DeliveryPolicy) -> Result<(), HostError> {
        let Some(stored) = &self.unread else {
            return Ok(());
        };
        let since = self.context.now - SendContext::lookback_ms(policy);
        let rows = stored
            .store
            .outbox_of_contact(&stored.contact_id)
            .map_err(|e| HostError::Unavailable(format!("the contact's messages: {e}")))?;
        let mut history: Vec<PastSend> = rows
            .iter()
            .filter_map(|m| past_send(&OutboxRecord::read(m).ok()?, m.deliver_at_ms))
            .filter(|p| p.deliver_at >= since)
            .collect();
        history.append(&mut self.context.history);
        self.context.history = history;
        self.unread = None;
        Ok(())
    }
}

impl Messenger for PolicyCall {
    fn decide(
        &self,
        contact: &Contact,
        message: &messaging::Message,
        idempotency_key: &str,
    ) -> Result<Decision, HostError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| HostError::Unavailable("delivery policy".into()))?;
        state.read_stored(&self.policy)?;
        let declared;
        let message = match self.category {
            Some(category) if category != message.category => {
                declared = messaging::Message {
                    category,
                    ..message.clone()
                };
                &declared
            }
            _ => message,
        };
        let context = &mut state.context;
        let decision = decide(&self.policy, context, contact, message, idempotency_key)?;
        if let messaging::Delivery::Sent(_) | messaging::Delivery::Deferred(_) = decision.delivery {
            let deliver_at = match decision.delivery {
                messaging::Delivery::Deferred(at) => at,
                _ => context.now,
            };
            let past = PastSend {
                journey: context.journey.clone(),
                priority: context.priority,
                fingerprint: fingerprint(message),
                deliver_at,
                marketing: message.category == messaging::Category::Marketing,
            };
            context.history.push(past);
        }
        Ok(decision)
    }

    fn grant_post(&self, url: &str) -> Result<(), String> {
        dripline_sandbox::egress::check_host(url, &self.allowed_hosts)
    }
}

/// An outbox row as the policy weighs it, from its record and delivery time;
/// suppressed messages never reached anyone, and posts are not messages, so
/// they count for nothing.
pub fn past_send(record: &OutboxRecord, deliver_at_ms: i64) -> Option<PastSend> {
    if record.is_suppressed() || record.delivery.is_none() {
        return None;
    }
    Some(PastSend {
        journey: record.journey.clone(),
        priority: record.priority,
        fingerprint: record.fingerprint.clone().unwrap_or_default(),
        deliver_at: deliver_at_ms,
        marketing: record.is_marketing(),
    })
}

mod rules;

pub use rules::decide;
use rules::{can_reach, consent_allows};

/// The channel the contact last engaged on, as the inbox consumer records it.
fn preferred_channel(contact: &Contact) -> Option<String> {
    let attributes: Value = serde_json::from_str(&contact.attributes).ok()?;
    let channel = attributes.get(PREFERRED_CHANNEL)?.as_str()?;
    CHANNELS.contains(&channel).then(|| channel.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use dripline_sandbox::bindings::{ChannelConsent, ConsentState, Identities};

    /// 2026-11-18 10:00 in Shanghai (02:00 UTC).
    const MORNING: i64 = 1_794_967_200_000;
    const HOUR: i64 = 3_600_000;

    fn contact(consent: &[(&str, ConsentState)], attributes: Value) -> Contact {
        Contact {
            id: "c1".into(),
            identities: Identities {
                email: Some("li@example.com".into()),
                phone: Some("+8613800138000".into()),
                external_ids: Vec::new(),
            },
            attributes: attributes.to_string(),
            tags: Vec::new(),
            score: 0,
            consent: consent
                .iter()
                .map(|(channel, state)| ChannelConsent {
                    channel: channel.to_string(),
                    state: *state,
                })
                .collect(),
            time_zone: Some("Asia/Shanghai".into()),
        }
    }

    fn all_granted() -> Contact {
        use ConsentState::Granted;
        contact(
            &[
                ("email", Granted),
                ("sms", Granted),
                ("push", Granted),
                ("wecom", Granted),
            ],
            serde_json::json!({}),
        )
    }

    fn message(channel: &str, body: &str) -> messaging::Message {
        messaging::Message {
            channel: channel.into(),
            subject: None,
            body: body.into(),
            html: None,
            category: messaging::Category::Marketing,
        }
    }

    fn context(journey: &str, priority: i32, now: i64) -> SendContext {
        SendContext {
            journey: journey.into(),
            priority,
            journey_max_per_day: None,
            zone: chrono_tz::Asia::Shanghai,
            now,
            history: Vec::new(),
        }
    }

    fn strict() -> DeliveryPolicy {
        toml::from_str(
            r#"
            max_per_day = 2
            quiet_hours = { start = "21:00", end = "08:00" }
            "#,
        )
        .unwrap()
    }

    fn reason(decision: &Decision) -> String {
        match &decision.delivery {
            messaging::Delivery::Suppressed(reason) => reason.clone(),
            other => panic!("expected a suppression, got {other:?}"),
        }
    }

    #[test]
    fn a_send_within_the_rules_goes_now_under_its_idempotency_key() {
        let d = decide(
            &strict(),
            &context("j", 0, MORNING),
            &all_granted(),
            &message("sms", "hi"),
            "k",
        )
        .unwrap();
        assert_eq!(d.delivery, messaging::Delivery::Sent("k".into()));
        assert_eq!(d.channel, "sms");
    }

    #[test]
    fn quiet_hours_defer_a_late_evening_send_to_eight_the_next_morning() {
        let evening = MORNING + 12 * HOUR; // 22:00 Shanghai
        let d = decide(
            &strict(),
            &context("j", 0, evening),
            &all_granted(),
            &message("sms", "hi"),
            "k",
        )
        .unwrap();
        assert_eq!(
            d.delivery,
            messaging::Delivery::Deferred(MORNING + 22 * HOUR)
        );
    }

    #[test]
    fn quiet_hours_follow_the_contacts_zone_not_the_servers() {
        let policy = strict();
        let mut ctx = context("j", 0, MORNING); // 10:00 Shanghai = 21:00 New York (EST)
        ctx.zone = chrono_tz::America::New_York;
        let d = decide(&policy, &ctx, &all_granted(), &message("sms", "hi"), "k").unwrap();
        assert!(matches!(d.delivery, messaging::Delivery::Deferred(_)));
    }

    #[test]
    fn the_daily_cap_suppresses_the_third_marketing_message_of_the_day_with_its_reason() {
        let policy = strict();
        let call = PolicyCall::new(Arc::new(policy), context("j", 0, MORNING));
        let to = all_granted();
        for body in ["one", "two"] {
            let d = call.decide(&to, &message("sms", body), body).unwrap();
            assert!(matches!(d.delivery, messaging::Delivery::Sent(_)));
        }
        let third = call.decide(&to, &message("sms", "three"), "3").unwrap();
        assert_eq!(reason(&third), "frequency cap 2/day reached");
    }

    #[test]
    fn a_journeys_own_cap_is_counted_over_its_messages_alone() {
        let mut ctx = context("j", 0, MORNING);
        ctx.journey_max_per_day = Some(1);
        ctx.history.push(PastSend {
            journey: "other".into(),
            priority: 0,
            fingerprint: "x".into(),
            deliver_at: MORNING - HOUR,
            marketing: true,
        });
        let call = PolicyCall::new(Arc::new(DeliveryPolicy::default()), ctx);
        let first = call
            .decide(&all_granted(), &message("sms", "a"), "a")
            .unwrap();
        assert!(matches!(first.delivery, messaging::Delivery::Sent(_)));
        let second = call
            .decide(&all_granted(), &message("sms", "b"), "b")
            .unwrap();
        assert_eq!(reason(&second), "journey frequency cap 1/day reached");
    }

    #[test]
    fn the_same_content_within_24_hours_is_suppressed_and_after_it_is_not() {
        let sent = message("email", "50% off");
        let mut ctx = context("j", 0, MORNING);
        ctx.history.push(PastSend {
            journey: "earlier".into(),
            priority: 0,
            fingerprint: fingerprint(&sent),
            deliver_at: MORNING - 23 * HOUR,
            marketing: true,
        });
        let policy = DeliveryPolicy::default();
        let d = decide(&policy, &ctx, &all_granted(), &sent, "k").unwrap();
        assert_eq!(
            reason(&d),
            "same content already sent within 1d (journey earlier)"
        );
        ctx.now = MORNING + 2 * HOUR;
        let d = decide(&policy, &ctx, &all_granted(), &sent, "k").unwrap();
        assert!(matches!(d.delivery, messaging::Delivery::Sent(_)));
    }

    #[test]
    fn a_higher_priority_journeys_send_blocks_a_lower_one_but_not_the_reverse() {
        let mut ctx = context("welcome", 0, MORNING);
        ctx.history.push(PastSend {
            journey: "birthday".into(),
            priority: 10,
            fingerprint: "x".into(),
            deliver_at: MORNING,
            marketing: true,
        });
        let policy = DeliveryPolicy::default();
        let d = decide(&policy, &ctx, &all_granted(), &message("email", "hi"), "k").unwrap();
        assert_eq!(
            reason(&d),
            "priority: journey birthday (priority 10) reaches this contact within 1h"
        );
        ctx.priority = 20;
        let d = decide(&policy, &ctx, &all_granted(), &message("email", "hi"), "k").unwrap();
        assert!(matches!(d.delivery, messaging::Delivery::Sent(_)));
    }

    #[test]
    fn preferred_uses_the_contacts_last_engaged_channel_then_the_fallback_order() {
        use ConsentState::Granted;
        let policy = DeliveryPolicy::default();
        let ctx = context("j", 0, MORNING);
        let prefers_wecom = contact(
            &[("push", Granted), ("wecom", Granted)],
            serde_json::json!({ "preferred_channel": "wecom" }),
        );
        let d = decide(
            &policy,
            &ctx,
            &prefers_wecom,
            &message("preferred", "x"),
            "k",
        )
        .unwrap();
        assert_eq!(d.channel, "wecom");
        let no_push_consent = contact(&[("sms", Granted)], serde_json::json!({}));
        let d = decide(
            &policy,
            &ctx,
            &no_push_consent,
            &message("preferred", "x"),
            "k",
        )
        .unwrap();
        assert_eq!(d.channel, "sms");
        let nobody = contact(&[], serde_json::json!({}));
        let d = decide(&policy, &ctx, &nobody, &message("preferred", "x"), "k").unwrap();
        assert_eq!(
            reason(&d),
            "no channel with consent (tried push, sms, wecom, email)"
        );
    }

    #[test]
    fn a_transactional_message_ignores_caps_and_quiet_hours_but_not_a_no() {
        let mut receipt = message("email", "your receipt");
        receipt.category = messaging::Category::Transactional;
        let night = MORNING + 13 * HOUR;
        let mut ctx = context("j", 0, night);
        ctx.history = (0..5)
            .map(|i| PastSend {
                journey: "j".into(),
                priority: 0,
                fingerprint: format!("{i}"),
                deliver_at: night,
                marketing: true,
            })
            .collect();
        let d = decide(&strict(), &ctx, &all_granted(), &receipt, "k").unwrap();
        assert_eq!(d.delivery, messaging::Delivery::Sent("k".into()));
        let denied = contact(&[("email", ConsentState::Denied)], serde_json::json!({}));
        let d = decide(&strict(), &ctx, &denied, &receipt, "k").unwrap();
        assert_eq!(reason(&d), "no consent for email");
    }

    #[test]
    fn an_unknown_channel_is_an_error_naming_the_known_ones() {
        let e = decide(
            &strict(),
            &context("j", 0, MORNING),
            &all_granted(),
            &message("fax", "x"),
            "k",
        )
        .unwrap_err();
        assert!(
            matches!(e, HostError::InvalidInput(m) if m.contains("`fax`") && m.contains("sms"))
        );
    }

    #[test]
    fn unsubscribe_keywords_match_whole_replies_in_any_case() {
        let policy = DeliveryPolicy::default();
        assert!(policy.is_unsubscribe_reply(" stop "));
        assert!(policy.is_unsubscribe_reply("退订"));
        assert!(!policy.is_unsubscribe_reply("please don't stop"));
    }

    #[test]
    fn a_delivery_file_with_an_unknown_field_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DELIVERY_FILE), "max_per_dya = 3\n").unwrap();
        let e = DeliveryPolicy::load(&dir.path().join(DELIVERY_FILE))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_per_dya"), "{e}");
    }
}

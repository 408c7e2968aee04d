//! Channels: where an outbox message goes when the dispatcher delivers it.
//!
//! Each backend is one file behind the [`Channel`] trait: [`outbox`] (the
//! embedded default, nothing leaves the machine), [`smtp`] (email through
//! lettre), and the HTTP providers in [`http`] (an SMS gateway, the WeCom group
//! robot, a generic signed webhook). Which channel name maps to which backend,
//! with its URL, credentials, timeouts and retry policy, comes from the
//! deployment's `channels.toml` ([`config`]); without one every channel is the
//! outbox.
//!
//! A channel only delivers and classifies the result: [`DeliveryError::Transient`]
//! is worth another try later, [`DeliveryError::Permanent`] is not. Retries,
//! bookkeeping and alerts are the dispatcher's (`crate::dispatcher`).

pub mod config;
pub mod http;
pub mod outbox;
pub mod smtp;

use std::collections::BTreeMap;
use std::sync::Arc;

use dripline_store::{Contact, Identity, OutboxMessage};

use crate::names::{CHANNELS, HTTP_OUT_CHANNEL};
use crate::outbox_record::OutboxRecord;

pub use config::{AlertConfig, ChannelsConfig, ConfigError, RetryPolicy, Secret};

/// What a channel reports for a delivered message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's id for the message, when it gives one.
    pub provider_id: Option<String>,
}

/// Why a delivery failed, classified once by the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The same delivery may succeed later: a timeout, a refused connection, a
    /// provider's 5xx or 429, an SMTP 4xx.
    #[error("transient: {0}")]
    Transient(String),
    /// Trying again cannot help: no address for the contact, a 4xx answer, an
    /// SMTP 5xx, a channel that is not configured.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// One way to reach contacts. Implementations block (they run on the
/// dispatcher's thread) and must bound every network call with a timeout.
pub trait Channel: Send + Sync {
    /// Delivers `message` to `contact`. Called at least once per message: a
    /// dispatcher that crashed after delivering and before recording delivers
    /// again, so a provider that takes the message's idempotency key should be
    /// given it.
    /// `record` is the row's content, read once by the dispatcher.
    fn deliver(
        &self,
        message: &OutboxMessage,
        record: &OutboxRecord,
        contact: &Contact,
    ) -> Result<Receipt, DeliveryError>;
}

/// A deployment's channels by name, with the policy the dispatcher applies.
pub struct Channels {
    channels: BTreeMap<String, Configured>,
    /// Messages delivered at once, by channel (absent: one at a time).
    concurrency: BTreeMap<String, usize>,
    /// What `channels.toml` says outside the channels themselves.
    pub config: ChannelsConfig,
}

/// One named channel and its retry policy.
#[derive(Clone)]
pub struct Configured {
    /// The backend.
    pub channel: Arc<dyn Channel>,
    /// How transient failures on it are retried.
    pub retry: RetryPolicy,
}

impl Channels {
    /// Builds the channels a config describes.
    pub fn from_config(config: ChannelsConfig) -> Result<Self, ConfigError> {
        let mut channels = BTreeMap::new();
        let mut concurrency = BTreeMap::new();
        for (name, spec) in &config.channels {
            let channel = config::build(name, spec)?;
            let retry = spec.retry_overrides().apply_to(config.retry);
            channels.insert(name.clone(), Configured { channel, retry });
            concurrency.insert(name.clone(), spec.concurrency());
        }
        // The `webhook` step's posts: always there, so a step's grant is the
        // only gate, and signed with the `[http_out]` secret.
        channels.insert(
            HTTP_OUT_CHANNEL.to_string(),
            Configured {
                channel: config::build_http_out(&config.http_out)?,
                retry: config.http_out.retry.apply_to(config.retry),
            },
        );
        Ok(Self {
            channels,
            concurrency,
            config,
        })
    }

    /// The embedded default: every channel the policy knows is the outbox.
    pub fn embedded() -> Self {
        let config = ChannelsConfig::default();
        let channel: Arc<dyn Channel> = Arc::new(outbox::Outbox);
        let channels = CHANNELS
            .iter()
            .chain(&[HTTP_OUT_CHANNEL])
            .map(|name| {
                let configured = Configured {
                    channel: channel.clone(),
                    retry: config.retry,
                };
                ((*name).to_string(), configured)
            })
            .collect();
        Self {
            channels,
            concurrency: BTreeMap::new(),
            config,
        }
    }

    /// Adds or replaces channel `name`: for a backend that `channels.toml`
    /// cannot describe, such as a test's.
    pub fn insert(&mut self, name: &str, configured: Configured) {
        self.channels.insert(name.to_string(), configured);
    }

    /// How many messages of channel `name` are delivered at once
    /// (`concurrency` in its table; one for a channel the file does not
    /// describe).
    pub fn concurrency(&self, name: &str) -> usize {
        self.concurrency.get(name).copied().unwrap_or(1)
    }

    /// Delivers `requests` messages of channel `name` at once.
    pub fn set_concurrency(&mut self, name: &str, requests: usize) {
        self.concurrency.insert(name.to_string(), requests.max(1));
    }

    /// The channel called `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&Configured> {
        self.channels.get(name)
    }

    /// The configured channel names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    /// Whether an outbound post to `url` is granted (see
    /// [`ChannelsConfig::allowed_hosts`]); the error names the host.
    pub fn check_post(&self, url: &str) -> Result<(), String> {
        self.config.check_post(url)
    }
}

/// The contact's email address, if it has one.
pub fn email_of(contact: &Contact) -> Option<&str> {
    contact.identities.iter().find_map(|i| match i {
        Identity::Email(e) => Some(e.as_str()),
        _ => None,
    })
}

/// The contact's phone number in E.164, if it has one.
pub fn phone_of(contact: &Contact) -> Option<&str> {
    contact.identities.iter().find_map(|i| match i {
        Identity::Phone(p) => Some(p.as_str()),
        _ => None,
    })
}

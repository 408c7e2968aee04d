//! `channels.toml`: which backend each channel name uses, with its address,
//! credentials and timeout; how transient failures are retried; when failure
//! rates raise an alert; and which hosts the `webhook` step may post to.
//!
//! ```toml
//! [retry]                    # defaults for every channel
//! retries = 5                # tries after the first
//! backoff = "1m"             # first wait; doubles each retry
//! max_backoff = "6h"
//!
//! [alerts]
//! threshold = 0.05           # over 5% of a journey's sends failing ...
//! window = "1h"              # ... within an hour ...
//! min_sample = 20            # ... out of at least 20
//! webhook = "https://ops.example.com/hooks/dripline"   # optional
//!
//! [http_out]                 # the `webhook` step
//! allowed_hosts = ["crm.example.com"]
//! allowed_addresses = ["10.0.0.7"]   # a non-public address they may resolve to
//! secret = { env = "DRIPLINE_WEBHOOK_SECRET" }
//!
//! [channels.email]
//! kind = "smtp"
//! host = "smtp.example.com"
//! port = 587
//! starttls = true
//! username = "shop@example.com"
//! password = { env = "SMTP_PASSWORD" }
//! from = "Example Shop <shop@example.com>"
//!
//! [channels.sms]
//! kind = "sms"
//! url = "https://sms.example.com/v1/send"
//! format = "json"            # or "form"
//! auth_header = "Authorization"
//! auth = { env = "SMS_TOKEN" }
//! phone_field = "to"
//! body_field = "text"
//! fields = { sender = "EXSHOP" }
//! retry = { retries = 1, backoff = "2h" }   # SCENARIOS.md 3
//! concurrency = 8            # messages delivered at once (default 4)
//! ```
//!
//! A secret is written either inline (`"..."`) or as `{ env = "NAME" }`, read
//! from the environment at start; either way it is never printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use dripline_engine::Duration;
use serde::Deserialize;

use dripline_sandbox::egress::{check_host, host_of};

use super::Channel;
use super::http::{HttpConfig, SmsFormat};

/// Why `channels.toml` cannot be used; the text names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the format.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with the field.
        message: String,
    },
    /// A field's value is not acceptable.
    #[error("channels config: {field}: {message}")]
    Invalid {
        /// The field, as `channels.sms.url`.
        field: String,
        /// Why.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    /// The retry policy of every channel that does not set its own.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// When failing sends raise an alert.
    #[serde(default)]
    pub alerts: AlertConfig,
    /// Outbound posts of the `webhook` step.
    #[serde(default)]
    pub http_out: HttpOutConfig,
    /// The channels by name, as steps name them (`email`, `sms`, ...).
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSpec>,
}

impl ChannelsConfig {
    /// Reads `path`; a missing file is `None` (the embedded default).
    pub fn load(path: &Path) -> Result<Option<Self>, ConfigError> {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ConfigError::Read { path: name, source }),
        };
        Self::parse(&name, &text).map(Some)
    }

    /// Parses the text of a channels file called `name`.
    pub fn parse(name: &str, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: name.to_string(),
            message: e.to_string(),
        })
    }

    /// Whether the `webhook` step may post to `url` by this file's grants.
    pub fn check_post(&self, url: &str) -> Result<(), String> {
        check_host(url, &self.http_out.allowed_hosts)
    }
}

/// How transient failures are retried: after the first try, up to `retries`
/// more, waiting `backoff`, then twice that, and so on, at most `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Tries after the first; 0 never retries.
    pub retries: u32,
    /// The wait before the first retry.
    pub backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 5,
            backoff: Duration::from_millis(60_000),
            max_backoff: Duration::from_millis(6 * 3_600_000),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next try after `attempts` failed tries, or `None`
    /// when the retries are used up.
    pub fn next_delay_ms(&self, attempts: u32) -> Option<i64> {
        if attempts == 0 || attempts > self.retries {
            return None;
        }
        let factor = 1i64.checked_shl(attempts - 1).unwrap_or(i64::MAX);
        let delay = self.backoff.as_offset().saturating_mul(factor);
        Some(delay.min(self.max_backoff.as_offset()))
    }
}

/// A channel's own retry settings; what it leaves out comes from `[retry]`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverrides {
    /// See [`RetryPolicy::retries`].
    pub retries: Option<u32>,
    /// See [`RetryPolicy::backoff`].
    pub backoff: Option<Duration>,
    /// See [`RetryPolicy::max_backoff`].
    pub max_backoff: Option<Duration>,
}

impl RetryOverrides {
    /// `base` with these settings applied.
    pub fn apply_to(self, base: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries.unwrap_or(base.retries),
            backoff: self.backoff.unwrap_or(base.backoff),
            max_backoff: self.max_backoff.unwrap_or(base.max_backoff),
        }
    }
}

/// When a journey's failing sends raise an alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// The failure rate above which an alert fires (0.05: 5%).
    pub threshold: f64,
    /// The window over which the rate is counted; an alert fires at most once
    /// per journey and window.
    pub window: Duration,
    /// Fewer sends than this in a window never alert: two failures out of three
    /// is noise, not an outage.
    pub min_sample: u64,
    /// Where to POST the alert as JSON, besides the log and the metric.
    pub webhook: Option<String>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            threshold: 0.05,
            window: Duration::from_millis(3_600_000),
            min_sample: 20,
            webhook: None,
        }
    }
}

/// What the `webhook` step may reach and how its posts are signed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOutConfig {
    /// Hosts every journey's `webhook` steps may post to, besides those a step
    /// grants itself in its config.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Non-public addresses (loopback, a private network) that an allowed
    /// host may resolve to; a host that resolves to any other non-public
    /// address is refused.
    #[serde(default)]
    pub allowed_addresses: Vec<std::net::IpAddr>,
    /// The HMAC-SHA256 key of `X-Dripline-Signature`.
    pub secret: Option<Secret>,
    /// How long one post may take.
    pub timeout: Option<Duration>,
    /// Retry settings of the step's posts.
    #[serde(default)]
    pub retry: RetryOverrides,
}

/// A credential: inline, or the name of an environment variable.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    /// Written in the file.
    Inline(String),
    /// Read from the environment at start.
    Env {
        /// The variable's name.
        env: String,
    },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret(<inline>)"),
            Secret::Env { env } => write!(f, "Secret(env {env})"),
        }
    }
}

impl Secret {
    /// The value; an unset variable is an error naming `field` and the variable.
    pub fn resolve(&self, field: &str) -> Result<Redacted, ConfigError> {
        match self {
            Secret::Inline(value) => Ok(Redacted(value.clone())),
            Secret::Env { env } => {
                std::env::var(env)
                    .map(Redacted)
                    .map_err(|_| ConfigError::Invalid {
                        field: field.to_string(),
                        message: format!("environment variable {env} is not set"),
                    })
            }
        }
    }
}

/// A resolved secret. Its `Debug` hides the value so a logged config or error
/// never carries a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One channel in the file: its backend (`kind`) and the backend's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ChannelSpec {
    /// Kept in the outbox and marked delivered; nothing leaves the machine.
    Outbox(OutboxSpec),
    /// Email through an SMTP server.
    Smtp(SmtpSpec),
    /// An SMS gateway's HTTP API.
    Sms(SmsSpec),
    /// A WeCom (企业微信) group robot.
    Wecom(WecomSpec),
    /// A JSON POST of the message and the contact to a URL.
    Webhook(WebhookSpec),
}

/// How many messages of one channel are delivered at once unless the
/// channel says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

impl ChannelSpec {
    /// How many messages of the channel are delivered at once (1 to 64).
    pub fn concurrency(&self) -> usize {
        let set = match self {
            ChannelSpec::Outbox(s) => s.concurrency,
            ChannelSpec::Smtp(s) => s.concurrency,
            ChannelSpec::Sms(s) => s.concurrency,
            ChannelSpec::Wecom(s) => s.concurrency,
            ChannelSpec::Webhook(s) => s.concurrency,
        };
        set.unwrap_or(DEFAULT_CONCURRENCY).clamp(1, 64)
    }

    /// The channel's own retry settings.
    pub fn retry_overrides(&self) -> RetryOverrides {
        match self {
            ChannelSpec::Outbox(s) => s.retry,
            ChannelSpec::Smtp(s) => s.retry,
            ChannelSpec::Sms(s) => s.retry,
            ChannelSpec::Wecom(s) => s.retry,
            ChannelSpec::Webhook(s) => s.retry,
        }
    }
}

/// `kind = "outbox"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSpec {
    /// Unused: the outbox does not fail.
    #[serde(default)]
    pub retry: RetryOverrides,
    /// How many messages of this channel are delivered at once (default
    /// [`DEFAULT_CONCURRENCY`]): a provider that answers slowly then holds up
    /// only its share of the channel's queue.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// `kind = "smtp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSpec {
    /// The server's host name.
    pub host: String,
    /// Its port; 25 by default (587 is usual with `starttls`).
    pub port: Option<u16>,
    /// Upgrade the connection with STARTTLS, and fail if the server cannot.
    #[serde(default)]
    pub starttls: bool,
    /// The login, if the server wants one.
    pub username: Option<String>,
    /// The password for `username`.
    pub password: Option<Secret>,
    /// The sender, as `Name <address>` or a bare address.
    pub from: String,
    /// How long one delivery may take; 30 s by default.
    pub timeout: Option<Duration>,
    /// Retry settings of this channel.
    #[serde(default)]
    pub retry: RetryOverrides,
    /// How many messages of this channel are delivered at once (default
    /// [`DEFAULT_CONCURRENCY`]): a provider that answers slowly then holds up
    /// only its share of the channel's queue.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// `kind = "sms"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSpec {
    /// The provider's send endpoint.
    pub url: String,
    /// `json` (default) or `form`.
    #[serde(default)]
    pub format: SmsFormat,
    /// The header that carries `auth` (`Authorization`, `X-API-Key`).
    pub auth_header: Option<String>,
    /// The header's value, such as `Bearer <token>`.
    pub auth: Option<Secret>,
    /// The field that carries the phone number in E.164; `phone` by default.
    pub phone_field: Option<String>,
    /// The field that carries the text; `body` by default.
    pub body_field: Option<String>,
    /// Fixed fields the provider wants in every request (a sender id).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// How long one request may take; 10 s by default.
    pub timeout: Option<Duration>,
    /// Retry settings of this channel.
    #[serde(default)]
    pub retry: RetryOverrides,
    /// How many messages of this channel are delivered at once (default
    /// [`DEFAULT_CONCURRENCY`]): a provider that answers slowly then holds up
    /// only its share of the channel's queue.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// `kind = "wecom"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomSpec {
    /// The robot's webhook URL. Its `key` parameter is the credential, so it
    /// is a secret: `{ env = "WECOM_ROBOT_URL" }`.
    pub url: Secret,
    /// Send as `markdown` rather than `text`.
    #[serde(default)]
    pub markdown: bool,
    /// How long one request may take; 10 s by default.
    pub timeout: Option<Duration>,
    /// Retry settings of this channel.
    #[serde(default)]
    pub retry: RetryOverrides,
    /// How many messages of this channel are delivered at once (default
    /// [`DEFAULT_CONCURRENCY`]): a provider that answers slowly then holds up
    /// only its share of the channel's queue.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// `kind = "webhook"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where to POST.
    pub url: String,
    /// The HMAC-SHA256 key of `X-Dripline-Signature`, if the receiver checks.
    pub secret: Option<Secret>,
    /// How long one request may take; 10 s by default.
    pub timeout: Option<Duration>,
    /// Retry settings of this channel.
    #[serde(default)]
    pub retry: RetryOverrides,
    /// How many messages of this channel are delivered at once (default
    /// [`DEFAULT_CONCURRENCY`]): a provider that answers slowly then holds up
    /// only its share of the channel's queue.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

const DEFAULT_HTTP_TIMEOUT: StdDuration = StdDuration::from_secs(10);

fn timeout_of(timeout: Option<Duration>, default: StdDuration) -> StdDuration {
    timeout.map_or(default, |d| StdDuration::from_millis(d.as_millis()))
}

fn resolve(secret: &Option<Secret>, field: String) -> Result<Option<Redacted>, ConfigError> {
    secret.as_ref().map(|s| s.resolve(&field)).transpose()
}

fn http_url(field: String, url: &str) -> Result<(), ConfigError> {
    host_of(url)
        .map(drop)
        .map_err(|message| ConfigError::Invalid { field, message })
}

/// Builds the backend of channel `name`.
pub fn build(name: &str, spec: &ChannelSpec) -> Result<Arc<dyn Channel>, ConfigError> {
    let field = |f: &str| format!("channels.{name}.{f}");
    Ok(match spec {
        ChannelSpec::Outbox(_) => Arc::new(super::outbox::Outbox),
        ChannelSpec::Smtp(s) => Arc::new(super::smtp::Smtp::new(super::smtp::SmtpConfig {
            host: s.host.clone(),
            port: s.port.unwrap_or(25),
            starttls: s.starttls,
            credentials: match (&s.username, resolve(&s.password, field("password"))?) {
                (Some(user), Some(password)) => Some((user.clone(), password)),
                (None, None) => None,
                _ => {
                    return Err(ConfigError::Invalid {
                        field: field("username"),
                        message: "give both `username` and `password`, or neither".into(),
                    });
                }
            },
            from: s.from.parse().map_err(|e| ConfigError::Invalid {
                field: field("from"),
                message: format!("not a mailbox: {e}"),
            })?,
            timeout: timeout_of(s.timeout, StdDuration::from_secs(30)),
        })),
        ChannelSpec::Sms(s) => {
            http_url(field("url"), &s.url)?;
            let auth = match (&s.auth_header, resolve(&s.auth, field("auth"))?) {
                (Some(header), Some(value)) => Some((header.clone(), value)),
                (None, Some(value)) => Some(("Authorization".to_string(), value)),
                (_, None) => None,
            };
            Arc::new(super::http::Sms {
                http: HttpConfig::new(timeout_of(s.timeout, DEFAULT_HTTP_TIMEOUT)),
                url: s.url.clone(),
                format: s.format,
                auth,
                phone_field: s.phone_field.clone().unwrap_or_else(|| "phone".into()),
                body_field: s.body_field.clone().unwrap_or_else(|| "body".into()),
                fields: s.fields.clone(),
            })
        }
        ChannelSpec::Wecom(s) => {
            let url = s.url.resolve(&field("url"))?;
            http_url(field("url"), &url.0)?;
            Arc::new(super::http::Wecom {
                http: HttpConfig::new(timeout_of(s.timeout, DEFAULT_HTTP_TIMEOUT)),
                url,
                markdown: s.markdown,
            })
        }
        ChannelSpec::Webhook(s) => {
            http_url(field("url"), &s.url)?;
            Arc::new(super::http::Webhook {
                http: HttpConfig::new(timeout_of(s.timeout, DEFAULT_HTTP_TIMEOUT)),
                url: Some(s.url.clone()),
                secret: resolve(&s.secret, field("secret"))?,
            })
        }
    })
}

/// Builds the backend of the `webhook` step's posts.
pub fn build_http_out(config: &HttpOutConfig) -> Result<Arc<dyn Channel>, ConfigError> {
    Ok(Arc::new(super::http::Webhook {
        http: HttpConfig::granting(
            timeout_of(config.timeout, DEFAULT_HTTP_TIMEOUT),
            config.allowed_addresses.clone(),
        ),
        url: None,
        secret: resolve(&config.secret, "http_out.secret".into())?,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let doc: String = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let config = ChannelsConfig::parse("example", &doc).unwrap();
        assert_eq!(config.channels.len(), 2);
        let sms = config.channels["sms"]
            .retry_overrides()
            .apply_to(config.retry);
        assert_eq!(sms.retries, 1);
        assert_eq!(sms.next_delay_ms(1), Some(2 * 3_600_000));
        assert_eq!(sms.next_delay_ms(2), None);
    }

    #[test]
    fn an_unknown_field_is_named_in_the_error() {
        let err = ChannelsConfig::parse(
            "c.toml",
            "[channels.sms]\nkind = \"sms\"\nurl = \"https://x\"\nphonefield = \"to\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("phonefield"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_stops_after_the_retries() {
        let policy = RetryPolicy {
            retries: 4,
            backoff: Duration::from_millis(1_000),
            max_backoff: Duration::from_millis(5_000),
        };
        let delays: Vec<_> = (1..=5).map(|n| policy.next_delay_ms(n)).collect();
        assert_eq!(
            delays,
            [Some(1_000), Some(2_000), Some(4_000), Some(5_000), None]
        );
    }

    #[test]
    fn a_secret_from_an_unset_variable_is_an_error_naming_the_field_and_the_variable() {
        let secret = Secret::Env {
            env: "DRIPLINE_SURELY_UNSET_VARIABLE".into(),
        };
        let err = secret.resolve("channels.sms.auth").unwrap_err().to_string();
        assert!(
            err.contains("channels.sms.auth") && err.contains("DRIPLINE_SURELY_UNSET_VARIABLE")
        );
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = Secret::Inline("s3cr3t".into()).resolve("x").unwrap();
        assert!(!format!("{secret:?}").contains("s3cr3t"));
    }
}

//! Email through an SMTP server, with lettre: plain SMTP, or STARTTLS when
//! configured, with optional credentials. The message is multipart (text and,
//! when the step rendered one, HTML), from the configured sender to the
//! contact's email address.

use std::time::Duration;

use dripline_store::{Contact, OutboxMessage};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

use super::config::Redacted;
use super::{Channel, DeliveryError, Receipt, email_of};
use crate::outbox_record::OutboxRecord;

/// What the SMTP channel needs, resolved from `channels.toml`.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// The server.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Require STARTTLS.
    pub starttls: bool,
    /// Login and password.
    pub credentials: Option<(String, Redacted)>,
    /// The sender.
    pub from: Mailbox,
    /// How long one delivery may take, connection included.
    pub timeout: Duration,
}

/// See the module documentation.
pub struct Smtp {
    config: SmtpConfig,
}

impl Smtp {
    /// A channel that delivers through the server in `config`.
    pub fn new(config: SmtpConfig) -> Self {
        Self { config }
    }

    fn transport(&self) -> Result<SmtpTransport, DeliveryError> {
        let c = &self.config;
        // Not `relay()`: that insists on implicit TLS; the server and port are
        // the operator's choice, and STARTTLS is opt-in.
        let mut builder = SmtpTransport::builder_dangerous(&c.host)
            .port(c.port)
            .timeout(Some(c.timeout));
        if c.starttls {
            let tls = TlsParameters::new(c.host.clone())
                .map_err(|e| DeliveryError::Permanent(format!("TLS setup for {}: {e}", c.host)))?;
            builder = builder.tls(Tls::Required(tls));
        }
        if let Some((user, password)) = &c.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
        }
        Ok(builder.build())
    }
}

impl Channel for Smtp {
    fn deliver(
        &self,
        message: &OutboxMessage,
        record: &OutboxRecord,
        contact: &Contact,
    ) -> Result<Receipt, DeliveryError> {
        let to = email_of(contact).ok_or_else(|| {
            DeliveryError::Permanent(format!("contact {} has no email address", contact.id))
        })?;
        let to: Mailbox = to.parse().map_err(|e| {
            DeliveryError::Permanent(format!("contact {}'s email is not valid: {e}", contact.id))
        })?;
        let text = record.body.clone();
        let body = match &record.html {
            Some(html) => MultiPart::alternative_plain_html(text, html.clone()),
            None => MultiPart::mixed().singlepart(SinglePart::plain(text)),
        };
        // A Message-ID derived from the idempotency key lets a receiving system
        // drop the duplicate that at-least-once delivery may produce.
        let message_id = format!(
            "<{}@dripline>",
            message
                .idempotency_key
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '.'
                })
                .collect::<String>()
        );
        let mut builder = lettre::Message::builder()
            .from(self.config.from.clone())
            .to(to)
            .subject(record.subject.as_deref().unwrap_or_default())
            .message_id(Some(message_id.clone()));
        // Gmail and Yahoo require one-click unsubscribe (RFC 8058) of bulk
        // senders: the mail client POSTs to the signed link tracking made.
        if let Some(url) = record
            .unsubscribe_url
            .as_deref()
            .filter(|_| record.is_marketing())
        {
            use lettre::message::header::{HeaderName, HeaderValue};
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        let email = builder
            .multipart(body)
            .map_err(|e| DeliveryError::Permanent(format!("building the email: {e}")))?;
        match self.transport()?.send(&email) {
            Ok(_) => Ok(Receipt {
                provider_id: Some(message_id),
            }),
            // 5xx: the server refuses this message for good. Everything else
            // (4xx, timeouts, connection failures) may pass later.
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(format!("smtp: {e}"))),
            Err(e) => Err(DeliveryError::Transient(format!("smtp: {e}"))),
        }
    }
}

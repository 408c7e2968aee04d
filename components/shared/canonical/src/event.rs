//! What a trigger's logic reads and how it fails, in plain Rust so that it is
//! tested natively: the [`Request`] it is given and the [`TriggerError`] it may
//! return. What it returns, the canonical [`Event`], is `dripline-event`'s,
//! the one definition the host runtime uses too; each trigger's WIT glue
//! (see [`export_trigger!`](crate::export_trigger)) converts it field by field
//! into `dripline:journey/types.event`.

pub use dripline_event::{Event, Identities, Timestamp, trust};

/// Why a request yields no events; mirrors `trigger-error` in `wit/worlds.wit`.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerError {
    /// The body is unusable or lacks a required field; the text names it.
    Malformed(String),
    /// The content type is not one the trigger reads.
    UnsupportedContentType(String),
    /// An authentic delivery of a topic the trigger does not handle.
    UnsupportedTopic(String),
    /// The payload names nobody.
    MissingIdentity(String),
}

impl TriggerError {
    /// Prefixes the message with where in the request it happened
    /// (`batch[3]: ...`), keeping the case.
    pub fn at(self, place: &str) -> Self {
        match self {
            TriggerError::Malformed(m) => TriggerError::Malformed(format!("{place}: {m}")),
            TriggerError::UnsupportedContentType(m) => {
                TriggerError::UnsupportedContentType(format!("{place}: {m}"))
            }
            TriggerError::UnsupportedTopic(m) => {
                TriggerError::UnsupportedTopic(format!("{place}: {m}"))
            }
            TriggerError::MissingIdentity(m) => {
                TriggerError::MissingIdentity(format!("{place}: {m}"))
            }
        }
    }
}

/// The parts of `inbound-request` a trigger's logic reads.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request path, without the query string.
    pub path: &'a str,
    /// Header pairs; names lower case.
    pub headers: &'a [(String, String)],
    /// The raw body.
    pub body: &'a [u8],
    /// When the gateway received it, in ms since the epoch.
    pub received_at: i64,
}

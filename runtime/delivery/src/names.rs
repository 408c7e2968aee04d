//! The names that policy, channels, tracking and the runner must agree on:
//! channels, the `preferred` pseudo-channel, and the profile fields and events
//! that engagement writes. One place, so that no stage has to import another
//! for a string.

/// Channels a deployment can send through.
pub const CHANNELS: &[&str] = &["email", "sms", "push", "wecom", "webhook", "outbox"];

/// The channel name that stands for "the contact's preferred channel".
pub const PREFERRED: &str = "preferred";

/// The channel name of the `webhook` step's posts.
pub const HTTP_OUT_CHANNEL: &str = "http-out";

/// The attribute that holds the channel a contact last engaged on, which
/// `channel = "preferred"` reaches first.
pub const PREFERRED_CHANNEL: &str = "preferred_channel";

/// The tag prefix that shows a marketer which channel a contact prefers
/// (`prefers-wecom`); the contact carries one such tag at a time.
pub const PREFERS_TAG: &str = "prefers-";

/// The event a tracked unsubscribe link (or the admin) puts in the inbox.
pub const UNSUBSCRIBED: &str = "contact.unsubscribed";

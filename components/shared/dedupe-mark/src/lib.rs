//! The gateway's dedupe marks. A mark is the key-value record
//! `dedupe/{source}/{delivery_id}` whose value is the time the delivery was
//! first accepted, in ms since the epoch, as text. The gateway component
//! writes one per accepted delivery and answers a retry of it as a duplicate
//! while the mark holds; the host's sweep deletes marks that no longer hold.
//! Both read a mark through [`mark_holds`], so they cannot disagree on when one
//! lapses. The time may be followed by a space and more: the form route's
//! limits (`dedupe/limit/...`) keep a count there, and date their marks so
//! that they lapse when their hour ends.

#![warn(missing_docs)]

/// The key prefix of dedupe marks in the `default` key-value store.
pub const PREFIX: &str = "dedupe/";

/// How long a dedupe mark holds: 72 hours, longer than any provider retries a
/// webhook (Shopify: 48 hours).
pub const DEDUPE_TTL_MS: i64 = 72 * 60 * 60 * 1000;

/// Whether a dedupe mark still holds at `now_ms`. A mark that cannot be read
/// holds: storing a delivery twice is the worse mistake.
pub fn mark_holds(mark: &[u8], now_ms: i64) -> bool {
    match std::str::from_utf8(mark)
        .ok()
        // The time may be followed by more (a form limit's count).
        .and_then(|text| text.split_whitespace().next()?.parse::<i64>().ok())
    {
        Some(marked_at) => now_ms.saturating_sub(marked_at) < DEDUPE_TTL_MS,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_holds_for_72_hours_and_an_unreadable_one_always() {
        let at = 1_000_000;
        let mark = at.to_string();
        assert!(mark_holds(mark.as_bytes(), at));
        assert!(mark_holds(mark.as_bytes(), at + DEDUPE_TTL_MS - 1));
        assert!(!mark_holds(mark.as_bytes(), at + DEDUPE_TTL_MS));
        assert!(mark_holds(b"not a time", at + 10 * DEDUPE_TTL_MS));
    }
}

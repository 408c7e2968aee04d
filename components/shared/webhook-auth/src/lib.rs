//! Proves that a webhook comes from who it claims to: the HMAC signatures of
//! Shopify, Typeform and Tally, and the write key of the track API. The gateway
//! calls these before a trigger sees the request; they are plain functions so
//! the gateway component, the native benchmark baseline and the tests share
//! one implementation.
//!
//! Every comparison is constant-time (the `hmac` crate's `verify_slice`, or
//! `subtle` on digests), so a forger learns nothing from how long a refusal
//! takes. Each function takes the header's value as an `Option` so that a
//! caller passes its header lookup straight through.
//!
//! | source   | header                  | value                                   |
//! |----------|-------------------------|-----------------------------------------|
//! | Shopify  | `X-Shopify-Hmac-Sha256` | base64 HMAC-SHA256 of the raw body      |
//! | Typeform | `Typeform-Signature`    | `sha256=` + base64 HMAC-SHA256 of body  |
//! | Tally    | `Tally-Signature`       | base64 HMAC-SHA256 of the raw body      |
//! | track    | `Authorization`         | `Bearer <key>` or `Basic base64(key:)`  |

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a request is not accepted as authentic. The gateway answers 401 to
/// every case but [`Rejection::EmptySecret`], which is its own
/// misconfiguration (500): an empty secret would let anyone sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The header that carries the proof is absent; the text names it.
    Missing(&'static str),
    /// The header is present but not in the expected form; the text says how.
    Malformed(&'static str),
    /// The proof is well-formed but does not match.
    Mismatch,
    /// The configured secret or write key is empty.
    EmptySecret,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Missing(header) => write!(f, "missing {header} header"),
            Rejection::Malformed(why) => write!(f, "malformed signature: {why}"),
            Rejection::Mismatch => f.write_str("signature does not match"),
            Rejection::EmptySecret => f.write_str("the configured secret is empty"),
        }
    }
}

impl std::error::Error for Rejection {}

/// The header names, lower case as the gateway sees them.
pub mod headers {
    /// Shopify's signature header.
    pub const SHOPIFY: &str = "x-shopify-hmac-sha256";
    /// Typeform's signature header.
    pub const TYPEFORM: &str = "typeform-signature";
    /// Tally's signature header.
    pub const TALLY: &str = "tally-signature";
    /// The track API's write key.
    pub const AUTHORIZATION: &str = "authorization";
}

/// The base64 HMAC-SHA256 of `body` under `secret`: what Shopify and Tally
/// send, and what Typeform sends after `sha256=`. Tests and the benchmark's
/// load generator sign their payloads with it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    STANDARD.encode(mac(secret, body).finalize().into_bytes())
}

/// Checks a base64 HMAC-SHA256 of `body` under `secret` in constant time.
pub fn verify_base64_hmac(secret: &[u8], body: &[u8], signature: &str) -> Result<(), Rejection> {
    if secret.is_empty() {
        return Err(Rejection::EmptySecret);
    }
    let expected = STANDARD
        .decode(signature.trim())
        .map_err(|_| Rejection::Malformed("not base64"))?;
    mac(secret, body)
        .verify_slice(&expected)
        .map_err(|_| Rejection::Mismatch)
}

/// Verifies a Shopify webhook: `X-Shopify-Hmac-Sha256` is the base64
/// HMAC-SHA256 of the raw body under the app's client secret.
pub fn verify_shopify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), Rejection> {
    let signature = header.ok_or(Rejection::Missing("X-Shopify-Hmac-Sha256"))?;
    verify_base64_hmac(secret, body, signature)
}

/// Verifies a Typeform webhook: `Typeform-Signature` is `sha256=` followed by
/// the base64 HMAC-SHA256 of the raw body under the webhook's secret.
pub fn verify_typeform(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), Rejection> {
    let value = header.ok_or(Rejection::Missing("Typeform-Signature"))?;
    let signature = value
        .trim()
        .strip_prefix("sha256=")
        .ok_or(Rejection::Malformed(
            "expected `sha256=` and a base64 digest",
        ))?;
    verify_base64_hmac(secret, body, signature)
}

/// Verifies a Tally webhook: `Tally-Signature` is the base64 HMAC-SHA256 of
/// the raw body under the webhook's signing secret.
pub fn verify_tally(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), Rejection> {
    let signature = header.ok_or(Rejection::Missing("Tally-Signature"))?;
    verify_base64_hmac(secret, body, signature)
}

/// Verifies the track API's write key from an `Authorization` header, as
/// `Bearer <key>` or, as Segment's libraries send it, `Basic` with the key as
/// the user name and an empty password (`base64("<key>:")`). Scheme names are
/// case-insensitive. The keys are compared as SHA-256 digests so that neither
/// their bytes nor their lengths show in the timing.
pub fn verify_write_key(write_key: &str, authorization: Option<&str>) -> Result<(), Rejection> {
    if write_key.is_empty() {
        return Err(Rejection::EmptySecret);
    }
    let value = authorization
        .ok_or(Rejection::Missing("Authorization"))?
        .trim();
    let (scheme, credentials) = value.split_once(' ').ok_or(Rejection::Malformed(
        "expected `Bearer <key>` or `Basic <base64>`",
    ))?;
    let credentials = credentials.trim();
    let presented = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(credentials)
            .map_err(|_| Rejection::Malformed("Basic credentials are not base64"))?;
        // The user name is the key; Segment leaves the password empty.
        match decoded.iter().position(|&b| b == b':') {
            Some(colon) => decoded.get(..colon).unwrap_or_default().to_vec(),
            None => decoded,
        }
    } else {
        return Err(Rejection::Malformed("expected the Bearer or Basic scheme"));
    };
    let matches = Sha256::digest(&presented).ct_eq(&Sha256::digest(write_key.as_bytes()));
    if bool::from(matches) {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

fn mac(secret: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this never takes the error branch;
    // the fallback keeps the function total without a panic.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()));
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?",
    // HMAC-SHA256 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843.
    const JEFE_BODY: &[u8] = b"what do ya want for nothing?";
    const JEFE_BASE64: &str = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";

    // Computed independently with
    // `printf '{"id":1}' | openssl dgst -sha256 -hmac shpss_secret -binary | base64`.
    const SHOPIFY_BODY: &[u8] = br#"{"id":1}"#;
    const SHOPIFY_BASE64: &str = "xocA3LkeJ/RvNrkxep1EUtFHuj7rIoIqZYaLU26LyPQ=";

    #[test]
    fn signing_matches_the_rfc_4231_vector() {
        assert_eq!(sign(b"Jefe", JEFE_BODY), JEFE_BASE64);
    }

    #[test]
    fn a_shopify_signature_made_by_openssl_verifies() {
        assert_eq!(
            verify_shopify(b"shpss_secret", SHOPIFY_BODY, Some(SHOPIFY_BASE64)),
            Ok(())
        );
    }

    #[test]
    fn a_changed_body_or_secret_does_not_verify() {
        assert_eq!(
            verify_shopify(b"shpss_secret", br#"{"id":2}"#, Some(SHOPIFY_BASE64)),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            verify_shopify(b"other", SHOPIFY_BODY, Some(SHOPIFY_BASE64)),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_missing_or_garbled_signature_is_named() {
        assert_eq!(
            verify_shopify(b"s", b"", None),
            Err(Rejection::Missing("X-Shopify-Hmac-Sha256"))
        );
        assert_eq!(
            verify_tally(b"s", b"", Some("not base64!")),
            Err(Rejection::Malformed("not base64"))
        );
        assert_eq!(
            verify_base64_hmac(b"s", b"", "AAAA"),
            Err(Rejection::Mismatch),
            "a truncated digest is a mismatch, not a prefix match"
        );
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        let signature = sign(b"", b"body");
        assert_eq!(
            verify_tally(b"", b"body", Some(&signature)),
            Err(Rejection::EmptySecret)
        );
        assert_eq!(
            verify_write_key("", Some("Bearer ")),
            Err(Rejection::EmptySecret)
        );
    }

    #[test]
    fn a_typeform_signature_carries_the_sha256_prefix() {
        let header = format!("sha256={JEFE_BASE64}");
        assert_eq!(verify_typeform(b"Jefe", JEFE_BODY, Some(&header)), Ok(()));
        assert_eq!(
            verify_typeform(b"Jefe", JEFE_BODY, Some(JEFE_BASE64)),
            Err(Rejection::Malformed(
                "expected `sha256=` and a base64 digest"
            ))
        );
    }

    #[test]
    fn a_tally_signature_is_the_bare_base64_digest() {
        assert_eq!(verify_tally(b"Jefe", JEFE_BODY, Some(JEFE_BASE64)), Ok(()));
    }

    #[test]
    fn a_write_key_verifies_as_bearer_or_as_segments_basic_auth() {
        assert_eq!(verify_write_key("wk_123", Some("Bearer wk_123")), Ok(()));
        assert_eq!(verify_write_key("wk_123", Some("bearer wk_123")), Ok(()));
        // base64("wk_123:") as analytics.js sends it.
        assert_eq!(
            verify_write_key("wk_123", Some("Basic d2tfMTIzOg==")),
            Ok(())
        );
        // base64("wk_123") without the colon.
        assert_eq!(verify_write_key("wk_123", Some("Basic d2tfMTIz")), Ok(()));
    }

    #[test]
    fn a_wrong_or_absent_write_key_is_refused() {
        assert_eq!(
            verify_write_key("wk_123", Some("Bearer wk_12")),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            verify_write_key("wk_123", None),
            Err(Rejection::Missing("Authorization"))
        );
        assert_eq!(
            verify_write_key("wk_123", Some("Digest abc")),
            Err(Rejection::Malformed("expected the Bearer or Basic scheme"))
        );
        assert_eq!(
            verify_write_key("wk_123", Some("wk_123")),
            Err(Rejection::Malformed(
                "expected `Bearer <key>` or `Basic <base64>`"
            ))
        );
    }
}

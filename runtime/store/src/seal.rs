//! Encryption at rest: what the store seals before it writes, and the keyed
//! blind indexes it looks identities up by.
//!
//! A [`Keyring`] holds one or more 32-byte keys, the first of them current.
//! Each value the store seals is XChaCha20-Poly1305 under the current key,
//! bound to where it is stored (its table, column and row) as associated data,
//! so a sealed profile moved onto another contact's row fails to open. Older
//! keys only open what they sealed: rotation puts a new key first, and the
//! store rewrites every sealed value and blind index under it the next time it
//! opens the file (see `SqliteStore::open_sealed`).
//!
//! A blind index is an HMAC-SHA-256 of an identity under a key derived from the
//! current one: equal identities give equal indexes, so the store can find a
//! contact by email without keeping the email, and nobody without the key can
//! test a guessed address against the file.
//!
//! A sealed value starts with [`MAGIC`], which no JSON text starts with: values
//! written before sealing was turned on (and inbox records a Spin gateway writes
//! straight into the file) read as they are.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{Result, StoreError};

/// The first bytes of every sealed value: a NUL (never the first byte of JSON
/// text), `dl` and the format's version.
pub const MAGIC: &[u8; 4] = b"\0dl\x01";

/// The environment variable that may hold the keyring itself (one base64 key
/// per line, or several separated by commas), for platforms that hand secrets
/// over as variables.
pub const KEY_ENV: &str = "DRIPLINE_STORE_KEY";

const KEY_BYTES: usize = 32;
const ID_BYTES: usize = 4;
const NONCE_BYTES: usize = 24;

/// One key of a keyring.
struct Key {
    /// The first bytes of a hash of the key: stored with each sealed value,
    /// so the store knows which key opens it without trying each.
    id: [u8; ID_BYTES],
    cipher: XChaCha20Poly1305,
    /// The blind-index key, derived so that no value is both encrypted and
    /// MACed under the same key.
    index: Vec<u8>,
}

impl Key {
    fn new(secret: &[u8; KEY_BYTES]) -> Self {
        let derive = |label: &[u8]| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
                .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
            mac.update(label);
            mac.finalize().into_bytes()
        };
        let hash = Sha256::digest(derive(b"dripline key id"));
        let mut id = [0u8; ID_BYTES];
        id.copy_from_slice(&hash[..ID_BYTES]);
        let encryption = derive(b"dripline encryption");
        Self {
            id,
            cipher: XChaCha20Poly1305::new_from_slice(&encryption)
                .unwrap_or_else(|_| unreachable!("the derived key is 32 bytes")),
            index: derive(b"dripline blind index").to_vec(),
        }
    }
}

/// The keys a store seals with: the first is current, the rest open what they
/// sealed before a rotation.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: a keyring must never reach a log.
        f.debug_list()
            .entries(self.keys.iter().map(|k| hex_id(&k.id)))
            .finish()
    }
}

fn hex_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Keyring {
    /// Parses a keyring: base64 keys of 32 bytes, one per line (or separated by
    /// commas), the current one first; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self> {
        let mut keys = Vec::new();
        for (n, entry) in text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let bytes = STANDARD
                .decode(entry)
                .map_err(|_| StoreError::Key(format!("entry {} is not base64", n + 1)))?;
            let secret: [u8; KEY_BYTES] = bytes
                .try_into()
                .map_err(|_| StoreError::Key(format!("entry {} is not a 32-byte key", n + 1)))?;
            keys.push(Key::new(&secret));
        }
        if keys.is_empty() {
            return Err(StoreError::Key("the keyring holds no key".into()));
        }
        Ok(Self { keys })
    }

    /// A new random key, as a keyring line.
    pub fn new_key_line() -> Result<String> {
        let mut secret = [0u8; KEY_BYTES];
        getrandom::fill(&mut secret).map_err(|e| StoreError::Key(format!("no randomness: {e}")))?;
        Ok(STANDARD.encode(secret))
    }

    /// The keyring for a store: from [`KEY_ENV`] if it is set, else from the
    /// file at `path`, which is created with one new key (readable by its
    /// owner alone) when it does not exist yet.
    pub fn for_store(path: &Path) -> Result<Self> {
        if let Ok(text) = std::env::var(KEY_ENV)
            && !text.trim().is_empty()
        {
            return Self::parse(&text).map_err(|e| StoreError::Key(format!("{KEY_ENV}: {e}")));
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let line = Self::new_key_line()?;
                let text = format!(
                    "# Dripline's store keys: the first seals, the others only open.\n\
                     # Keep this file apart from the database; see README \"Personal data\".\n\
                     {line}\n"
                );
                write_private(path, &text)?;
                text
            }
            Err(e) => return Err(StoreError::Key(format!("reading {}: {e}", path.display()))),
        };
        Self::parse(&text).map_err(|e| StoreError::Key(format!("{}: {e}", path.display())))
    }

    /// The current key's id, as the store records it.
    pub fn current_id(&self) -> String {
        hex_id(&self.current().id)
    }

    fn current(&self) -> &Key {
        &self.keys[0]
    }

    /// `plain` sealed under the current key, bound to `place`.
    pub fn seal(&self, place: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let key = self.current();
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Key(format!("no randomness: {e}")))?;
        let sealed = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Internal("sealing failed"))?;
        let mut out = Vec::with_capacity(MAGIC.len() + ID_BYTES + NONCE_BYTES + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// What `stored` holds: opened if it was sealed (under any key of the
    /// ring, for `place`), as it is if it was not.
    pub fn open(&self, place: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        let Some(rest) = stored.strip_prefix(MAGIC.as_slice()) else {
            return Ok(stored);
        };
        if rest.len() < ID_BYTES + NONCE_BYTES {
            return Err(StoreError::Corrupt(format!(
                "a sealed value of {place} is cut short"
            )));
        }
        let (id, rest) = rest.split_at(ID_BYTES);
        let (nonce, sealed) = rest.split_at(NONCE_BYTES);
        let key = self.keys.iter().find(|k| k.id == id).ok_or_else(|| {
            StoreError::Key(format!(
                "{place} was sealed with key {}, which the keyring does not hold",
                hex_id(id)
            ))
        })?;
        let nonce = XNonce::try_from(nonce)
            .map_err(|_| StoreError::Internal("the nonce is split at its length"))?;
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Corrupt(format!("the sealed value of {place} does not open")))
    }

    /// Whether `stored` is sealed under the current key.
    pub fn is_current(&self, stored: &[u8]) -> bool {
        stored
            .strip_prefix(MAGIC.as_slice())
            .is_some_and(|rest| rest.starts_with(&self.current().id))
    }

    /// The blind index of `value` of kind `kind` under the current key: 43
    /// characters of base64.
    pub fn blind(&self, kind: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.current().index)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(kind.as_bytes());
        mac.update(&[0x1f]);
        mac.update(value.as_bytes());
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// Writes `text` to a new file at `path` that only its owner may read.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| StoreError::Key(format!("creating {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::Key(format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ring(lines: &[&str]) -> Keyring {
        Keyring::parse(&lines.join("\n")).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_own_place() {
        let key = Keyring::new_key_line().unwrap();
        let keys = ring(&[&key]);
        let sealed = keys
            .seal("contacts.profile:c_1", b"{\"name\":\"Ana\"}")
            .unwrap();
        assert!(!sealed.windows(3).any(|w| w == b"Ana"));
        assert_eq!(
            keys.open("contacts.profile:c_1", sealed.clone()).unwrap(),
            b"{\"name\":\"Ana\"}"
        );
        assert!(keys.open("contacts.profile:c_2", sealed).is_err());
    }

    #[test]
    fn after_a_rotation_the_old_key_still_opens_what_it_sealed() {
        let old = Keyring::new_key_line().unwrap();
        let new = Keyring::new_key_line().unwrap();
        let sealed = ring(&[&old]).seal("p", b"x").unwrap();
        let rotated = ring(&[&new, &old]);
        assert!(!rotated.is_current(&sealed));
        assert_eq!(rotated.open("p", sealed.clone()).unwrap(), b"x");
        let err = ring(&[&new]).open("p", sealed).unwrap_err();
        assert!(err.to_string().contains("does not hold"), "{err}");
    }

    #[test]
    fn plain_values_from_before_sealing_read_as_they_are() {
        let keys = ring(&[&Keyring::new_key_line().unwrap()]);
        assert_eq!(keys.open("p", b"{}".to_vec()).unwrap(), b"{}");
    }

    #[test]
    fn blind_indexes_are_equal_for_equal_identities_and_keyed() {
        let a = ring(&[&Keyring::new_key_line().unwrap()]);
        let b = ring(&[&Keyring::new_key_line().unwrap()]);
        assert_eq!(a.blind("email", "x@y.z"), a.blind("email", "x@y.z"));
        assert_ne!(a.blind("email", "x@y.z"), a.blind("phone", "x@y.z"));
        assert_ne!(a.blind("email", "x@y.z"), b.blind("email", "x@y.z"));
    }

    #[test]
    fn a_keyring_that_is_not_base64_keys_is_refused_naming_the_entry() {
        let err = Keyring::parse("# a comment, with a comma\nnot-a-key")
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry 1"), "{err}");
        let made = format!("# c, d\n{}\n", Keyring::new_key_line().unwrap());
        assert!(Keyring::parse(&made).is_ok());
        assert!(Keyring::parse("# only a comment").is_err());
        let short = STANDARD.encode([0u8; 16]);
        assert!(
            Keyring::parse(&short)
                .unwrap_err()
                .to_string()
                .contains("32-byte")
        );
    }
}

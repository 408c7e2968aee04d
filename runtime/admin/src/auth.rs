//! Who may call the admin API: bearer tokens, each with a role, each role a
//! set of scopes.
//!
//! Tokens are kept hashed in `admin-tokens.toml` in the data directory
//! (`dripline token new` writes it and prints the token once): a copy of the
//! file lets nobody in. A token is 32 random bytes, so one SHA-256 of it is
//! as strong as a password hash of a weak password, and every stored hash is
//! compared in constant time, all of them, so the answer's timing says
//! nothing about which hash came close. No file, or an empty one, means no
//! caller gets in (deny by default).
//!
//! The roles follow how the guides divide the work: marketing plans journeys
//! and reads their figures, but sees contacts masked; operations also runs
//! journeys (pause, resume, drain, canaries) and reads personal data and the
//! outbox; engineering may do everything.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The file beside the database that holds the tokens' hashes.
pub const TOKENS_FILE: &str = "admin-tokens.toml";

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Journeys and their analytics; contacts with personal data masked.
    Marketing,
    /// Marketing's scopes, and running journeys, personal data and the
    /// outbox.
    Operations,
    /// Everything.
    Engineering,
}

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// List journeys, their versions, counts and analytics.
    JourneysRead,
    /// Pause, resume and drain journeys; start, promote and roll back canaries.
    JourneysWrite,
    /// Find contacts and read their profile, enrollments and timeline.
    ContactsRead,
    /// See identities (email, phone) and message bodies unmasked.
    PersonalData,
    /// List the outbox.
    OutboxRead,
    /// Erase contacts, and hand over what is kept of one (a data subject's
    /// requests).
    ContactsErase,
    /// Read the counters (`/api/metrics`, `/metrics`).
    MetricsRead,
    /// Run simulations and previews.
    Simulate,
}

impl Role {
    /// The scopes of the role.
    pub fn scopes(self) -> &'static [Scope] {
        use Scope::*;
        match self {
            Role::Marketing => &[JourneysRead, ContactsRead, Simulate],
            // The counters are the infrastructure's figures: engineering's.
            Role::Operations => &[
                JourneysRead,
                JourneysWrite,
                ContactsRead,
                PersonalData,
                OutboxRead,
                ContactsErase,
                Simulate,
            ],
            Role::Engineering => &[
                JourneysRead,
                JourneysWrite,
                ContactsRead,
                PersonalData,
                OutboxRead,
                ContactsErase,
                MetricsRead,
                Simulate,
            ],
        }
    }

    /// Whether the role has `scope`.
    pub fn may(self, scope: Scope) -> bool {
        self.scopes().contains(&scope)
    }
}

/// One token as the file keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredToken {
    /// Who or what holds it, for the logs.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The SHA-256 of the token, in hex.
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<StoredToken>,
}

/// The caller a token identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// Whether the caller may read personal data unmasked.
    pub fn reads_personal_data(&self) -> bool {
        self.role.may(Scope::PersonalData)
    }
}

/// The tokens of a deployment, read again when the file changes, so that a
/// token added or revoked takes effect without a restart.
pub struct Tokens {
    path: PathBuf,
    loaded: Mutex<(Option<SystemTime>, Vec<StoredToken>)>,
}

impl Tokens {
    /// The tokens of `path`; the file is read when first needed.
    pub fn at(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            loaded: Mutex::new((None, Vec::new())),
        }
    }

    /// A fixed set, for tests.
    pub fn fixed(tokens: Vec<StoredToken>) -> Self {
        Self {
            path: PathBuf::new(),
            loaded: Mutex::new((Some(SystemTime::UNIX_EPOCH), tokens)),
        }
    }

    /// The caller `presented` belongs to, if any.
    pub fn check(&self, presented: &str) -> Option<Caller> {
        let digest = Sha256::digest(presented.as_bytes());
        let mut loaded = match self.loaded.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.refresh(&mut loaded);
        let mut found = None;
        // Every hash is compared, found or not: the time taken does not
        // depend on where (or whether) the token is in the file.
        for token in &loaded.1 {
            let Ok(stored) = hex::decode(&token.sha256) else {
                continue;
            };
            if bool::from(stored.ct_eq(digest.as_slice())) && found.is_none() {
                found = Some(Caller {
                    name: token.name.clone(),
                    role: token.role,
                });
            }
        }
        found
    }

    /// How many tokens there are (0: the admin API lets nobody in).
    pub fn count(&self) -> usize {
        let mut loaded = match self.loaded.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.refresh(&mut loaded);
        loaded.1.len()
    }

    fn refresh(&self, loaded: &mut (Option<SystemTime>, Vec<StoredToken>)) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified.is_some() && modified == loaded.0 {
            return;
        }
        *loaded = (
            modified,
            read_file(&self.path).unwrap_or_else(|e| {
                // A file that does not read lets nobody in rather than the
                // tokens it held before: a revocation must not fail open.
                tracing::error!(
                    "{}: {e}; the admin API refuses every token",
                    self.path.display()
                );
                Vec::new()
            }),
        );
    }
}

/// The tokens the file at `path` holds (none if it does not exist).
pub fn read_tokens(path: &Path) -> Result<Vec<StoredToken>, String> {
    read_file(path)
}

fn read_file(path: &Path) -> Result<Vec<StoredToken>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let file: TokensFile = toml::from_str(&text).map_err(|e| e.to_string())?;
    Ok(file.token)
}

/// A new token for `name` with `role`: the token (shown once) and what the
/// file keeps of it.
pub fn new_token(name: &str, role: Role) -> Result<(String, StoredToken), String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    let token = format!(
        "dl_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let stored = StoredToken {
        name: name.to_owned(),
        role,
        sha256: hex::encode(Sha256::digest(token.as_bytes())),
    };
    Ok((token, stored))
}

/// Adds a token's hash to the file at `path` (created `0600` if absent).
pub fn add_to_file(path: &Path, stored: StoredToken) -> Result<(), String> {
    let mut file = match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str::<TokensFile>(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokensFile::default(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if file.token.iter().any(|t| t.name == stored.name) {
        return Err(format!(
            "a token named {:?} exists; revoke it first",
            stored.name
        ));
    }
    file.token.push(stored);
    write_file(path, &file)
}

/// Removes the token named `name`; whether there was one.
pub fn revoke_in_file(path: &Path, name: &str) -> Result<bool, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut file: TokensFile =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let before = file.token.len();
    file.token.retain(|t| t.name != name);
    let removed = file.token.len() != before;
    write_file(path, &file)?;
    Ok(removed)
}

fn write_file(path: &Path, file: &TokensFile) -> Result<(), String> {
    use std::io::Write as _;
    let text = toml::to_string(file).map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let temporary = path.with_extension("toml.new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(&temporary)
        .map_err(|e| format!("{}: {e}", temporary.display()))?;
    out.write_all(b"# Admin API tokens, hashed (SHA-256). Made by `dripline token new`.\n")
        .and_then(|()| out.write_all(text.as_bytes()))
        .and_then(|()| out.sync_all())
        .map_err(|e| format!("{}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_is_known_by_its_hash_and_a_wrong_one_is_not() {
        let (token, stored) = new_token("alice", Role::Marketing).unwrap();
        assert!(token.starts_with("dl_") && token.len() > 40);
        assert!(!stored.sha256.contains(&token[3..]));
        let tokens = Tokens::fixed(vec![stored]);
        assert_eq!(
            tokens.check(&token),
            Some(Caller {
                name: "alice".into(),
                role: Role::Marketing
            })
        );
        assert_eq!(tokens.check("dl_wrong"), None);
        assert_eq!(tokens.check(""), None);
    }

    #[test]
    fn the_file_is_private_and_a_revoked_token_stops_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKENS_FILE);
        let (token, stored) = new_token("ops", Role::Operations).unwrap();
        add_to_file(&path, stored.clone()).unwrap();
        assert!(add_to_file(&path, stored).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let tokens = Tokens::at(&path);
        assert_eq!(tokens.check(&token).map(|c| c.role), Some(Role::Operations));
        // The file's time may not move within its resolution: wait it out.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(revoke_in_file(&path, "ops").unwrap());
        let tokens = Tokens::at(&path);
        assert_eq!(tokens.check(&token), None);
    }

    #[test]
    fn only_roles_with_the_scope_read_personal_data() {
        assert!(!Role::Marketing.may(Scope::PersonalData));
        assert!(!Role::Marketing.may(Scope::OutboxRead));
        assert!(Role::Operations.may(Scope::PersonalData));
        assert!(Role::Engineering.may(Scope::OutboxRead));
    }
}

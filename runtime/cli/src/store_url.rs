//! Which store a deployment runs on, named by a URL: `sqlite:<path>` (the
//! embedded default, one file) or `redis://...` (the store that many workers
//! and a gateway under Spin share).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use dripline_gateway_host::GatewayStore;
use dripline_store::seal::Keyring;
use dripline_store::{RedisStore, SqliteStore, Store};

/// The environment variable naming the file of a SQLite store's keyring.
pub const KEY_FILE_ENV: &str = "DRIPLINE_STORE_KEY_FILE";

/// Where the keyring of the SQLite file at `database` is read from (and
/// created, the first time): `DRIPLINE_STORE_KEY_FILE`, else `store.key` in
/// the database's directory. `DRIPLINE_STORE_KEY`, if set, holds the keyring
/// itself and wins over both.
pub fn key_file(database: &std::path::Path) -> PathBuf {
    match std::env::var_os(KEY_FILE_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => database.with_file_name("store.key"),
    }
}

/// A store's URL, parsed.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A Redis server: `redis://`, `rediss://` (TLS) or `redis+unix://`.
    Redis(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    "`sqlite:` needs the database file's path: sqlite:.dripline/dripline.db".into(),
                );
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if ["redis://", "rediss://", "redis+unix://"]
            .iter()
            .any(|scheme| s.starts_with(scheme))
        {
            return Ok(StoreUrl::Redis(s.to_owned()));
        }
        Err(format!(
            "`{}` is not a store URL: sqlite:<path> or redis://host:port[/db]",
            dripline_store::redis::redacted(s)
        ))
    }
}

impl StoreUrl {
    /// The URL itself, password included: for handing to a child process,
    /// never for a log.
    pub fn to_url(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
            StoreUrl::Redis(url) => url.clone(),
        }
    }
}

/// Shown with any password masked: the URL appears in logs and errors.
impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreUrl::Redis(url) => f.write_str(&dripline_store::redis::redacted(url)),
        }
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// An open store, kept as its own type so that it can be handed out both as
/// the whole [`Store`] and as the gateway's narrower [`GatewayStore`].
#[derive(Clone)]
pub enum OpenStore {
    /// On SQLite.
    Sqlite(Arc<SqliteStore>),
    /// On Redis.
    Redis(Arc<RedisStore>),
}

impl OpenStore {
    /// Opens the store `url` names (creating a SQLite file's directory, and its
    /// keyring the first time: see [`key_file`]).
    pub fn open(url: &StoreUrl) -> anyhow::Result<Self> {
        Ok(match url {
            StoreUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let keys = Keyring::for_store(&key_file(path))
                    .with_context(|| format!("the keyring of {url}"))?;
                OpenStore::Sqlite(Arc::new(
                    SqliteStore::open_sealed(path, keys)
                        .with_context(|| format!("opening {url}"))?,
                ))
            }
            StoreUrl::Redis(address) => OpenStore::Redis(Arc::new(
                RedisStore::open(address).with_context(|| format!("opening {url}"))?,
            )),
        })
    }

    /// The whole store.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            OpenStore::Sqlite(s) => s.clone(),
            OpenStore::Redis(s) => s.clone(),
        }
    }

    /// The outbox, as the admin API lists it.
    pub fn outbox(&self) -> Arc<dyn dripline_store::Outbox> {
        match self {
            OpenStore::Sqlite(s) => s.clone(),
            OpenStore::Redis(s) => s.clone(),
        }
    }

    /// What the webhook gateway may touch of it.
    pub fn gateway(&self) -> Arc<dyn GatewayStore> {
        match self {
            OpenStore::Sqlite(s) => s.clone(),
            OpenStore::Redis(s) => s.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_a_sqlite_file_or_a_redis_server_and_nothing_else() {
        assert_eq!(
            "sqlite:data/d.db".parse::<StoreUrl>(),
            Ok(StoreUrl::Sqlite("data/d.db".into()))
        );
        assert_eq!(
            "sqlite:///abs/d.db".parse::<StoreUrl>(),
            Ok(StoreUrl::Sqlite("/abs/d.db".into()))
        );
        assert!(matches!(
            "redis://127.0.0.1:6379/2".parse::<StoreUrl>(),
            Ok(StoreUrl::Redis(_))
        ));
        let refused = "postgres://u:hunter2@db/x"
            .parse::<StoreUrl>()
            .err()
            .unwrap_or_default();
        assert!(refused.contains("not a store URL"), "{refused}");
        assert!(!refused.contains("hunter2"), "{refused}");
        assert!("sqlite:".parse::<StoreUrl>().is_err());
        let shown = "redis://:hunter2@h:1"
            .parse::<StoreUrl>()
            .map(|u| u.to_string());
        assert_eq!(shown, Ok("redis://:***@h:1".to_string()));
    }
}

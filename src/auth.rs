//! API keys: who is calling, for which site, with which scopes.
//!
//! Keys are random 256-bit secrets shown once at creation and stored as their
//! SHA-256 hash. Lookups are cached for a short while so that an RPC does not
//! pay a database round trip for its key; the price is that a key removed from
//! the database keeps working for up to [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};
use crate::storage::{Grant, Store};

pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// How long an unknown key stays unknown without asking the database again,
/// so that a client retrying a wrong key does not cost a query per call.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(5);
/// Past this many entries, expired ones are dropped, and unknown keys are no
/// longer remembered (a flood of random keys cannot grow the cache).
const CACHE_LIMIT: usize = 10_000;
const KEY_PREFIX: &str = "cdk_";

/// A scope a key may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn parse_list(list: &str) -> Result<(bool, bool), String> {
        let (mut read, mut write) = (false, false);
        for scope in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match scope {
                "read" => read = true,
                "write" => write = true,
                other => {
                    return Err(format!(
                        "unknown scope {other:?}; scopes are read and write"
                    ));
                }
            }
        }
        if read || write {
            Ok((read, write))
        } else {
            Err("give at least one scope: read, write".into())
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub site_id: i64,
    pub app: Arc<str>,
    pub can_read: bool,
    pub can_write: bool,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<()> {
        let granted = match scope {
            Scope::Read => self.can_read,
            Scope::Write => self.can_write,
        };
        if granted {
            Ok(())
        } else {
            let name = if scope == Scope::Read {
                "read"
            } else {
                "write"
            };
            Err(Error::PermissionDenied(format!(
                "this key lacks the {name} scope"
            )))
        }
    }
}

/// Callers by key hash (`None`: no such key), with the time they were looked up.
type KeyCache = HashMap<[u8; 32], (Option<Caller>, Instant)>;

fn fresh(caller: &Option<Caller>, at: Instant) -> bool {
    at.elapsed()
        < if caller.is_some() {
            CACHE_TTL
        } else {
            UNKNOWN_TTL
        }
}

/// Resolves `authorization: Bearer <key>` metadata to a [`Caller`].
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    cache: Arc<Mutex<KeyCache>>,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Default::default(),
        }
    }

    pub async fn caller(&self, metadata: &MetadataMap) -> Result<Caller> {
        let header = metadata.get("authorization").ok_or(Error::Unauthenticated(
            "missing authorization metadata: send `authorization: Bearer <key>`",
        ))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or(Error::Unauthenticated(
                "malformed authorization metadata: send `authorization: Bearer <key>`",
            ))?;
        let hash = hash_key(key);
        let cached = match self.cache.lock().expect("cache lock").get(&hash) {
            Some((caller, at)) if fresh(caller, *at) => Some(caller.clone()),
            _ => None,
        };
        let caller = match cached {
            Some(caller) => caller,
            None => {
                let caller = self.store.find_key(&hash).await?.map(|record| Caller {
                    site_id: record.site_id,
                    app: record.app.into(),
                    can_read: record.can_read,
                    can_write: record.can_write,
                });
                let mut cache = self.cache.lock().expect("cache lock");
                if cache.len() >= CACHE_LIMIT {
                    cache.retain(|_, (caller, at)| fresh(caller, *at));
                }
                if caller.is_some() || cache.len() < CACHE_LIMIT {
                    cache.insert(hash, (caller.clone(), Instant::now()));
                }
                caller
            }
        };
        caller.ok_or(Error::Unauthenticated("unknown API key"))
    }
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Creates a key for `app` on `site` and returns it; only its hash is stored.
pub async fn create_key(
    store: &Store,
    site: &str,
    app: &str,
    read: bool,
    write: bool,
) -> Result<String> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let grant = Grant {
        app,
        can_read: read,
        can_write: write,
    };
    store.create_key(site, &hash_key(&key), &grant).await?;
    Ok(key)
}

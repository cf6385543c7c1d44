//! All SQL lives here: the connection pool, migrations, and the queries of
//! contacts and keys. Callers above see domain types and [`Error`] only.

pub mod contacts;
pub mod feed;
mod keys;
mod pool;
pub mod readers;
pub mod sql;
mod tx;

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::NoTls;

pub use contacts::Reconciled;
pub use keys::{Grant, KeyRecord};
pub use pool::{ABANDONED_GRACE, Exclusive};
pub use tx::Tx;

use crate::error::{Error, Result};

refinery::embed_migrations!("src/storage/migrations");

/// Serializes migrations of replicas that start at the same time.
const MIGRATION_LOCK: i64 = 0x636f_6e74_6163_7473; // "contacts"

/// How the store uses the database: how many connections, and how long a
/// call may wait for one to answer before it fails as unavailable.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Connections for writes, scans and the feed's pages, each call its own.
    pub pool_size: usize,
    /// Connections shared by point reads, in addition to the pool.
    pub read_connections: usize,
    /// How long a point read waits, getting its shared connection included.
    pub read_timeout: Duration,
    /// How long any other call waits, getting its connection included.
    pub timeout: Duration,
}

impl Default for DbSettings {
    fn default() -> Self {
        Self {
            pool_size: 16,
            read_connections: 2,
            read_timeout: readers::DEFAULT_READ_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// How long a call on a pooled connection waits by default: well above a
/// write that queues behind others for the same keys, well below TCP's own
/// quarter of an hour.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The service's handle on PostgreSQL: a pool of connections, and a few
/// shared ones for point reads.
#[derive(Clone)]
pub struct Store {
    pool: deadpool_postgres::Pool,
    /// The pool's connections to check before they are used again.
    suspects: std::sync::Arc<pool::Suspects>,
    readers: std::sync::Arc<readers::Readers>,
    timeout: Duration,
    /// Signs the opaque tokens the service hands out; shared by all replicas.
    secret: std::sync::Arc<[u8]>,
}

impl Store {
    /// Connects to `url`, creating the database if it does not exist and
    /// bringing its schema up to date. The pool's connections serve writes
    /// and scans, each call its own (see `Store::exclusive`); the read
    /// connections are shared by point reads (see [`readers`]).
    pub async fn connect(url: &str, settings: &DbSettings) -> Result<Self> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| Error::Internal(format!("invalid database URL: {e}")))?;
        config.connect_timeout(Duration::from_secs(5));
        if config.get_application_name().is_none() {
            config.application_name("contactsd");
        }
        create_database_if_missing(&config).await?;
        migrate(&config).await?;

        // TCP keepalives find connections a network cut left half-open.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        let readers = readers::Readers::new(
            config.clone(),
            settings.read_connections,
            settings.read_timeout,
        )?;
        let (pool, suspects) = pool::build(config, settings.pool_size, settings.timeout)?;
        let secret: Vec<u8> = pool
            .get()
            .await?
            .query_one("SELECT secret FROM server_secret", &[])
            .await?
            .get(0);
        Ok(Self {
            pool,
            suspects,
            readers: readers.into(),
            timeout: settings.timeout,
            secret: secret.into(),
        })
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// How many connections the pool holds, idle or in use (for tests).
    #[doc(hidden)]
    pub fn pooled_connections(&self) -> usize {
        self.pool.status().size
    }

    /// Runs `work` on a pooled connection of its own, for at most the
    /// timeout, getting the connection included. Past that the call fails
    /// as unavailable instead of waiting until TCP gives up, its connection
    /// is closed and its statement cancelled (see [`Exclusive`]), and the
    /// pool's other connections are checked before their next use. A call
    /// its caller abandons (a client's deadline, a client gone) has its
    /// statement cancelled and its connection closed the same way, unless
    /// it was settled (no transaction open) and the statement finishes
    /// within [`pool::ABANDONED_GRACE`] (see [`Exclusive::call`]).
    async fn exclusive<T>(&self, work: impl AsyncFnOnce(&Exclusive) -> Result<T>) -> Result<T> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let conn = match tokio::time::timeout_at(deadline, self.pool.get()).await {
            Ok(conn) => Exclusive::new(conn?),
            Err(_) => return Err(timed_out("no pooled connection was free", self.timeout)),
        };
        let result = tokio::time::timeout_at(deadline, conn.call(work)).await;
        result.unwrap_or_else(|_| {
            // Its state is unknown: it is closed at once and what it was
            // running cancelled (see `Exclusive`), with none of the grace an
            // abandoned call's statement gets, since it may never answer. The pool's
            // other connections share its path and may have gone silent with
            // it; each is checked before it is used again, so a silent one
            // costs its caller a short check, not a timeout, and a healthy
            // one a round trip, not a reconnect (a timeout may as well be a
            // lock wait).
            conn.unsettle();
            drop(conn);
            self.suspects.mark();
            tracing::warn!(
                "a pooled connection answered nothing within {:?}; closed it, checking the others",
                self.timeout
            );
            Err(timed_out(
                "a pooled connection answered nothing",
                self.timeout,
            ))
        })
    }
}

/// A pool of `size` connections set up as the store's: the same session
/// settings (see `pool::build`), so that `contactsd-bench`'s bare-SQL
/// baseline runs its writes on sessions that cost the database what the
/// server's do. Not for serving: the store builds its own.
#[doc(hidden)]
pub fn baseline_pool(
    config: tokio_postgres::Config,
    size: usize,
) -> Result<deadpool_postgres::Pool> {
    pool::build(config, size, DEFAULT_TIMEOUT).map(|(pool, _)| pool)
}

/// A call that got no answer within `timeout`: retryable, its detail logged only.
fn timed_out(what: &str, timeout: Duration) -> Error {
    Error::Unavailable(format!("{what} within {timeout:?}"))
}

/// Opens one connection outside the pool (for migrations and administration).
async fn connect_once(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "administrative connection ended");
        }
    });
    Ok(client)
}

async fn create_database_if_missing(config: &tokio_postgres::Config) -> Result<()> {
    let Some(name) = config.get_dbname().filter(|n| *n != "postgres") else {
        return Ok(());
    };
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect_once(&admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match client.batch_execute(&sql).await {
            Ok(()) => tracing::info!(database = name, "created database"),
            // Another replica created it first.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn migrate(config: &tokio_postgres::Config) -> Result<()> {
    let mut client = connect_once(config).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = migrations::runner().run_async(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = report.map_err(|e| Error::Internal(format!("migrating the database: {e}")))?;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    Ok(())
}

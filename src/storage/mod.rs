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
pub use tx::Tx;

use crate::error::{Error, Result};

refinery::embed_migrations!("src/storage/migrations");

/// Serializes migrations of replicas that start at the same time.
const MIGRATION_LOCK: i64 = 0x636f_6e74_6163_7473; // "contacts"

/// The service's handle on PostgreSQL: a pool of connections, and a few
/// shared ones for point reads.
#[derive(Clone)]
pub struct Store {
    pool: deadpool_postgres::Pool,
    readers: std::sync::Arc<readers::Readers>,
    /// Signs the opaque tokens the service hands out; shared by all replicas.
    secret: std::sync::Arc<[u8]>,
}

impl Store {
    /// Connects to `url`, creating the database if it does not exist and
    /// bringing its schema up to date. `pool_size` connections serve writes
    /// and scans, each call its own; `read_connections` more are shared by
    /// point reads, each waiting `read_timeout` at most (see [`readers`]).
    pub async fn connect(
        url: &str,
        pool_size: usize,
        read_connections: usize,
        read_timeout: Duration,
    ) -> Result<Self> {
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
        let readers = readers::Readers::new(config.clone(), read_connections, read_timeout)?;
        let pool = pool::build(config, pool_size)
            .map_err(|e| Error::Internal(format!("building the pool: {e}")))?;
        let secret: Vec<u8> = pool
            .get()
            .await?
            .query_one("SELECT secret FROM server_secret", &[])
            .await?
            .get(0);
        Ok(Self {
            pool,
            readers: readers.into(),
            secret: secret.into(),
        })
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
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

//! Command line and environment. Every flag has an environment variable; the
//! database URL is global (before or after a subcommand).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/contacts";

#[derive(Debug, Parser)]
#[command(name = "contactsd", version, about = "The contacts gRPC service")]
pub struct Cli {
    /// PostgreSQL connection URL; the database is created if missing.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,

    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints it as the last line of stdout (it is not shown again).
    Create {
        /// The site's name; created if it does not exist.
        #[arg(long, env = "CONTACTS_SITE")]
        site: String,
        /// The app the key is for; recorded with every change it makes.
        #[arg(long, env = "CONTACTS_APP")]
        app: String,
        /// Comma-separated scopes: read, write.
        #[arg(long, env = "CONTACTS_SCOPES", default_value = "read,write")]
        scopes: String,
    },
}

/// Server settings, accepted with or without the `serve` subcommand.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "CONTACTS_LISTEN",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub listen: SocketAddr,

    /// Region for phones written without a country code, when a request names none.
    #[arg(
        long,
        env = "CONTACTS_DEFAULT_REGION",
        default_value = "US",
        global = true
    )]
    pub default_region: String,

    /// Threads that run RPCs (default: one per CPU).
    #[arg(
        long,
        env = "CONTACTS_WORKER_THREADS",
        global = true,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub worker_threads: Option<usize>,

    /// Seconds an idle watch stream waits before sending a heartbeat.
    #[arg(
        long,
        env = "CONTACTS_HEARTBEAT_SECS",
        default_value_t = 15.0,
        global = true
    )]
    pub heartbeat_secs: f64,

    /// Seconds change records are kept; older watch cursors are expired (default 7 days).
    #[arg(
        long,
        env = "CONTACTS_FEED_RETENTION_SECS",
        default_value_t = 604_800,
        global = true
    )]
    pub feed_retention_secs: u64,

    /// Milliseconds between the change feed's reads of new changes.
    #[arg(
        long,
        env = "CONTACTS_FEED_POLL_MS",
        default_value_t = 20,
        global = true
    )]
    pub feed_poll_ms: u64,

    /// Maximum number of database connections.
    #[arg(
        long,
        env = "CONTACTS_DB_POOL_SIZE",
        default_value_t = 16,
        global = true
    )]
    pub db_pool_size: usize,

    /// Database connections shared by point reads (GetContact, ListContacts
    /// by email or phone), which pipeline their queries; in addition to the pool.
    #[arg(
        long,
        env = "CONTACTS_DB_READ_CONNECTIONS",
        default_value_t = 2,
        global = true
    )]
    pub db_read_connections: usize,

    /// Milliseconds a point read waits, getting its shared connection
    /// included. A connection that answers nothing for this long is
    /// replaced, and the read fails with UNAVAILABLE instead of hanging
    /// until TCP gives up.
    #[arg(
        long,
        env = "CONTACTS_DB_READ_TIMEOUT_MS",
        default_value_t = 5_000,
        global = true,
        value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..)
    )]
    pub db_read_timeout_ms: u64,

    /// Milliseconds any other database call (a write, a listing that is not
    /// a point read, a page of the change feed or a batch of its pruning, a
    /// key lookup) waits, getting its pooled connection included. Past that
    /// it fails with UNAVAILABLE, its statement is cancelled and its
    /// connection closed, and the pool's other connections are checked
    /// before their next use: nothing waits on a silent connection until
    /// TCP gives up.
    #[arg(
        long,
        env = "CONTACTS_DB_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true,
        value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..)
    )]
    pub db_timeout_ms: u64,

    /// Seconds a shutdown waits for calls in flight (a watch stream whose
    /// client stopped reading never finishes on its own) before cutting them off.
    #[arg(
        long,
        env = "CONTACTS_SHUTDOWN_GRACE_SECS",
        default_value_t = 10.0,
        global = true
    )]
    pub shutdown_grace_secs: f64,
}

/// What the server needs to start; built from [`Cli`] or directly by tests.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub default_region: crate::domain::Region,
    /// Connections, and how long a database call may wait for an answer.
    pub db: crate::storage::DbSettings,
    pub feed: crate::feed::FeedSettings,
    /// How long a shutdown waits for calls in flight.
    pub shutdown_grace: Duration,
}

impl Settings {
    pub fn from_cli(cli: &Cli) -> Result<Self, String> {
        let default_region = crate::domain::Region::parse(&cli.serve.default_region)
            .map_err(|e| format!("--default-region: {e}"))?;
        Ok(Self {
            listen: cli.serve.listen,
            database_url: cli.database_url.clone(),
            default_region,
            db: crate::storage::DbSettings {
                pool_size: cli.serve.db_pool_size.max(1),
                read_connections: cli.serve.db_read_connections.max(1),
                read_timeout: Duration::from_millis(cli.serve.db_read_timeout_ms),
                timeout: Duration::from_millis(cli.serve.db_timeout_ms),
            },
            feed: crate::feed::FeedSettings {
                poll: Duration::from_millis(cli.serve.feed_poll_ms.max(1)),
                heartbeat: Duration::try_from_secs_f64(cli.serve.heartbeat_secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or("--heartbeat-secs must be a positive number of seconds")?,
                retention: Duration::from_secs(cli.serve.feed_retention_secs.max(1)),
                ..Default::default()
            },
            shutdown_grace: Duration::try_from_secs_f64(cli.serve.shutdown_grace_secs)
                .map_err(|_| "--shutdown-grace-secs must be a number of seconds, 0 or more")?,
        })
    }
}

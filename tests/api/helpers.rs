//! Spawns the real server on a random port against a fresh PostgreSQL
//! database per test, and drops that database afterwards.

use std::net::SocketAddr;

use contactsd::client::BearerAuth;
use contactsd::config::Settings;
use contactsd::pb;
use contactsd::pb::contacts_service_client::ContactsServiceClient;
use contactsd::{Application, auth};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

pub type Client = ContactsServiceClient<InterceptedService<Channel, BearerAuth>>;

/// Where the test databases live: `TEST_DATABASE_HOST` (host:port), default the local cluster.
pub fn database_host() -> String {
    std::env::var("TEST_DATABASE_HOST").unwrap_or_else(|_| "127.0.0.1:5432".into())
}

pub struct TestApp {
    pub address: SocketAddr,
    pub database: String,
    pub store: contactsd::storage::Store,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    /// Replicas share their first app's database and leave dropping it to it.
    owns_database: bool,
}

/// How long a test server's shutdown waits for calls in flight.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Feed settings for tests: heartbeats every 300 ms.
pub fn test_feed() -> contactsd::feed::FeedSettings {
    contactsd::feed::FeedSettings {
        heartbeat: std::time::Duration::from_millis(300),
        ..Default::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_via(&database_host()).await
}

/// Spawns the app connecting to PostgreSQL at `host` (a proxy, in outage tests).
pub async fn spawn_app_via(host: &str) -> TestApp {
    spawn(host, fresh_database(), true, |_| {}).await
}

/// Spawns the app via `host` with database calls that wait `timeout` at
/// most, two shared read connections (the stall tests count on them), and
/// a change feed that polls once an hour, so that only the test's own calls
/// use the database.
pub async fn spawn_app_for_stalls(host: &str, timeout: std::time::Duration) -> TestApp {
    spawn(host, fresh_database(), true, |s| {
        (s.db.read_timeout, s.db.timeout) = (timeout, timeout);
        s.db.read_connections = 2;
        s.feed.poll = std::time::Duration::from_secs(3600);
    })
    .await
}

/// Spawns the app via `host` with database calls that wait `timeout` at
/// most, and the test feed settings.
pub async fn spawn_app_with_db_timeout(host: &str, timeout: std::time::Duration) -> TestApp {
    spawn(host, fresh_database(), true, |s| {
        (s.db.read_timeout, s.db.timeout) = (timeout, timeout);
    })
    .await
}

/// Spawns the app with its own feed settings.
pub async fn spawn_app_with(feed: contactsd::feed::FeedSettings) -> TestApp {
    spawn(&database_host(), fresh_database(), true, |s| s.feed = feed).await
}

/// A database name no other test uses.
fn fresh_database() -> String {
    format!("contactsd_test_{}", uuid::Uuid::new_v4().simple())
}

/// Spawns another server on `app`'s database: a second replica.
pub async fn spawn_replica(app: &TestApp) -> TestApp {
    spawn(&database_host(), app.database.clone(), false, |_| {}).await
}

/// Spawns the app with the test settings, as `adjust` changes them.
async fn spawn(
    host: &str,
    database: String,
    owns_database: bool,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("postgres://postgres@{host}/{database}"),
        default_region: Default::default(),
        db: contactsd::storage::DbSettings {
            pool_size: 8,
            ..Default::default()
        },
        feed: test_feed(),
        shutdown_grace: SHUTDOWN_GRACE,
    };
    adjust(&mut settings);
    let app = Application::build(settings).await.expect("the app starts");
    let address = app.address();
    let store = app.store().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = rx.await;
            })
            .await;
    });
    TestApp {
        address,
        database,
        store,
        shutdown: Some(tx),
        server: Some(server),
        owns_database,
    }
}

impl TestApp {
    /// A new key on `site` with `scopes` ("read", "write" or "read,write").
    pub async fn key(&self, site: &str, scopes: &str) -> String {
        let (read, write) = auth::Scope::parse_list(scopes).unwrap();
        auth::create_key(&self.store, site, "test-app", read, write)
            .await
            .unwrap()
    }

    /// The id of `site`, which a key must have created.
    pub async fn site_id(&self, site: &str) -> i64 {
        self.db()
            .await
            .query_one("SELECT id FROM sites WHERE name = $1", &[&site])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn client_with_key(&self, key: &str) -> Client {
        authorized(self.channel().await, key)
    }

    /// A client with `key` whose HTTP/2 stream window is `bytes`: a stream it
    /// stops reading stalls the server once about that much is unread.
    pub async fn client_with_stream_window(&self, key: &str, bytes: u32) -> Client {
        let channel = self
            .endpoint()
            .initial_stream_window_size(bytes)
            .connect()
            .await
            .unwrap();
        authorized(channel, key)
    }

    /// A client with a read+write key on `site`.
    pub async fn client(&self, site: &str) -> Client {
        let key = self.key(site, "read,write").await;
        self.client_with_key(&key).await
    }

    pub async fn channel(&self) -> Channel {
        self.endpoint().connect().await.unwrap()
    }

    fn endpoint(&self) -> tonic::transport::Endpoint {
        Channel::from_shared(format!("http://{}", self.address)).unwrap()
    }

    pub fn database_url(&self) -> String {
        format!("postgres://postgres@{}/{}", database_host(), self.database)
    }

    /// A direct connection to the test database, to check what was stored
    /// or to stage a race.
    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.database_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Runs one query returning one number against the test database.
    pub async fn query_i64(&self, sql: &str) -> i64 {
        self.db().await.query_one(sql, &[]).await.unwrap().get(0)
    }
}

impl TestApp {
    /// Starts the server's graceful shutdown.
    pub fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Whether the server has stopped serving within `time`.
    pub async fn stopped_within(&mut self, time: std::time::Duration) -> bool {
        let Some(server) = self.server.as_mut() else {
            return true;
        };
        let stopped = tokio::time::timeout(time, server).await.is_ok();
        if stopped {
            self.server = None;
        }
        stopped
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shut_down();
        if !self.owns_database {
            return;
        }
        // Drop runs inside the test's runtime, so the cleanup gets its own thread and runtime.
        let database = self.database.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let url = format!("postgres://postgres@{}/postgres", database_host());
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

fn authorized(channel: Channel, key: &str) -> Client {
    ContactsServiceClient::with_interceptor(channel, BearerAuth::new(key).unwrap())
}

// ---- request builders ----

/// A read mask of `paths`.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

pub fn email(address: &str) -> pb::Email {
    pb::Email {
        email: address.into(),
        ..Default::default()
    }
}

pub fn phone(number: &str) -> pb::Phone {
    pb::Phone {
        phone: number.into(),
        ..Default::default()
    }
}

pub fn name(first: &str, last: &str) -> Option<pb::Name> {
    Some(pb::Name {
        first: first.into(),
        last: last.into(),
        ..Default::default()
    })
}

pub fn reconcile(contact: pb::Contact) -> pb::ReconcileRequest {
    pb::ReconcileRequest {
        contact: Some(contact),
        default_region: String::new(),
    }
}

pub fn with_email(address: &str) -> pb::Contact {
    pb::Contact {
        emails: vec![email(address)],
        ..Default::default()
    }
}

pub async fn create(client: &mut Client, contact: pb::Contact) -> pb::ReconcileResponse {
    client
        .reconcile(reconcile(contact))
        .await
        .expect("reconcile succeeds")
        .into_inner()
}

/// Creates `n` contacts one after another, `{prefix}{i}@example.com`; their ids.
pub async fn create_many(client: &mut Client, n: usize, prefix: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            create(client, with_email(&format!("{prefix}{i}@example.com")))
                .await
                .contact_id,
        );
    }
    ids
}

pub async fn get(client: &mut Client, id: &str) -> Result<pb::Contact, tonic::Status> {
    client
        .get_contact(pb::GetContactRequest {
            id: id.into(),
            read_mask: None,
        })
        .await
        .map(|r| r.into_inner())
}

// ---- assertions ----

/// Asserts an INVALID_ARGUMENT whose BadRequest names `field`.
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, tonic::Status>, field: &str) {
    let status = result.expect_err("the call is rejected");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad_request = status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries a BadRequest");
    let fields: Vec<_> = bad_request
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert!(
        fields.contains(&field),
        "expected a violation of {field:?}, got {fields:?}"
    );
}

pub fn assert_code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
) -> tonic::Status {
    let status = result.expect_err("the call fails");
    assert_eq!(status.code(), code, "{status:?}");
    status
}

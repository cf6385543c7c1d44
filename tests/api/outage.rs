//! A database outage, made real by a TCP proxy between the server and
//! PostgreSQL that the test cuts and restores, or that silently stops
//! forwarding on the connections already open (a black-holed path).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use contactsd::pb::ReconcileResponse;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::Code;

use crate::helpers::*;

/// Forwards connections to PostgreSQL while up; when cut, drops every open
/// connection and refuses new ones; when stalled, stops forwarding on the
/// open connections but keeps them open, and forwards new ones.
struct Proxy {
    address: String,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    stall: watch::Sender<u64>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (stall, _) = watch::channel(0u64);
        let (accept_up, accept_cut, accept_stall) = (up.clone(), cut.clone(), stall.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let mut cut = accept_cut.subscribe();
                let mut stall = accept_stall.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(database_host()).await else {
                        return;
                    };
                    tokio::select! {
                        // Biased: once cut or stalled, not one more byte passes,
                        // even when the copy is ready too.
                        biased;
                        _ = cut.changed() => {}
                        _ = stall.changed() => {
                            // Both sockets stay open and nothing passes: the
                            // kernel still acknowledges what the server sends.
                            let _ = cut.changed().await;
                        }
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Self {
            address,
            up,
            cut,
            stall,
        }
    }

    /// Open connections go silent; new ones are forwarded.
    fn stall_open_connections(&self) {
        self.stall.send_modify(|n| *n += 1);
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

#[tokio::test]
async fn a_database_outage_answers_unavailable_and_the_server_recovers() {
    let proxy = Proxy::start().await;
    let app = spawn_app_via(&proxy.address).await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;

    proxy.set_up(false);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let status = assert_code(
        get(&mut client, &created.contact_id).await,
        Code::Unavailable,
    );
    assert!(
        !status.message().contains("127.0.0.1"),
        "internal details stay inside: {status:?}"
    );
    assert_code(
        client
            .reconcile(reconcile(with_email("dina@example.com")))
            .await,
        Code::Unavailable,
    );

    proxy.set_up(true);
    let contact = get(&mut client, &created.contact_id)
        .await
        .expect("the server serves again once the database is back");
    assert_eq!(contact.etag, created.etag);
}

#[tokio::test]
async fn a_client_retrying_an_unknown_key_is_refused_without_asking_the_database_again() {
    let proxy = Proxy::start().await;
    let app = spawn_app_via(&proxy.address).await;
    let mut unknown = app.client_with_key("cdk_not-a-real-key").await;
    let any_id = || uuid::Uuid::new_v4().to_string();
    assert_code(get(&mut unknown, &any_id()).await, Code::Unauthenticated);

    // With the database gone, only a remembered answer can still be given.
    proxy.set_up(false);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for _ in 0..20 {
        assert_code(get(&mut unknown, &any_id()).await, Code::Unauthenticated);
    }
}

#[tokio::test]
async fn reads_right_after_the_database_dropped_the_servers_connections_succeed() {
    let proxy = Proxy::start().await;
    let app = spawn_app_via(&proxy.address).await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;
    let by_email = || contactsd::pb::ListContactsRequest {
        email: "dana@example.com".into(),
        ..Default::default()
    };
    // Open the shared read connections.
    for _ in 0..4 {
        get(&mut client, &created.contact_id).await.unwrap();
        client.list_contacts(by_email()).await.unwrap();
    }

    // A restart in miniature: every connection dropped, the database back at once.
    proxy.set_up(false);
    proxy.set_up(true);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for _ in 0..4 {
        let contact = get(&mut client, &created.contact_id)
            .await
            .expect("a dropped shared connection is replaced, not reported");
        assert_eq!(contact.etag, created.etag);
        let listed = client
            .list_contacts(by_email())
            .await
            .expect("a dropped shared connection is replaced, not reported");
        assert_eq!(listed.into_inner().contacts.len(), 1);
    }
}

/// The read timeout of most stall tests: short, so that they run fast, and
/// far above a healthy read even on a loaded machine.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A server whose point reads wait `read_timeout` at most and whose two shared
/// read connections have served a contact and then gone silent; the proxy
/// and the app must outlive the test's calls.
async fn with_stalled_read_connections(
    read_timeout: std::time::Duration,
) -> (Proxy, TestApp, Client, ReconcileResponse) {
    let proxy = Proxy::start().await;
    let app = spawn_app_for_stalls(&proxy.address, read_timeout).await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;
    // Round-robin: these open both shared read connections.
    for _ in 0..4 {
        get(&mut client, &created.contact_id).await.unwrap();
    }
    proxy.stall_open_connections();
    (proxy, app, client, created)
}

#[tokio::test]
async fn reads_on_a_shared_connection_that_stopped_answering_fail_fast_and_the_next_get_a_new_one()
{
    let (_proxy, _app, mut client, created) = with_stalled_read_connections(READ_TIMEOUT).await;
    // Without a deadline of its own, a read would wait until TCP gave up.
    let mut outcomes = Vec::new();
    for _ in 0..8 {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            get(&mut client, &created.contact_id),
        )
        .await
        .expect("a read on a stalled connection ends by the read timeout, not by TCP");
        outcomes.push((result, started.elapsed()));
    }
    let failures: Vec<_> = outcomes.iter().filter(|(r, _)| r.is_err()).collect();
    for (result, took) in &failures {
        let status = result.as_ref().unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            *took >= READ_TIMEOUT && *took < READ_TIMEOUT * 5,
            "failed after {took:?}, read timeout {READ_TIMEOUT:?}"
        );
    }
    assert!(
        !failures.is_empty() && failures.len() <= 2,
        "each of the two stalled connections fails one read, then is replaced: {} failures",
        failures.len()
    );
    for (result, _) in &outcomes[failures.len()..] {
        let contact = result
            .as_ref()
            .expect("once replaced, reads go to new connections");
        assert_eq!(contact.etag, created.etag);
    }
}

#[tokio::test]
async fn a_stalled_shared_connection_is_replaced_even_when_its_readers_gave_up_first() {
    let (_proxy, _app, mut client, created) = with_stalled_read_connections(READ_TIMEOUT).await;
    // Clients whose deadlines are shorter than the read timeout cancel their
    // reads before the server's own wait runs out, on both connections.
    give_up_on_reads(&mut client, &created.contact_id).await;
    tokio::time::sleep(READ_TIMEOUT).await;

    // Both connections have had a question unanswered for longer than the
    // read timeout: the next reads go to new ones at once, without failing.
    // (A read sent to a stalled connection would fail after the read timeout.)
    for _ in 0..4 {
        let contact = get(&mut client, &created.contact_id)
            .await
            .expect("a connection known to be stalled is not used again");
        assert_eq!(contact.etag, created.etag);
    }
}

#[tokio::test]
async fn a_stalled_shared_connection_left_idle_after_its_readers_gave_up_is_closed_not_pooled() {
    // A read timeout longer than the idle limit (2 s): the connections are
    // retired for idleness before they count as stalled.
    let read_timeout = std::time::Duration::from_secs(5);
    let (_proxy, _app, mut client, created) = with_stalled_read_connections(read_timeout).await;
    give_up_on_reads(&mut client, &created.contact_id).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_300)).await;

    // Pooled again, a retired connection would be handed out at once (or hang
    // its idle check) and this read would wait for it.
    for _ in 0..4 {
        let contact = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            get(&mut client, &created.contact_id),
        )
        .await
        .expect("served by a new connection, not by a silent one from the pool")
        .expect("served by a new connection, not by a silent one from the pool");
        assert_eq!(contact.etag, created.etag);
    }
}

/// Four reads whose client deadlines (100 ms) end them before the server's
/// read timeout does: round-robin, two on each shared connection.
async fn give_up_on_reads(client: &mut Client, id: &str) {
    for _ in 0..4 {
        let mut request = tonic::Request::new(contactsd::pb::GetContactRequest {
            id: id.to_owned(),
            read_mask: None,
        });
        request.set_timeout(std::time::Duration::from_millis(100));
        let status = client.get_contact(request).await.unwrap_err();
        assert!(
            matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{status:?}"
        );
    }
}

/// Four concurrent writes, which open several pooled connections.
async fn open_pooled_connections(client: &Client) {
    let writes = ["a", "b", "c", "d"].map(|name| {
        let mut client = client.clone();
        async move { create(&mut client, with_email(&format!("{name}@example.com"))).await }
    });
    futures::future::join_all(writes).await;
}

/// The database timeout of the pooled-connection tests: a first write on a
/// new connection (connect, prepare, two round trips) fits in it many times
/// over, even on a loaded machine. Under 2 s, so that a connection idle for
/// one timeout is not yet checked for idleness alone.
const POOL_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1_500);

#[tokio::test]
async fn a_write_on_a_pooled_connection_that_stopped_answering_fails_fast_and_the_next_succeed() {
    let proxy = Proxy::start().await;
    let app = spawn_app_for_stalls(&proxy.address, POOL_TIMEOUT).await;
    let mut client = app.client("acme").await;
    open_pooled_connections(&client).await;
    // Every connection the pool holds is idle and now silent.
    proxy.stall_open_connections();

    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        POOL_TIMEOUT * 3,
        client.reconcile(reconcile(with_email("erin@example.com"))),
    )
    .await
    .expect("a write on a stalled connection ends by the timeout, not by TCP");
    let took = started.elapsed();
    assert_code(result, Code::Unavailable);
    assert!(
        took >= POOL_TIMEOUT && took < POOL_TIMEOUT * 3,
        "failed after {took:?}, timeout {POOL_TIMEOUT:?}"
    );

    // The stalled connection was closed and the pool's others marked for a
    // check, which the next one fails quickly: the other suspects are closed
    // with it, and the next writes take new connections and succeed, none
    // waits for a silent one.
    for address in ["erin@example.com", "fay@example.com", "gil@example.com"] {
        // The server's own timeout fails a write stuck on a silent one.
        let created = tokio::time::timeout(
            POOL_TIMEOUT * 2,
            client.reconcile(reconcile(with_email(address))),
        )
        .await
        .expect("served by a new connection, not by a silent one from the pool")
        .expect("served by a new connection, not by a silent one from the pool");
        assert!(created.into_inner().created);
    }
}

#[tokio::test]
async fn watchers_keep_receiving_changes_after_the_feeds_connections_stopped_answering() {
    let proxy = Proxy::start().await;
    let app = spawn_app_with_db_timeout(&proxy.address, POOL_TIMEOUT).await;
    let mut client = app.client("acme").await;
    create(&mut client, with_email("dana@example.com")).await;
    let mut stream = client
        .watch_contacts(contactsd::pb::WatchContactsRequest::default())
        .await
        .expect("the watch starts")
        .into_inner();
    // Heartbeats come once the watcher is live, fed by the feed's reader,
    // which reads a page every few milliseconds: its connections are open.
    let beat = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message())
        .await
        .expect("a heartbeat arrives")
        .expect("the stream is healthy")
        .expect("the stream is open");
    assert_eq!(beat.r#type(), contactsd::pb::EventType::Heartbeat);
    proxy.stall_open_connections();

    // A write may meet a silent connection first; the one that succeeds is
    // the change the watcher must see.
    let written = async {
        for _ in 0..3 {
            if let Ok(done) = client
                .reconcile(reconcile(with_email("erin@example.com")))
                .await
            {
                return done.into_inner();
            }
        }
        panic!("three writes in a row failed")
    };
    let written = tokio::time::timeout(POOL_TIMEOUT * 5, written)
        .await
        .expect("writes end by the timeout, not by TCP");
    let event = tokio::time::timeout(POOL_TIMEOUT * 5, async {
        loop {
            let event = stream
                .message()
                .await
                .expect("the stream stays healthy")
                .expect("the stream stays open");
            if event.contact_id == written.contact_id {
                return event;
            }
        }
    })
    .await
    .expect("the feed stops waiting on its silent connection and reads on");
    assert_eq!(event.etag, written.etag);
}

#[tokio::test]
async fn a_write_that_times_out_behind_a_lock_is_cancelled_in_the_database_too() {
    let app = spawn_app_with_db_timeout(&database_host(), POOL_TIMEOUT).await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;
    let id: uuid::Uuid = created.contact_id.parse().unwrap();
    // Another session holds the contact's row, as a long migration might.
    let holder = app.db().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .unwrap();

    let request = contactsd::pb::AddValueRequest {
        contact_id: created.contact_id.clone(),
        value: Some(contactsd::pb::add_value_request::Value::Tag("vip".into())),
        ..Default::default()
    };
    assert_code(client.add_value(request).await, Code::Unavailable);

    // Closing its connection does not stop a statement waiting for a lock;
    // the cancel request does.
    assert_eq!(
        lock_waiters_reaching(&app, 0).await,
        0,
        "the abandoned write still waits for the lock"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    let contact = get(&mut client, &created.contact_id).await.unwrap();
    assert!(
        contact.tags.is_empty(),
        "the timed-out write changed nothing"
    );
}

#[tokio::test]
async fn a_listing_whose_client_stopped_waiting_is_cancelled_in_the_database_too() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;
    // A listing that is not a point read runs on a pooled connection.
    let holder = lock_contacts(&app).await;

    listing_abandoned_at_the_lock(&app, &client).await;
    // Left running, the abandoned statement would go on holding its
    // connection and waiting in the database.
    assert_eq!(
        lock_waiters_reaching(&app, 0).await,
        0,
        "the abandoned listing still waits for the lock"
    );

    holder.batch_execute("ROLLBACK").await.unwrap();
    let listed = client
        .list_contacts(contactsd::pb::ListContactsRequest::default())
        .await
        .expect("the pool serves the next listing")
        .into_inner();
    assert_eq!(listed.contacts.len(), 1);
    assert_eq!(listed.contacts[0].id, created.contact_id);
}

#[tokio::test]
async fn a_listing_abandoned_just_before_its_statement_finished_keeps_its_connection() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;
    let holder = lock_contacts(&app).await;
    let session = listing_abandoned_at_the_lock(&app, &client).await;

    // The lock goes well within the grace: the statement finishes on its
    // own, and its connection goes back to the pool instead of being
    // cancelled, closed and opened anew.
    holder.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::sleep(contactsd::storage::ABANDONED_GRACE + std::time::Duration::from_millis(500))
        .await;
    let last: Option<(String, String)> = app
        .db()
        .await
        .query_opt(
            "SELECT state, query FROM pg_stat_activity WHERE pid = $1",
            &[&session],
        )
        .await
        .unwrap()
        .map(|row| (row.get(0), row.get(1)));
    // Its last statement is the empty query sent behind the listing's.
    assert_eq!(
        last,
        Some(("idle".to_owned(), String::new())),
        "the abandoned listing's session was ended instead of kept"
    );
    let listed = client
        .list_contacts(contactsd::pb::ListContactsRequest::default())
        .await
        .expect("the pool serves the next listing")
        .into_inner();
    assert_eq!(listed.contacts[0].id, created.contact_id);
}

#[tokio::test]
async fn a_listing_the_server_timed_out_is_cancelled_at_once_not_after_the_grace() {
    let timeout = std::time::Duration::from_secs(1);
    let app = spawn_app_with_db_timeout(&database_host(), timeout).await;
    let client = app.client("acme").await;
    let _holder = lock_contacts(&app).await;
    let request = tonic::Request::new(contactsd::pb::ListContactsRequest::default());
    let listing = listing_waiting_for_the_lock(&app, &client, request).await;
    let session = lock_waiter(&app).await;

    // The server's own timeout, not the client's: the statement may never
    // answer, so it gets no grace. The lock is held throughout, so under the
    // grace the session would still be waiting a second from now.
    let code = listing.await.unwrap().unwrap_err().code();
    assert_eq!(code, Code::Unavailable, "ended by the server's timeout");
    let timed_out = std::time::Instant::now();
    let db = app.db().await;
    while db
        .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&session])
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            timed_out.elapsed() < contactsd::storage::ABANDONED_GRACE / 2,
            "the timed-out listing's session outlived half the grace"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn point_reads_that_timed_out_behind_a_lock_leave_no_session_waiting_once_retired() {
    let app = spawn_app_for_stalls(&database_host(), READ_TIMEOUT).await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;
    let holder = lock_contacts(&app).await;

    // Four reads at once, two pipelined on each shared connection: the
    // first of each waits for the lock, the second is queued behind it.
    let reads: Vec<_> = (0..4)
        .map(|_| {
            let (mut client, id) = (client.clone(), created.contact_id.clone());
            tokio::spawn(async move { get(&mut client, &id).await })
        })
        .collect();
    for read in reads {
        let status = read.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    // Two more, one per slot: each retires the stalled connection there
    // (and waits on a new one until the read timeout).
    for _ in 0..2 {
        let status = get(&mut client, &created.contact_id).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    // Closing a connection does not stop a statement waiting for a lock,
    // and a cancel stops only the statement running, not those queued
    // behind it (here the session ends as the cancelled statement's error
    // meets the closed connection, or by the client check). Left waiting,
    // every retired connection would keep one more session, until the
    // database ran out of connections.
    assert_eq!(
        lock_waiters_reaching(&app, 2).await,
        2,
        "only the two connections still in use wait"
    );

    holder.batch_execute("ROLLBACK").await.unwrap();
    let read = get(&mut client, &created.contact_id)
        .await
        .expect("reads recover once the lock is gone");
    assert_eq!(read.etag, created.etag);
}

#[tokio::test]
async fn a_session_whose_connection_closed_while_it_waited_for_a_lock_ends_within_seconds() {
    let proxy = Proxy::start().await;
    let app = spawn_app_via(&proxy.address).await;
    let mut client = app.client("acme").await;
    create(&mut client, with_email("dana@example.com")).await;
    let holder = lock_contacts(&app).await;
    let request = tonic::Request::new(contactsd::pb::ListContactsRequest::default());
    let listing = listing_waiting_for_the_lock(&app, &client, request).await;

    // The proxy closes the connection on both sides, and no cancel request
    // reaches the database (the proxy refuses new connections); without its
    // check, the database would see the connection close only when it next
    // read or wrote on it.
    proxy.set_up(false);
    assert_code(listing.await.unwrap(), Code::Unavailable);
    assert_eq!(
        lock_waiters_reaching(&app, 0).await,
        0,
        "the cut-off session still waits for the lock"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
}

/// A session holding the whole `contacts` table, as a migration might:
/// every statement that reads it waits until the session rolls back.
async fn lock_contacts(app: &TestApp) -> tokio_postgres::Client {
    let holder = app.db().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    holder
}

/// Sends `request` (a listing that is not a point read, so on a pooled
/// connection) and returns once the server's session is seen waiting for
/// the lock `lock_contacts` holds.
async fn listing_waiting_for_the_lock(
    app: &TestApp,
    client: &Client,
    request: tonic::Request<contactsd::pb::ListContactsRequest>,
) -> tokio::task::JoinHandle<
    Result<tonic::Response<contactsd::pb::ListContactsResponse>, tonic::Status>,
> {
    let mut lister = client.clone();
    let listing = tokio::spawn(async move { lister.list_contacts(request).await });
    assert_eq!(
        lock_waiters_reaching(app, 1).await,
        1,
        "the listing reached the lock (before any deadline)"
    );
    listing
}

/// Sends a listing with a 2 s deadline that waits for the lock
/// `lock_contacts` holds, and once the server has given up on it at the
/// deadline, returns the process id of the session that ran it.
async fn listing_abandoned_at_the_lock(app: &TestApp, client: &Client) -> i32 {
    let mut request = tonic::Request::new(contactsd::pb::ListContactsRequest::default());
    request.set_timeout(std::time::Duration::from_secs(2));
    let listing = listing_waiting_for_the_lock(app, client, request).await;
    let session = lock_waiter(app).await;
    // The server gives up at the client's deadline and drops the call.
    let code = listing.await.unwrap().unwrap_err().code();
    assert!(
        matches!(code, Code::Cancelled | Code::DeadlineExceeded),
        "ended by the deadline, not {code:?}"
    );
    session
}

/// The process id of the server's one session waiting for a lock.
async fn lock_waiter(app: &TestApp) -> i32 {
    let db = app.db().await;
    let row = db
        .query_one(&format!("SELECT pid {LOCK_WAITERS}"), &[])
        .await;
    row.unwrap().get(0)
}

/// The server's sessions waiting for a lock.
const LOCK_WAITERS: &str = "FROM pg_stat_activity WHERE datname = current_database() \
     AND application_name = 'contactsd' AND wait_event_type = 'Lock'";

/// How many of the server's sessions wait for a lock, once that is
/// `count` or after 5 s.
async fn lock_waiters_reaching(app: &TestApp, count: i64) -> i64 {
    let db = app.db().await;
    let mut waiting = -1;
    for _ in 0..100 {
        waiting = db
            .query_one(&format!("SELECT count(*) {LOCK_WAITERS}"), &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        if waiting == count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    waiting
}

#[tokio::test]
async fn a_write_after_the_pools_idle_connections_went_silent_waits_for_one_check_not_one_each() {
    let proxy = Proxy::start().await;
    // Longer than two checks (a third of it each), shorter than three.
    let timeout = std::time::Duration::from_secs(5);
    let app = spawn_app_for_stalls(&proxy.address, timeout).await;
    let mut client = app.client("acme").await;
    open_pooled_connections(&client).await;
    // With two, checking each in turn would also fit in the timeout.
    let open = app.store.pooled_connections();
    assert!(open >= 3, "{open} pooled connections open");
    proxy.stall_open_connections();
    // Idle for longer than 2 s: each is checked before it is handed out.
    tokio::time::sleep(std::time::Duration::from_millis(2_300)).await;

    // The first check gets no answer; the others idle as long are dropped
    // with it, and the write goes to a new connection.
    let written = tokio::time::timeout(
        timeout,
        client.reconcile(reconcile(with_email("erin@example.com"))),
    )
    .await
    .expect("ends by the server's timeout")
    .expect("served by a new connection after one unanswered check");
    assert!(written.into_inner().created);
}

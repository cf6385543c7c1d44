//! The connection pool: deadpool-postgres, with a cheaper check before a
//! connection is handed out again.
//!
//! Checking every connection with a query (deadpool's `Verified`) costs a round
//! trip per RPC, as much as a whole GetContact. A connection in steady use
//! does not need it: if the server closes it (a restart, an admin kill) the
//! client sees the closed socket and `Fast` recycling's `is_closed()` check
//! drops it. The dangerous cases are a connection that died quietly while it
//! sat idle (a restart while nothing was reading, a network cut with no FIN),
//! and the connections of a pool in which one call just got no answer. So
//! only a *suspect* connection is checked with a query before it is handed
//! out: one handed out last more than [`VERIFY_AFTER_IDLE`] ago, or before
//! the pool was last marked (see [`Suspects::mark`]). One that fails the
//! check is dropped and another is taken. One that gives no answer within
//! the check's timeout is dropped with every other suspect: they most likely
//! went silent together, and checking each would cost its caller that long
//! again. Callers bound their whole call themselves, so the pool sets no
//! wait limit of its own.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Metrics, Object, Pool, RecyclingMethod, Runtime,
    WeakPool, tokio_postgres,
};

use crate::error::{Error, Result};

pub const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(2);
/// How long a check waits for its answer at most: within a third of the
/// callers' timeout, so that a caller whose check gets no answer still has
/// time for a new connection.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the cancel request for an abandoned statement may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long what an abandoned call left running may take to finish on its
/// own before it is cancelled and its connection closed (see
/// `Exclusive::call`).
pub const ABANDONED_GRACE: Duration = Duration::from_secs(1);
/// How often a session running a statement checks that its client is still
/// there (see [`build`]); it costs the database at most one timer a second
/// per busy session.
pub const CLIENT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// `at` as milliseconds after `epoch`, plus one: a time an atomic can hold,
/// with 0 left free to mean "none".
pub(super) fn stamp(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_millis() as u64 + 1
}

/// Which of a pool's connections are checked before they are handed out.
pub struct Suspects {
    epoch: Instant,
    /// Connections handed out at or before this [`stamp`] are suspect (0:
    /// none for this reason).
    handed_out_before: AtomicU64,
    /// The pool itself, to close every suspect when one fails its check;
    /// set once built.
    pool: OnceLock<WeakPool>,
}

impl Suspects {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            handed_out_before: AtomicU64::new(0),
            pool: OnceLock::new(),
        }
    }

    /// Makes every connection handed out until now suspect: a call on one
    /// of them got no answer in time, and the others share its network path
    /// (a black-holed route, a failed-over host). Each is checked once, with
    /// one round trip, before it is used again.
    pub fn mark(&self) {
        let now = stamp(self.epoch, Instant::now());
        self.handed_out_before.fetch_max(now, Ordering::Relaxed);
    }

    fn suspect(&self, metrics: &Metrics) -> bool {
        let handed_out = metrics.recycled.unwrap_or(metrics.created);
        Instant::now().saturating_duration_since(handed_out) > VERIFY_AFTER_IDLE
            || stamp(self.epoch, handed_out) <= self.handed_out_before.load(Ordering::Relaxed)
    }
}

/// A pool of `size` connections to `config`'s database, whose callers wait
/// `timeout` at most. Unless the role, the database or the URL set them to
/// something other than 0, its sessions
/// - end a transaction left idle that long: a transaction whose COMMIT was
///   lost on a black-holed path would otherwise hold its locks until the
///   database's TCP keepalive gives up, hours later (ours never idle inside
///   a transaction on purpose);
/// - end within [`CLIENT_CHECK_INTERVAL`] once the database host has seen
///   their connection close (a FIN or a reset: our end closed it, our
///   process died, a proxy dropped it), even while a statement runs or
///   waits for a lock. PostgreSQL otherwise notices a closed connection
///   only when it next reads or writes on it, so a statement waiting behind
///   a long lock, and the statements pipelined behind it, would outlive the
///   connection, one more session each time, until the database ran out of
///   connections. Best effort: where the setting does not exist (before
///   PostgreSQL 14) or is refused (a platform or a managed service without
///   it), the sessions go without. A path that went silent is still only
///   noticed when the database's TCP keepalive gives up.
pub fn build(
    config: tokio_postgres::Config,
    size: usize,
    timeout: Duration,
) -> Result<(Pool, Arc<Suspects>)> {
    let idle_limit = format!(
        "SELECT set_config('idle_in_transaction_session_timeout', '{}', false) \
         WHERE current_setting('idle_in_transaction_session_timeout') = '0'",
        timeout.as_millis().min(i32::MAX as u128)
    );
    // `missing_ok`: NULL, so no change, where the setting does not exist.
    let client_check = format!(
        "SELECT set_config('client_connection_check_interval', '{}', false) \
         WHERE current_setting('client_connection_check_interval', true) = '0'",
        CLIENT_CHECK_INTERVAL.as_millis()
    );
    let verify_timeout = VERIFY_TIMEOUT.min(timeout / 3);
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let suspects = Arc::new(Suspects::new());
    let check_suspects = suspects.clone();
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        // No wait limit of its own: every caller bounds its whole call.
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        // Session settings, once per connection: startup options would
        // be refused by some connection poolers (RDS Proxy, PgBouncer).
        .post_create(Hook::async_fn(move |client, _| {
            let (idle_limit, client_check) = (idle_limit.clone(), client_check.clone());
            Box::pin(async move {
                // Pipelined, one round trip; separate statements, so that a
                // refused client check changes nothing else.
                let (idle, check) = tokio::join!(
                    client.simple_query(&idle_limit),
                    client.simple_query(&client_check)
                );
                idle.map_err(HookError::Backend)?;
                if let Err(error) = check {
                    tracing::debug!(%error, "sessions go without client_connection_check_interval");
                }
                Ok(())
            })
        }))
        .pre_recycle(Hook::async_fn(move |client, metrics| {
            // Decided before the future, so a connection in steady use
            // costs no more than this test.
            let suspects = check_suspects
                .suspect(metrics)
                .then(|| check_suspects.clone());
            Box::pin(async move {
                let Some(suspects) = suspects else {
                    return Ok(());
                };
                // A connection that went silent would hang the check itself.
                let Ok(answer) =
                    tokio::time::timeout(verify_timeout, client.simple_query("")).await
                else {
                    // The other suspects most likely went silent with it:
                    // closed now, they cost no one a check each.
                    if let Some(pool) = suspects.pool.get().and_then(WeakPool::upgrade) {
                        pool.retain(|_, m| !suspects.suspect(&m));
                    }
                    return Err(HookError::message("no answer to the check"));
                };
                answer.map_err(HookError::Backend)?;
                Ok(())
            })
        }))
        .build()
        .map_err(|e| Error::Internal(format!("building a connection pool: {e}")))?;
    let _ = suspects.pool.set(pool.weak());
    Ok((pool, suspects))
}

/// A pooled connection that one call uses alone. Dropped unsettled (with a
/// transaction open, a request whose answer matters still unanswered, or
/// after a call that got no answer in time), it is taken out of the pool
/// and closed instead of going back, so the next caller never inherits its
/// state, a statement still running, or a connection that stopped
/// answering; closing rolls the transaction back. What it was running is
/// cancelled first: PostgreSQL does not notice a closed client while a
/// statement runs or waits for a lock, and that statement would go on
/// holding the locks it already took and the work it was doing. The
/// connection stays open until the cancel request has been sent (it gets no
/// answer), since a connection pooler in between (PgBouncer, RDS Proxy)
/// forgets the cancel key of a client that has gone. Dropped in the middle
/// of a call but settled, it is first given [`ABANDONED_GRACE`] to finish
/// (see `Exclusive::call`).
pub struct Exclusive {
    conn: Option<Object>,
    unsettled: AtomicBool,
    in_call: AtomicBool,
}

impl Exclusive {
    pub fn new(conn: Object) -> Self {
        Self {
            conn: Some(conn),
            unsettled: AtomicBool::new(false),
            in_call: AtomicBool::new(false),
        }
    }

    /// Runs `work` on this connection (calls do not nest). If the call is
    /// abandoned before `work` completes (its client went away, its
    /// deadline passed) while settled (no transaction open, no write's
    /// preparation in flight), what it left running is given
    /// [`ABANDONED_GRACE`] to finish, and the connection then goes back to
    /// the pool: a client that often gives up on short calls
    /// (type-ahead search, tight deadlines under load) would otherwise cost
    /// the database a cancel connection and a reconnect, two new backend
    /// processes, each time. An empty query sent after it tells when it
    /// has finished, since answers come in order. Past the grace, the
    /// statement is cancelled and the connection closed, as when unsettled.
    /// The connection is not kept after a cancel: a cancel request gets no
    /// answer, and tokio-postgres (unlike libpq) does not wait for the
    /// server to close the cancel connection, so nothing tells when the
    /// cancel takes effect; it could land on the next caller's statement.
    /// A kept connection may hold one prepared statement the database never
    /// frees, when the call was abandoned while preparing it (tokio-postgres
    /// frees one only when its handle is dropped, and that handle never
    /// existed): a few kilobytes in the session, only when a preparation
    /// was slow (waiting for a DDL lock) yet finished within the grace.
    pub(super) async fn call<T>(&self, work: impl AsyncFnOnce(&Exclusive) -> T) -> T {
        self.in_call.store(true, Ordering::Release);
        let result = work(self).await;
        self.in_call.store(false, Ordering::Release);
        result
    }

    pub(super) fn unsettle(&self) {
        self.unsettled.store(true, Ordering::Release);
    }

    pub(super) fn settle(&self) {
        self.unsettled.store(false, Ordering::Release);
    }

    pub(super) fn unsettled(&self) -> bool {
        self.unsettled.load(Ordering::Acquire)
    }
}

impl Deref for Exclusive {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.conn
            .as_ref()
            .expect("an Exclusive holds its connection until dropped")
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let abandoned = self.in_call.load(Ordering::Acquire);
        let unsettled = self.unsettled();
        if !(abandoned || unsettled) {
            return;
        }
        let Some(conn) = self.conn.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Closed, not pooled: nothing can wait for it.
            drop(Object::take(conn));
            return;
        };
        if unsettled {
            runtime.spawn(cancel_and_close(Object::take(conn)));
            return;
        }
        tracing::debug!("a call was abandoned mid-way; letting its statement finish");
        runtime.spawn(async move {
            match tokio::time::timeout(ABANDONED_GRACE, conn.simple_query("")).await {
                // Back into the pool, which recycles it as usual.
                Ok(Ok(_)) => drop(conn),
                // Closed meanwhile, most likely: nothing left to cancel.
                Ok(Err(_)) => drop(Object::take(conn)),
                Err(_) => {
                    tracing::debug!(
                        "an abandoned call's statement went on past {ABANDONED_GRACE:?}; \
                         cancelling it and closing its connection"
                    );
                    cancel_and_close(Object::take(conn)).await;
                }
            }
        });
    }
}

/// Cancels what `client` is running, then closes it.
async fn cancel_and_close(client: deadpool_postgres::ClientWrapper) {
    let token = client.cancel_token();
    let cancel = token.cancel_query(tokio_postgres::NoTls);
    let _ = tokio::time::timeout(CANCEL_TIMEOUT, cancel).await;
    drop(client);
}

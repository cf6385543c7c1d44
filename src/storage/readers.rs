//! Point reads on a few shared connections, pipelined.
//!
//! A GetContact is one indexed statement. On an exclusive pooled connection
//! each read costs a write and a read on the socket of its own, and wakes a
//! PostgreSQL backend that then goes back to sleep. tokio-postgres pipelines
//! the queries of concurrent callers of one client, so on a shared connection
//! many reads travel in one write and come back in one read, and the backend
//! finds the next query already waiting. On the 2-core bench machine that
//! raised GetContact throughput by about a quarter (and bare SQL gains as
//! much from the same arrangement; see the README's Performance section).
//!
//! Only short, index-bound statements belong here: a slow statement holds up
//! every read queued behind it on its connection.
//!
//! Sharing has a failure mode of its own: a connection that stops answering
//! without closing (a black-holed network path, a frozen server) would hold
//! every read routed to it until TCP gives up, which can take a quarter of an
//! hour. So a read waits at most the read timeout; a connection asked
//! something that long ago with no answer since is stalled, and it is
//! replaced and closed instead of going back to the pool. That holds even
//! when every read on it was cancelled by its client's own deadline first,
//! and a connection retired for idleness with a question unanswered is
//! closed too: the pool's idle check would only have to wait for it. The
//! statement it was still running is cancelled once its last reader lets
//! go of it, and its session ends (see `pool::build` for the statements
//! pipelined behind it): a read waiting behind a long DDL lock does not
//! notice its connection close, and every retired connection would
//! otherwise leave one more session waiting, until the database ran out of
//! connections.

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool, tokio_postgres};

use super::pool::{self, Exclusive, VERIFY_AFTER_IDLE};
use super::timed_out;
use crate::error::{Error, Result};

/// How long a point read waits for its shared connection by default.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection shared by concurrent point reads.
pub type Reader = Arc<Shared>;

/// A pooled connection shared by point reads, with what is needed to tell
/// whether it still answers.
pub struct Shared {
    /// Unsettled when retired with a question unanswered: then closed, not
    /// pooled, with what it was running cancelled (see [`Exclusive`]).
    conn: Exclusive,
    opened: Instant,
    /// When the oldest read asked since the connection's last answer was
    /// asked, as milliseconds after `opened` plus one; 0 when nothing asked
    /// is waiting. (Answers come in order, so an answer vouches for every
    /// read asked before it.)
    unanswered_since: AtomicU64,
    /// When the latest read was asked, in the same unit.
    last_asked: AtomicU64,
}

impl Shared {
    fn new(conn: Object) -> Self {
        Self {
            conn: Exclusive::new(conn),
            opened: Instant::now(),
            unanswered_since: AtomicU64::new(0),
            last_asked: AtomicU64::new(0),
        }
    }

    fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.opened).as_millis() as u64 + 1
    }

    /// Notes a read asked at `at` (when its caller began waiting).
    fn asked(&self, at: Instant) {
        let at = self.stamp(at);
        self.last_asked.fetch_max(at, Ordering::Relaxed);
        // Keeps the oldest unanswered time: a stall dates from the first read it swallowed.
        let _ = self
            .unanswered_since
            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Notes the answer to the read asked at `at`. Reads asked after it may
    /// still wait; they are then dated now, which is no earlier than they were asked.
    fn answered(&self, at: Instant) {
        let next = if self.last_asked.load(Ordering::Relaxed) > self.stamp(at) {
            self.stamp(Instant::now())
        } else {
            0
        };
        self.unanswered_since.store(next, Ordering::Relaxed);
    }

    /// Whether a read has waited for an answer at all.
    fn waiting(&self) -> bool {
        self.unanswered_since.load(Ordering::Relaxed) != 0
    }

    fn stalled_for(&self, timeout: Duration) -> bool {
        match self.unanswered_since.load(Ordering::Relaxed) {
            0 => false,
            since => self.stamp(Instant::now()).saturating_sub(since) >= timeout.as_millis() as u64,
        }
    }
}

impl Deref for Shared {
    type Target = Object;

    fn deref(&self) -> &Object {
        &self.conn
    }
}

struct Slot {
    reader: Reader,
    last_used: Instant,
}

pub struct Readers {
    /// Where the shared connections come from, and go back to when replaced:
    /// its recycling drops closed ones and checks idle ones with a query.
    pool: Pool,
    slots: Box<[Mutex<Option<Slot>>]>,
    next: AtomicUsize,
    read_timeout: Duration,
}

impl Readers {
    /// `count` (at least one) shared connections to the database of `config`,
    /// opened when first used; a read waits `read_timeout` at most. Their pool
    /// holds twice as many, so that a replacement never waits for a closed
    /// one to drain.
    pub fn new(
        config: tokio_postgres::Config,
        count: usize,
        read_timeout: Duration,
    ) -> Result<Self> {
        let count = count.max(1);
        // Stalled shared connections are retired by `take_live`; their
        // pool's own suspects are only those idle too long.
        let (pool, _) = pool::build(config, 2 * count, read_timeout)
            .map_err(|e| Error::Internal(format!("building the readers' pool: {e}")))?;
        Ok(Self {
            pool,
            slots: (0..count).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            read_timeout,
        })
    }

    /// The next shared connection, round-robin. One that is closed, stalled,
    /// or has sat idle long enough to have died quietly (a restart while
    /// nothing was reading), is replaced; an idle one goes back to the pool,
    /// which checks it.
    pub async fn get(&self) -> Result<Reader> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(reader) = self.take_live(&mut slot.lock().unwrap()) {
            return Ok(reader);
        }
        let fresh = Arc::new(Shared::new(self.pool.get().await?));
        let mut slot = slot.lock().unwrap();
        // Another caller may have replaced it meanwhile: keep one, not both.
        if let Some(reader) = self.take_live(&mut slot) {
            return Ok(reader);
        }
        *slot = Some(Slot {
            reader: fresh.clone(),
            last_used: Instant::now(),
        });
        Ok(fresh)
    }

    /// Runs `read` on a shared connection, and once more on another if that
    /// one turns out closed (the database restarted): reads are safe to
    /// repeat, and the caller need not see the restart. All of it, getting
    /// the connections included, takes at most the read timeout; past that
    /// the read fails as unavailable, and a connection that has answered
    /// nothing since it was asked counts as stalled (see `Self::take_live`).
    pub async fn run<T, F>(&self, read: impl Fn(Reader) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let asked = Instant::now();
        let deadline = tokio::time::Instant::from_std(asked + self.read_timeout);
        let reader = self.get_by(deadline).await?;
        match self.attempt(&reader, &read, asked, deadline).await {
            Err(_) if reader.is_closed() => {
                let other = self.get_by(deadline).await?;
                self.attempt(&other, &read, asked, deadline).await
            }
            result => result,
        }
    }

    async fn get_by(&self, deadline: tokio::time::Instant) -> Result<Reader> {
        tokio::time::timeout_at(deadline, self.get())
            .await
            .unwrap_or_else(|_| {
                Err(timed_out(
                    "no shared read connection was free",
                    self.read_timeout,
                ))
            })
    }

    async fn attempt<T, F>(
        &self,
        reader: &Reader,
        read: &impl Fn(Reader) -> F,
        asked: Instant,
        deadline: tokio::time::Instant,
    ) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        // Dated from when the caller began waiting: at the deadline a
        // connection that answered nothing since is stalled, and the next
        // `take_live` of its slot retires it.
        reader.asked(asked);
        match tokio::time::timeout_at(deadline, read(reader.clone())).await {
            Ok(result) => {
                if !reader.is_closed() {
                    reader.answered(asked);
                }
                result
            }
            Err(_) => Err(timed_out(
                "a shared read connection answered nothing",
                self.read_timeout,
            )),
        }
    }

    /// The slot's reader if it is fit to use (marking it used), emptying it if not.
    fn take_live(&self, slot: &mut Option<Slot>) -> Option<Reader> {
        let live = slot.as_mut().filter(|s| {
            !s.reader.is_closed()
                && s.last_used.elapsed() < VERIFY_AFTER_IDLE
                && !s.reader.stalled_for(self.read_timeout)
        });
        match live {
            Some(s) => {
                s.last_used = Instant::now();
                Some(s.reader.clone())
            }
            None => {
                // Retired with a question unanswered (stalled, or idle after
                // its readers gave up): cancelled and closed once its last
                // reader lets go, not pooled, since the pool's idle check
                // would only have to wait for it.
                if let Some(s) = slot.take()
                    && s.reader.waiting()
                {
                    s.reader.conn.unsettle();
                }
                None
            }
        }
    }
}

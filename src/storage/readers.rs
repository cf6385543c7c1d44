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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool, tokio_postgres};

use super::pool::{self, Exclusive, VERIFY_AFTER_IDLE};
use super::timed_out;
use crate::error::Result;

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
    questions: Questions,
}

impl Shared {
    fn new(conn: Object) -> Self {
        Self {
            conn: Exclusive::new(conn),
            questions: Questions::new(Instant::now()),
        }
    }
}

/// The reads asked of one shared connection and what it has answered. A
/// heuristic: a read's number is taken when it starts, and answers come in
/// the order requests were sent, so a read that prepares its statement first
/// can be vouched for by a later read's answer while its query is still out.
/// That errs towards "nothing waiting" for one read, until the next read asks.
struct Questions {
    opened: Instant,
    /// One lock for all three counts: noting an answer reads them and
    /// writes them back, and two readers doing that at once on separate
    /// atomics could each undo what the other wrote.
    state: Mutex<Asked>,
}

#[derive(Default)]
struct Asked {
    /// How many reads have been asked: each read's number is its place in
    /// that count. Numbers, not times, tell which reads an answer vouches
    /// for (answers come in order, so one vouches for every read asked
    /// before it), whatever order readers note their answers in.
    asked: u64,
    /// The highest number of a read answered.
    answered: u64,
    /// Since when a read has been waiting for an answer, as a
    /// [`pool::stamp`] after `opened`, 0 when none is: when the oldest unanswered
    /// read was asked, or the last answer if that came later.
    waiting_since: u64,
}

impl Questions {
    fn new(opened: Instant) -> Self {
        Self {
            opened,
            state: Mutex::default(),
        }
    }

    fn stamp(&self, at: Instant) -> u64 {
        pool::stamp(self.opened, at)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Asked> {
        // The counts stay consistent whatever panicked while holding them.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes a read asked at `at` (when its caller began waiting), and
    /// returns its number for [`Self::answered`].
    fn asked(&self, at: Instant) -> u64 {
        let at = self.stamp(at);
        let mut state = self.state();
        state.asked += 1;
        // Keeps the oldest unanswered time: a stall dates from the first read it swallowed.
        if state.waiting_since == 0 {
            state.waiting_since = at;
        }
        state.asked
    }

    /// Notes the answer to read `number` at `now`. Reads asked after it may
    /// still wait; they are then dated `now`, which is no earlier than they
    /// were asked. An answer noted after a later one's tells nothing new.
    fn answered(&self, number: u64, now: Instant) {
        let now = self.stamp(now);
        let mut state = self.state();
        if number <= state.answered {
            return;
        }
        state.answered = number;
        state.waiting_since = if state.asked > number { now } else { 0 };
    }

    /// Whether a read has waited for an answer at all.
    fn waiting(&self) -> bool {
        self.state().waiting_since != 0
    }

    /// Whether a read has waited `timeout` or longer at `now` for an answer.
    fn stalled_for(&self, timeout: Duration, now: Instant) -> bool {
        match self.state().waiting_since {
            0 => false,
            since => self.stamp(now).saturating_sub(since) >= timeout.as_millis() as u64,
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
        let (pool, _) = pool::build(config, 2 * count, read_timeout)?;
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
        let number = reader.questions.asked(asked);
        match tokio::time::timeout_at(deadline, read(reader.clone())).await {
            Ok(result) => {
                if !reader.is_closed() {
                    reader.questions.answered(number, Instant::now());
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
                && !s
                    .reader
                    .questions
                    .stalled_for(self.read_timeout, Instant::now())
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
                    && s.reader.questions.waiting()
                {
                    s.reader.conn.unsettle();
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn answers_noted_in_the_other_order_leave_nothing_waiting() {
        let opened = Instant::now();
        let questions = Questions::new(opened);
        let first = questions.asked(opened);
        let second = questions.asked(opened + Duration::from_millis(1));
        questions.answered(second, opened + Duration::from_millis(2));
        questions.answered(first, opened + Duration::from_millis(3));
        assert!(!questions.waiting());
        assert!(!questions.stalled_for(TIMEOUT, opened + 2 * TIMEOUT));
    }

    #[test]
    fn an_answer_vouches_for_reads_asked_before_it_even_if_abandoned() {
        let opened = Instant::now();
        let questions = Questions::new(opened);
        let _abandoned = questions.asked(opened);
        let answered = questions.asked(opened + Duration::from_millis(1));
        questions.answered(answered, opened + Duration::from_millis(2));
        assert!(!questions.waiting());
    }

    #[test]
    fn an_answer_noted_late_does_not_date_the_reads_still_waiting_anew() {
        let opened = Instant::now();
        let questions = Questions::new(opened);
        let first = questions.asked(opened);
        let second = questions.asked(opened);
        let _third = questions.asked(opened);
        questions.answered(second, opened + Duration::from_secs(1));
        questions.answered(first, opened + Duration::from_secs(3));
        assert!(questions.stalled_for(TIMEOUT, opened + Duration::from_secs(1) + TIMEOUT));
    }

    #[test]
    fn a_read_asked_after_the_last_answer_is_still_waiting_and_stalls() {
        let opened = Instant::now();
        let questions = Questions::new(opened);
        let first = questions.asked(opened);
        let _second = questions.asked(opened + Duration::from_millis(1));
        let answered_at = opened + Duration::from_secs(1);
        questions.answered(first, answered_at);
        assert!(questions.waiting());
        // Dated from the last answer, not from when it was asked.
        assert!(!questions.stalled_for(TIMEOUT, opened + TIMEOUT));
        assert!(questions.stalled_for(TIMEOUT, answered_at + TIMEOUT));
    }

    #[test]
    fn an_unanswered_read_stalls_from_when_it_was_asked() {
        let opened = Instant::now();
        let questions = Questions::new(opened);
        let asked_at = opened + Duration::from_secs(1);
        questions.asked(asked_at);
        assert!(!questions.stalled_for(TIMEOUT, asked_at + TIMEOUT - Duration::from_millis(1)));
        assert!(questions.stalled_for(TIMEOUT, asked_at + TIMEOUT));
    }
}

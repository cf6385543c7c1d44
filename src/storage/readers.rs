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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use deadpool_postgres::{Object, Pool, tokio_postgres};

use super::pool::{self, VERIFY_AFTER_IDLE};
use crate::error::{Error, Result};

/// A connection shared by concurrent point reads.
pub type Reader = Arc<Object>;

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
}

impl Readers {
    /// `count` (at least one) shared connections to the database of `config`,
    /// opened when first used. Their pool holds twice as many, so that a
    /// replacement never waits for a closed one to drain.
    pub fn new(config: tokio_postgres::Config, count: usize) -> Result<Self> {
        let count = count.max(1);
        let pool = pool::build(config, 2 * count)
            .map_err(|e| Error::Internal(format!("building the readers' pool: {e}")))?;
        Ok(Self {
            pool,
            slots: (0..count).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// The next shared connection, round-robin. One that is closed, or has
    /// sat idle long enough to have died quietly (a restart while nothing was
    /// reading), is handed back to the pool, which checks it, and replaced.
    pub async fn get(&self) -> Result<Reader> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(reader) = take_live(&mut slot.lock().unwrap()) {
            return Ok(reader);
        }
        let fresh = Arc::new(self.pool.get().await?);
        let mut slot = slot.lock().unwrap();
        // Another caller may have replaced it meanwhile: keep one, not both.
        if let Some(reader) = take_live(&mut slot) {
            return Ok(reader);
        }
        *slot = Some(Slot {
            reader: fresh.clone(),
            last_used: Instant::now(),
        });
        Ok(fresh)
    }
}

/// The slot's reader if it is fit to use (marking it used), emptying it if not.
fn take_live(slot: &mut Option<Slot>) -> Option<Reader> {
    let live = slot
        .as_mut()
        .filter(|s| !s.reader.is_closed() && s.last_used.elapsed() < VERIFY_AFTER_IDLE);
    match live {
        Some(s) => {
            s.last_used = Instant::now();
            Some(s.reader.clone())
        }
        None => {
            *slot = None;
            None
        }
    }
}

//! The connection pool: deadpool-postgres, with a cheaper check before a
//! connection is handed out again.
//!
//! Checking every connection with a query (deadpool's `Verified`) costs a round
//! trip per RPC, as much as a whole GetContact. A connection in steady use
//! does not need it: if the server closes it (a restart, an admin kill) the
//! client sees the closed socket and `Fast` recycling's `is_closed()` check
//! drops it. The dangerous case is a connection that died quietly while it sat
//! idle (a restart while nothing was reading, a network cut with no FIN), so
//! only connections idle for longer than [`VERIFY_AFTER_IDLE`] are checked
//! with a query; one that fails is dropped and another is taken. One that
//! gives no answer within [`VERIFY_TIMEOUT`] is dropped with every connection
//! idle as long: they most likely went silent together, and checking each
//! would cost its caller that long again. Callers bound their whole call
//! themselves, so the pool sets no wait limit of its own.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, WeakPool,
    tokio_postgres,
};

pub const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(2);
/// How long that check may wait for its answer; a connection that gives none
/// is dropped and another taken.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn build(config: tokio_postgres::Config, size: usize) -> Result<Pool, String> {
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // The pool itself, for the check below; set once built.
    let this: Arc<OnceLock<WeakPool>> = Arc::default();
    let check_pool = this.clone();
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        // No wait limit of its own: every caller bounds its whole call.
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .pre_recycle(Hook::async_fn(move |client, metrics| {
            let pool = check_pool.clone();
            Box::pin(async move {
                let idle = metrics.last_used();
                if idle > VERIFY_AFTER_IDLE {
                    // A connection that went silent would hang the check itself.
                    let Ok(answer) =
                        tokio::time::timeout(VERIFY_TIMEOUT, client.simple_query("")).await
                    else {
                        // The others idle as long most likely went silent
                        // with it: closed now, they cost no one a check each.
                        if let Some(pool) = pool.get().and_then(WeakPool::upgrade) {
                            pool.retain(|_, m| m.last_used() < idle);
                        }
                        return Err(HookError::message("no answer to the idle check"));
                    };
                    answer.map_err(HookError::Backend)?;
                }
                Ok(())
            })
        }))
        .build()
        .map_err(|e| e.to_string())?;
    let _ = this.set(pool.weak());
    Ok(pool)
}

/// A pooled connection that one call uses alone. Dropped unsettled (with a
/// transaction open or a request whose answer matters still unanswered),
/// it is taken out of the pool and closed instead of going back: closing
/// rolls back whatever it was in the middle of, and the next caller never
/// inherits that state, or a connection that stopped answering.
pub struct Exclusive {
    conn: Option<Object>,
    unsettled: AtomicBool,
}

impl Exclusive {
    pub fn new(conn: Object) -> Self {
        Self {
            conn: Some(conn),
            unsettled: AtomicBool::new(false),
        }
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
        if self.unsettled()
            && let Some(conn) = self.conn.take()
        {
            drop(Object::take(conn));
        }
    }
}

//! Transactions whose BEGIN and COMMIT travel with the statements beside them.
//!
//! tokio-postgres sends a request as soon as its future is first polled, and
//! the connection answers in order, so statements joined with `try_join!` go
//! out together: `BEGIN` + the first statements, then the final write +
//! `COMMIT`. A write costs two round trips instead of four or five, which on a
//! busy machine is mostly waiting to be scheduled again. PostgreSQL still runs
//! them one after the other; if the final write fails, the COMMIT behind it
//! rolls back. The order holds only for prepared statements, so a `Tx`
//! carries its statements prepared ([`sql::WriteStatements`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::Object;

use super::sql;
use crate::error::Result;

/// A pooled connection inside a transaction. Dropped while the transaction is
/// still open (the RPC was cancelled mid-way), it takes the connection out of
/// the pool and closes it, which rolls the transaction back: a connection in
/// an unknown transaction state never returns to the pool.
pub struct Tx {
    conn: Option<Object>,
    open: AtomicBool,
    statements: sql::WriteStatements,
}

impl Tx {
    /// Takes the connection for a transaction, with the statements that will
    /// be pipelined already prepared (see [`sql::WriteStatements`]).
    pub async fn start(conn: Object) -> Result<Self> {
        let statements = sql::prepare_writes(&conn).await?;
        Ok(Self {
            conn: Some(conn),
            open: AtomicBool::new(false),
            statements,
        })
    }

    pub(super) fn statements(&self) -> &sql::WriteStatements {
        &self.statements
    }

    pub fn client(&self) -> &Object {
        self.conn
            .as_ref()
            .expect("a Tx owns its connection until dropped")
    }

    /// Gives the connection back, once the transaction has ended.
    pub fn into_client(mut self) -> Option<Object> {
        if self.open.load(Ordering::Acquire) {
            None
        } else {
            self.conn.take()
        }
    }

    /// Sends BEGIN; join it with the first statements.
    pub async fn begin(&self) -> Result<()> {
        self.open.store(true, Ordering::Release);
        // Named, not inherited: the match after the key locks must see what
        // the previous lock holder committed, which a database defaulting to
        // repeatable read would hide.
        self.client()
            .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?;
        Ok(())
    }

    /// Sends COMMIT; join it with the last statement.
    pub async fn commit(&self) -> Result<()> {
        self.client().batch_execute("COMMIT").await?;
        self.open.store(false, Ordering::Release);
        Ok(())
    }

    pub async fn rollback(&self) -> Result<()> {
        self.client().batch_execute("ROLLBACK").await?;
        self.open.store(false, Ordering::Release);
        Ok(())
    }

    /// Runs `work`; if it fails, rolls back before passing the error on.
    pub async fn or_rollback<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        match work.await {
            Ok(value) => Ok(value),
            Err(error) => {
                if self.open.load(Ordering::Acquire) {
                    // If this fails too, the connection is closed on drop.
                    let _ = self.rollback().await;
                }
                Err(error)
            }
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open.load(Ordering::Acquire)
            && let Some(conn) = self.conn.take()
        {
            drop(Object::take(conn));
        }
    }
}

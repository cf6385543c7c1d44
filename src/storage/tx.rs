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

use super::pool::Exclusive;
use super::sql;
use crate::error::Result;

/// A transaction on a pooled connection of its own. The connection counts as
/// unsettled from the first statement's preparation (a round trip on a new
/// connection) until the answer to COMMIT or ROLLBACK: dropped meanwhile (the
/// call was cancelled or timed out mid-way), it is closed, which rolls the
/// transaction back, so a connection in an unknown state never returns to
/// the pool (see [`Exclusive`]).
pub struct Tx<'c> {
    conn: &'c Exclusive,
    statements: sql::WriteStatements,
}

impl<'c> Tx<'c> {
    /// Takes the connection for a transaction, with the statements that will
    /// be pipelined already prepared (see [`sql::WriteStatements`]).
    pub async fn start(conn: &'c Exclusive) -> Result<Self> {
        conn.unsettle();
        let statements = sql::prepare_writes(&**conn).await?;
        conn.settle();
        Ok(Self { conn, statements })
    }

    pub(super) fn statements(&self) -> &sql::WriteStatements {
        &self.statements
    }

    pub fn client(&self) -> &Exclusive {
        self.conn
    }

    /// Sends BEGIN; join it with the first statements.
    pub async fn begin(&self) -> Result<()> {
        self.conn.unsettle();
        // Named, not inherited: the match after the key locks must see what
        // the previous lock holder committed, which a database defaulting to
        // repeatable read would hide.
        self.conn
            .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?;
        Ok(())
    }

    /// Sends COMMIT; join it with the last statement.
    pub async fn commit(&self) -> Result<()> {
        self.conn.batch_execute("COMMIT").await?;
        self.conn.settle();
        Ok(())
    }

    pub async fn rollback(&self) -> Result<()> {
        self.conn.batch_execute("ROLLBACK").await?;
        self.conn.settle();
        Ok(())
    }

    /// Runs `work`; if it fails, rolls back before passing the error on.
    pub async fn or_rollback<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        match work.await {
            Ok(value) => Ok(value),
            Err(error) => {
                if self.conn.unsettled() {
                    // If this fails too, the connection is closed on drop.
                    let _ = self.rollback().await;
                }
                Err(error)
            }
        }
    }
}

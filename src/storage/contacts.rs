//! The contact operations, each one transaction over the statements of
//! [`sql`]. The operations are public functions of a [`Tx`] so that
//! `contactsd-bench` runs exactly them as its baseline; [`Store`] adds only
//! the pool checkout.

use futures::try_join;

use super::tx::Tx;
use super::{Store, sql};
use crate::domain::{Contact, ContactData, ContactId, MergeOutcome, ReadMask, Rejected};
use crate::error::{Error, Result};

/// How often Reconcile starts over when its match lost the key while it waited.
const MATCH_ATTEMPTS: usize = 5;

/// The outcome of a Reconcile.
#[derive(Debug)]
pub struct Reconciled {
    pub contact: Contact,
    pub created: bool,
    pub rejected: Rejected,
}

impl Store {
    pub async fn reconcile(
        &self,
        site: i64,
        app: &str,
        incoming: ContactData,
    ) -> Result<Reconciled> {
        self.exclusive(async |conn| reconcile(&Tx::start(conn).await?, site, app, incoming).await)
            .await
    }

    pub async fn get_contact(
        &self,
        site: i64,
        id: ContactId,
        mask: ReadMask,
    ) -> Result<Option<Contact>> {
        self.readers
            .run(|reader| async move { sql::select_contact(&**reader, site, id, mask).await })
            .await
    }

    /// A page of contacts and the snapshot it was read in; see [`sql::list_contacts`].
    /// Point reads (see [`sql::ListFilter::is_point_read`]) share connections;
    /// other pages take a connection of their own.
    pub async fn list_contacts(
        &self,
        site: i64,
        filter: &sql::ListFilter,
        after_seq: i64,
        limit: i64,
        mask: ReadMask,
    ) -> Result<(Vec<(Contact, i64)>, String)> {
        if !filter.is_point_read() {
            return self
                .exclusive(async |conn| {
                    sql::list_contacts(&**conn, site, filter, after_seq, limit, mask).await
                })
                .await;
        }
        self.readers
            .run(|reader| async move {
                sql::list_contacts(&**reader, site, filter, after_seq, limit, mask).await
            })
            .await
    }

    pub async fn edit_contact<T>(
        &self,
        site: i64,
        app: &str,
        id: ContactId,
        etag: Option<&str>,
        lock_key: Option<String>,
        edit: impl FnOnce(&mut ContactData) -> Result<(T, Vec<&'static str>)>,
    ) -> Result<(Contact, T)> {
        self.exclusive(async |conn| {
            edit_contact(&Tx::start(conn).await?, site, app, id, etag, lock_key, edit).await
        })
        .await
    }

    pub async fn delete_contact(
        &self,
        site: i64,
        app: &str,
        id: ContactId,
        etag: Option<&str>,
    ) -> Result<()> {
        self.exclusive(async |conn| {
            delete_contact(&Tx::start(conn).await?, site, app, id, etag).await
        })
        .await
    }
}

/// Merges `incoming` into the earliest-created contact sharing one of its
/// emails or phones, or creates a contact. Concurrent calls with a common key
/// are serialized by the key locks, so they end in one contact.
pub async fn reconcile(
    tx: &Tx<'_>,
    site: i64,
    app: &str,
    incoming: ContactData,
) -> Result<Reconciled> {
    let keys = incoming.keys();
    // A retry starts a new transaction: retrying inside this one would wait on
    // a second row while holding the first (a deadlock risk), and the contact
    // lock would no longer be the transaction's first write (see `sql`).
    for _ in 0..MATCH_ATTEMPTS {
        // The match is its own statement after the locks, so it sees what the
        // previous holder of a lock committed.
        let matched = tx
            .or_rollback(async {
                let ((), (), matched) = try_join!(
                    tx.begin(),
                    sql::lock_keys(tx, site, &keys),
                    sql::match_for_update(tx, site, &keys)
                )?;
                Ok(matched)
            })
            .await?;
        let reconciled = tx
            .or_rollback(async {
                Ok(Some(match matched {
                    None => {
                        let mut data = ContactData::default();
                        // Merging into nothing drops values the report repeats.
                        data.merge(incoming.clone());
                        let (contact, ()) =
                            try_join!(sql::insert_contact(tx, site, app, data), tx.commit())?;
                        Reconciled {
                            contact,
                            created: true,
                            rejected: Rejected::default(),
                        }
                    }
                    // The match waited for the contact's row lock while another
                    // write (an OverrideValue of the matching email) removed the
                    // key: the row it got no longer matches. Start over.
                    Some(contact) if !contact.data.keys().iter().any(|k| keys.contains(k)) => {
                        tx.rollback().await?;
                        return Ok(None);
                    }
                    Some(mut contact) => {
                        let old_keys = contact.data.keys();
                        let MergeOutcome {
                            changed_fields,
                            rejected,
                        } = contact.data.merge(incoming.clone());
                        Error::check(contact.data.check_limits("contact."))?;
                        store(tx, site, app, &mut contact, &old_keys, &changed_fields).await?;
                        Reconciled {
                            contact,
                            created: false,
                            rejected,
                        }
                    }
                }))
            })
            .await?;
        if let Some(reconciled) = reconciled {
            return Ok(reconciled);
        }
    }
    Err(Error::Internal(format!(
        "reconcile found only stale matches {MATCH_ATTEMPTS} times in a row"
    )))
}

/// Runs `edit` on the contact inside a transaction that holds its row (and
/// `lock_key`, a matching key the edit may add), and stores the result if
/// `edit` reports changed fields. `etag`, if given, must be current.
pub async fn edit_contact<T>(
    tx: &Tx<'_>,
    site: i64,
    app: &str,
    id: ContactId,
    etag: Option<&str>,
    lock_key: Option<String>,
    edit: impl FnOnce(&mut ContactData) -> Result<(T, Vec<&'static str>)>,
) -> Result<(Contact, T)> {
    tx.or_rollback(async {
        let keys = Vec::from_iter(lock_key);
        let ((), (), mut contact) = try_join!(
            tx.begin(),
            sql::lock_keys(tx, site, &keys),
            sql::lock_contact(tx, site, id)
        )?;
        if etag.is_some_and(|etag| etag != contact.etag()) {
            return Err(Error::EtagMismatch);
        }
        let old_keys = contact.data.keys();
        let (result, changed_fields) = edit(&mut contact.data)?;
        store(tx, site, app, &mut contact, &old_keys, &changed_fields).await?;
        Ok((contact, result))
    })
    .await
}

/// Deletes the contact (its keys go with it) and records the deletion.
pub async fn delete_contact(
    tx: &Tx<'_>,
    site: i64,
    app: &str,
    id: ContactId,
    etag: Option<&str>,
) -> Result<()> {
    tx.or_rollback(async {
        let ((), contact) = try_join!(tx.begin(), sql::lock_contact(tx, site, id))?;
        if etag.is_some_and(|etag| etag != contact.etag()) {
            return Err(Error::EtagMismatch);
        }
        try_join!(sql::delete_contact(tx, site, app, id), tx.commit())?;
        Ok(())
    })
    .await
}

/// Writes the changed contact and commits, in one round trip; commits alone
/// if nothing changed (a no-op writes no change record).
async fn store(
    tx: &Tx<'_>,
    site: i64,
    app: &str,
    contact: &mut Contact,
    old_keys: &[String],
    changed_fields: &[&'static str],
) -> Result<()> {
    if changed_fields.is_empty() {
        return tx.commit().await;
    }
    try_join!(
        sql::update_contact(tx, site, app, contact, old_keys, changed_fields),
        tx.commit()
    )?;
    Ok(())
}

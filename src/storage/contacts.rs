//! The contact operations: each one transaction over the statements of [`sql`].

use super::{Store, sql};
use crate::domain::{Contact, ContactData, ContactId, MergeOutcome, Rejected};
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
    /// Merges `incoming` into the earliest-created contact sharing one of its
    /// emails or phones, or creates a contact. Concurrent calls with a common
    /// key are serialized by the key locks, so they end in one contact.
    pub async fn reconcile(
        &self,
        site: i64,
        app: &str,
        incoming: ContactData,
    ) -> Result<Reconciled> {
        let keys = incoming.keys();
        let mut client = self.client().await?;
        // A retry starts a new transaction: retrying inside this one would wait
        // on a second row while holding the first (a deadlock risk) and would
        // no longer lock the contact as its first write (see `sql`).
        for _ in 0..MATCH_ATTEMPTS {
            let tx = client.transaction().await?;
            sql::lock_keys(&tx, site, &keys).await?;
            // A separate statement after the locks: it must see what the previous
            // holder of a lock committed.
            let reconciled = match sql::match_for_update(&tx, site, &keys).await? {
                None => {
                    let mut data = ContactData::default();
                    // Merging into nothing drops values the report repeats.
                    data.merge(incoming.clone());
                    let contact = sql::insert_contact(&tx, site, app, data).await?;
                    Reconciled {
                        contact,
                        created: true,
                        rejected: Rejected::default(),
                    }
                }
                // The match waited for the contact's row lock while another write
                // (an OverrideValue of the matching email) removed the key: the
                // row it got no longer matches. Start over.
                Some(contact) if !contact.data.keys().iter().any(|k| keys.contains(k)) => continue,
                Some(mut contact) => {
                    let old_keys = contact.data.keys();
                    let MergeOutcome {
                        changed_fields,
                        rejected,
                    } = contact.data.merge(incoming.clone());
                    Error::check(contact.data.check_limits("contact."))?;
                    if !changed_fields.is_empty() {
                        sql::update_contact(
                            &tx,
                            site,
                            app,
                            &mut contact,
                            &old_keys,
                            &changed_fields,
                        )
                        .await?;
                    }
                    Reconciled {
                        contact,
                        created: false,
                        rejected,
                    }
                }
            };
            tx.commit().await?;
            return Ok(reconciled);
        }
        Err(Error::Internal(format!(
            "reconcile found only stale matches {MATCH_ATTEMPTS} times in a row"
        )))
    }

    pub async fn get_contact(&self, site: i64, id: ContactId) -> Result<Option<Contact>> {
        sql::select_contact(&self.client().await?, site, id).await
    }

    /// Runs `edit` on the contact inside a transaction that holds its row (and
    /// `lock_key`, a matching key the edit may add), and stores the result if
    /// `edit` reports changed fields. `etag`, if given, must be current.
    pub async fn edit_contact<T>(
        &self,
        site: i64,
        app: &str,
        id: ContactId,
        etag: Option<&str>,
        lock_key: Option<String>,
        edit: impl FnOnce(&mut ContactData) -> Result<(T, Vec<&'static str>)>,
    ) -> Result<(Contact, T)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if let Some(key) = lock_key {
            sql::lock_keys(&tx, site, &[key]).await?;
        }
        let mut contact = sql::lock_contact(&tx, site, id).await?;
        if etag.is_some_and(|etag| etag != contact.etag()) {
            return Err(Error::EtagMismatch);
        }
        let old_keys = contact.data.keys();
        let (result, changed_fields) = edit(&mut contact.data)?;
        if !changed_fields.is_empty() {
            sql::update_contact(&tx, site, app, &mut contact, &old_keys, &changed_fields).await?;
        }
        tx.commit().await?;
        Ok((contact, result))
    }

    /// Deletes the contact (its keys go with it) and records the deletion.
    pub async fn delete_contact(
        &self,
        site: i64,
        app: &str,
        id: ContactId,
        etag: Option<&str>,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let contact = sql::lock_contact(&tx, site, id).await?;
        if etag.is_some_and(|etag| etag != contact.etag()) {
            return Err(Error::EtagMismatch);
        }
        sql::delete_contact(&tx, site, app, id).await?;
        tx.commit().await?;
        Ok(())
    }
}

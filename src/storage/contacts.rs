//! Contacts and their change records.
//!
//! Locking discipline, which keeps every write deadlock-free and the change
//! feed in per-contact commit order (see the migration's notes on
//! `contact_changes`):
//! 1. transaction-level advisory locks on the hashed matching keys a write may
//!    add or match, in ascending order;
//! 2. then the one contact row the write touches (`FOR UPDATE`, or its INSERT),
//!    which is also the transaction's first write, so it gets its xid here;
//! 3. then the row, its keys and its change record in one statement.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use super::Store;
use crate::domain::{ChangeKind, Contact, ContactData, ContactId, MergeOutcome, Rejected};
use crate::error::{Error, Result};

const COLUMNS: &str = "id, version, name_prefix, name_first, name_middle, name_last, name_suffix, \
    company_name, company_role, picture, emails, phones, addresses, urls, dates, notes, \
    custom_fields, tags, create_time, update_time";

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
        let tx = client.transaction().await?;
        lock_keys(&tx, site, &keys).await?;
        // A separate statement after the locks: it must see what the previous
        // holder of a lock committed.
        let statement = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM contacts WHERE site_id = $1 AND id IN \
                 (SELECT contact_id FROM contact_keys WHERE site_id = $1 AND key = ANY($2)) \
                 ORDER BY seq LIMIT 1 FOR UPDATE"
            ))
            .await?;
        let matched = tx.query_opt(&statement, &[&site, &keys]).await?;
        let reconciled = match matched {
            None => {
                let mut data = ContactData::default();
                // Merging into nothing drops values the report repeats.
                data.merge(incoming);
                let contact = insert_contact(&tx, site, app, data).await?;
                Reconciled {
                    contact,
                    created: true,
                    rejected: Rejected::default(),
                }
            }
            Some(row) => {
                let mut contact = contact_from_row(&row)?;
                let old_keys = contact.data.keys();
                let MergeOutcome {
                    changed_fields,
                    rejected,
                } = contact.data.merge(incoming);
                Error::check(contact.data.check_limits("contact."))?;
                if !changed_fields.is_empty() {
                    update_contact(&tx, site, app, &mut contact, &old_keys, &changed_fields)
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
        Ok(reconciled)
    }

    pub async fn get_contact(&self, site: i64, id: ContactId) -> Result<Option<Contact>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM contacts WHERE site_id = $1 AND id = $2"
            ))
            .await?;
        client
            .query_opt(&statement, &[&site, &id])
            .await?
            .map(|row| contact_from_row(&row))
            .transpose()
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
            lock_keys(&tx, site, &[key]).await?;
        }
        let mut contact = lock_contact(&tx, site, id).await?;
        if etag.is_some_and(|etag| etag != contact.etag()) {
            return Err(Error::EtagMismatch);
        }
        let old_keys = contact.data.keys();
        let (result, changed_fields) = edit(&mut contact.data)?;
        if !changed_fields.is_empty() {
            update_contact(&tx, site, app, &mut contact, &old_keys, &changed_fields).await?;
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
        let contact = lock_contact(&tx, site, id).await?;
        if etag.is_some_and(|etag| etag != contact.etag()) {
            return Err(Error::EtagMismatch);
        }
        let no_fields: &[&str] = &[];
        let statement = tx
            .prepare_cached(
                "WITH c AS (DELETE FROM contacts WHERE site_id = $1 AND id = $2 RETURNING version) \
             INSERT INTO contact_changes (site_id, contact_id, kind, changed_fields, version, app) \
             SELECT $1, $2, $3, $4, version, $5 FROM c",
            )
            .await?;
        tx.execute(
            &statement,
            &[&site, &id, &(ChangeKind::Deleted as i16), &no_fields, &app],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Takes the transaction-level advisory locks of `keys` in ascending order, so
/// that writers with overlapping keys never wait on each other in a cycle.
async fn lock_keys(client: &impl GenericClient, site: i64, keys: &[String]) -> Result<()> {
    let mut ids: Vec<i64> = keys
        .iter()
        .map(|key| {
            let digest = Sha256::new()
                .chain_update(site.to_be_bytes())
                .chain_update(key)
                .finalize();
            i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // unnest yields the array in order, so the locks are taken in that order.
    let statement = client
        .prepare_cached("SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS k")
        .await?;
    client.execute(&statement, &[&ids]).await?;
    Ok(())
}

async fn lock_contact(client: &impl GenericClient, site: i64, id: ContactId) -> Result<Contact> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM contacts WHERE site_id = $1 AND id = $2 FOR UPDATE"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&site, &id]).await?;
    let row = row.ok_or_else(|| Error::NotFound(format!("contact {id}")))?;
    contact_from_row(&row)
}

/// The contact's data as statement parameters `$3`..`$18`.
struct DataParams<'a> {
    data: &'a ContactData,
    emails: Json<&'a [crate::domain::EmailValue]>,
    phones: Json<&'a [crate::domain::PhoneValue]>,
    addresses: Json<&'a [crate::domain::AddressValue]>,
    urls: Json<&'a [crate::domain::UrlValue]>,
    dates: Json<&'a [crate::domain::DateValue]>,
    notes: Json<&'a [crate::domain::NoteValue]>,
    custom_fields: Json<&'a [crate::domain::CustomFieldValue]>,
}

impl<'a> DataParams<'a> {
    fn new(data: &'a ContactData) -> Self {
        Self {
            data,
            emails: Json(&data.emails),
            phones: Json(&data.phones),
            addresses: Json(&data.addresses),
            urls: Json(&data.urls),
            dates: Json(&data.dates),
            notes: Json(&data.notes),
            custom_fields: Json(&data.custom_fields),
        }
    }

    fn params(&'a self) -> [&'a (dyn ToSql + Sync); 16] {
        let [prefix, first, middle, last, suffix, company, role, picture] = self.data.scalars();
        [
            prefix,
            first,
            middle,
            last,
            suffix,
            company,
            role,
            picture,
            &self.emails,
            &self.phones,
            &self.addresses,
            &self.urls,
            &self.dates,
            &self.notes,
            &self.custom_fields,
            &self.data.tags,
        ]
    }
}

/// The data columns, in the order of [`DataParams::params`].
const DATA_COLUMNS: &str = "name_prefix, name_first, name_middle, name_last, name_suffix, \
    company_name, company_role, picture, emails, phones, addresses, urls, dates, notes, \
    custom_fields, tags";

/// Inserts a new contact with its keys and its CREATED record, in one statement.
async fn insert_contact(
    client: &impl GenericClient,
    site: i64,
    app: &str,
    data: ContactData,
) -> Result<Contact> {
    let id = Uuid::new_v4();
    let keys = data.keys();
    let changed_fields = data.present_fields();
    let data_params = DataParams::new(&data);
    let kind = ChangeKind::Created as i16;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&site, &id];
    params.extend(data_params.params());
    params.extend([&keys as &(dyn ToSql + Sync), &kind, &changed_fields, &app]);
    let statement = client
        .prepare_cached(&format!(
            "WITH c AS ( \
               INSERT INTO contacts (site_id, id, version, {DATA_COLUMNS}, create_time, update_time) \
               VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, now(), now()) \
               RETURNING * \
             ), k AS ( \
               INSERT INTO contact_keys (site_id, key, contact_id) SELECT $1, unnest($19::text[]), $2 \
             ), ch AS ( \
               INSERT INTO contact_changes (site_id, contact_id, kind, changed_fields, version, app, snapshot) \
               SELECT $1, $2, $20, $21, version, $22, to_jsonb(c) FROM c \
             ) \
             SELECT create_time FROM c"
        ))
        .await?;
    let row = client.query_one(&statement, &params).await?;
    let time: DateTime<Utc> = row.get(0);
    Ok(Contact {
        id,
        version: 1,
        data,
        create_time: time,
        update_time: time,
    })
}

/// Stores the edited contact, bumps its version, syncs its keys and writes its
/// UPDATED record, in one statement.
async fn update_contact(
    client: &impl GenericClient,
    site: i64,
    app: &str,
    contact: &mut Contact,
    old_keys: &[String],
    changed_fields: &[&str],
) -> Result<()> {
    let new_keys = contact.data.keys();
    let removed: Vec<&String> = old_keys.iter().filter(|k| !new_keys.contains(k)).collect();
    let added: Vec<&String> = new_keys.iter().filter(|k| !old_keys.contains(k)).collect();
    let data_params = DataParams::new(&contact.data);
    let kind = ChangeKind::Updated as i16;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&site, &contact.id];
    params.extend(data_params.params());
    params.extend([
        &removed as &(dyn ToSql + Sync),
        &added,
        &kind,
        &changed_fields,
        &app,
    ]);
    let statement = client
        .prepare_cached(&format!(
            "WITH c AS ( \
               UPDATE contacts SET version = version + 1, update_time = now(), \
                 ({DATA_COLUMNS}) = ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
               WHERE site_id = $1 AND id = $2 \
               RETURNING * \
             ), kd AS ( \
               DELETE FROM contact_keys WHERE site_id = $1 AND contact_id = $2 AND key = ANY($19) \
             ), ki AS ( \
               INSERT INTO contact_keys (site_id, key, contact_id) SELECT $1, unnest($20::text[]), $2 \
               ON CONFLICT DO NOTHING \
             ), ch AS ( \
               INSERT INTO contact_changes (site_id, contact_id, kind, changed_fields, version, app, snapshot) \
               SELECT $1, $2, $21, $22, version, $23, to_jsonb(c) FROM c \
             ) \
             SELECT version, update_time FROM c"
        ))
        .await?;
    let row = client.query_one(&statement, &params).await?;
    let (version, update_time) = (row.get(0), row.get(1));
    contact.version = version;
    contact.update_time = update_time;
    Ok(())
}

fn contact_from_row(row: &Row) -> Result<Contact> {
    fn json<'a, T: serde::Deserialize<'a>>(row: &'a Row, index: usize) -> Result<T> {
        row.try_get::<_, Json<T>>(index)
            .map(|Json(value)| value)
            .map_err(|e| Error::Internal(format!("decoding column {index} of a contact: {e}")))
    }
    let text = |i: usize| row.get::<_, String>(i);
    Ok(Contact {
        id: row.get(0),
        version: row.get(1),
        data: ContactData {
            name: crate::domain::Name {
                prefix: text(2),
                first: text(3),
                middle: text(4),
                last: text(5),
                suffix: text(6),
            },
            company: crate::domain::Company {
                name: text(7),
                role: text(8),
            },
            picture: text(9),
            emails: json(row, 10)?,
            phones: json(row, 11)?,
            addresses: json(row, 12)?,
            urls: json(row, 13)?,
            dates: json(row, 14)?,
            notes: json(row, 15)?,
            custom_fields: json(row, 16)?,
            tags: row.get(17),
        },
        create_time: row.get(18),
        update_time: row.get(19),
    })
}

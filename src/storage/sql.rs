//! The statements of the contact RPCs. Public so that `contactsd-bench` sends
//! exactly these, with the same parameters, as its bare-SQL baseline.
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
use tokio_postgres::Statement;

use super::tx::Tx;
use sha2::{Digest, Sha256};
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use crate::domain::{ChangeKind, Contact, ContactData, ContactId, Field, ReadMask};
use crate::error::{Error, Result};

/// The columns of a whole contact, in the order [`contact_from_row`] reads them.
macro_rules! columns {
    () => {
        "id, version, name_prefix, name_first, name_middle, name_last, name_suffix, \
         company_name, company_role, picture, emails, phones, addresses, urls, dates, notes, \
         custom_fields, tags, create_time, update_time"
    };
}

pub const SELECT_CONTACT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM contacts WHERE site_id = $1 AND id = $2"
);
const LOCK_CONTACT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM contacts WHERE site_id = $1 AND id = $2 FOR UPDATE"
);
/// The earliest-created contact holding one of the keys `$2`, locked.
const MATCH_FOR_UPDATE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM contacts WHERE site_id = $1 AND id IN \
     (SELECT contact_id FROM contact_keys WHERE site_id = $1 AND key = ANY($2)) \
     ORDER BY seq LIMIT 1 FOR UPDATE"
);

/// unnest yields the array in order, so the locks are taken in that order.
const LOCK_KEYS: &str = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS k";
const DELETE_CONTACT: &str = "WITH c AS (DELETE FROM contacts WHERE site_id = $1 AND id = $2 RETURNING version) \
     INSERT INTO contact_changes (site_id, contact_id, kind, changed_fields, version, app) \
     SELECT $1, $2, $3, '{}', version, $4 FROM c";

/// The statements of the writes, prepared before a transaction starts. A
/// pipelined statement's request leaves on its future's first poll only if it
/// needs no preparing then; one still being prepared would be overtaken by the
/// BEGIN or COMMIT joined with it and run outside the transaction. Taking the
/// statements from here makes that impossible.
pub struct WriteStatements {
    lock_keys: Statement,
    match_for_update: Statement,
    lock_contact: Statement,
    insert_contact: Statement,
    update_contact: Statement,
    delete_contact: Statement,
}

/// Prepares the writes' statements (once per connection; cached after). On
/// a new connection the six preparations travel together: one round trip,
/// not six, before its first write.
pub(super) async fn prepare_writes(client: &impl GenericClient) -> Result<WriteStatements> {
    let (lock_keys, match_for_update, lock_contact, insert_contact, update_contact, delete_contact) =
        tokio::try_join!(
            client.prepare_cached(LOCK_KEYS),
            client.prepare_cached(MATCH_FOR_UPDATE),
            client.prepare_cached(LOCK_CONTACT),
            client.prepare_cached(INSERT_CONTACT),
            client.prepare_cached(UPDATE_CONTACT),
            client.prepare_cached(DELETE_CONTACT),
        )?;
    Ok(WriteStatements {
        lock_keys,
        match_for_update,
        lock_contact,
        insert_contact,
        update_contact,
        delete_contact,
    })
}

/// The columns of a contact as [`contact_from_row`] reads them, with each
/// array a read mask leaves out replaced by an empty constant: PostgreSQL then
/// neither detoasts nor serializes it. Names, company and picture are small
/// and always read; projecting arrays only keeps the number of distinct
/// prepared statements per connection bounded (2^8).
pub fn projected_columns(mask: ReadMask) -> String {
    let arrays = [
        (Field::Emails, "emails"),
        (Field::Phones, "phones"),
        (Field::Addresses, "addresses"),
        (Field::Urls, "urls"),
        (Field::Dates, "dates"),
        (Field::Notes, "notes"),
        (Field::CustomFields, "custom_fields"),
    ];
    let mut columns = String::from(
        "id, version, name_prefix, name_first, name_middle, name_last, name_suffix, company_name, \
         company_role, picture",
    );
    for (field, column) in arrays {
        columns.push_str(if mask.contains(field) {
            ", "
        } else {
            ", '[]'::jsonb AS "
        });
        columns.push_str(column);
    }
    columns.push_str(if mask.contains(Field::Tags) {
        ", tags"
    } else {
        ", '{}'::text[] AS tags"
    });
    columns.push_str(", create_time, update_time");
    columns
}

/// What ListContacts filters on, normalized: an email key, an E.164 phone,
/// names as given (compared case-insensitively by the query).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ListFilter {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

impl ListFilter {
    /// Whether a page is a point read: few contacts share an email or phone
    /// key, while other pages read up to a page of rows.
    pub fn is_point_read(&self) -> bool {
        self.email.is_some() || self.phone.is_some()
    }
}

/// One page of a site's contacts in creation order, after `after_seq`, and
/// the snapshot it was read in (`pg_current_snapshot()` as text, for the
/// change feed's list-then-watch cursor). Returns at most `limit` contacts
/// with their `seq`.
pub async fn list_contacts(
    client: &impl GenericClient,
    site: i64,
    filter: &ListFilter,
    after_seq: i64,
    limit: i64,
    mask: ReadMask,
) -> Result<(Vec<(Contact, i64)>, String)> {
    // Each filter is an index: emails and phones through contact_keys, names
    // through (site_id, lower(name), seq), which also yields creation order.
    let mut conditions = String::new();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&site, &after_seq, &limit];
    for (value, condition) in [
        (
            &filter.email,
            "id IN (SELECT contact_id FROM contact_keys WHERE site_id = $1 AND key = $N)",
        ),
        (
            &filter.phone,
            "id IN (SELECT contact_id FROM contact_keys WHERE site_id = $1 AND key = $N)",
        ),
        // Both sides through PostgreSQL's lower(), which is what the indexes
        // hold; Rust's lowercasing differs (final sigma, C-locale databases).
        (&filter.first_name, "lower(name_first) = lower($N)"),
        (&filter.last_name, "lower(name_last) = lower($N)"),
    ] {
        if let Some(value) = value {
            params.push(value);
            conditions.push_str(" AND ");
            conditions.push_str(&condition.replace("$N", &format!("${}", params.len())));
        }
    }
    // The LATERAL join returns the snapshot even for an empty page.
    let sql = format!(
        "SELECT s.snapshot, c.* FROM (SELECT pg_current_snapshot()::text AS snapshot) s \
         LEFT JOIN LATERAL (SELECT {}, seq FROM contacts WHERE site_id = $1 AND seq > $2{conditions} \
         ORDER BY seq LIMIT $3) c ON true",
        projected_columns(mask)
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &params).await?;
    let snapshot: String = rows.first().map(|r| r.get(0)).unwrap_or_default();
    let mut contacts = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.get::<_, Option<Uuid>>(1).is_some() {
            contacts.push((contact_from_row_at(row, 1)?, row.get(21)));
        }
    }
    Ok((contacts, snapshot))
}

pub async fn select_contact(
    client: &impl GenericClient,
    site: i64,
    id: ContactId,
    mask: ReadMask,
) -> Result<Option<Contact>> {
    let statement = if mask == ReadMask::ALL {
        client.prepare_cached(SELECT_CONTACT).await?
    } else {
        let sql = format!(
            "SELECT {} FROM contacts WHERE site_id = $1 AND id = $2",
            projected_columns(mask)
        );
        client.prepare_cached(&sql).await?
    };
    client
        .query_opt(&statement, &[&site, &id])
        .await?
        .map(|row| contact_from_row(&row))
        .transpose()
}

/// The earliest-created contact sharing one of `keys`, row-locked. Must run
/// after [`lock_keys`] in its own statement, to see what the previous holder
/// of a key lock committed.
pub async fn match_for_update(tx: &Tx<'_>, site: i64, keys: &[String]) -> Result<Option<Contact>> {
    let (client, statement) = (tx.client(), &tx.statements().match_for_update);
    client
        .query_opt(statement, &[&site, &keys])
        .await?
        .map(|row| contact_from_row(&row))
        .transpose()
}

/// Deletes the (locked) contact, its keys by cascade, and records the deletion.
pub async fn delete_contact(tx: &Tx<'_>, site: i64, app: &str, id: ContactId) -> Result<()> {
    let (client, statement) = (tx.client(), &tx.statements().delete_contact);
    client
        .execute(
            statement,
            &[&site, &id, &(ChangeKind::Deleted as i16), &app],
        )
        .await?;
    Ok(())
}

/// Takes the transaction-level advisory locks of `keys` in ascending order, so
/// that writers with overlapping keys never wait on each other in a cycle.
/// Sends nothing when there are no keys.
pub async fn lock_keys(tx: &Tx<'_>, site: i64, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
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
    let (client, statement) = (tx.client(), &tx.statements().lock_keys);
    client.execute(statement, &[&ids]).await?;
    Ok(())
}

pub async fn lock_contact(tx: &Tx<'_>, site: i64, id: ContactId) -> Result<Contact> {
    let (client, statement) = (tx.client(), &tx.statements().lock_contact);
    let row = client.query_opt(statement, &[&site, &id]).await?;
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
macro_rules! data_columns {
    () => {
        "name_prefix, name_first, name_middle, name_last, name_suffix, company_name, company_role, \
         picture, emails, phones, addresses, urls, dates, notes, custom_fields, tags"
    };
}

const INSERT_CONTACT: &str = concat!(
    "WITH c AS ( \
       INSERT INTO contacts (site_id, id, version, ",
    data_columns!(),
    ", create_time, update_time) \
       VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, now(), now()) \
       RETURNING * \
     ), k AS ( \
       INSERT INTO contact_keys (site_id, key, contact_id) SELECT $1, unnest($19::text[]), $2 \
     ), ch AS ( \
       INSERT INTO contact_changes (site_id, contact_id, kind, changed_fields, version, app, snapshot) \
       SELECT $1, $2, $20, $21, version, $22, to_jsonb(c) FROM c \
     ) \
     SELECT create_time FROM c"
);

/// Inserts a new contact with its keys and its CREATED record, in one statement.
pub async fn insert_contact(
    tx: &Tx<'_>,
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
    let (client, statement) = (tx.client(), &tx.statements().insert_contact);
    let row = client.query_one(statement, &params).await?;
    let time: DateTime<Utc> = row.get(0);
    Ok(Contact {
        id,
        version: 1,
        data,
        create_time: time,
        update_time: time,
    })
}

const UPDATE_CONTACT: &str = concat!(
    "WITH c AS ( \
       UPDATE contacts SET version = version + 1, update_time = now(), (",
    data_columns!(),
    ") = ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
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
);

/// Stores the edited contact, bumps its version, syncs its keys and writes its
/// UPDATED record, in one statement.
pub async fn update_contact(
    tx: &Tx<'_>,
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
    let (client, statement) = (tx.client(), &tx.statements().update_contact);
    let row = client.query_one(statement, &params).await?;
    let (version, update_time) = (row.get(0), row.get(1));
    contact.version = version;
    contact.update_time = update_time;
    Ok(())
}

pub fn contact_from_row(row: &Row) -> Result<Contact> {
    contact_from_row_at(row, 0)
}

/// Reads a contact from the columns of [`columns!`] starting at `at`.
fn contact_from_row_at(row: &Row, at: usize) -> Result<Contact> {
    fn json<'a, T: serde::Deserialize<'a>>(row: &'a Row, index: usize) -> Result<T> {
        row.try_get::<_, Json<T>>(index)
            .map(|Json(value)| value)
            .map_err(|e| Error::Internal(format!("decoding column {index} of a contact: {e}")))
    }
    let text = |i: usize| row.get::<_, String>(at + i);
    Ok(Contact {
        id: row.get(at),
        version: row.get(at + 1),
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
            emails: json(row, at + 10)?,
            phones: json(row, at + 11)?,
            addresses: json(row, at + 12)?,
            urls: json(row, at + 13)?,
            dates: json(row, at + 14)?,
            notes: json(row, at + 15)?,
            custom_fields: json(row, at + 16)?,
            tags: row.get(at + 17),
        },
        create_time: row.get(at + 18),
        update_time: row.get(at + 19),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mask_projects_exactly_the_columns_a_contact_is_read_from() {
        assert_eq!(projected_columns(ReadMask::ALL), columns!());
    }

    #[test]
    fn a_mask_leaves_unasked_arrays_unread_but_keeps_their_place() {
        let mask = ReadMask::parse("m", &["name".into(), "emails".into()]).unwrap();
        let columns = projected_columns(mask);
        assert!(columns.contains(", emails,") && columns.contains("'[]'::jsonb AS phones"));
        assert_eq!(columns.split(", ").count(), columns!().split(", ").count());
    }
}

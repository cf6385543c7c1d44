//! The change table as the change feed reads it.
//!
//! Feed order is (xid, seq); a reader reads only below the horizon
//! `pg_snapshot_xmin(pg_current_snapshot())`, where every transaction has
//! finished, so no change can later appear behind a position already read
//! (see the notes on `contact_changes` in the first migration).

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Store;
use crate::domain::{
    AddressValue, ChangeKind, Company, Contact, ContactData, CustomFieldValue, DateValue,
    EmailValue, Name, NoteValue, PhoneValue, UrlValue,
};
use crate::error::{Error, Result};

/// A position in the feed: every change at or before it is behind the reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub xid: u64,
    pub seq: i64,
}

impl Position {
    /// Just before the first change of transaction `xid`: the position of a horizon.
    pub fn before_xid(xid: u64) -> Self {
        Self { xid, seq: 0 }
    }
}

/// The changes a cursor has already seen besides those at or before its
/// position: those of the transactions visible in a snapshot (a ListContacts
/// read). `xmax` and `xip` as in `pg_snapshot`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenSnapshot {
    pub xmax: u64,
    pub xip: Vec<u64>,
}

impl SeenSnapshot {
    /// Whether the snapshot already saw the changes of `xid`.
    pub fn saw(&self, xid: u64) -> bool {
        xid < self.xmax && !self.xip.contains(&xid)
    }
}

/// One change record.
#[derive(Debug)]
pub struct Change {
    pub position: Position,
    pub site: i64,
    pub contact_id: Uuid,
    pub kind: ChangeKind,
    pub changed_fields: Vec<String>,
    pub version: i64,
    pub time: DateTime<Utc>,
    snapshot: Option<String>,
    contact: OnceLock<Option<Contact>>,
}

impl Change {
    /// The contact after the change (none for deletions), parsed once however
    /// many watchers ask.
    pub fn contact(&self) -> Option<&Contact> {
        self.contact
            .get_or_init(|| {
                let json = self.snapshot.as_deref()?;
                match serde_json::from_str::<SnapshotRow>(json) {
                    Ok(row) => Some(row.into()),
                    Err(error) => {
                        tracing::error!(%error, contact = %self.contact_id, "unreadable change snapshot");
                        None
                    }
                }
            })
            .as_ref()
    }
}

/// A page of the feed and how far it reaches: every change up to `reach` is
/// in this page or before it, or was pruned (see `pruned`).
pub struct FeedPage {
    pub changes: Vec<Change>,
    pub reach: Position,
    /// How far the feed was pruned when the page was read: a cursor before
    /// it may have missed changes the page no longer holds.
    pub pruned: Position,
}

/// A page of the change records matching `$filter`, in feed order, below the
/// horizon, at most `$limit`; the horizon and the prune mark come back on
/// every row, and alone when no change matches. Columns as
/// [`change_from_row`] reads them. The prune mark is read in the page's own
/// snapshot: if it is not past where the page starts, no row the page should
/// hold had been pruned. (It is one mark for every site, so past it only says
/// that rows may be missing.) `LIMIT 1` keeps the planner from guessing that
/// the never-analyzed one-row `feed_state` is large and materializing every
/// page behind it (measured: a full page twice as slow, with temp files).
///
/// The xid goes out as text under another name: an output column named `xid`
/// would capture `ORDER BY xid`, which would then sort "10" before "9" and
/// skip changes wherever xids gain a digit (and sort, rather than walk the
/// index).
macro_rules! feed_page {
    ($filter:literal, $limit:literal) => {
        concat!(
            "SELECT h.horizon, h.pruned_xid, h.pruned_seq, c.* FROM \
               (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon, \
                  pruned_xid::text AS pruned_xid, pruned_seq FROM feed_state LIMIT 1) h \
             LEFT JOIN LATERAL (SELECT xid::text AS xid_text, seq, site_id, contact_id, kind, changed_fields, version, \
               change_time, snapshot::text FROM contact_changes WHERE ",
            $filter,
            " AND xid < h.horizon::xid8 ORDER BY xid, seq LIMIT ",
            $limit,
            ") c ON true"
        )
    };
}

/// Every site's changes after a position.
const CHANGES_AFTER: &str = feed_page!("(xid, seq) > ($1::text::xid8, $2)", "$3");
/// One site's changes after a position that a snapshot (`$4` xmax, `$5` in
/// progress) did not see. Written as a CASE, not `NOT (xid < $4 AND xid <>
/// ALL($5))`: PostgreSQL turns that into an OR of two index conditions and
/// then sorts the site's whole remaining history for every page, where the
/// CASE stays a filter on the index walk that the LIMIT stops.
const SITE_CHANGES_AFTER: &str = feed_page!(
    "site_id = $1 AND (xid, seq) > ($2::text::xid8, $3) \
     AND CASE WHEN xid < $4::text::xid8 THEN xid = ANY($5::text[]::xid8[]) ELSE true END",
    "$6"
);

/// An xid8 as the queries send it: text, since tokio-postgres has no xid8 type.
fn xid_at(row: &Row, at: usize) -> Result<u64> {
    let xid: String = row.get(at);
    xid.parse()
        .map_err(|_| Error::Internal(format!("unreadable xid {xid:?}")))
}

fn change_from_row(row: &Row, at: usize) -> Result<Change> {
    Ok(Change {
        position: Position {
            xid: xid_at(row, at)?,
            seq: row.get(at + 1),
        },
        site: row.get(at + 2),
        contact_id: row.get(at + 3),
        kind: ChangeKind::try_from(row.get::<_, i16>(at + 4))
            .map_err(|kind| Error::Internal(format!("unknown change kind {kind}")))?,
        changed_fields: row.get(at + 5),
        version: row.get(at + 6),
        time: row.get(at + 7),
        snapshot: row.get(at + 8),
        contact: OnceLock::new(),
    })
}

fn page_from_rows(rows: Vec<Row>, after: Position, limit: i64) -> Result<FeedPage> {
    // The LATERAL join returns at least one row: the horizon and prune mark alone.
    let first = rows
        .first()
        .ok_or_else(|| Error::Internal("a feed page without its horizon".into()))?;
    let horizon = xid_at(first, 0)?;
    let pruned = Position {
        xid: xid_at(first, 1)?,
        seq: first.get(2),
    };
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.get::<_, Option<String>>(3).is_some() {
            changes.push(change_from_row(row, 3)?);
        }
    }
    let last = changes.last().map_or(after, |c| c.position);
    // A full page may stop short of the horizon; otherwise it reaches it.
    let reach = if changes.len() as i64 >= limit {
        last
    } else {
        last.max(Position::before_xid(horizon))
    };
    Ok(FeedPage {
        changes,
        reach,
        pruned,
    })
}

impl Store {
    /// The one row of a short parameterless statement, as a point read,
    /// prepared once per connection (these run every poll and every watch).
    async fn one_row(&self, sql: &'static str) -> Result<Row> {
        self.readers
            .run(|reader| async move {
                let statement = reader.prepare_cached(sql).await?;
                Ok(reader.query_one(&statement, &[]).await?)
            })
            .await
    }

    /// The current horizon as a position: every change before it is readable.
    pub async fn feed_horizon(&self) -> Result<Position> {
        let row = self
            .one_row("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            .await?;
        Ok(Position::before_xid(xid_at(&row, 0)?))
    }

    /// The current snapshot (`xmin:xmax:xip,…`): what a watch starting now has seen.
    pub async fn feed_snapshot(&self) -> Result<String> {
        let row = self.one_row("SELECT pg_current_snapshot()::text").await?;
        Ok(row.get(0))
    }

    /// Up to `limit` changes of every site after `after`, below the horizon.
    pub async fn changes_after(&self, after: Position, limit: i64) -> Result<FeedPage> {
        let rows = self
            .exclusive(async |client| {
                let statement = client.prepare_cached(CHANGES_AFTER).await?;
                Ok(client
                    .query(&statement, &[&after.xid.to_string(), &after.seq, &limit])
                    .await?)
            })
            .await?;
        page_from_rows(rows, after, limit)
    }

    /// Up to `limit` changes of `site` after `after` that `seen` did not see,
    /// below the horizon.
    pub async fn site_changes_after(
        &self,
        site: i64,
        after: Position,
        seen: &SeenSnapshot,
        limit: i64,
    ) -> Result<FeedPage> {
        let xip: Vec<String> = seen.xip.iter().map(u64::to_string).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &site,
            &after.xid.to_string(),
            &after.seq,
            &seen.xmax.to_string(),
            &xip,
            &limit,
        ];
        let rows = self
            .exclusive(async |client| {
                let statement = client.prepare_cached(SITE_CHANGES_AFTER).await?;
                Ok(client.query(&statement, &params).await?)
            })
            .await?;
        page_from_rows(rows, after, limit)
    }

    /// The position up to which the feed has been pruned.
    pub async fn feed_pruned_through(&self) -> Result<Position> {
        let row = self
            .one_row("SELECT pruned_xid::text, pruned_seq FROM feed_state")
            .await?;
        Ok(Position {
            xid: xid_at(&row, 0)?,
            seq: row.get(1),
        })
    }

    /// Deletes the oldest changes recorded before `cutoff`, in feed order, and
    /// records how far it got. Returns how many it deleted.
    pub async fn prune_changes(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        const BATCH: usize = 5000;
        let mut deleted = 0;
        // Batch by batch, each within the timeout: a long backlog is not a stall.
        loop {
            let batch = self
                .exclusive(async |client| {
                    // The oldest changes in feed order, up to the first one still kept;
                    // only below the horizon, so that a transaction still running now
                    // cannot commit rows behind the boundary that were never checked.
                    let rows = client
                        .query(
                            "SELECT xid::text AS xid_text, seq, change_time < $1 FROM contact_changes \
                             WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid, seq LIMIT 5000",
                            &[&cutoff],
                        )
                        .await?;
                    let batch = rows.iter().take_while(|r| r.get::<_, bool>(2)).count();
                    let Some(boundary) = batch.checked_sub(1).map(|last| &rows[last]) else {
                        return Ok(None);
                    };
                    let (xid, seq): (String, i64) = (boundary.get(0), boundary.get(1));
                    let n = client
                        .execute(
                            // Through the index in feed order, whatever the statistics say
                            // (the plain row comparison can plan as a full scan).
                            "WITH d AS (DELETE FROM contact_changes WHERE (xid, seq) IN ( \
                               SELECT xid, seq FROM contact_changes WHERE (xid, seq) <= ($1::text::xid8, $2) \
                               ORDER BY xid, seq LIMIT 5000)) \
                             UPDATE feed_state SET pruned_xid = $1::text::xid8, pruned_seq = $2 \
                             WHERE (pruned_xid, pruned_seq) < ($1::text::xid8, $2)",
                            &[&xid, &seq],
                        )
                        .await?;
                    Ok(Some((batch, n)))
                })
                .await?;
            let Some((batch, updated)) = batch else {
                return Ok(deleted);
            };
            deleted += batch as u64;
            if updated == 0 || batch < BATCH {
                return Ok(deleted);
            }
        }
    }
}

/// A change's snapshot: the contact row as `to_jsonb` wrote it.
#[derive(Deserialize)]
struct SnapshotRow {
    id: Uuid,
    version: i64,
    name_prefix: String,
    name_first: String,
    name_middle: String,
    name_last: String,
    name_suffix: String,
    company_name: String,
    company_role: String,
    picture: String,
    emails: Vec<EmailValue>,
    phones: Vec<PhoneValue>,
    addresses: Vec<AddressValue>,
    urls: Vec<UrlValue>,
    dates: Vec<DateValue>,
    notes: Vec<NoteValue>,
    custom_fields: Vec<CustomFieldValue>,
    tags: Vec<String>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl From<SnapshotRow> for Contact {
    fn from(r: SnapshotRow) -> Self {
        Contact {
            id: r.id,
            version: r.version,
            data: ContactData {
                name: Name {
                    prefix: r.name_prefix,
                    first: r.name_first,
                    middle: r.name_middle,
                    last: r.name_last,
                    suffix: r.name_suffix,
                },
                company: Company {
                    name: r.company_name,
                    role: r.company_role,
                },
                picture: r.picture,
                emails: r.emails,
                phones: r.phones,
                addresses: r.addresses,
                urls: r.urls,
                dates: r.dates,
                notes: r.notes,
                custom_fields: r.custom_fields,
                tags: r.tags,
            },
            create_time: r.create_time,
            update_time: r.update_time,
        }
    }
}

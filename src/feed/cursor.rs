//! Watch cursors: opaque to clients, bound to a site, signed.
//!
//! A cursor says which changes a client has seen: those at or before a feed
//! position, plus (after ListContacts) those of the transactions its list read
//! saw. Layout (base64url): version | site | xid | seq | snapshot xmax |
//! count of in-progress xids | xids… | HMAC-SHA256 truncated to 12 bytes.

use crate::domain::Invalid;
use crate::sealed;
use crate::storage::feed::{Position, SeenSnapshot};

const VERSION: u8 = 1;
const MAC: usize = 12;
/// More in-progress transactions than this in one snapshot is not a real workload.
const MAX_XIP: usize = 4_096;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub site: i64,
    pub after: Position,
    pub seen: SeenSnapshot,
}

impl Cursor {
    /// The cursor of a read in snapshot `xmin:xmax:xip,…` (as PostgreSQL
    /// writes `pg_current_snapshot()`).
    pub fn from_snapshot(site: i64, snapshot: &str) -> crate::error::Result<Self> {
        Self::parse_snapshot(site, snapshot).ok_or_else(|| {
            crate::error::Error::Internal(format!("unreadable snapshot {snapshot:?}"))
        })
    }

    fn parse_snapshot(site: i64, snapshot: &str) -> Option<Self> {
        let mut parts = snapshot.split(':');
        let xmin: u64 = parts.next()?.parse().ok()?;
        let xmax: u64 = parts.next()?.parse().ok()?;
        let xip = parts
            .next()?
            .split(',')
            .filter(|x| !x.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        Some(
            Self {
                site,
                after: Position::before_xid(xmin),
                seen: SeenSnapshot { xmax, xip },
            }
            .settled(),
        )
    }

    /// Fails with CURSOR_EXPIRED if the feed was pruned past this cursor:
    /// changes after it may be gone. A cursor exactly at the mark has seen
    /// everything pruned.
    pub fn retained(&self, pruned: Position) -> crate::error::Result<()> {
        if self.after < pruned {
            return Err(crate::error::Error::CursorExpired);
        }
        Ok(())
    }

    /// Whether the client has seen the change at `position`.
    pub fn has_seen(&self, position: Position) -> bool {
        position <= self.after || self.seen.saw(position.xid)
    }

    /// Moves past `position` (a delivered change, or a horizon the feed reached).
    pub fn advance(&mut self, position: Position) {
        if position > self.after {
            self.after = position;
            *self = std::mem::take(self).settled();
        }
    }

    /// Drops the snapshot once the position covers everything it saw.
    fn settled(mut self) -> Self {
        if self.after.xid >= self.seen.xmax {
            self.seen = SeenSnapshot::default();
        }
        self
    }

    pub fn encode(&self, secret: &[u8]) -> String {
        let mut bytes = vec![VERSION];
        bytes.extend(self.site.to_be_bytes());
        bytes.extend(self.after.xid.to_be_bytes());
        bytes.extend(self.after.seq.to_be_bytes());
        bytes.extend(self.seen.xmax.to_be_bytes());
        bytes.extend((self.seen.xip.len() as u32).to_be_bytes());
        for xid in &self.seen.xip {
            bytes.extend(xid.to_be_bytes());
        }
        sealed::seal(secret, bytes, MAC)
    }

    /// Reads a cursor this service issued to `site`.
    pub fn decode(secret: &[u8], site: i64, text: &str) -> Result<Self, Invalid> {
        let invalid =
            || "is not a cursor this service issued (it may have been altered)".to_owned();
        let body = sealed::open(secret, text, MAC).ok_or_else(invalid)?;
        if body.len() < 1 + 8 * 4 + 4 || body[0] != VERSION {
            return Err(invalid());
        }
        let u64_at = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let count = u32::from_be_bytes(body[33..37].try_into().expect("4 bytes")) as usize;
        if count > MAX_XIP || body.len() != 37 + 8 * count {
            return Err(invalid());
        }
        let cursor = Self {
            site: u64_at(1) as i64,
            after: Position {
                xid: u64_at(9),
                seq: u64_at(17) as i64,
            },
            seen: SeenSnapshot {
                xmax: u64_at(25),
                xip: (0..count).map(|i| u64_at(37 + 8 * i)).collect(),
            },
        };
        if cursor.site != site {
            return Err(invalid());
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn a_list_cursor_has_seen_what_its_snapshot_saw_until_the_feed_passes_it() {
        let mut cursor = Cursor::from_snapshot(1, "100:110:103,105").unwrap();
        assert!(cursor.has_seen(Position { xid: 99, seq: 7 }));
        assert!(
            cursor.has_seen(Position { xid: 104, seq: 7 }),
            "visible in the snapshot"
        );
        assert!(
            !cursor.has_seen(Position { xid: 103, seq: 7 }),
            "in progress at the read"
        );
        assert!(!cursor.has_seen(Position { xid: 110, seq: 7 }));
        cursor.advance(Position { xid: 103, seq: 7 });
        assert!(
            cursor.has_seen(Position { xid: 104, seq: 1 })
                && !cursor.has_seen(Position { xid: 105, seq: 1 })
        );
        cursor.advance(Position::before_xid(111));
        assert_eq!(cursor.seen, SeenSnapshot::default());
    }

    #[test]
    fn cursors_round_trip_and_refuse_alteration_and_other_sites() {
        let secret = b"secret";
        let cursor = Cursor::from_snapshot(7, "100:110:103").unwrap();
        let text = cursor.encode(secret);
        assert_eq!(Cursor::decode(secret, 7, &text), Ok(cursor));
        assert!(Cursor::decode(secret, 8, &text).is_err());
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        bytes[12] ^= 1;
        assert!(Cursor::decode(secret, 7, &URL_SAFE_NO_PAD.encode(bytes)).is_err());
        assert!(Cursor::decode(secret, 7, "nonsense").is_err());
    }
}

//! Sites and their API keys.

use super::Store;
use crate::error::Result;

/// What a key grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub site_id: i64,
    pub app: String,
    pub can_read: bool,
    pub can_write: bool,
}

/// What a new key is to grant.
pub struct Grant<'a> {
    pub app: &'a str,
    pub can_read: bool,
    pub can_write: bool,
}

impl Store {
    /// Stores a key (by its hash) for `app` on the site named `site`, creating
    /// the site if needed.
    pub async fn create_key(&self, site: &str, key_hash: &[u8], grant: &Grant<'_>) -> Result<i64> {
        // One statement, so one transaction: the site and its key, or neither.
        // DO UPDATE (to the same value) so that RETURNING yields the id either way.
        let row = self
            .exclusive(async |client| {
                Ok(client
                    .query_one(
                        "WITH site AS ( \
                           INSERT INTO sites (name) VALUES ($1) \
                           ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id) \
                         INSERT INTO api_keys (site_id, app, key_hash, can_read, can_write) \
                         SELECT id, $2, $3, $4, $5 FROM site RETURNING site_id",
                        &[
                            &site,
                            &grant.app,
                            &key_hash,
                            &grant.can_read,
                            &grant.can_write,
                        ],
                    )
                    .await?)
            })
            .await?;
        Ok(row.get(0))
    }

    pub async fn find_key(&self, key_hash: &[u8]) -> Result<Option<KeyRecord>> {
        let row = self
            .exclusive(async |client| {
                let statement = client
                    .prepare_cached(
                        "SELECT site_id, app, can_read, can_write FROM api_keys WHERE key_hash = $1",
                    )
                    .await?;
                Ok(client.query_opt(&statement, &[&key_hash]).await?)
            })
            .await?;
        Ok(row.map(|row| KeyRecord {
            site_id: row.get(0),
            app: row.get(1),
            can_read: row.get(2),
            can_write: row.get(3),
        }))
    }
}

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
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // DO UPDATE (to the same value) so that RETURNING yields the id either way.
        let site_id: i64 = tx
            .query_one(
                "INSERT INTO sites (name) VALUES ($1) \
                 ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                &[&site],
            )
            .await?
            .get(0);
        tx.execute(
            "INSERT INTO api_keys (site_id, app, key_hash, can_read, can_write) VALUES ($1, $2, $3, $4, $5)",
            &[&site_id, &grant.app, &key_hash, &grant.can_read, &grant.can_write],
        )
        .await?;
        tx.commit().await?;
        Ok(site_id)
    }

    pub async fn find_key(&self, key_hash: &[u8]) -> Result<Option<KeyRecord>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT site_id, app, can_read, can_write FROM api_keys WHERE key_hash = $1",
            )
            .await?;
        Ok(client
            .query_opt(&statement, &[&key_hash])
            .await?
            .map(|row| KeyRecord {
                site_id: row.get(0),
                app: row.get(1),
                can_read: row.get(2),
                can_write: row.get(3),
            }))
    }
}

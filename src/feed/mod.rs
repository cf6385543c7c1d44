//! The change feed: one reader per process feeding every local watcher.
//!
//! The reader polls the change table below the horizon (see
//! [`crate::storage::feed`]) and broadcasts each page to all watchers, so
//! database work does not grow with the number of watchers. A watcher catches
//! up from the table from its own cursor, then follows the broadcast; if it
//! falls behind (a slow client), it drops back to the table and catches up
//! again, so a slow client never holds up writers, the reader or other
//! watchers, and costs bounded memory. Replicas each run their own reader over
//! the same table, so a change written through one reaches watchers of all.
//! There is no LISTEN/NOTIFY: every notifying commit would take a
//! database-wide lock, and polling a range scan every few milliseconds costs
//! less than that.

pub mod cursor;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::domain::etag_of;
use crate::error::{Error, Result};
use crate::storage::Store;
use crate::storage::feed::{Change, FeedPage, Position, SeenSnapshot};
use cursor::Cursor;

/// Changes per reader poll and per catch-up read.
const PAGE: i64 = 1_000;
/// Pages the broadcast keeps for watchers that are behind.
const BROADCAST_PAGES: usize = 256;
/// Events a watcher's client may have unread before the watcher waits.
const CLIENT_BUFFER: usize = 256;

#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// How often the reader looks for new changes.
    pub poll: Duration,
    /// How long an idle stream waits before it sends a heartbeat.
    pub heartbeat: Duration,
    /// How long change records are kept; older cursors are expired.
    pub retention: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(20),
            heartbeat: Duration::from_secs(15),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Waits `duration`, or less if shutdown begins.
async fn pause(shutdown: &mut watch::Receiver<bool>, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        _ = shutdown.changed() => {}
    }
}

/// Completes once shutdown has begun (without holding the watch's lock).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// What a watcher's stream carries, cursors already encoded.
pub enum Item {
    /// A change, and the cursor just after it.
    Change(Arc<Event>, String),
    /// Nothing happened; the current cursor.
    Heartbeat(String),
}

/// A change with what every watcher sends of it computed once, not once per
/// watcher: with a thousand watchers, that is most of the fan-out's work.
pub struct Event {
    pub change: Change,
    pub contact_id: String,
    /// The contact's etag after the change; empty for a deletion.
    pub etag: String,
    /// The cursor just after this change, for watchers with nothing else to
    /// remember (all of a site's live watchers share it).
    cursor: OnceLock<String>,
}

impl Event {
    fn new(change: Change) -> Arc<Self> {
        let etag = if change.kind == 3 {
            String::new()
        } else {
            etag_of(change.contact_id, change.version)
        };
        Arc::new(Self {
            contact_id: change.contact_id.to_string(),
            etag,
            change,
            cursor: OnceLock::new(),
        })
    }
}

/// A page the reader broadcast: its changes, and how far it reaches.
struct Batch {
    changes: Vec<Arc<Event>>,
    reach: Position,
}

#[derive(Clone)]
pub struct Feed {
    store: Store,
    settings: FeedSettings,
    pages: broadcast::Sender<Arc<Batch>>,
    shutdown: watch::Receiver<bool>,
}

impl Feed {
    /// Starts the reader (from the current horizon) and the pruner; both stop,
    /// and every stream ends, when `shutdown` turns true.
    pub async fn start(
        store: Store,
        settings: FeedSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self> {
        let (pages, _) = broadcast::channel(BROADCAST_PAGES);
        let feed = Self {
            store,
            settings,
            pages,
            shutdown,
        };
        let start = feed.store.feed_horizon().await?;
        tokio::spawn(feed.clone().read(start));
        tokio::spawn(feed.clone().prune());
        Ok(feed)
    }

    async fn read(self, mut after: Position) {
        let mut shutdown = self.shutdown.clone();
        while !*shutdown.borrow() {
            match self.store.changes_after(after, PAGE).await {
                Ok(page) => {
                    let full = page.changes.len() as i64 >= PAGE;
                    if page.reach > after {
                        after = page.reach;
                        let changes = page.changes.into_iter().map(Event::new).collect();
                        // No receivers is fine: nobody is watching.
                        let _ = self.pages.send(Arc::new(Batch {
                            changes,
                            reach: page.reach,
                        }));
                    }
                    if full {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "the change feed cannot read; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            pause(&mut shutdown, self.settings.poll).await;
        }
    }

    async fn prune(self) {
        let every =
            (self.settings.retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(300));
        let mut shutdown = self.shutdown.clone();
        while !*shutdown.borrow() {
            let cutoff = chrono::Utc::now() - self.settings.retention;
            match self.store.prune_changes(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "pruned the change feed"),
                Err(error) => tracing::warn!(%error, "pruning the change feed failed"),
            }
            pause(&mut shutdown, every).await;
        }
    }

    /// A cursor at the current end of the feed: everything committed so far
    /// counts as seen. Not merely the horizon: the horizon is cluster-wide and
    /// a long transaction anywhere holds it back, so changes committed before
    /// the watch began would come again.
    pub async fn now(&self, site: i64) -> Result<Cursor> {
        let snapshot = self.store.feed_snapshot().await?;
        Cursor::from_snapshot(site, &snapshot)
            .ok_or_else(|| Error::Internal(format!("unreadable snapshot {snapshot:?}")))
    }

    /// Fails with CURSOR_EXPIRED if changes after `cursor` were already pruned.
    pub async fn check_retained(&self, cursor: &Cursor) -> Result<()> {
        if cursor.after < self.store.feed_pruned_through().await? {
            return Err(Error::CursorExpired);
        }
        Ok(())
    }

    /// The site's changes after `cursor`, in order, then live ones, with
    /// heartbeats when idle. The stream ends when the client goes away or the
    /// server shuts down (with a last heartbeat to resume from).
    pub fn watch(&self, cursor: Cursor) -> mpsc::Receiver<Result<Item>> {
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        tokio::spawn(self.clone().run_watcher(cursor, tx));
        rx
    }

    /// The encoded cursor just after `event`, shared when it can be.
    fn cursor_after(&self, event: &Event, cursor: &Cursor) -> String {
        let secret = self.store.secret();
        if cursor.seen == SeenSnapshot::default() && cursor.after == event.change.position {
            event.cursor.get_or_init(|| cursor.encode(secret)).clone()
        } else {
            cursor.encode(secret)
        }
    }

    /// The site's next changes from the table. Pruning may have run while the
    /// page was read: if it passed where the page started, rows may be gone,
    /// so the stream ends with CURSOR_EXPIRED rather than skip them.
    async fn catch_up_page(&self, cursor: &Cursor) -> Result<FeedPage> {
        let page = self
            .store
            .site_changes_after(cursor.site, cursor.after, &cursor.seen, PAGE)
            .await?;
        self.check_retained(cursor).await?;
        Ok(page)
    }

    async fn run_watcher(self, mut cursor: Cursor, tx: mpsc::Sender<Result<Item>>) {
        let site = cursor.site;
        let secret = self.store.secret().to_vec();
        // Subscribe before catching up, so nothing falls between the two.
        let mut live = self.pages.subscribe();
        let mut shutdown = self.shutdown.clone();
        // Sending waits for a slow client, but not past shutdown.
        let send = |item: Result<Item>| {
            let tx = tx.clone();
            let mut shutdown = self.shutdown.clone();
            async move {
                tokio::select! {
                    sent = tx.send(item) => sent.is_ok(),
                    () = stopped(&mut shutdown) => false,
                }
            }
        };
        'catch_up: loop {
            loop {
                let page = match self.catch_up_page(&cursor).await {
                    Ok(page) => page,
                    Err(error) => {
                        send(Err(error)).await;
                        return;
                    }
                };
                let full = page.changes.len() as i64 >= PAGE;
                for change in page.changes {
                    cursor.advance(change.position);
                    let event = Event::new(change);
                    let text = self.cursor_after(&event, &cursor);
                    if !send(Ok(Item::Change(event, text))).await {
                        return;
                    }
                }
                cursor.advance(page.reach);
                if !full {
                    break;
                }
            }
            let mut next_beat = Instant::now() + self.settings.heartbeat;
            loop {
                tokio::select! {
                    batch = live.recv() => match batch {
                        Ok(batch) => {
                            for event in &batch.changes {
                                if event.change.site == site && !cursor.has_seen(event.change.position) {
                                    cursor.advance(event.change.position);
                                    let item = Item::Change(event.clone(), self.cursor_after(event, &cursor));
                                    if !send(Ok(item)).await {
                                        return;
                                    }
                                    next_beat = Instant::now() + self.settings.heartbeat;
                                }
                            }
                            cursor.advance(batch.reach);
                        }
                        // Fell behind the broadcast: read the rest from the table.
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'catch_up,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = tokio::time::sleep_until(next_beat) => {
                        if !send(Ok(Item::Heartbeat(cursor.encode(&secret)))).await {
                            return;
                        }
                        next_beat = Instant::now() + self.settings.heartbeat;
                    }
                    () = stopped(&mut shutdown) => {
                        // A last cursor to resume from on another replica; then the stream ends.
                        let _ = tx.try_send(Ok(Item::Heartbeat(cursor.encode(&secret))));
                        return;
                    }
                    () = tx.closed() => return,
                }
            }
        }
    }
}

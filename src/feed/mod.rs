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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::domain::{ChangeKind, etag_of};
use crate::error::Result;
use crate::storage::Store;
use crate::storage::feed::{Change, FeedPage, Position, SeenSnapshot};
use cursor::Cursor;

/// Changes per reader poll and per catch-up read.
const PAGE: i64 = 1_000;

#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// How often the reader looks for new changes.
    pub poll: Duration,
    /// How long an idle stream waits before it sends a heartbeat.
    pub heartbeat: Duration,
    /// How long change records are kept; older cursors are expired.
    pub retention: Duration,
    /// Batches of changes the live broadcast keeps for watchers that are
    /// behind. One that falls further behind reads the rest from the table.
    pub live_batches: usize,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(20),
            heartbeat: Duration::from_secs(15),
            retention: Duration::from_secs(7 * 24 * 3600),
            live_batches: 256,
        }
    }
}

/// Waits `duration`, or less if shutdown begins. A dropped sender is not a
/// reason to stop waiting: the loops calling this would spin.
async fn pause(shutdown: &mut watch::Receiver<bool>, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        Ok(()) = shutdown.changed() => {}
    }
}

/// Completes once shutdown has begun (without holding the watch's lock).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// What a watcher's stream carries, cursors already encoded.
pub enum Item {
    /// A change, and the cursor just after it: `None` when that is the cursor
    /// every live watcher of the site shares, kept once in the event.
    Change(Arc<Event>, Option<String>),
    /// Nothing happened; the current cursor.
    Heartbeat(String),
}

impl Item {
    /// The cursor just after this item.
    pub fn cursor(&self) -> &str {
        match self {
            Item::Change(_, Some(own)) | Item::Heartbeat(own) => own,
            Item::Change(event, None) => event.cursor.get().map_or("", String::as_str),
        }
    }
}

/// A change with what every watcher sends of it computed once, not once per
/// watcher: with a thousand watchers, that is most of the fan-out's work.
pub struct Event {
    pub change: Change,
    pub contact_id: String,
    /// The contact's etag after the change; empty for a deletion.
    pub etag: String,
    /// The cursor just after this change, for watchers with nothing else to
    /// remember (all of a site's live watchers share it; see [`Item::Change`]).
    cursor: OnceLock<String>,
    /// The event as those watchers send it, encoded once by the gRPC layer.
    pub encoded: OnceLock<prost::bytes::Bytes>,
}

impl Event {
    fn new(change: Change) -> Arc<Self> {
        let etag = if change.kind == ChangeKind::Deleted {
            String::new()
        } else {
            etag_of(change.contact_id, change.version)
        };
        Arc::new(Self {
            contact_id: change.contact_id.to_string(),
            etag,
            change,
            cursor: OnceLock::new(),
            encoded: OnceLock::new(),
        })
    }
}

/// A page the reader broadcast: its changes by site (each site's in feed
/// order, so that a watcher reads only its own), how far it reaches, and how
/// far the feed was pruned when it was read.
struct Batch {
    by_site: HashMap<i64, Vec<Arc<Event>>>,
    reach: Position,
    pruned: Position,
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
        let (pages, _) = broadcast::channel(settings.live_batches.max(1));
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
            if self.pages.receiver_count() == 0 {
                // Nobody watches: follow the horizon without reading changes.
                // The count is checked again after the horizon is read: a
                // watcher that subscribed by then is served from the old
                // position; one that subscribes later catches up from the
                // table to a horizon at least as new as this one.
                if let Ok(horizon) = self.store.feed_horizon().await
                    && self.pages.receiver_count() == 0
                {
                    after = after.max(horizon);
                    pause(&mut shutdown, self.settings.poll).await;
                    continue;
                }
            }
            match self.store.changes_after(after, PAGE).await {
                Ok(page) => {
                    let full = page.changes.len() as i64 >= PAGE;
                    if page.pruned > after {
                        // Watchers behind the mark leave the live feed (see
                        // `Watcher::next`); this says why they all did at once.
                        tracing::warn!(
                            pruned = ?page.pruned,
                            reader = ?after,
                            "changes were pruned before the feed reader could read them \
                             (it stalled, or the retention is shorter than a transaction); \
                             live watchers behind the prune mark get CURSOR_EXPIRED"
                        );
                    }
                    if page.reach > after {
                        after = page.reach;
                        let mut by_site = HashMap::<_, Vec<_>>::new();
                        for change in page.changes {
                            by_site
                                .entry(change.site)
                                .or_default()
                                .push(Event::new(change));
                        }
                        // No receivers is fine: nobody is watching.
                        let _ = self.pages.send(Arc::new(Batch {
                            by_site,
                            reach: page.reach,
                            pruned: page.pruned,
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
        Cursor::from_snapshot(site, &self.store.feed_snapshot().await?)
    }

    /// Fails with CURSOR_EXPIRED if changes after `cursor` were already pruned.
    pub async fn check_retained(&self, cursor: &Cursor) -> Result<()> {
        cursor.retained(self.store.feed_pruned_through().await?)
    }

    /// The site's changes after `cursor`, in order, then live ones, with
    /// heartbeats when idle. The stream ends when the server shuts down (with a
    /// last heartbeat to resume from); dropping it is how a departed client
    /// ends it.
    ///
    /// The stream is the watcher: no task or channel of its own. It is polled
    /// only when HTTP/2 flow control lets the client take more, so a slow
    /// client simply stops polling, falls behind the broadcast and later reads
    /// the rest from the table; what it holds meanwhile is at most one page.
    pub fn watch(&self, cursor: Cursor) -> impl Stream<Item = Result<Item>> + Send + use<> {
        let watcher = Watcher {
            // Subscribe before catching up, so nothing falls between the two.
            live: self.pages.subscribe(),
            shutdown: self.shutdown.clone(),
            next_beat: Instant::now() + self.settings.heartbeat,
            feed: self.clone(),
            cursor,
            pending: VecDeque::new(),
            phase: Phase::CatchUp,
        };
        futures::stream::unfold(watcher, |mut watcher| async move {
            let item = watcher.next().await?;
            Some((item, watcher))
        })
    }

    /// The encoded cursor just after `event`: `None` when it is the event's
    /// shared one (which this makes sure exists), the watcher's own otherwise.
    fn cursor_after(&self, event: &Event, cursor: &Cursor) -> Option<String> {
        let secret = self.store.secret();
        if cursor.seen == SeenSnapshot::default() && cursor.after == event.change.position {
            event.cursor.get_or_init(|| cursor.encode(secret));
            None
        } else {
            Some(cursor.encode(secret))
        }
    }

    /// The site's next changes from the table. If pruning had passed where
    /// the page starts when it was read, rows may be gone, so the stream ends
    /// with CURSOR_EXPIRED rather than skip them.
    async fn catch_up_page(&self, cursor: &Cursor) -> Result<FeedPage> {
        let page = self
            .store
            .site_changes_after(cursor.site, cursor.after, &cursor.seen, PAGE)
            .await?;
        cursor.retained(page.pruned)?;
        Ok(page)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the site's changes from the table, page by page.
    CatchUp,
    /// Following the reader's broadcast.
    Live,
    /// Shutting down: what is pending, then a last heartbeat.
    Stopping,
    Done,
}

/// One watch stream's state. `cursor` is always just after the last change
/// in `pending` (or delivered), so a heartbeat sent once `pending` is empty
/// carries exactly what the client has seen.
struct Watcher {
    feed: Feed,
    cursor: Cursor,
    live: broadcast::Receiver<Arc<Batch>>,
    shutdown: watch::Receiver<bool>,
    pending: VecDeque<Item>,
    phase: Phase,
    next_beat: Instant,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<Item>> {
        loop {
            if matches!(self.phase, Phase::CatchUp | Phase::Live) && *self.shutdown.borrow() {
                self.phase = Phase::Stopping;
            }
            if let Some(item) = self.pending.pop_front() {
                return Some(Ok(item));
            }
            match self.phase {
                Phase::Done => return None,
                Phase::Stopping => {
                    // A last cursor to resume from on another replica.
                    self.phase = Phase::Done;
                    return Some(Ok(self.heartbeat()));
                }
                Phase::CatchUp => match self.feed.catch_up_page(&self.cursor).await {
                    Ok(page) => {
                        let full = page.changes.len() as i64 >= PAGE;
                        for change in page.changes {
                            self.queue(Event::new(change));
                        }
                        self.cursor.advance(page.reach);
                        if !full {
                            self.phase = Phase::Live;
                            self.next_beat = Instant::now() + self.feed.settings.heartbeat;
                        }
                    }
                    Err(error) => {
                        self.phase = Phase::Done;
                        return Some(Err(error));
                    }
                },
                Phase::Live => {
                    tokio::select! {
                        batch = self.live.recv() => match batch {
                            // Changes after the cursor were pruned before the
                            // reader got to them (it stalled, or a transaction
                            // older than the retention committed). The mark
                            // only grows, so the table could not serve this
                            // cursor either.
                            Ok(batch) if let Err(expired) = self.cursor.retained(batch.pruned) => {
                                self.phase = Phase::Done;
                                return Some(Err(expired));
                            }
                            Ok(batch) => self.take(&batch),
                            // Fell behind the broadcast: read the rest from the table.
                            Err(broadcast::error::RecvError::Lagged(missed)) => {
                                tracing::debug!(missed, "a watcher fell behind the live feed; reading from the table");
                                self.phase = Phase::CatchUp;
                            }
                            Err(broadcast::error::RecvError::Closed) => self.phase = Phase::Stopping,
                        },
                        () = tokio::time::sleep_until(self.next_beat) => {
                            self.next_beat = Instant::now() + self.feed.settings.heartbeat;
                            return Some(Ok(self.heartbeat()));
                        }
                        () = stopped(&mut self.shutdown) => self.phase = Phase::Stopping,
                    }
                }
            }
        }
    }

    /// Queues the batch's changes of this site that the cursor has not seen.
    fn take(&mut self, batch: &Batch) {
        let queued = self.pending.len();
        for event in batch.by_site.get(&self.cursor.site).into_iter().flatten() {
            if !self.cursor.has_seen(event.change.position) {
                self.queue(event.clone());
            }
        }
        if self.pending.len() > queued {
            self.next_beat = Instant::now() + self.feed.settings.heartbeat;
        }
        self.cursor.advance(batch.reach);
    }

    /// Queues `event` and moves the cursor just past it.
    fn queue(&mut self, event: Arc<Event>) {
        self.cursor.advance(event.change.position);
        let text = self.feed.cursor_after(&event, &self.cursor);
        self.pending.push_back(Item::Change(event, text));
    }

    fn heartbeat(&self) -> Item {
        Item::Heartbeat(self.cursor.encode(self.feed.store.secret()))
    }
}

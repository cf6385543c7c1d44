//! The watch scenario: many watchers on the feed while writers create
//! contacts at a steady rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contactsd::pb;
use contactsd::pb::contacts_service_client::ContactsServiceClient;
use hdrhistogram::Histogram;

use crate::scenarios::{Scenario, Worker, report_to_pb};
use crate::{Client, Fixture};

/// Streams per HTTP/2 connection (servers commonly cap concurrent streams).
const STREAMS_PER_CONNECTION: usize = 50;

pub struct WatchOutcome {
    /// The watcher streams, still open, so that writes can be measured with them attached.
    pub streams: Vec<tokio::task::JoinHandle<()>>,
    pub watchers: usize,
    pub changes: u64,
    /// Watchers that received every change written while they watched.
    pub complete: usize,
    /// Commit-to-delivery latency (from the write's response), in µs.
    pub latency: Histogram<u64>,
}

/// Opens `watchers` streams, writes at `rate` per second for `duration`, and
/// waits (a few seconds at most) until every watcher has every change.
pub async fn deliver(
    addr: &str,
    fixture: &Fixture,
    watchers: usize,
    rate: f64,
    duration: Duration,
) -> Result<WatchOutcome, String> {
    let channels = crate::connect_channels(
        addr,
        watchers.div_ceil(STREAMS_PER_CONNECTION),
        fixture.client,
    )
    .await?;
    // When each write's response arrived (just after its commit), by contact id.
    let written: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let counts: Vec<Arc<AtomicU64>> = (0..watchers).map(|_| Arc::default()).collect();
    // Every 10th watcher keeps its receipt times, to measure latency.
    let receipts: Arc<Mutex<Vec<(String, Instant)>>> = Default::default();
    let mut streams = Vec::new();
    for (n, count) in counts.iter().enumerate() {
        let channel = channels[n % channels.len()].clone();
        let mut client = ContactsServiceClient::with_interceptor(channel, fixture.auth.clone());
        let mut stream = client
            .watch_contacts(pb::WatchContactsRequest::default())
            .await
            .map_err(|e| format!("starting watcher {n}: {e}"))?
            .into_inner();
        let (count, receipts) = (count.clone(), receipts.clone());
        streams.push(tokio::spawn(async move {
            while let Ok(Some(event)) = stream.message().await {
                if event.r#type() == pb::EventType::Heartbeat {
                    continue;
                }
                count.fetch_add(1, Ordering::Relaxed);
                if n % 10 == 0 {
                    receipts
                        .lock()
                        .unwrap()
                        .push((event.contact_id, Instant::now()));
                }
            }
        }));
    }

    // Writers: one call every 1/rate seconds, each creating a contact.
    let writer = Worker::new(fixture, Scenario::ReconcileNew, 0, 1, Vec::new());
    let client: Client =
        ContactsServiceClient::with_interceptor(channels[0].clone(), fixture.auth.clone());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let started = Instant::now();
    let mut calls = Vec::new();
    let mut i = 0u64;
    while started.elapsed() < duration {
        tick.tick().await;
        i += 1;
        let request = pb::ReconcileRequest {
            contact: Some(report_to_pb(writer.new_contact(u64::MAX / 2 + i))),
            default_region: String::new(),
        };
        let (mut client, written) = (client.clone(), written.clone());
        calls.push(tokio::spawn(async move {
            let response = client.reconcile(request).await?.into_inner();
            written
                .lock()
                .unwrap()
                .insert(response.contact_id, Instant::now());
            Ok::<_, tonic::Status>(())
        }));
    }
    for call in calls {
        call.await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("a paced write failed: {e}"))?;
    }
    let changes = written.lock().unwrap().len() as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    while counts.iter().any(|c| c.load(Ordering::Relaxed) < changes) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let complete = counts
        .iter()
        .filter(|c| c.load(Ordering::Relaxed) == changes)
        .count();

    let mut latency = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
    let written = written.lock().unwrap();
    for (id, received) in receipts.lock().unwrap().iter() {
        if let Some(sent) = written.get(id) {
            // A watcher can see the change before the writer sees its response.
            let micros = received.saturating_duration_since(*sent).as_micros() as u64;
            latency.saturating_record(micros.max(1));
        }
    }
    Ok(WatchOutcome {
        streams,
        watchers,
        changes,
        complete,
        latency,
    })
}

use std::collections::HashSet;
use std::time::Duration;

use contactsd::pb;
use contactsd::pb::EventType;
use contactsd::storage::feed::{Position, SeenSnapshot};
use rand::Rng;
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

use crate::helpers::*;

async fn try_watch(
    client: &mut Client,
    start_after: &str,
) -> Result<Streaming<pb::ContactEvent>, tonic::Status> {
    let request = pb::WatchContactsRequest {
        start_after: start_after.into(),
        ..Default::default()
    };
    Ok(client.watch_contacts(request).await?.into_inner())
}

async fn watch(client: &mut Client, start_after: &str) -> Streaming<pb::ContactEvent> {
    try_watch(client, start_after)
        .await
        .expect("the watch starts")
}

/// What the stream yields next besides heartbeats, or `Err` after 10 s
/// (heartbeats do not extend the wait).
async fn next_non_heartbeat(
    stream: &mut Streaming<pb::ContactEvent>,
) -> Result<Result<Option<pb::ContactEvent>, tonic::Status>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(event)) if event.r#type() == EventType::Heartbeat => continue,
                other => return other,
            }
        }
    })
    .await
}

/// The next event that is not a heartbeat, within 10 s.
async fn next_change(stream: &mut Streaming<pb::ContactEvent>) -> pb::ContactEvent {
    next_non_heartbeat(stream)
        .await
        .expect("a change arrives in time")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

/// Records a change the way a writer's transaction does, in `tx`, which the
/// test commits or rolls back when it chooses.
async fn record_change(tx: &tokio_postgres::Transaction<'_>, site: i64, contact: uuid::Uuid) {
    tx.execute(
        "INSERT INTO contact_changes (site_id, contact_id, kind, changed_fields, version, app) \
         VALUES ($1, $2, 2, '{}', 1, 'writer')",
        &[&site, &contact],
    )
    .await
    .unwrap();
}

/// A cursor at the current end of the feed, taken from a heartbeat.
async fn current_cursor(client: &mut Client) -> String {
    let mut stream = watch(client, "").await;
    loop {
        let event = stream.message().await.unwrap().unwrap();
        if event.r#type() == EventType::Heartbeat {
            return event.cursor;
        }
    }
}

#[tokio::test]
async fn a_watcher_receives_created_updated_and_deleted_events_in_order() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let mut stream = watch(&mut client, "").await;

    let created = create(
        &mut client,
        pb::Contact {
            name: name("Dana", ""),
            ..with_email("dana@example.com")
        },
    )
    .await;
    let updated = create(
        &mut client,
        pb::Contact {
            tags: vec!["vip".into()],
            ..with_email("dana@example.com")
        },
    )
    .await;
    client
        .delete_contact(pb::DeleteContactRequest {
            id: created.contact_id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    let first = next_change(&mut stream).await;
    assert_eq!(first.r#type(), EventType::Created);
    assert_eq!(first.contact_id, created.contact_id);
    assert_eq!(first.etag, created.etag);
    let fields = first.changed_fields.unwrap().paths;
    assert!(
        fields.contains(&"emails".to_string()) && fields.contains(&"name.first".to_string()),
        "{fields:?}"
    );
    assert!(first.event_time.is_some() && !first.cursor.is_empty());
    assert!(
        first.contact.is_none(),
        "the contact comes only when asked for"
    );

    let second = next_change(&mut stream).await;
    assert_eq!(second.r#type(), EventType::Updated);
    assert_eq!(second.changed_fields.unwrap().paths, ["tags"]);
    assert_eq!(second.etag, updated.etag);

    let third = next_change(&mut stream).await;
    assert_eq!(third.r#type(), EventType::Deleted);
    assert_eq!(third.contact_id, created.contact_id);
}

#[tokio::test]
async fn include_contact_sends_the_contact_as_it_was_after_each_change_with_the_mask() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let request = pb::WatchContactsRequest {
        include_contact: true,
        read_mask: mask(&["name.first", "tags"]),
        ..Default::default()
    };
    let mut stream = client.watch_contacts(request).await.unwrap().into_inner();

    create(
        &mut client,
        pb::Contact {
            name: name("Dana", "Levi"),
            ..with_email("dana@example.com")
        },
    )
    .await;
    create(
        &mut client,
        pb::Contact {
            tags: vec!["vip".into()],
            ..with_email("dana@example.com")
        },
    )
    .await;

    let first = next_change(&mut stream)
        .await
        .contact
        .expect("the contact is included");
    assert_eq!(
        first.name.unwrap(),
        pb::Name {
            first: "Dana".into(),
            ..Default::default()
        }
    );
    assert!(
        first.tags.is_empty() && first.emails.is_empty(),
        "as it was then, masked"
    );
    let second = next_change(&mut stream).await.contact.unwrap();
    assert_eq!(second.tags, ["vip"]);
}

/// The event's contact is decoded from a JSON snapshot of the row, a path of
/// its own beside the one GetContact reads: a column that one of them misses
/// must fail here, not drop a field from events unnoticed.
#[tokio::test]
async fn an_included_contact_with_every_field_set_equals_what_get_contact_returns() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let request = pb::WatchContactsRequest {
        include_contact: true,
        ..Default::default()
    };
    let mut stream = client.watch_contacts(request).await.unwrap().into_inner();
    let full = pb::Contact {
        name: Some(pb::Name {
            prefix: "Dr.".into(),
            first: "Dana".into(),
            middle: "R.".into(),
            last: "Levi".into(),
            suffix: "Jr.".into(),
        }),
        company: Some(pb::Company {
            name: "Acme".into(),
            role: "CTO".into(),
        }),
        picture: "https://pics.example/dana.png".into(),
        emails: vec![pb::Email {
            tag: "work".into(),
            email: "dana@example.com".into(),
            status: pb::EmailStatus::Recurring.into(),
            ..Default::default()
        }],
        phones: vec![pb::Phone {
            tag: "mobile".into(),
            phone: "+1 415 555 0100".into(),
            ..Default::default()
        }],
        addresses: vec![pb::Address {
            tag: "home".into(),
            address: "1 Main St".into(),
            neighborhood: "Mission".into(),
            city: "San Francisco".into(),
            region: "CA".into(),
            country: "US".into(),
            postal_code: "94110".into(),
            ..Default::default()
        }],
        urls: vec![pb::Url {
            tag: "blog".into(),
            url: "https://dana.example".into(),
            ..Default::default()
        }],
        dates: vec![pb::ContactDate {
            tag: "birthday".into(),
            date: "1990-04-01".into(),
            ..Default::default()
        }],
        notes: vec![pb::Note {
            content: "met at the fair".into(),
            ..Default::default()
        }],
        custom_fields: vec![pb::CustomField {
            field: "shoe size".into(),
            value: "42".into(),
            ..Default::default()
        }],
        tags: vec!["vip".into()],
        ..Default::default()
    };

    let created = create(&mut client, full).await;
    let event = next_change(&mut stream).await;

    let stored = get(&mut client, &created.contact_id).await.unwrap();
    let included = event.contact.expect("the contact is included");
    for (field, empty) in [
        ("name", stored.name.is_none()),
        ("company", stored.company.is_none()),
        ("picture", stored.picture.is_empty()),
        ("emails", stored.emails.is_empty()),
        ("phones", stored.phones.is_empty()),
        ("addresses", stored.addresses.is_empty()),
        ("urls", stored.urls.is_empty()),
        ("dates", stored.dates.is_empty()),
        ("notes", stored.notes.is_empty()),
        ("custom_fields", stored.custom_fields.is_empty()),
        ("tags", stored.tags.is_empty()),
    ] {
        assert!(!empty, "the test contact sets {field}");
    }
    assert_eq!(included, stored);
}

#[tokio::test]
async fn resuming_from_a_cursor_delivers_exactly_the_changes_after_it() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let mut stream = watch(&mut client, "").await;
    create_many(&mut client, 2, "a").await;
    next_change(&mut stream).await;
    let cursor = next_change(&mut stream).await.cursor;
    drop(stream);

    let later = create_many(&mut client, 3, "b").await;

    let mut resumed = watch(&mut client, &cursor).await;
    for id in &later {
        assert_eq!(&next_change(&mut resumed).await.contact_id, id);
    }
    // Nothing else follows: the next event is a heartbeat.
    let next = tokio::time::timeout(Duration::from_secs(5), resumed.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.r#type(), EventType::Heartbeat);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_committed_change_is_skipped_when_writers_commit_out_of_order_and_rollbacks_never_appear()
 {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let site = app.site_id("acme").await;
    let mut stream = watch(&mut client, "").await;

    // Eight writers whose transactions take their sequence numbers first and
    // commit after random delays, so commits land out of sequence order; a
    // quarter of them roll back. Real RPC writes run alongside.
    let writers = (0..8).map(|_| {
        let url = app.database_url();
        tokio::spawn(async move {
            let (mut db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let mut committed = Vec::new();
            for _ in 0..12 {
                let id = uuid::Uuid::new_v4();
                let delay = rand::rng().random_range(0..40) as f64 / 1000.0;
                let rollback = rand::rng().random_range(0..4) == 0;
                let tx = db.transaction().await.unwrap();
                record_change(&tx, site, id).await;
                tx.execute("SELECT pg_sleep($1)", &[&delay]).await.unwrap();
                if rollback {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    committed.push(id.to_string());
                }
            }
            committed
        })
    });
    let rpc = {
        let mut client = client.clone();
        tokio::spawn(async move { create_many(&mut client, 20, "rpc").await })
    };
    let mut expected: HashSet<String> = HashSet::new();
    for writer in writers {
        expected.extend(writer.await.unwrap());
    }
    expected.extend(rpc.await.unwrap());
    let in_table = app
        .query_i64(&format!(
            "SELECT count(*) FROM contact_changes WHERE site_id = {site}"
        ))
        .await;
    assert_eq!(
        in_table as usize,
        expected.len(),
        "the table holds exactly the committed changes"
    );

    let mut received = HashSet::new();
    while received.len() < expected.len() {
        let event = next_change(&mut stream).await;
        assert!(
            expected.contains(&event.contact_id),
            "a rolled-back or unknown change was delivered"
        );
        assert!(
            received.insert(event.contact_id),
            "a change was delivered twice"
        );
    }
    assert_eq!(received, expected);
}

#[tokio::test]
async fn a_reconcile_that_changes_nothing_produces_no_event() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    create(&mut client, with_email("dana@example.com")).await;
    let mut stream = watch(&mut client, "").await;

    create(&mut client, with_email("dana@example.com")).await;
    let real = create(&mut client, with_email("other@example.com")).await;

    assert_eq!(next_change(&mut stream).await.contact_id, real.contact_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_then_watch_from_the_watch_cursor_misses_nothing_and_repeats_nothing() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let listed = create(&mut client, with_email("listed@example.com")).await;
    let site = app.site_id("acme").await;

    // A write in flight while the list is read: not in the list, so it must come on the watch.
    let mut db = app.db().await;
    let in_flight = db.transaction().await.unwrap();
    let in_flight_id = uuid::Uuid::new_v4();
    record_change(&in_flight, site, in_flight_id).await;
    let page = client
        .list_contacts(pb::ListContactsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.contacts.len(), 1);
    assert!(!page.watch_cursor.is_empty());
    in_flight.commit().await.unwrap();
    let after = create(&mut client, with_email("after@example.com")).await;

    let mut stream = watch(&mut client, &page.watch_cursor).await;
    let mut ids = vec![
        next_change(&mut stream).await.contact_id,
        next_change(&mut stream).await.contact_id,
    ];
    ids.sort();
    let mut expected = vec![in_flight_id.to_string(), after.contact_id];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(
        !ids.contains(&listed.contact_id),
        "what the list showed is not repeated"
    );
}

#[tokio::test]
async fn every_page_of_a_listing_gives_a_watch_cursor_that_misses_changes_made_while_paging() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let first = create(&mut client, with_email("first@example.com")).await;
    create(&mut client, with_email("second@example.com")).await;
    let page = |token: String| pb::ListContactsRequest {
        page_size: 1,
        page_token: token,
        ..Default::default()
    };
    let one = client.list_contacts(page(String::new())).await.unwrap();
    let one = one.into_inner();
    assert_eq!(one.contacts[0].id, first.contact_id);

    // The contact already read on page one changes before the last page.
    let tagged = pb::AddValueRequest {
        contact_id: first.contact_id.clone(),
        value: Some(pb::add_value_request::Value::Tag("vip".into())),
        ..Default::default()
    };
    client.add_value(tagged).await.unwrap();
    let two = client
        .list_contacts(page(one.next_page_token))
        .await
        .unwrap();
    let two = two.into_inner();
    assert!(two.next_page_token.is_empty());
    assert_eq!(two.watch_cursor, one.watch_cursor);

    let mut stream = watch(&mut client, &two.watch_cursor).await;
    let event = next_change(&mut stream).await;
    assert_eq!(event.contact_id, first.contact_id);
    assert_eq!(event.r#type(), EventType::Updated);
}

#[tokio::test]
async fn a_change_written_through_one_replica_reaches_watchers_of_another() {
    let a = spawn_app().await;
    let b = spawn_replica(&a).await;
    let key = a.key("acme", "read,write").await;
    let mut via_a = a.client_with_key(&key).await;
    let mut via_b = b.client_with_key(&key).await;
    let mut stream = watch(&mut via_b, "").await;

    let created = create(&mut via_a, with_email("dana@example.com")).await;

    assert_eq!(
        next_change(&mut stream).await.contact_id,
        created.contact_id
    );
}

#[tokio::test]
async fn a_stream_ends_cleanly_at_shutdown_and_resumes_on_another_replica() {
    let mut a = spawn_app().await;
    let b = spawn_replica(&a).await;
    let key = a.key("acme", "read,write").await;
    let mut via_a = a.client_with_key(&key).await;
    let mut via_b = b.client_with_key(&key).await;
    let mut stream = watch(&mut via_a, "").await;
    create(&mut via_b, with_email("one@example.com")).await;
    let mut cursor = next_change(&mut stream).await.cursor;

    a.shut_down();
    // The stream ends (a clean end, not an error) within the wait, after a last heartbeat.
    let drained = async {
        while let Some(message) = stream
            .message()
            .await
            .expect("the stream ends without an error")
        {
            cursor = message.cursor;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("the stream ends at shutdown");

    let two = create(&mut via_b, with_email("two@example.com")).await;
    let mut resumed = watch(&mut via_b, &cursor).await;
    assert_eq!(next_change(&mut resumed).await.contact_id, two.contact_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_cuts_off_a_stream_whose_client_stopped_reading_after_the_grace_period() {
    let mut app = spawn_app().await;
    let key = app.key("acme", "read,write").await;
    // A 1 KiB stream window: a client that stops reading stalls the stream
    // after a few events, and the server can no longer finish it.
    let mut reader = app.client_with_stream_window(&key, 1024).await;
    let request = pb::WatchContactsRequest {
        include_contact: true,
        ..Default::default()
    };
    let _unread = reader.watch_contacts(request).await.unwrap();
    let mut writer = app.client_with_key(&key).await;
    create_many(&mut writer, 40, "w").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    app.shut_down();
    assert!(
        app.stopped_within(SHUTDOWN_GRACE + Duration::from_secs(5))
            .await,
        "the server stops once the grace period is over"
    );
}

#[tokio::test]
async fn idle_streams_send_heartbeats_with_a_cursor_to_resume_from() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let cursor = current_cursor(&mut client).await;
    assert!(!cursor.is_empty());

    let created = create(&mut client, with_email("dana@example.com")).await;
    let mut resumed = watch(&mut client, &cursor).await;
    assert_eq!(
        next_change(&mut resumed).await.contact_id,
        created.contact_id
    );
}

#[tokio::test]
async fn a_watcher_never_sees_another_sites_changes_or_accepts_its_cursors() {
    let app = spawn_app().await;
    let mut acme = app.client("acme").await;
    let mut globex = app.client("globex").await;
    let mut stream = watch(&mut globex, "").await;

    create(&mut acme, with_email("dana@example.com")).await;
    let ours = create(&mut globex, with_email("dana@example.com")).await;
    assert_eq!(next_change(&mut stream).await.contact_id, ours.contact_id);

    let acme_cursor = current_cursor(&mut acme).await;
    assert_invalid(
        try_watch(&mut globex, &acme_cursor).await.map(drop),
        "start_after",
    );
}

#[tokio::test]
async fn watching_needs_the_read_scope_and_a_well_formed_cursor() {
    let app = spawn_app().await;
    let mut writer = app.client_with_key(&app.key("acme", "write").await).await;
    assert_code(
        try_watch(&mut writer, "").await.map(drop),
        Code::PermissionDenied,
    );

    let mut reader = app.client("acme").await;
    assert_invalid(
        try_watch(&mut reader, "not-a-cursor").await.map(drop),
        "start_after",
    );
}

#[tokio::test]
async fn a_cursor_older_than_the_retention_is_out_of_range_with_cursor_expired() {
    let app = spawn_app_with(contactsd::feed::FeedSettings {
        retention: Duration::from_secs(1),
        ..test_feed()
    })
    .await;
    let mut client = app.client("acme").await;
    let mut stream = watch(&mut client, "").await;
    create(&mut client, with_email("a@example.com")).await;
    let old = next_change(&mut stream).await.cursor;
    create(&mut client, with_email("b@example.com")).await;

    // The pruner runs every second and removes changes older than one.
    let mut status = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Err(error) = try_watch(&mut client, &old).await {
            status = Some(error);
            break;
        }
    }
    let status = status.expect("the old cursor expires");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "CURSOR_EXPIRED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_watcher_still_receives_every_change_in_order() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let mut stream = watch(&mut client, "").await;

    // Writes pile up while the watcher reads nothing.
    let calls = (0..400).map(|i| {
        let mut client = client.clone();
        tokio::spawn(async move {
            create(&mut client, with_email(&format!("s{i}@example.com")))
                .await
                .contact_id
        })
    });
    let created: HashSet<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();

    let mut received = Vec::new();
    while received.len() < created.len() {
        received.push(next_change(&mut stream).await.contact_id);
    }
    let unique: HashSet<String> = received.iter().cloned().collect();
    assert_eq!(unique, created);
}

#[tokio::test]
async fn a_watch_from_now_never_replays_changes_committed_before_it_even_behind_a_long_transaction()
{
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    // A long transaction holds the horizon back, as one anywhere in the cluster can.
    let mut db = app.db().await;
    let long = db.transaction().await.unwrap();
    long.execute("SELECT pg_current_xact_id()", &[])
        .await
        .unwrap();
    create(&mut client, with_email("before@example.com")).await;

    let mut stream = watch(&mut client, "").await;
    let after = create(&mut client, with_email("after@example.com")).await;
    // The horizon waits for the long transaction; only then can the feed pass it.
    long.rollback().await.unwrap();

    assert_eq!(next_change(&mut stream).await.contact_id, after.contact_id);
}

/// Records a change as transaction `xid` did `age_days` ago (the xids are
/// long past, so the records sit below any horizon).
async fn record_old_change(app: &TestApp, site: i64, xid: u64, age_days: i32) {
    app.db()
        .await
        .execute(
            "INSERT INTO contact_changes (xid, site_id, contact_id, kind, changed_fields, version, app, change_time) \
             VALUES ($1::text::xid8, $2, gen_random_uuid(), 1, '{}', 1, 'writer', now() - make_interval(days => $3))",
            &[&xid.to_string(), &site, &age_days],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_feed_reads_in_transaction_order_where_transaction_ids_gain_a_digit() {
    let app = spawn_app().await;
    app.key("acme", "read").await;
    let site = app.site_id("acme").await;
    for xid in [9, 10, 11] {
        record_old_change(&app, site, xid, 0).await;
    }
    let start = Position { xid: 8, seq: 0 };

    // Pages of two: sorted as text, the first page would be 10 and 11, and
    // the reader, now past 11, would never see 9.
    let mut read = Vec::new();
    let mut after = start;
    loop {
        let page = app.store.changes_after(after, 2).await.unwrap();
        if page.changes.is_empty() {
            break;
        }
        read.extend(page.changes.iter().map(|c| c.position.xid));
        after = page.changes.last().unwrap().position;
    }
    assert_eq!(read, [9, 10, 11]);

    let page = app
        .store
        .site_changes_after(site, start, &SeenSnapshot::default(), 2)
        .await
        .unwrap();
    let xids: Vec<u64> = page.changes.iter().map(|c| c.position.xid).collect();
    assert_eq!(xids, [9, 10]);
}

#[tokio::test]
async fn pruning_never_deletes_a_change_still_within_the_retention() {
    let app = spawn_app().await;
    app.key("acme", "read").await;
    let site = app.site_id("acme").await;
    // In feed order the recent change comes first, so pruning stops before it
    // (sorted as text, 10 came first, and deleting through it took 9 along).
    record_old_change(&app, site, 9, 0).await;
    record_old_change(&app, site, 10, 30).await;

    let deleted = app
        .store
        .prune_changes(chrono::Utc::now() - chrono::Duration::days(7))
        .await
        .unwrap();
    assert_eq!(deleted, 0);
    assert_eq!(
        app.query_i64("SELECT count(*) FROM contact_changes WHERE xid = '9'")
            .await,
        1
    );
}

/// A watcher whose client stops reading stops taking batches from the live
/// broadcast (two batches deep here) and falls behind it; it then reads what
/// it missed from the table, and still gets every change once, in order.
#[tokio::test]
async fn a_watcher_that_falls_behind_the_live_feed_still_gets_every_change_once_in_order() {
    let app = spawn_app_with(contactsd::feed::FeedSettings {
        live_batches: 2,
        ..test_feed()
    })
    .await;
    let mut writer = app.client("acme").await;
    // A small HTTP/2 window: the server can send only about one of the big
    // events below before the client reads, so the stream stops being polled.
    let key = app.key("acme", "read").await;
    let mut watcher = app.client_with_stream_window(&key, 65_535).await;
    let request = pb::WatchContactsRequest {
        include_contact: true,
        ..Default::default()
    };
    let mut stream = watcher.watch_contacts(request).await.unwrap().into_inner();

    let big_notes: Vec<pb::Note> = (0..5)
        .map(|_| pb::Note {
            content: "n".repeat(10_000),
            ..Default::default()
        })
        .collect();
    let mut written = Vec::new();
    for i in 0..20 {
        let contact = pb::Contact {
            notes: big_notes.clone(),
            ..with_email(&format!("c{i}@example.com"))
        };
        written.push(create(&mut writer, contact).await.contact_id);
        // Longer than the feed's poll, so that each change is a batch of its own.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    let mut received = Vec::new();
    while received.len() < written.len() {
        received.push(next_change(&mut stream).await.contact_id);
    }
    assert_eq!(received, written);
    let after = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .expect("a heartbeat within a second")
        .unwrap()
        .unwrap();
    assert_eq!(after.r#type(), EventType::Heartbeat, "no change twice");
}

/// A replica's reader that could not read while changes it had not yet
/// delivered were pruned (by another replica, or after a long stall) must not
/// skip them: its live watchers end with CURSOR_EXPIRED and list again. Here
/// the test plays the other replica's pruner. Its lock on the prune mark holds
/// the reader off until the changes are gone, and its xid, older than the
/// write's, keeps the horizon below the write until then.
#[tokio::test]
async fn a_live_watcher_whose_undelivered_changes_were_pruned_meanwhile_gets_cursor_expired() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let mut stream = watch(&mut client, "").await;
    create(&mut client, with_email("a@example.com")).await;
    next_change(&mut stream).await;

    let mut db = app.db().await;
    let pruner = db.transaction().await.unwrap();
    pruner
        .batch_execute(
            "LOCK TABLE feed_state IN ACCESS EXCLUSIVE MODE; SELECT pg_current_xact_id()",
        )
        .await
        .unwrap();
    create(&mut client, with_email("b@example.com")).await;
    pruner
        .batch_execute(
            "WITH pruned AS (DELETE FROM contact_changes RETURNING xid, seq) \
             UPDATE feed_state SET (pruned_xid, pruned_seq) = \
               (SELECT xid, seq FROM pruned ORDER BY xid DESC, seq DESC LIMIT 1)",
        )
        .await
        .unwrap();
    pruner.commit().await.unwrap();

    let outcome = next_non_heartbeat(&mut stream)
        .await
        .expect("the stream ends in time instead of waiting silently");
    let status = outcome.expect_err("the pruned change is not skipped silently");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "CURSOR_EXPIRED"
    );
}

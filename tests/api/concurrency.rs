use contactsd::pb;

use crate::helpers::*;

async fn reconcile_concurrently(
    client: &Client,
    reports: Vec<pb::Contact>,
) -> Vec<pb::ReconcileResponse> {
    let calls = reports.into_iter().map(|report| {
        let mut client = client.clone();
        tokio::spawn(async move { create(&mut client, report).await })
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_reconciles_with_the_same_email_end_in_exactly_one_contact() {
    let app = spawn_app().await;
    let client = app.client("acme").await;
    let reports = (0..50)
        .map(|i| pb::Contact {
            tags: vec![format!("t{i}")],
            ..with_email("Dana@Example.com")
        })
        .collect();

    let responses = reconcile_concurrently(&client, reports).await;

    assert_eq!(responses.iter().filter(|r| r.created).count(), 1);
    let id = &responses[0].contact_id;
    assert!(responses.iter().all(|r| &r.contact_id == id));
    assert_eq!(app.query_i64("SELECT count(*) FROM contacts").await, 1);
    let mut client = client.clone();
    assert_eq!(
        get(&mut client, id).await.unwrap().tags.len(),
        50,
        "no merge was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reconciles_sharing_a_phone_in_many_formats_end_in_one_contact() {
    let app = spawn_app().await;
    let client = app.client("acme").await;
    let formats = [
        "(415) 555-0100",
        "+1 415 555 0100",
        "415.555.0100",
        "4155550100",
        "+14155550100",
    ];
    // Some carry an email too, so the calls lock overlapping sets of keys.
    let reports = (0..60)
        .map(|i| pb::Contact {
            phones: vec![phone(formats[i % formats.len()])],
            emails: if i % 3 == 0 {
                vec![email(&format!("p{}@example.com", i % 4))]
            } else {
                vec![]
            },
            ..Default::default()
        })
        .collect();

    let responses = reconcile_concurrently(&client, reports).await;

    assert_eq!(responses.iter().filter(|r| r.created).count(), 1);
    assert_eq!(app.query_i64("SELECT count(*) FROM contacts").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconcile_that_waited_while_its_match_lost_the_email_matches_again() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let older = create(&mut client, with_email("shared@example.com")).await;
    let newer = create(
        &mut client,
        pb::Contact {
            phones: vec![phone("4155550100")],
            ..Default::default()
        },
    )
    .await;
    let add = pb::AddValueRequest {
        contact_id: newer.contact_id.clone(),
        value: Some(pb::add_value_request::Value::Email(email(
            "shared@example.com",
        ))),
        ..Default::default()
    };
    client.add_value(add).await.unwrap();

    // An OverrideValue of the older contact's email, caught mid-transaction:
    // it holds the row while a Reconcile of the shared email queues behind it.
    let mut db = app.db().await;
    let tx = db.transaction().await.unwrap();
    let older_id: uuid::Uuid = older.contact_id.parse().unwrap();
    tx.execute(
        "SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE",
        &[&older_id],
    )
    .await
    .unwrap();
    let mut reconciling = client.clone();
    let report = tokio::spawn(async move {
        create(
            &mut reconciling,
            pb::Contact {
                tags: vec!["late".into()],
                ..with_email("shared@example.com")
            },
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.execute(
        "UPDATE contacts SET version = version + 1, emails = jsonb_set(emails, '{0,email}', '\"moved@example.com\"') \
         WHERE id = $1",
        &[&older_id],
    )
    .await
    .unwrap();
    tx.execute(
        "UPDATE contact_keys SET key = 'moved@example.com' WHERE contact_id = $1 AND key = 'shared@example.com'",
        &[&older_id],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let merged = report.await.unwrap();
    assert_eq!(
        merged.contact_id, newer.contact_id,
        "the report goes to the contact that still holds the email"
    );
    let older_now = get(&mut client, &older.contact_id).await.unwrap();
    assert!(older_now.tags.is_empty());
    assert_eq!(older_now.emails[0].email, "moved@example.com");
}

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

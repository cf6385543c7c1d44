use contactsd::pb;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn get_contact_returns_only_the_masked_fields_plus_id_and_etag() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let created = create(
        &mut client,
        pb::Contact {
            name: name("Dana", "Levi"),
            tags: vec!["vip".into()],
            ..with_email("dana@example.com")
        },
    )
    .await;

    let contact = client
        .get_contact(pb::GetContactRequest {
            id: created.contact_id.clone(),
            read_mask: mask(&["name.first", "emails"]),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(contact.id, created.contact_id);
    assert_eq!(contact.etag, created.etag);
    assert_eq!(
        contact.name.unwrap(),
        pb::Name {
            first: "Dana".into(),
            ..Default::default()
        }
    );
    assert_eq!(contact.emails.len(), 1);
    assert!(contact.tags.is_empty() && contact.create_time.is_none());

    let full = client
        .get_contact(pb::GetContactRequest {
            id: created.contact_id.clone(),
            read_mask: mask(&["*"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(Some(full), created.contact);
}

/// Responses from 1 to 12 KiB leave the server cut into several DATA frames
/// (see `grpc::frames`); the client must get every byte, in order, whatever
/// the size, on either side of those bounds.
#[tokio::test]
async fn contacts_of_every_size_read_back_whole() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    for (i, size) in [100, 900, 1_000, 1_100, 5_000, 12_000, 20_000]
        .into_iter()
        .enumerate()
    {
        let text: String = (0..size)
            .map(|j| char::from(b'a' + (j % 26) as u8))
            .collect();
        // Notes hold at most 10,000 characters each.
        let notes = (0..size)
            .step_by(10_000)
            .map(|start| pb::Note {
                content: text[start..size.min(start + 10_000)].into(),
                ..Default::default()
            })
            .collect();
        let created = create(
            &mut client,
            pb::Contact {
                notes,
                ..with_email(&format!("c{i}@example.com"))
            },
        )
        .await;

        let read = get(&mut client, &created.contact_id).await.unwrap();
        assert_eq!(Some(read), created.contact, "notes of {size} characters");
    }
}

#[tokio::test]
async fn get_contact_rejects_unknown_mask_paths_and_malformed_ids() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;

    let result = client
        .get_contact(pb::GetContactRequest {
            id: created.contact_id,
            read_mask: mask(&["name", "nickname"]),
        })
        .await;
    assert_invalid(result, "read_mask.paths[1]");
    assert_invalid(get(&mut client, "not-a-uuid").await, "id");
    assert_invalid(get(&mut client, "").await, "id");
    assert_code(
        get(&mut client, &uuid::Uuid::new_v4().to_string()).await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn a_deleted_contact_is_not_found_and_no_longer_matches() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;

    client
        .delete_contact(pb::DeleteContactRequest {
            id: created.contact_id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    assert_code(get(&mut client, &created.contact_id).await, Code::NotFound);
    let again = create(&mut client, with_email("dana@example.com")).await;
    assert!(
        again.created,
        "a deleted contact's email no longer matches it"
    );
    assert_code(
        client
            .delete_contact(pb::DeleteContactRequest {
                id: created.contact_id.clone(),
                etag: String::new(),
            })
            .await,
        Code::NotFound,
    );
    let deletions = format!(
        "SELECT count(*) FROM contact_changes WHERE kind = 3 AND contact_id = '{}'",
        created.contact_id
    );
    assert_eq!(app.query_i64(&deletions).await, 1);
}

#[tokio::test]
async fn delete_with_a_stale_etag_is_aborted_and_keeps_the_contact() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;
    create(
        &mut client,
        pb::Contact {
            tags: vec!["new".into()],
            ..with_email("dana@example.com")
        },
    )
    .await;

    let result = client
        .delete_contact(pb::DeleteContactRequest {
            id: created.contact_id.clone(),
            etag: created.etag.clone(),
        })
        .await;

    assert_code(result, Code::Aborted);
    let current = get(&mut client, &created.contact_id).await.unwrap();
    client
        .delete_contact(pb::DeleteContactRequest {
            id: created.contact_id.clone(),
            etag: current.etag,
        })
        .await
        .unwrap();
    assert_code(get(&mut client, &created.contact_id).await, Code::NotFound);
}

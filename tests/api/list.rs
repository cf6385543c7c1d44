use std::collections::HashSet;

use contactsd::pb;

use crate::helpers::*;

fn list(page_size: i32) -> pb::ListContactsRequest {
    pb::ListContactsRequest {
        page_size,
        ..Default::default()
    }
}

/// Every page of a listing, following tokens.
async fn list_all(client: &mut Client, mut request: pb::ListContactsRequest) -> Vec<pb::Contact> {
    let mut contacts = Vec::new();
    loop {
        let page = client
            .list_contacts(request.clone())
            .await
            .unwrap()
            .into_inner();
        contacts.extend(page.contacts);
        if page.next_page_token.is_empty() {
            return contacts;
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn listing_pages_through_every_contact_in_creation_order() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let ids = create_many(&mut client, 7, "p").await;

    let first = client.list_contacts(list(3)).await.unwrap().into_inner();
    assert_eq!(first.contacts.len(), 3);
    assert!(!first.next_page_token.is_empty());

    let all = list_all(&mut client, list(3)).await;
    assert_eq!(all.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), ids);

    let exact = list_all(&mut client, list(7)).await;
    assert_eq!(
        exact.len(),
        7,
        "a full last page ends the list without an empty extra page"
    );
    let default = client.list_contacts(list(0)).await.unwrap().into_inner();
    assert_eq!(default.contacts.len(), 7);
    assert!(default.next_page_token.is_empty());
}

#[tokio::test]
async fn a_name_filter_finds_the_name_however_rust_and_postgres_lowercase_it() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    // Rust lowercases the last sigma to "ς", PostgreSQL's lower() to "σ": the
    // filter and the index must go through the same lowering.
    let odysseus = create(
        &mut client,
        pb::Contact {
            name: name("ὈΔΥΣΣΕΎΣ", "Laertiades"),
            ..with_email("odysseus@example.com")
        },
    )
    .await;
    let request = pb::ListContactsRequest {
        first_name: "ὈΔΥΣΣΕΎΣ".into(),
        ..Default::default()
    };
    let found = client.list_contacts(request).await.unwrap().into_inner();
    let ids: Vec<_> = found.contacts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [odysseus.contact_id.as_str()]);
}

#[tokio::test]
async fn every_filter_finds_its_contacts_and_filters_combine_with_and() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let dana = create(
        &mut client,
        pb::Contact {
            name: name("Dana", "Levi"),
            phones: vec![phone("(415) 555-0100")],
            ..with_email("Dana@Example.com")
        },
    )
    .await;
    let dina = create(
        &mut client,
        pb::Contact {
            name: name("Dina", "Levi"),
            ..with_email("dina@example.com")
        },
    )
    .await;
    create(
        &mut client,
        pb::Contact {
            name: name("Dana", "Cohen"),
            ..with_email("other@example.com")
        },
    )
    .await;

    let ids = |contacts: Vec<pb::Contact>| contacts.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let email = pb::ListContactsRequest {
        email: " DANA@example.COM ".into(),
        ..Default::default()
    };
    assert_eq!(
        ids(list_all(&mut client, email).await),
        [dana.contact_id.as_str()]
    );
    let phone = pb::ListContactsRequest {
        phone: "+1 415 555 0100".into(),
        ..Default::default()
    };
    assert_eq!(
        ids(list_all(&mut client, phone).await),
        [dana.contact_id.as_str()]
    );
    let first = pb::ListContactsRequest {
        first_name: "dana".into(),
        ..Default::default()
    };
    assert_eq!(list_all(&mut client, first).await.len(), 2);
    let last = pb::ListContactsRequest {
        last_name: "LEVI".into(),
        ..Default::default()
    };
    assert_eq!(
        ids(list_all(&mut client, last).await),
        [dana.contact_id.as_str(), dina.contact_id.as_str()]
    );
    let both = pb::ListContactsRequest {
        first_name: "Dana".into(),
        last_name: "Levi".into(),
        ..Default::default()
    };
    assert_eq!(
        ids(list_all(&mut client, both).await),
        [dana.contact_id.as_str()]
    );
    let none = pb::ListContactsRequest {
        email: "dana@example.com".into(),
        last_name: "Cohen".into(),
        ..Default::default()
    };
    assert!(list_all(&mut client, none).await.is_empty());
}

#[tokio::test]
async fn bad_filters_page_sizes_and_masks_are_rejected_naming_the_field() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;

    let phone = pb::ListContactsRequest {
        phone: "not a phone".into(),
        ..Default::default()
    };
    assert_invalid(client.list_contacts(phone).await, "phone");
    let email = pb::ListContactsRequest {
        email: "nope".into(),
        ..Default::default()
    };
    assert_invalid(client.list_contacts(email).await, "email");
    assert_invalid(client.list_contacts(list(-1)).await, "page_size");
    let unknown_path = pb::ListContactsRequest {
        read_mask: mask(&["name.nickname"]),
        ..Default::default()
    };
    assert_invalid(
        client.list_contacts(unknown_path).await,
        "read_mask.paths[0]",
    );
}

#[tokio::test]
async fn the_read_mask_returns_only_the_fields_asked_for_plus_id_and_etag() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let created = create(
        &mut client,
        pb::Contact {
            name: name("Dana", "Levi"),
            tags: vec!["vip".into()],
            phones: vec![phone("4155550100")],
            ..with_email("d@example.com")
        },
    )
    .await;

    let request = pb::ListContactsRequest {
        read_mask: mask(&["name.first", "emails"]),
        ..Default::default()
    };
    let contact = list_all(&mut client, request).await.remove(0);

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
    assert!(contact.phones.is_empty() && contact.tags.is_empty() && contact.create_time.is_none());
}

#[tokio::test]
async fn page_sizes_above_the_maximum_are_clamped_to_500() {
    let app = spawn_app().await;
    let client = app.client("acme").await;
    let calls = (0..505).map(|i| {
        let mut client = client.clone();
        tokio::spawn(
            async move { create(&mut client, with_email(&format!("c{i}@example.com"))).await },
        )
    });
    futures::future::join_all(calls).await;
    let mut client = client.clone();

    let page = client
        .list_contacts(list(10_000))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(page.contacts.len(), 500);
    assert!(!page.next_page_token.is_empty());
}

#[tokio::test]
async fn altered_foreign_and_refiltered_page_tokens_are_rejected() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    create_many(&mut client, 3, "t").await;
    let token = client
        .list_contacts(list(1))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;

    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 5;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let request = |page_token: String| pb::ListContactsRequest {
        page_size: 1,
        page_token,
        ..Default::default()
    };
    assert_invalid(
        client
            .list_contacts(request(String::from_utf8(altered).unwrap()))
            .await,
        "page_token",
    );
    assert_invalid(
        client.list_contacts(request("garbage".into())).await,
        "page_token",
    );

    let refiltered = pb::ListContactsRequest {
        first_name: "Dana".into(),
        ..request(token.clone())
    };
    let status = client.list_contacts(refiltered).await.unwrap_err();
    assert!(status.message().contains("other filters"), "{status:?}");

    let mut other_site = app.client("globex").await;
    assert_invalid(
        other_site.list_contacts(request(token.clone())).await,
        "page_token",
    );
    assert_eq!(
        client
            .list_contacts(request(token))
            .await
            .unwrap()
            .into_inner()
            .contacts
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contacts_inserted_while_paging_never_make_a_listing_repeat_or_skip_one() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let before: HashSet<String> = create_many(&mut client, 30, "before")
        .await
        .into_iter()
        .collect();

    let writer = {
        let mut client = client.clone();
        tokio::spawn(async move { create_many(&mut client, 30, "during").await })
    };
    let mut seen = Vec::new();
    let mut request = list(4);
    loop {
        let page = client
            .list_contacts(request.clone())
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.contacts.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();

    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no contact is returned twice");
    assert!(
        before.is_subset(&unique),
        "every contact present at the start is returned"
    );
}

#[tokio::test]
async fn a_listing_never_shows_another_sites_contacts() {
    let app = spawn_app().await;
    let mut acme = app.client("acme").await;
    let mut globex = app.client("globex").await;
    create(
        &mut acme,
        pb::Contact {
            name: name("Dana", ""),
            ..with_email("dana@example.com")
        },
    )
    .await;
    let ours = create(&mut globex, with_email("someone@example.com")).await;

    let all = list_all(&mut globex, list(100)).await;
    assert_eq!(
        all.into_iter().map(|c| c.id).collect::<Vec<_>>(),
        [ours.contact_id]
    );
    for request in [
        pb::ListContactsRequest {
            email: "dana@example.com".into(),
            ..Default::default()
        },
        pb::ListContactsRequest {
            first_name: "Dana".into(),
            ..Default::default()
        },
    ] {
        assert!(list_all(&mut globex, request).await.is_empty());
    }
}

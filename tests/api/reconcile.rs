use contactsd::pb;

use crate::helpers::*;

#[tokio::test]
async fn reconcile_without_a_match_creates_a_contact() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;

    let response = create(
        &mut client,
        pb::Contact {
            name: name("Dana", "Levi"),
            emails: vec![email("dana@example.com")],
            ..Default::default()
        },
    )
    .await;

    assert!(response.created);
    assert!(uuid::Uuid::parse_str(&response.contact_id).is_ok());
    let contact = response.contact.expect("a read+write key sees the contact");
    assert_eq!(contact.id, response.contact_id);
    assert_eq!(contact.name.unwrap().first, "Dana");
    assert_eq!(contact.emails[0].email, "dana@example.com");
    assert!(!contact.emails[0].id.is_empty());
    assert_eq!(contact.etag, response.etag);
    assert!(contact.create_time.is_some() && contact.update_time.is_some());
}

#[tokio::test]
async fn reconcile_matches_an_existing_contact_by_email_ignoring_case_and_spaces() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let first = create(&mut client, with_email("dana@example.com")).await;

    let second = create(&mut client, with_email("  DANA@Example.com ")).await;

    assert!(!second.created);
    assert_eq!(second.contact_id, first.contact_id);
    assert_eq!(
        second.contact.unwrap().emails.len(),
        1,
        "the same email is not added twice"
    );
}

#[tokio::test]
async fn reconcile_matches_by_phone_written_in_another_format() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let first = create(
        &mut client,
        pb::Contact {
            phones: vec![phone("(415) 555-0100")],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        first.contact.as_ref().unwrap().phones[0].normalized_phone,
        "+14155550100"
    );

    let mut request = reconcile(pb::Contact {
        phones: vec![phone("+1 415.555.0100")],
        ..Default::default()
    });
    request.default_region = "GB".into();
    let second = client.reconcile(request).await.unwrap().into_inner();

    assert!(!second.created);
    assert_eq!(second.contact_id, first.contact_id);
    assert_eq!(second.contact.unwrap().phones.len(), 1);
}

#[tokio::test]
async fn reconcile_uses_the_request_region_for_phones_without_a_country_code() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let mut request = reconcile(pb::Contact {
        phones: vec![phone("020 7946 0958")],
        ..Default::default()
    });
    request.default_region = "GB".into();

    let response = client.reconcile(request).await.unwrap().into_inner();

    assert_eq!(
        response.contact.unwrap().phones[0].normalized_phone,
        "+442079460958"
    );
}

#[tokio::test]
async fn reconcile_merges_into_the_earliest_created_of_several_matches() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let older = create(&mut client, with_email("dana@example.com")).await;
    let newer = create(
        &mut client,
        pb::Contact {
            phones: vec![phone("4155550100")],
            ..Default::default()
        },
    )
    .await;
    assert_ne!(older.contact_id, newer.contact_id);

    let merged = create(
        &mut client,
        pb::Contact {
            emails: vec![email("dana@example.com")],
            phones: vec![phone("4155550100")],
            ..Default::default()
        },
    )
    .await;

    assert_eq!(merged.contact_id, older.contact_id);
    assert_eq!(
        merged.contact.unwrap().phones[0].normalized_phone,
        "+14155550100"
    );
    let untouched = get(&mut client, &newer.contact_id).await.unwrap();
    assert_eq!(untouched.etag, newer.etag, "the newer match is left alone");
}

#[tokio::test]
async fn reconcile_adds_new_array_values_and_skips_equal_ones() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let first = create(
        &mut client,
        pb::Contact {
            emails: vec![email("dana@example.com")],
            tags: vec!["vip".into()],
            addresses: vec![pb::Address {
                city: "Haifa".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;

    let second = create(
        &mut client,
        pb::Contact {
            emails: vec![email("dana@example.com"), email("dana@work.example")],
            tags: vec!["VIP".into(), "newsletter".into()],
            addresses: vec![pb::Address {
                city: "haifa".into(),
                ..Default::default()
            }],
            urls: vec![pb::Url {
                url: "https://dana.example".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;

    assert_eq!(second.contact_id, first.contact_id);
    let contact = second.contact.unwrap();
    let emails: Vec<_> = contact.emails.iter().map(|e| e.email.as_str()).collect();
    assert_eq!(emails, ["dana@example.com", "dana@work.example"]);
    assert_eq!(contact.tags, ["vip", "newsletter"]);
    assert_eq!(contact.addresses.len(), 1);
    assert_eq!(contact.urls[0].url, "https://dana.example/");
    assert_eq!(
        contact.emails[0].id,
        first.contact.unwrap().emails[0].id,
        "existing values keep their ids"
    );
    assert_ne!(second.etag, first.etag);
}

#[tokio::test]
async fn reconcile_keeps_different_scalars_and_reports_them_as_rejected() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    create(
        &mut client,
        pb::Contact {
            name: name("Dana", ""),
            company: Some(pb::Company {
                name: "Acme".into(),
                role: String::new(),
            }),
            emails: vec![email("dana@example.com")],
            ..Default::default()
        },
    )
    .await;

    let response = create(
        &mut client,
        pb::Contact {
            name: name("Dina", "Levi"),
            company: Some(pb::Company {
                name: "ACME".into(),
                role: "CTO".into(),
            }),
            picture: "https://pics.example/dana.png".into(),
            emails: vec![email("dana@example.com")],
            ..Default::default()
        },
    )
    .await;

    let contact = response.contact.unwrap();
    assert_eq!(
        contact.name.as_ref().unwrap().first,
        "Dana",
        "a set scalar is never overwritten"
    );
    assert_eq!(
        contact.name.as_ref().unwrap().last,
        "Levi",
        "an empty scalar is filled"
    );
    assert_eq!(
        contact.company.as_ref().unwrap().name,
        "Acme",
        "a case-only difference is no conflict"
    );
    assert_eq!(contact.company.as_ref().unwrap().role, "CTO");
    assert_eq!(contact.picture, "https://pics.example/dana.png");
    assert_eq!(response.rejected_fields.unwrap().paths, ["name.first"]);
    let rejected = response.rejected.unwrap();
    assert_eq!(rejected.name.unwrap().first, "Dina");
    assert!(rejected.company.is_none() && rejected.emails.is_empty());
}

#[tokio::test]
async fn a_reconcile_that_changes_nothing_keeps_the_etag_the_update_time_and_records_no_change() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let report = pb::Contact {
        name: name("Dana", ""),
        emails: vec![email("dana@example.com")],
        ..Default::default()
    };
    let first = create(&mut client, report.clone()).await;
    let changes_before = app.query_i64("SELECT count(*) FROM contact_changes").await;

    let again = create(&mut client, report).await;

    assert!(!again.created);
    assert_eq!(again.etag, first.etag);
    assert_eq!(
        again.contact.unwrap().update_time,
        first.contact.unwrap().update_time
    );
    assert!(again.rejected.is_none() && again.rejected_fields.is_none());
    assert_eq!(
        app.query_i64("SELECT count(*) FROM contact_changes").await,
        changes_before
    );
}

#[tokio::test]
async fn every_change_is_recorded_with_its_kind_fields_and_app() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let created = create(
        &mut client,
        pb::Contact {
            name: name("Dana", ""),
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

    let sql = |kind: i16, field: &str| {
        format!(
            "SELECT count(*) FROM contact_changes WHERE contact_id = '{}' AND kind = {kind} \
             AND '{field}' = ANY(changed_fields) AND app = 'test-app' AND snapshot IS NOT NULL",
            created.contact_id
        )
    };
    assert_eq!(app.query_i64(&sql(1, "emails")).await, 1);
    assert_eq!(app.query_i64(&sql(1, "name.first")).await, 1);
    assert_eq!(app.query_i64(&sql(2, "tags")).await, 1);
}

#[tokio::test]
async fn reconcile_returns_the_contact_only_to_keys_with_the_read_scope() {
    let app = spawn_app().await;
    let write_only = app.key("acme", "write").await;
    let mut client = app.client_with_key(&write_only).await;

    let response = create(
        &mut client,
        pb::Contact {
            name: name("Dana", ""),
            ..with_email("dana@example.com")
        },
    )
    .await;
    assert!(response.contact.is_none());
    assert!(!response.contact_id.is_empty() && !response.etag.is_empty());

    let conflict = create(
        &mut client,
        pb::Contact {
            name: name("Dina", ""),
            ..with_email("dana@example.com")
        },
    )
    .await;
    assert!(conflict.contact.is_none());
    assert_eq!(
        conflict.rejected_fields.unwrap().paths,
        ["name.first"],
        "rejections are still reported"
    );
}

#[tokio::test]
async fn reconcile_without_an_email_or_phone_is_rejected() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;

    assert_invalid(
        client
            .reconcile(reconcile(pb::Contact {
                name: name("Dana", ""),
                ..Default::default()
            }))
            .await,
        "contact.emails",
    );
    assert_invalid(
        client.reconcile(pb::ReconcileRequest::default()).await,
        "contact",
    );
    assert_eq!(app.query_i64("SELECT count(*) FROM contacts").await, 0);
}

#[tokio::test]
async fn invalid_values_are_all_named_in_one_error_and_nothing_is_written() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let mut request = reconcile(pb::Contact {
        emails: vec![email("dana@example.com"), email("not-an-email")],
        phones: vec![phone("call me maybe")],
        dates: vec![pb::ContactDate {
            tag: "birthday".into(),
            date: "1990-02-30".into(),
            ..Default::default()
        }],
        urls: vec![pb::Url {
            url: "example.com".into(),
            ..Default::default()
        }],
        name: name(&"x".repeat(201), ""),
        ..Default::default()
    });
    request.default_region = "Narnia".into();

    let status = client.reconcile(request).await.unwrap_err();

    for field in [
        "contact.emails[1].email",
        "contact.phones[0].phone",
        "contact.dates[0].date",
        "contact.urls[0].url",
        "contact.name.first",
        "default_region",
    ] {
        assert_invalid::<()>(Err(status.clone()), field);
    }
    assert_eq!(app.query_i64("SELECT count(*) FROM contacts").await, 0);
}

#[tokio::test]
async fn a_merge_past_the_value_limit_is_rejected_and_changes_nothing() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let tags = |from: usize| {
        (from..from + 30)
            .map(|i| format!("tag{i}"))
            .collect::<Vec<_>>()
    };
    let first = create(
        &mut client,
        pb::Contact {
            tags: tags(0),
            ..with_email("dana@example.com")
        },
    )
    .await;

    let result = client
        .reconcile(reconcile(pb::Contact {
            tags: tags(30),
            ..with_email("dana@example.com")
        }))
        .await;

    assert_invalid(result, "contact.tags");
    assert_eq!(
        get(&mut client, &first.contact_id).await.unwrap().etag,
        first.etag
    );
    assert_invalid(
        client
            .reconcile(reconcile(pb::Contact {
                tags: tags(100).into_iter().chain(tags(200)).collect(),
                ..with_email("x@example.com")
            }))
            .await,
        "contact.tags",
    );
}

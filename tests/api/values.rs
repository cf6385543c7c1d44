use contactsd::pb;
use contactsd::pb::{add_value_request, override_value_request};
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

fn add(contact_id: &str, etag: &str, value: add_value_request::Value) -> pb::AddValueRequest {
    pb::AddValueRequest {
        contact_id: contact_id.into(),
        etag: etag.into(),
        default_region: String::new(),
        value: Some(value),
    }
}

fn replace(
    contact_id: &str,
    etag: &str,
    value: override_value_request::Value,
) -> pb::OverrideValueRequest {
    pb::OverrideValueRequest {
        contact_id: contact_id.into(),
        etag: etag.into(),
        default_region: String::new(),
        value: Some(value),
    }
}

#[tokio::test]
async fn add_value_appends_a_value_and_returns_its_id() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let contact = create(&mut client, with_email("dana@example.com")).await;

    let response = client
        .add_value(add(
            &contact.contact_id,
            "",
            add_value_request::Value::Phone(phone("415-555-0100")),
        ))
        .await
        .unwrap()
        .into_inner();

    assert!(!response.already_present);
    assert_ne!(response.etag, contact.etag);
    let stored = get(&mut client, &contact.contact_id).await.unwrap();
    assert_eq!(stored.phones[0].id, response.value_id);
    assert_eq!(stored.phones[0].normalized_phone, "+14155550100");
    assert_eq!(stored.etag, response.etag);
    assert_eq!(response.contact.unwrap(), stored);

    // The added phone now identifies the contact.
    let matched = create(
        &mut client,
        pb::Contact {
            phones: vec![phone("+14155550100")],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(matched.contact_id, contact.contact_id);
}

#[tokio::test]
async fn adding_a_value_already_present_returns_its_id_and_changes_nothing() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let contact = create(
        &mut client,
        pb::Contact {
            tags: vec!["vip".into()],
            ..with_email("dana@example.com")
        },
    )
    .await;
    let email_id = contact.contact.as_ref().unwrap().emails[0].id.clone();

    let response = client
        .add_value(add(
            &contact.contact_id,
            "",
            add_value_request::Value::Email(email("DANA@example.com")),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(response.already_present);
    assert_eq!(response.value_id, email_id);
    assert_eq!(response.etag, contact.etag);

    let tag = client
        .add_value(add(
            &contact.contact_id,
            "",
            add_value_request::Value::Tag("VIP".into()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(tag.already_present);
    assert_eq!(tag.value_id, "vip");
    assert_eq!(tag.etag, contact.etag);
}

#[tokio::test]
async fn add_value_with_a_stale_etag_is_aborted() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let contact = create(&mut client, with_email("dana@example.com")).await;
    let current = client
        .add_value(add(
            &contact.contact_id,
            &contact.etag,
            add_value_request::Value::Tag("a".into()),
        ))
        .await
        .unwrap();

    let stale = client
        .add_value(add(
            &contact.contact_id,
            &contact.etag,
            add_value_request::Value::Tag("b".into()),
        ))
        .await;

    let status = assert_code(stale, Code::Aborted);
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "ETAG_MISMATCH"
    );
    assert_eq!(
        get(&mut client, &contact.contact_id).await.unwrap().etag,
        current.into_inner().etag
    );
}

#[tokio::test]
async fn add_value_rejects_bad_values_and_unknown_contacts() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let contact = create(&mut client, with_email("dana@example.com")).await;

    let bad_date = pb::ContactDate {
        date: "yesterday".into(),
        ..Default::default()
    };
    assert_invalid(
        client
            .add_value(add(
                &contact.contact_id,
                "",
                add_value_request::Value::Date(bad_date),
            ))
            .await,
        "date.date",
    );
    assert_invalid(
        client
            .add_value(add("nope", "", add_value_request::Value::Tag("a".into())))
            .await,
        "contact_id",
    );
    let no_value = pb::AddValueRequest {
        contact_id: contact.contact_id.clone(),
        ..Default::default()
    };
    assert_invalid(client.add_value(no_value).await, "value");
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_code(
        client
            .add_value(add(&unknown, "", add_value_request::Value::Tag("a".into())))
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn override_with_the_current_etag_replaces_a_scalar_group() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let contact = create(
        &mut client,
        pb::Contact {
            name: name("Dana", "Levi"),
            ..with_email("dana@example.com")
        },
    )
    .await;

    let response = client
        .override_value(replace(
            &contact.contact_id,
            &contact.etag,
            override_value_request::Value::Name(name("Dina", "").unwrap()),
        ))
        .await
        .unwrap()
        .into_inner();

    let stored = get(&mut client, &contact.contact_id).await.unwrap();
    assert_eq!(
        stored.name.unwrap(),
        name("Dina", "").unwrap(),
        "the whole group is replaced"
    );
    assert_eq!(stored.etag, response.etag);
    assert_ne!(response.etag, contact.etag);
}

#[tokio::test]
async fn override_with_a_stale_etag_is_aborted_with_etag_mismatch_and_changes_nothing() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let contact = create(
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
            tags: vec!["changed".into()],
            ..with_email("dana@example.com")
        },
    )
    .await;

    let result = client
        .override_value(replace(
            &contact.contact_id,
            &contact.etag,
            override_value_request::Value::Name(name("Dina", "").unwrap()),
        ))
        .await;

    let status = assert_code(result, Code::Aborted);
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "ETAG_MISMATCH"
    );
    assert_eq!(
        get(&mut client, &contact.contact_id)
            .await
            .unwrap()
            .name
            .unwrap()
            .first,
        "Dana"
    );
}

#[tokio::test]
async fn override_replaces_one_array_element_by_id_and_keeps_the_id() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let contact = create(
        &mut client,
        pb::Contact {
            phones: vec![phone("4155550100"), phone("4155550101")],
            ..with_email("dana@example.com")
        },
    )
    .await;
    let target = contact.contact.unwrap().phones[1].clone();

    let new_phone = pb::Phone {
        id: target.id.clone(),
        phone: "415 555 0199".into(),
        tag: "mobile".into(),
        ..Default::default()
    };
    client
        .override_value(replace(
            &contact.contact_id,
            &contact.etag,
            override_value_request::Value::Phone(new_phone),
        ))
        .await
        .unwrap();

    let stored = get(&mut client, &contact.contact_id).await.unwrap();
    assert_eq!(stored.phones[1].id, target.id);
    assert_eq!(stored.phones[1].normalized_phone, "+14155550199");
    assert_eq!(stored.phones[1].tag, "mobile");
    assert_eq!(stored.phones[0].normalized_phone, "+14155550100");
    // The old number no longer identifies the contact; the new one does.
    let by_new = create(
        &mut client,
        pb::Contact {
            phones: vec![phone("4155550199")],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_new.contact_id, contact.contact_id);
    let by_old = create(
        &mut client,
        pb::Contact {
            phones: vec![phone("4155550101")],
            ..Default::default()
        },
    )
    .await;
    assert!(by_old.created);
}

#[tokio::test]
async fn override_of_an_unknown_element_is_not_found_and_a_missing_etag_is_invalid() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let contact = create(&mut client, with_email("dana@example.com")).await;
    let unknown = pb::Email {
        id: uuid::Uuid::new_v4().to_string(),
        email: "x@example.com".into(),
        ..Default::default()
    };

    let result = client
        .override_value(replace(
            &contact.contact_id,
            &contact.etag,
            override_value_request::Value::Email(unknown.clone()),
        ))
        .await;
    assert_code(result, Code::NotFound);

    let result = client
        .override_value(replace(
            &contact.contact_id,
            "",
            override_value_request::Value::Email(unknown),
        ))
        .await;
    assert_invalid(result, "etag");

    let no_id = pb::Email {
        email: "x@example.com".into(),
        ..Default::default()
    };
    let result = client
        .override_value(replace(
            &contact.contact_id,
            &contact.etag,
            override_value_request::Value::Email(no_id),
        ))
        .await;
    assert_invalid(result, "email.id");
}

#[tokio::test]
async fn override_into_a_value_another_element_holds_is_already_exists() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;
    let contact = create(
        &mut client,
        pb::Contact {
            emails: vec![email("a@example.com"), email("b@example.com")],
            ..Default::default()
        },
    )
    .await;
    let second = contact.contact.unwrap().emails[1].clone();

    let duplicate = pb::Email {
        id: second.id,
        email: "A@example.com".into(),
        ..Default::default()
    };
    let result = client
        .override_value(replace(
            &contact.contact_id,
            &contact.etag,
            override_value_request::Value::Email(duplicate),
        ))
        .await;

    assert_code(result, Code::AlreadyExists);
}

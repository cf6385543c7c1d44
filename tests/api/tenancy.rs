use contactsd::pb;
use contactsd::pb::add_value_request;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn calls_without_a_valid_key_are_unauthenticated() {
    let app = spawn_app().await;
    let mut no_key = pb::contacts_service_client::ContactsServiceClient::new(app.channel().await);
    assert_code(
        no_key.get_contact(pb::GetContactRequest::default()).await,
        Code::Unauthenticated,
    );

    let mut unknown = app.client_with_key("cdk_not-a-real-key").await;
    assert_code(
        unknown
            .reconcile(reconcile(with_email("dana@example.com")))
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(app.query_i64("SELECT count(*) FROM contacts").await, 0);
}

#[tokio::test]
async fn keys_without_the_needed_scope_are_permission_denied() {
    let app = spawn_app().await;
    let mut writer = app.client_with_key(&app.key("acme", "write").await).await;
    let mut reader = app.client_with_key(&app.key("acme", "read").await).await;
    let created = create(&mut writer, with_email("dana@example.com")).await;

    assert_code(
        reader
            .reconcile(reconcile(with_email("dina@example.com")))
            .await,
        Code::PermissionDenied,
    );
    let add = pb::AddValueRequest {
        contact_id: created.contact_id.clone(),
        value: Some(add_value_request::Value::Tag("x".into())),
        ..Default::default()
    };
    assert_code(reader.add_value(add).await, Code::PermissionDenied);
    assert_code(
        reader
            .delete_contact(pb::DeleteContactRequest {
                id: created.contact_id.clone(),
                etag: String::new(),
            })
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        get(&mut writer, &created.contact_id).await,
        Code::PermissionDenied,
    );
    assert!(get(&mut reader, &created.contact_id).await.is_ok());
}

#[tokio::test]
async fn one_site_never_sees_or_changes_another_sites_contacts() {
    let app = spawn_app().await;
    let mut acme = app.client("acme").await;
    let mut globex = app.client("globex").await;
    let theirs = create(
        &mut acme,
        pb::Contact {
            name: name("Dana", ""),
            ..with_email("dana@example.com")
        },
    )
    .await;

    // The same email in another site is another person's record there.
    let ours = create(&mut globex, with_email("dana@example.com")).await;
    assert!(ours.created);
    assert_ne!(ours.contact_id, theirs.contact_id);

    assert_code(get(&mut globex, &theirs.contact_id).await, Code::NotFound);
    let add = pb::AddValueRequest {
        contact_id: theirs.contact_id.clone(),
        value: Some(add_value_request::Value::Tag("x".into())),
        ..Default::default()
    };
    assert_code(globex.add_value(add).await, Code::NotFound);
    let replace = pb::OverrideValueRequest {
        contact_id: theirs.contact_id.clone(),
        etag: theirs.etag.clone(),
        value: Some(pb::override_value_request::Value::Name(
            name("Mallory", "").unwrap(),
        )),
        ..Default::default()
    };
    assert_code(globex.override_value(replace).await, Code::NotFound);
    assert_code(
        globex
            .delete_contact(pb::DeleteContactRequest {
                id: theirs.contact_id.clone(),
                etag: String::new(),
            })
            .await,
        Code::NotFound,
    );
    let untouched = get(&mut acme, &theirs.contact_id).await.unwrap();
    assert_eq!(untouched.etag, theirs.etag);
}

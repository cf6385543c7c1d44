use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_reflection::pb::{v1, v1alpha};

use crate::helpers::*;

#[tokio::test]
async fn the_health_service_reports_the_contacts_service_as_serving() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel().await);

    let response = health
        .check(HealthCheckRequest {
            service: "contacts.v1.ContactsService".into(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.status(), ServingStatus::Serving);
}

#[tokio::test]
async fn reflection_lists_the_service_in_both_v1_and_v1alpha() {
    let app = spawn_app().await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1 answers a list request with a list");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "contacts.v1.ContactsService")
    );

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1alpha answers a list request with a list");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "contacts.v1.ContactsService")
    );
}

/// Calls `path` with an empty message over a fresh connection.
async fn call_path(app: &TestApp, path: &'static str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(
        tonic::Request::new(()),
        http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .expect_err("no such method")
}

#[tokio::test]
async fn an_unknown_service_or_method_is_unimplemented() {
    let app = spawn_app().await;

    let status = call_path(&app, "/contacts.v2.ContactsService/GetContact").await;
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("contacts.v2.ContactsService"));

    let status = call_path(&app, "/contacts.v1.ContactsService/GetContacts").await;
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
}

/// More than hyper's default of 200 streams at once: a client multiplexing
/// many watches on one connection must not see some of them wait forever.
#[tokio::test]
async fn a_client_may_hold_hundreds_of_watches_on_one_connection() {
    let app = spawn_app().await;
    let mut client = app.client("acme").await;

    let mut streams = Vec::new();
    for _ in 0..300 {
        let request = contactsd::pb::WatchContactsRequest::default();
        streams.push(client.watch_contacts(request).await.unwrap().into_inner());
    }
    let created = create(&mut client, with_email("many@example.com")).await;

    for stream in &mut streams {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let event = stream.message().await.unwrap().unwrap();
                if event.r#type() != contactsd::pb::EventType::Heartbeat {
                    return event;
                }
            }
        })
        .await
        .expect("every watch gets the change");
        assert_eq!(event.contact_id, created.contact_id);
    }
}

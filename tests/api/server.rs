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

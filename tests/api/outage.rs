//! A database outage, made real by a TCP proxy between the server and
//! PostgreSQL that the test cuts and restores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::Code;

use crate::helpers::*;

/// Forwards connections to PostgreSQL while up; when cut, drops every open
/// connection and refuses new ones.
struct Proxy {
    address: String,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (accept_up, accept_cut) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let mut cut = accept_cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(database_host()).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { address, up, cut }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

#[tokio::test]
async fn a_database_outage_answers_unavailable_and_the_server_recovers() {
    let proxy = Proxy::start().await;
    let app = spawn_app_via(&proxy.address).await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;

    proxy.set_up(false);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let status = assert_code(
        get(&mut client, &created.contact_id).await,
        Code::Unavailable,
    );
    assert!(
        !status.message().contains("127.0.0.1"),
        "internal details stay inside: {status:?}"
    );
    assert_code(
        client
            .reconcile(reconcile(with_email("dina@example.com")))
            .await,
        Code::Unavailable,
    );

    proxy.set_up(true);
    let contact = get(&mut client, &created.contact_id)
        .await
        .expect("the server serves again once the database is back");
    assert_eq!(contact.etag, created.etag);
}

#[tokio::test]
async fn a_client_retrying_an_unknown_key_is_refused_without_asking_the_database_again() {
    let proxy = Proxy::start().await;
    let app = spawn_app_via(&proxy.address).await;
    let mut unknown = app.client_with_key("cdk_not-a-real-key").await;
    let any_id = || uuid::Uuid::new_v4().to_string();
    assert_code(get(&mut unknown, &any_id()).await, Code::Unauthenticated);

    // With the database gone, only a remembered answer can still be given.
    proxy.set_up(false);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for _ in 0..20 {
        assert_code(get(&mut unknown, &any_id()).await, Code::Unauthenticated);
    }
}

#[tokio::test]
async fn reads_right_after_the_database_dropped_the_servers_connections_succeed() {
    let proxy = Proxy::start().await;
    let app = spawn_app_via(&proxy.address).await;
    let mut client = app.client("acme").await;
    let created = create(&mut client, with_email("dana@example.com")).await;
    let by_email = || contactsd::pb::ListContactsRequest {
        email: "dana@example.com".into(),
        ..Default::default()
    };
    // Open the shared read connections.
    for _ in 0..4 {
        get(&mut client, &created.contact_id).await.unwrap();
        client.list_contacts(by_email()).await.unwrap();
    }

    // A restart in miniature: every connection dropped, the database back at once.
    proxy.set_up(false);
    proxy.set_up(true);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for _ in 0..4 {
        let contact = get(&mut client, &created.contact_id)
            .await
            .expect("a dropped shared connection is replaced, not reported");
        assert_eq!(contact.etag, created.etag);
        let listed = client
            .list_contacts(by_email())
            .await
            .expect("a dropped shared connection is replaced, not reported");
        assert_eq!(listed.into_inner().contacts.len(), 1);
    }
}

//! contactsd: a contacts gRPC service over PostgreSQL.
//!
//! Layout: `domain` (validated types and merge rules), `storage` (all SQL),
//! `grpc` (the service and wire conversions), `feed` (the change stream),
//! `auth` (API keys), `sealed` (signed opaque cursors and tokens), `config`
//! (flags), `error` (the one error type). [`Application`] wires them together.

pub mod auth;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod sealed;
pub mod storage;

/// The generated wire types and service stubs of `contacts.v1`.
#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("contacts.v1");

    /// The encoded descriptors of the protos, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/contacts_descriptor.bin"));
}

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::transport::server::TcpIncoming;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::grpc::ContactsApi;
use crate::grpc::socket::ClientSocket;
use crate::pb::contacts_service_server::ContactsServiceServer;
use crate::storage::Store;

/// A server bound to its port and connected to its database, ready to run.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    store: Store,
    settings: Settings,
}

impl Application {
    /// Connects to the database (creating and migrating it as needed) and binds
    /// the listen address; port 0 picks a free port (see [`Application::address`]).
    pub async fn build(
        settings: Settings,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let store = Store::connect(&settings.database_url, &settings.db).await?;
        let listener = TcpListener::bind(settings.listen).await?;
        let address = listener.local_addr()?;
        Ok(Self {
            listener,
            address,
            store,
            settings,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` completes, then finishes in-flight calls.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // Watch streams never end on their own: they are told to, so that the
        // graceful shutdown below does not wait on them forever.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let feed =
            feed::Feed::start(self.store.clone(), self.settings.feed.clone(), stopping).await?;
        // A stream whose client stopped reading is never polled again, so it
        // cannot see the shutdown; past the grace period it is cut off.
        let grace = self.settings.shutdown_grace;
        let mut stop_seen = stop.subscribe();
        let grace_over = async move {
            if stop_seen.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace).await;
        };
        let shutdown = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let api = ContactsApi::new(
            self.store.clone(),
            Authenticator::new(self.store.clone()),
            self.settings.default_region,
            feed,
        );

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<ContactsServiceServer<ContactsApi>>()
            .await;
        // grpcurl 1.8.0-1.8.7 speaks only v1alpha reflection; newer clients prefer v1.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // So that clients like grpcurl can decode google.rpc error details.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .build_v1()
            .expect("the embedded descriptors are valid");
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .expect("the embedded descriptors are valid");

        // Without TCP_NODELAY, small responses wait for the peer's delayed ACK
        // (tens of milliseconds per call). Keepalives find vanished clients.
        let incoming = TcpIncoming::from(self.listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(std::time::Duration::from_secs(60)))
            .map(|accepted| accepted.map(ClientSocket::new));
        tracing::info!(address = %self.address, "serving contacts.v1.ContactsService");
        let router = grpc::server::Router::new(grpc::watch::Routes::new(api))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let serve = grpc::server::serve(incoming, router, shutdown);
        tokio::select! {
            () = serve => {}
            () = grace_over => tracing::warn!(
                grace_secs = grace.as_secs_f64(),
                "calls still open after the shutdown grace period were cut off"
            ),
        }
        Ok(())
    }
}

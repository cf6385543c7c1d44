//! Integration tests: the real server on a real socket, over a real
//! PostgreSQL database of its own.

mod helpers;

mod bench;
mod concurrency;
mod contacts;
mod list;
mod outage;
mod reconcile;
mod server;
mod tenancy;
mod values;
mod watch;

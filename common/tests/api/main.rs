//! Integration tests of the messaging machinery against a real RabbitMQ (one
//! vhost per test) and real SQLite and PostgreSQL databases (one per test).

#![allow(clippy::unwrap_used)] // a test that cannot go on should stop loudly

mod helpers;
mod messaging;
mod reliability;

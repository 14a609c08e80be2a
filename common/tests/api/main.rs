//! Integration tests of the messaging machinery against a real RabbitMQ (one
//! vhost per test) and real SQLite and PostgreSQL databases (one per test).

mod helpers;
mod messaging;

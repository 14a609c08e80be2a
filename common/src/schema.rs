//! Diesel schema of the machinery tables every service database has.

diesel::table! {
    outbox (id) {
        id -> BigInt,
        message_id -> Text,
        exchange -> Text,
        routing_key -> Text,
        message_type -> Text,
        correlation_id -> Text,
        body -> Text,
        created_at -> BigInt,
        sent_at -> Nullable<BigInt>,
        returned_at -> Nullable<BigInt>,
        returns -> Integer,
    }
}

diesel::table! {
    inbox (consumer, message_id) {
        consumer -> Text,
        message_id -> Text,
        message_type -> Text,
        correlation_id -> Text,
        received_at -> BigInt,
    }
}

diesel::table! {
    inbox_retries (consumer, message_id) {
        consumer -> Text,
        message_id -> Text,
        message_type -> Text,
        correlation_id -> Text,
        attempt -> Integer,
        error -> Text,
        retry_at -> BigInt,
    }
}

diesel::table! {
    relay_lease (name) {
        name -> Text,
        holder -> Text,
        expires_at -> BigInt,
    }
}

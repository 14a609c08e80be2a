//! The message envelope. Its JSON is the AMQP body; its ids are mirrored into
//! the AMQP properties (`message_id`, `correlation_id`, `type`, `app_id`,
//! `timestamp`) and headers (`causation_id`, `version`) so that the broker's
//! tools and the management UI show them without parsing the body.

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::messages::Message;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// UUIDv7: unique, and ordered by creation time.
    pub message_id: Uuid,
    #[serde(rename = "type")]
    pub message_type: String,
    pub version: u32,
    /// The saga this message belongs to: an order id, a user id, a withdrawal id.
    pub correlation_id: String,
    /// The message that caused this one; `None` for a message caused by a request.
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// The service that wrote it.
    pub producer: String,
    pub payload: serde_json::Value,
    /// The W3C trace context of the span that wrote it (see [`crate::tracecontext`]);
    /// sent as the AMQP header `traceparent` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A delivery whose body is not an envelope.
#[derive(Debug, thiserror::Error)]
#[error("not a valid envelope: {0}")]
pub struct InvalidEnvelope(#[from] serde_json::Error);

impl Envelope {
    /// A new message at the start of a saga step (caused by a request).
    pub fn new<M: Message>(
        producer: &str,
        correlation_id: impl Into<String>,
        payload: &M,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            message_id: Uuid::now_v7(),
            message_type: M::TYPE.to_string(),
            version: M::VERSION,
            correlation_id: correlation_id.into(),
            causation_id: None,
            occurred_at: now,
            producer: producer.to_string(),
            // Serialising a plain payload struct to a JSON value cannot fail.
            payload: serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),
            traceparent: None,
        }
    }

    /// A message caused by `self`, in the same saga.
    pub fn reply<M: Message>(&self, producer: &str, payload: &M, now: DateTime<Utc>) -> Envelope {
        Envelope {
            causation_id: Some(self.message_id),
            ..Envelope::new(producer, &self.correlation_id, payload, now)
        }
    }

    /// The payload as `M`, checking the type name.
    pub fn payload<M: Message>(&self) -> Result<M, InvalidEnvelope> {
        if self.message_type != M::TYPE {
            use serde::de::Error;
            return Err(serde_json::Error::custom(format!(
                "expected a `{}` message, got `{}`",
                M::TYPE,
                self.message_type
            ))
            .into());
        }
        Ok(serde_json::from_value(self.payload.clone())?)
    }

    pub fn to_json(&self) -> String {
        // An envelope holds only strings, numbers and a JSON value: it always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(body: &[u8]) -> Result<Self, InvalidEnvelope> {
        Ok(serde_json::from_slice(body)?)
    }

    /// AMQP properties mirroring the envelope; persistent delivery.
    pub fn amqp_properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        if let Some(causation) = self.causation_id {
            headers.insert("causation_id".into(), AMQPValue::LongString(causation.to_string().into()));
        }
        headers.insert("version".into(), AMQPValue::LongUInt(self.version));
        if let Some(traceparent) = &self.traceparent {
            headers.insert(
                crate::tracecontext::HEADER.into(),
                AMQPValue::LongString(traceparent.as_str().into()),
            );
        }
        BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(self.message_id.to_string()))
            .with_correlation_id(ShortString::from(self.correlation_id.clone()))
            .with_type(ShortString::from(self.message_type.clone()))
            .with_app_id(ShortString::from(self.producer.clone()))
            .with_timestamp(self.occurred_at.timestamp().max(0) as u64)
            .with_headers(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Kind;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Ping {
        n: u32,
    }

    impl Message for Ping {
        const TYPE: &'static str = "test.ping";
        const KIND: Kind = Kind::Event;
    }

    #[test]
    fn reply_keeps_the_saga_and_records_its_cause() {
        let now = Utc::now();
        let first = Envelope::new("a", "order-1", &Ping { n: 1 }, now);
        let second = first.reply("b", &Ping { n: 2 }, now);
        assert_eq!(second.correlation_id, "order-1");
        assert_eq!(second.causation_id, Some(first.message_id));
        assert_ne!(second.message_id, first.message_id);
        assert_eq!(second.payload::<Ping>().unwrap(), Ping { n: 2 });

        let parsed = Envelope::from_json(first.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, first);
        let json: serde_json::Value = serde_json::from_str(&first.to_json()).unwrap();
        assert_eq!(json["type"], "test.ping");
    }

    #[test]
    fn properties_mirror_the_ids() {
        let env = Envelope::new("order-service", "o-9", &Ping { n: 1 }, Utc::now());
        let props = env.amqp_properties();
        assert_eq!(
            props.message_id().as_ref().map(|s| s.as_str()),
            Some(env.message_id.to_string().as_str())
        );
        assert_eq!(props.correlation_id().as_ref().map(|s| s.as_str()), Some("o-9"));
        assert_eq!(props.kind().as_ref().map(|s| s.as_str()), Some("test.ping"));
        assert_eq!(props.delivery_mode(), &Some(2));
    }
}

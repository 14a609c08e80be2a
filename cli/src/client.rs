//! The gateway as a REST client sees it: a request with its bearer token,
//! JSON body and `Idempotency-Key`, answered with a status and a JSON body.
//! The demo and the chaos harness talk to the stack only through it.

use anyhow::Context;
use serde_json::Value;

/// A client of one gateway.
#[derive(Debug, Clone)]
pub struct Gateway {
    http: reqwest::Client,
    base: String,
}

impl Gateway {
    pub fn new(base: &str) -> Self {
        Self { http: reqwest::Client::new(), base: base.trim_end_matches('/').to_string() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; returns the status and the JSON body (`null` when
    /// there is none). An error: the gateway could not be reached.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method.parse()?, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

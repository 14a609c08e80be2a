//! A real headless browser for tests: Debian's chromium driven through its
//! chromedriver over the W3C WebDriver protocol (a few JSON calls).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use bourse_common::testkit::{eventually, free_port};
use serde_json::{Value, json};

/// A chromedriver and one headless chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    /// The browser's profile, which names every process of it.
    profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        let port = free_port();
        let driver =
            Command::new(std::env::var("BOURSE_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (Debian's chromium-driver: bash scripts/infra.sh ensure_test_tools)");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        eventually("chromedriver ready", Duration::from_secs(20), || async {
            let status: Value = http.get(format!("{base}/status")).send().await.ok()?.json().await.ok()?;
            (status["value"]["ready"] == true).then_some(())
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": args},
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}"));
        let session = format!("{base}/session/{session}");
        Self { driver, http, session, profile }
    }

    /// A WebDriver command: its value, or its error.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        match answer["value"].get("error") {
            Some(_) => Err(answer["value"].clone()),
            None => Ok(answer["value"].clone()),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let answer = self.try_call(method, path, body).await;
        answer.unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})))
            .await;
        // An element reference: an object whose one value is the element's id.
        let reference = found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str);
        reference.unwrap_or_else(|| panic!("no element {css}: {found}")).to_string()
    }

    /// Types `text` into the element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({"text": text})))
            .await;
    }

    /// Clicks the element `css` selects; found again if the page redrew it meanwhile.
    pub async fn click(&self, css: &str) {
        eventually(&format!("a click on {css}"), crate::helpers::WAIT, || async {
            let element = self.element(css).await;
            let path = format!("/element/{element}/click");
            match self.try_call(reqwest::Method::POST, &path, Some(json!({}))).await {
                Ok(_) => Some(()),
                Err(error) if error["error"] == "stale element reference" => None,
                Err(error) => panic!("WebDriver {path}: {error}"),
            }
        })
        .await
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; returns what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Waits until `script` returns something other than `null` or `false`; returns it.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        eventually(what, crate::helpers::WAIT, || async {
            let value = self.run(script, args.clone()).await;
            (!value.is_null() && value != false).then_some(value)
        })
        .await
    }

    /// The page as a PNG.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap()).unwrap()
    }
}

impl Browser {
    /// Closes the browser, then its driver.
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A test that failed never quit its browser: end every process of its profile.
        let _ = Command::new("pkill").arg("-f").arg(self.profile.path()).status();
    }
}

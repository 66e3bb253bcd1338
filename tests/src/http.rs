//! A small blocking HTTP client for the sidecar's API, and the response shape tests assert on.

use std::time::Duration;

use serde_json::Value;
use ureq::http;

/// A client for one sidecar. Cheap to clone; connections are pooled.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for `http://127.0.0.1:<port>` that sends `dapr-api-token: <token>` when given.
    pub fn new(port: u16, token: Option<&str>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            base: format!("http://127.0.0.1:{port}"),
            token: token.map(str::to_owned),
        }
    }

    /// The same client, sending no `dapr-api-token` header.
    pub fn without_token(&self) -> Self {
        Self {
            token: None,
            ..self.clone()
        }
    }

    /// The same client, sending `dapr-api-token: <token>`.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// Sends one request. `path` starts with `/` and is used verbatim (escape it yourself).
    /// Panics on transport errors (connection refused, timeout): tests want HTTP answers.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Like [`Client::request`], but transport errors are returned.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, ureq::Error> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            builder = builder.header("dapr-api-token", token);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = match body {
            Some(bytes) => self.agent.run(builder.body(bytes)?)?,
            None => self.agent.run(builder.body(())?)?,
        };
        Response::read(response)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], None)
    }

    /// `method path` with a JSON body given as text (so tests control the exact bytes).
    pub fn send_json(&self, method: &str, path: &str, json: &str) -> Response {
        self.request(
            method,
            path,
            &[("content-type", "application/json")],
            Some(json.as_bytes()),
        )
    }

    pub fn post_json(&self, path: &str, json: &Value) -> Response {
        self.send_json("POST", path, &json.to_string())
    }
}

/// A fully read response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn read(mut response: http::Response<ureq::Body>) -> Result<Self, ureq::Error> {
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(Self {
            status: response.status().as_u16(),
            headers,
            body: response.body_mut().read_to_vec()?,
        })
    }

    /// The first value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics with the body text when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.text()))
    }

    /// Panics unless the status is `status`; shows the body on failure.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected HTTP status; body: {:?}",
            self.text()
        );
        self
    }

    /// Asserts a 204 with an empty body.
    #[track_caller]
    pub fn expect_no_content(&self) -> &Self {
        self.expect_status(204);
        assert!(self.body.is_empty(), "204 with a body: {:?}", self.text());
        self
    }

    /// Asserts a Dapr JSON error: the status, `Content-Type: application/json`, `errorCode`
    /// equal to `code` and a non-empty string `message`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect_status(status);
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "error with Content-Type {content_type:?}, body {:?}",
            self.text()
        );
        let body = self.json();
        assert_eq!(body["errorCode"], code, "error body: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "error without a message: {body}");
        self
    }
}

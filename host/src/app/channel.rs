//! The channel to the application: plain HTTP/1.1 to `127.0.0.1:<app-port>`, as daprd's
//! default app channel.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Bodies the app may answer with that the sidecar reads (statuses, subscription lists).
const MAX_ANSWER_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("cannot reach the app: {0}")]
    Unreachable(String),
    #[error("the app took longer than {0:?} to answer")]
    Timeout(Duration),
}

pub struct AppResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

pub struct AppChannel {
    port: u16,
    app_id: String,
    /// `APP_API_TOKEN`: sent to the app as `dapr-api-token` on every call.
    app_token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AppChannel {
    pub fn new(port: u16, app_id: String, app_token: Option<String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            port,
            app_id,
            app_token,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until the app accepts connections; logs while it waits.
    pub async fn wait_for_app(&self) {
        let started = std::time::Instant::now();
        let mut next_log = Duration::from_secs(2);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if started.elapsed() >= next_log {
                tracing::info!(port = self.port, "waiting for the app to listen");
                next_log *= 2;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<AppResponse, ChannelError> {
        let uri = format!("http://127.0.0.1:{}{path}", self.port);
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request = request.header(name, value);
            }
        }
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        request = request.header("dapr-app-id", self.app_id.as_str());
        if let Some(token) = &self.app_token {
            request = request.header("dapr-api-token", token.as_str());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|err| ChannelError::Unreachable(err.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| ChannelError::Unreachable(err.to_string()))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|err| ChannelError::Unreachable(err.to_string()))?
                .to_bytes();
            Ok(AppResponse { status, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ChannelError::Timeout(timeout))?
    }
}

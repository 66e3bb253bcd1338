//! The null server: the baseline for the HTTP figures. It is hyper with the same connection
//! builder, runtime and socket options as the sidecar, and answers the same exchange with the
//! same shape (a GET answers the JSON body, `Content-Type` and `ETag` the sidecar answered; a
//! POST reads its body and answers 204), but does nothing else: no routing, no JSON, no
//! plugin. What the sidecar costs above it is blockhost's own cost.
//!
//! It runs as its own process (`blockhost-bench null-server`), prints `listening <port>` on
//! stdout once bound, and serves until killed.

use std::convert::Infallible;
use std::io::Write;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, ETAG};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// What a GET answers.
#[derive(Clone)]
pub struct Answer {
    pub body: Bytes,
    pub content_type: HeaderValue,
    pub etag: HeaderValue,
}

/// Serves forever on an ephemeral 127.0.0.1 port (the runtime is the sidecar's: tokio's
/// default multi-thread runtime, one worker per core).
pub fn serve(answer: Answer) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the null server's runtime")?;
    runtime.block_on(accept_loop(answer))
}

/// Binds an ephemeral 127.0.0.1 port and says `listening <port>` on stdout, which is how the
/// run learns the port of a helper process it started (`procs::spawn_listener`).
pub async fn announce_listener(name: &str) -> Result<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .with_context(|| format!("{name} cannot bind"))?;
    let port = listener.local_addr()?.port();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {port}")?;
    stdout.flush()?;
    Ok(listener)
}

async fn accept_loop(answer: Answer) -> Result<()> {
    let listener = announce_listener("the null server").await?;
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await.context("accept failed")?;
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        let service = service_fn(move |request| {
            let answer = answer.clone();
            async move { Ok::<_, Infallible>(respond(&answer, request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

async fn respond(answer: &Answer, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let mut response = Response::new(Full::new(Bytes::new()));
    match parts.method {
        Method::GET => {
            *response.body_mut() = Full::new(answer.body.clone());
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, answer.content_type.clone());
            headers.insert(ETAG, answer.etag.clone());
        }
        Method::POST | Method::PUT => {
            // Read the body as the sidecar does before answering.
            let _ = body.collect().await;
            *response.status_mut() = StatusCode::NO_CONTENT;
        }
        _ => *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED,
    }
    response
}

//! The relay: the floor of publish → deliver over Dapr's HTTP API. It does per message what
//! any sidecar speaking that API must do with a Redis stream behind it, and nothing more: no
//! plugin, no sandbox, no routing, no retries, no scopes. Its figures say how much of the gap
//! to the direct client is the API's own shape (an HTTP exchange in, an HTTP exchange out)
//! and how much is blockhost's.
//!
//! - Publish: `POST /v1.0/publish/<pubsub>/<topic>` → a minimal CloudEvent around the body →
//!   `XADD <stream> * data <event>` on the HTTP connection's own Redis connection → 204.
//! - Deliver: one reader (`XREADGROUP … COUNT 100 BLOCK 1000`) feeds 10 delivery tasks (the
//!   default concurrency of daprd and of blockhost), each POSTing the event to the app with
//!   the same hyper client as the sidecar's app channel; the answered ids are acknowledged
//!   in batches (one `XACK` for all answered since the last).
//!
//! It runs as its own process (`blockhost-bench relay`), on tokio's default multi-thread
//! runtime as the sidecar does, prints `listening <port>` once bound, and serves until killed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

use crate::load::{read_resp, resp_command};
use crate::pubsub::{read_new_command, read_value, stream_entries, TOPIC};

const STREAM: &str = "bench-relay";
const GROUP: &str = "relay";
const CONCURRENCY: usize = 10;

pub fn serve(redis_port: u16, app_port: u16) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the relay's runtime")?;
    let redis: SocketAddr = ([127, 0, 0, 1], redis_port).into();
    runtime.block_on(async move {
        let mut setup = connect(redis).await?;
        let mut buf = Vec::new();
        setup
            .write_all(&resp_command(&[
                b"XGROUP",
                b"CREATE",
                STREAM.as_bytes(),
                GROUP.as_bytes(),
                b"$",
                b"MKSTREAM",
            ]))
            .await?;
        // BUSYGROUP from an earlier run is fine.
        let _ = read_resp(&mut setup, &mut buf).await?;
        tokio::spawn(async move {
            if let Err(err) = deliver(redis, app_port).await {
                eprintln!("relay: delivery stopped: {err:#}");
            }
        });
        accept_loop(redis).await
    })
}

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn accept_loop(redis: SocketAddr) -> Result<()> {
    let listener = crate::null::announce_listener("the relay").await?;
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await.context("accept failed")?;
        let _ = stream.set_nodelay(true);
        let link = Arc::new(Mutex::new((connect(redis).await?, Vec::new())));
        let service = service_fn(move |request| {
            let link = Arc::clone(&link);
            async move { Ok::<_, Infallible>(publish(&link, request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

type Link = Mutex<(TcpStream, Vec<u8>)>;

async fn publish(link: &Link, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let status =
        if request.method() == Method::POST && request.uri().path().starts_with("/v1.0/publish/") {
            match request.into_body().collect().await {
                Ok(body) => match xadd(link, &body.to_bytes()).await {
                    Ok(()) => StatusCode::NO_CONTENT,
                    Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
                },
                Err(_) => StatusCode::BAD_REQUEST,
            }
        } else {
            StatusCode::NOT_FOUND
        };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

async fn xadd(link: &Link, body: &[u8]) -> Result<()> {
    let data = std::str::from_utf8(body)?;
    let event = format!(
        r#"{{"id":"{}","source":"bench","type":"com.dapr.event.sent","specversion":"1.0","datacontenttype":"application/json","topic":"{TOPIC}","pubsubname":"bench-relay","data":{data}}}"#,
        event_id()
    );
    let command = resp_command(&[b"XADD", STREAM.as_bytes(), b"*", b"data", event.as_bytes()]);
    let mut guard = link.lock().await;
    let (stream, buf) = &mut *guard;
    stream.write_all(&command).await?;
    match read_resp(stream, buf).await? {
        None => Ok(()),
        Some(error) => anyhow::bail!("XADD failed: {error}"),
    }
}

/// Unique enough for a benchmark's events (a sidecar would use a random UUID).
fn event_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Reads ahead, delivers with `CONCURRENCY` tasks, acknowledges in batches.
async fn deliver(redis: SocketAddr, app_port: u16) -> Result<()> {
    let (work, queue) = mpsc::channel::<(Vec<u8>, Bytes)>(2 * CONCURRENCY);
    let (answered, mut answers) = mpsc::unbounded_channel::<Vec<u8>>();
    let queue = Arc::new(Mutex::new(queue));
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let uri = format!("http://127.0.0.1:{app_port}/bench");
    for _ in 0..CONCURRENCY {
        let (queue, answered, client, uri) = (
            Arc::clone(&queue),
            answered.clone(),
            client.clone(),
            uri.clone(),
        );
        tokio::spawn(async move {
            loop {
                let next = queue.lock().await.recv().await;
                let Some((id, event)) = next else { return };
                let request = Request::post(uri.as_str())
                    .header(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/cloudevents+json"),
                    )
                    .body(Full::new(event));
                let Ok(request) = request else { continue };
                if let Ok(response) = client.request(request).await {
                    let ok = response.status().is_success();
                    let _ = response.into_body().collect().await;
                    if ok {
                        let _ = answered.send(id);
                    }
                }
            }
        });
    }
    tokio::spawn(async move {
        let Ok(mut stream) = connect(redis).await else {
            return;
        };
        let mut buf = Vec::new();
        while let Some(first) = answers.recv().await {
            let mut ids = vec![first];
            while let Ok(id) = answers.try_recv() {
                ids.push(id);
            }
            let mut args: Vec<&[u8]> = vec![b"XACK", STREAM.as_bytes(), GROUP.as_bytes()];
            args.extend(ids.iter().map(Vec::as_slice));
            if stream.write_all(&resp_command(&args)).await.is_err()
                || read_resp(&mut stream, &mut buf).await.is_err()
            {
                return;
            }
        }
    });
    let mut stream = connect(redis).await?;
    let read = read_new_command(GROUP, GROUP, STREAM);
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        stream.write_all(&read).await?;
        for (id, event) in stream_entries(read_value(&mut stream, &mut buf).await?) {
            if let Some(event) = event {
                work.send((id, Bytes::from(event))).await?;
            }
        }
    }
}

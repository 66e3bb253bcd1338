//! Publish → deliver through `pubsub.redis`, against a direct client doing the same work on
//! the same redis-server.
//!
//! - Sidecar: the bench process runs a tiny HTTP/1.1 app (`GET /dapr/subscribe` declares
//!   `bench-pubsub`/`bench` → `/bench`; `POST /bench` records the arrival and answers 200
//!   `{"status":"SUCCESS"}`), a sidecar started with `--app-port` delivers to it, and
//!   publishers `POST /v1.0/publish/bench-pubsub/bench` over a fixed number of keep-alive
//!   connections, each a closed loop.
//! - Direct: the same number of producer connections `XADD bench-direct * data <payload>`; one
//!   consumer loops `XREADGROUP GROUP g c COUNT 100 BLOCK 1000 STREAMS bench-direct >`, then
//!   `XACK`s every message (one command per message, pipelined).
//!
//! Both sides carry the same JSON payload (`{"seq":…,"ts":<unix ns at send>,"pad":…}`); the
//! receiver reads `ts` and records `now - ts`. Publishing runs for a fixed time; then the
//! receiver drains. Throughput = delivered ÷ (first send → last delivery).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::load::{read_http, read_resp, resp_command, resp_reply, Sample};
use crate::report::Measured;

pub const COMPONENT: &str = "bench-pubsub";
pub const TOPIC: &str = "bench";
/// The topic of the bulk row (bulk publish in, bulkSubscribe out).
pub const BULK_TOPIC: &str = "bench-bulk";
/// Messages per bulk publish request, and per pipelined round trip of the direct client.
pub const BULK_BATCH: usize = 10;
/// The bulk subscription's `maxMessagesCount` and `maxAwaitDurationMs`.
pub const BULK_MAX_MESSAGES: usize = 100;
pub const BULK_MAX_AWAIT_MS: u64 = 10;
const STREAM: &str = "bench-direct";
/// How long the receiver may take to drain after publishing stops.
const DRAIN: Duration = Duration::from_secs(15);

/// The component the pubsub sidecar loads.
pub fn component(redis_port: u16) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {COMPONENT}\n\
         spec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    \
         value: \"127.0.0.1:{redis_port}\"\n"
    )
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The payload both sides send.
pub fn payload(seq: u64) -> String {
    format!(
        r#"{{"seq":{seq},"ts":{},"pad":"a small pubsub message"}}"#,
        unix_ns()
    )
}

/// Deliveries seen by a receiver.
#[derive(Default)]
pub struct Recorder {
    latencies_ns: Mutex<Vec<u64>>,
    delivered: AtomicU64,
    last: Mutex<Option<Instant>>,
    bad: AtomicU64,
}

impl Recorder {
    fn record(&self, ts: Option<u64>) {
        let Some(ts) = ts else {
            self.bad.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let latency = unix_ns().saturating_sub(ts);
        if let Ok(mut l) = self.latencies_ns.lock() {
            l.push(latency);
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Instant::now());
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    fn reset(&self) {
        if let Ok(mut l) = self.latencies_ns.lock() {
            l.clear();
        }
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
        self.delivered.store(0, Ordering::Relaxed);
        self.bad.store(0, Ordering::Relaxed);
    }

    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

/// The `ts` of a payload (a JSON object, or a string holding one).
fn timestamp(data: &serde_json::Value) -> Option<u64> {
    match data {
        serde_json::Value::String(s) => serde_json::from_str::<serde_json::Value>(s)
            .ok()
            .and_then(|v| v.get("ts")?.as_u64()),
        v => v.get("ts")?.as_u64(),
    }
}

/// One side's outcome.
pub struct Outcome {
    pub published: u64,
    pub measured: Measured,
}

/// One side's outcome as a progress line on stderr.
pub fn log_outcome(what: &str, connections: usize, name: &str, o: &Outcome) {
    eprintln!(
        "bench: {what} x{connections}: {name} published {} delivered {} ({:.0}/s) \
         p50 {:.0} µs p99 {:.0} µs, errors/lost {}",
        o.published,
        o.measured.requests,
        o.measured.throughput,
        o.measured.p50_us,
        o.measured.p99_us,
        o.measured.errors
    );
}

/// Both sides, measured in the same run: loaded (the first) and on one connection.
pub struct PubsubComparison {
    pub secs: u64,
    pub rows: Vec<PubsubRow>,
    /// Bulk publish + bulkSubscribe against pipelined XADDs, at the loaded connection count.
    pub bulk: Option<BulkRow>,
}

/// The batched APIs against a direct client that batches as much.
pub struct BulkRow {
    pub connections: usize,
    pub baseline: Outcome,
    pub subject: Outcome,
}

/// Both sides with one number of publisher connections.
pub struct PubsubRow {
    pub connections: usize,
    pub baseline: Outcome,
    /// The relay (`relay.rs`): the HTTP API's floor.
    pub floor: Outcome,
    pub subject: Outcome,
}

impl PubsubRow {
    /// The sidecar against the direct client.
    pub fn ratio(&self) -> f64 {
        self.subject.measured.throughput / self.baseline.measured.throughput
    }

    /// The relay against the direct client: the best any sidecar of this API reaches here.
    pub fn floor_ratio(&self) -> f64 {
        self.floor.measured.throughput / self.baseline.measured.throughput
    }

    /// The sidecar against the relay.
    pub fn ratio_to_floor(&self) -> f64 {
        self.subject.measured.throughput / self.floor.measured.throughput
    }
}

fn outcome(recorder: &Recorder, start: Instant, published: u64, errors: u64) -> Outcome {
    let mut latencies = recorder
        .latencies_ns
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latencies.sort_unstable();
    let end = recorder.last.lock().ok().and_then(|l| *l).unwrap_or(start);
    let sample = Sample {
        latencies_ns: latencies,
        elapsed: end.saturating_duration_since(start),
        errors,
        first_error: None,
    };
    let lost = published.saturating_sub(sample.latencies_ns.len() as u64);
    Outcome {
        published,
        measured: Measured {
            throughput: sample.throughput(),
            p50_us: sample.percentile_us(50.0),
            p99_us: sample.percentile_us(99.0),
            requests: sample.latencies_ns.len(),
            errors: errors + lost + recorder.bad.load(Ordering::Relaxed),
            cpu_us_per_request: None,
        },
    }
}

async fn drain(recorder: &Recorder, published: u64) {
    let deadline = Instant::now() + DRAIN;
    while recorder.delivered() < published && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------- the sidecar side

/// Starts the app on an ephemeral port (on the current runtime); returns its port.
pub async fn start_app(recorder: Arc<Recorder>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("the bench app cannot bind")?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let recorder = Arc::clone(&recorder);
            let service = service_fn(move |request| {
                let recorder = Arc::clone(&recorder);
                async move { Ok::<_, Infallible>(app(&recorder, request).await) }
            });
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    });
    Ok(port)
}

async fn app(recorder: &Recorder, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let json = |status, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    match (parts.method, parts.uri.path()) {
        (Method::GET, "/dapr/subscribe") => json(
            StatusCode::OK,
            format!(
                r#"[{{"pubsubname":"{COMPONENT}","topic":"{TOPIC}","route":"/bench"}},
                {{"pubsubname":"{COMPONENT}","topic":"{BULK_TOPIC}","route":"/bench-bulk",
                "bulkSubscribe":{{"enabled":true,"maxMessagesCount":{BULK_MAX_MESSAGES},
                "maxAwaitDurationMs":{BULK_MAX_AWAIT_MS}}}}}]"#
            ),
        ),
        (Method::POST, "/bench-bulk") => {
            let envelope = body
                .collect()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.to_bytes()).ok());
            let entries = envelope
                .as_ref()
                .and_then(|e| e.get("entries")?.as_array().cloned())
                .unwrap_or_default();
            let mut statuses = Vec::with_capacity(entries.len());
            for entry in &entries {
                recorder.record(entry.get("event").and_then(|e| timestamp(e.get("data")?)));
                statuses
                    .push(serde_json::json!({"entryId": entry["entryId"], "status": "SUCCESS"}));
            }
            json(
                StatusCode::OK,
                serde_json::json!({ "statuses": statuses }).to_string(),
            )
        }
        (Method::POST, "/bench") => {
            let bytes = body.collect().await.map(|b| b.to_bytes()).ok();
            let ts = bytes
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|event| timestamp(event.get("data")?));
            recorder.record(ts);
            json(StatusCode::OK, r#"{"status":"SUCCESS"}"#.to_owned())
        }
        _ => json(StatusCode::NOT_FOUND, String::new()),
    }
}

/// Publishes through the sidecar for `duration` over `connections`, then waits for delivery.
pub async fn measure_sidecar(
    sidecar: SocketAddr,
    recorder: &Recorder,
    connections: usize,
    duration: Duration,
) -> Result<Outcome> {
    measure_http(sidecar, recorder, connections, duration, None).await
}

/// The same with `POST /v1.0-alpha1/publish/bulk/...` of `BULK_BATCH` messages per request
/// to the bulk topic, which the app reads with `bulkSubscribe`.
pub async fn measure_sidecar_bulk(
    sidecar: SocketAddr,
    recorder: &Recorder,
    connections: usize,
    duration: Duration,
) -> Result<Outcome> {
    measure_http(sidecar, recorder, connections, duration, Some(BULK_BATCH)).await
}

/// One publish request: a single message, or a bulk of `batch`; returns it and how many
/// messages it carries.
fn publish_request(seq: &AtomicU64, batch: Option<usize>) -> (String, u64) {
    let Some(batch) = batch else {
        let body = payload(seq.fetch_add(1, Ordering::Relaxed));
        let request = format!(
            "POST /v1.0/publish/{COMPONENT}/{TOPIC} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        return (request, 1);
    };
    let entries: Vec<String> = (0..batch)
        .map(|i| {
            format!(
                r#"{{"entryId":"{i}","event":{},"contentType":"application/json"}}"#,
                payload(seq.fetch_add(1, Ordering::Relaxed))
            )
        })
        .collect();
    let body = format!("[{}]", entries.join(","));
    let request = format!(
        "POST /v1.0-alpha1/publish/bulk/{COMPONENT}/{BULK_TOPIC} HTTP/1.1\r\n\
         Host: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    (request, batch as u64)
}

async fn measure_http(
    sidecar: SocketAddr,
    recorder: &Recorder,
    connections: usize,
    duration: Duration,
    batch: Option<usize>,
) -> Result<Outcome> {
    recorder.reset();
    let seq = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for _ in 0..connections {
        let stream = TcpStream::connect(sidecar).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for mut stream in streams {
        let seq = Arc::clone(&seq);
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(16 << 10);
            let (mut published, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                let (request, messages) = publish_request(&seq, batch);
                stream.write_all(request.as_bytes()).await?;
                if read_http(&mut stream, &mut buf).await? == 204 {
                    published += messages;
                } else {
                    errors += messages;
                }
            }
            anyhow::Ok((published, errors))
        }));
    }
    let (mut published, mut errors) = (0, 0);
    for task in tasks {
        let (p, e) = task.await??;
        published += p;
        errors += e;
    }
    drain(recorder, published).await;
    Ok(outcome(recorder, start, published, errors))
}

// ---------------------------------------------------------------- the direct side

/// Creates the direct side's stream and group (`XGROUP CREATE … $ MKSTREAM`).
pub fn prepare_direct(redis_port: u16) -> Result<()> {
    crate::redis::exchange(
        redis_port,
        &resp_command(&[
            b"XGROUP",
            b"CREATE",
            STREAM.as_bytes(),
            b"g",
            b"$",
            b"MKSTREAM",
        ]),
    )?;
    Ok(())
}

/// A RESP2 value (only what stream replies hold).
pub enum Value {
    Bulk(Vec<u8>),
    Array(Vec<Value>),
    Other,
}

/// Parses a complete reply at `pos`; returns it and where it ends.
fn parse(buf: &[u8], pos: usize) -> Result<(Value, usize)> {
    let line_len = buf[pos..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .context("incomplete RESP")?;
    let line = std::str::from_utf8(&buf[pos + 1..pos + line_len]).context("RESP line")?;
    let after = pos + line_len + 2;
    match buf[pos] {
        b'$' => {
            let len: i64 = line.parse()?;
            if len < 0 {
                return Ok((Value::Other, after));
            }
            let end = after + len as usize;
            Ok((Value::Bulk(buf[after..end].to_vec()), end + 2))
        }
        b'*' => {
            let count: i64 = line.parse()?;
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..count.max(0) {
                let (v, end) = parse(buf, at)?;
                items.push(v);
                at = end;
            }
            Ok((Value::Array(items), at))
        }
        b'-' => bail!("redis-server answered -{line}"),
        _ => Ok((Value::Other, after)),
    }
}

/// `XREADGROUP GROUP <group> <consumer> COUNT 100 BLOCK 1000 STREAMS <stream> >`.
pub fn read_new_command(group: &str, consumer: &str, stream: &str) -> Vec<u8> {
    resp_command(&[
        b"XREADGROUP",
        b"GROUP",
        group.as_bytes(),
        consumer.as_bytes(),
        b"COUNT",
        b"100",
        b"BLOCK",
        b"1000",
        b"STREAMS",
        stream.as_bytes(),
        b">",
    ])
}

/// The entries of an `XREADGROUP` reply, `[[stream, [[id, [field, value, ...]], ...]]]` (or
/// nil): each id with the value of the entry's first field.
pub fn stream_entries(reply: Value) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let Value::Array(streams) = reply else {
        return out;
    };
    for s in streams {
        let Value::Array(mut pair) = s else { continue };
        let Some(Value::Array(entries)) = pair.pop() else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut parts) = entry else {
                continue;
            };
            let fields = parts.pop();
            let Some(Value::Bulk(id)) = parts.pop() else {
                continue;
            };
            let data = match fields {
                Some(Value::Array(mut f)) if f.len() >= 2 => match f.swap_remove(1) {
                    Value::Bulk(data) => Some(data),
                    _ => None,
                },
                _ => None,
            };
            out.push((id, data));
        }
    }
    out
}

/// Reads one complete reply into a value.
pub async fn read_value(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Value> {
    loop {
        if let Some((end, _)) = resp_reply(buf, 0)? {
            let (value, _) = parse(buf, 0)?;
            buf.drain(..end);
            return Ok(value);
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 << 10);
        }
        use tokio::io::AsyncReadExt;
        if stream.read_buf(buf).await? == 0 {
            bail!("redis-server closed the connection");
        }
    }
}

/// The consumer: reads, records and acknowledges until `target` (set once publishing ends)
/// messages were received, or the drain time passes.
async fn consume(
    redis: SocketAddr,
    recorder: Arc<Recorder>,
    target: Arc<AtomicU64>,
    stop_by: Arc<Mutex<Option<Instant>>>,
) -> Result<()> {
    let mut stream = TcpStream::connect(redis).await?;
    stream.set_nodelay(true)?;
    let read = read_new_command("g", "c", STREAM);
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        if recorder.delivered() >= target.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(by) = *stop_by.lock().map_err(|_| anyhow::anyhow!("poisoned"))? {
            if Instant::now() > by {
                return Ok(());
            }
        }
        stream.write_all(&read).await?;
        let reply = read_value(&mut stream, &mut buf).await?;
        let mut ids = Vec::new();
        for (id, data) in stream_entries(reply) {
            let ts = data
                .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
                .and_then(|v| v.get("ts")?.as_u64());
            recorder.record(ts);
            ids.push(id);
        }
        if !ids.is_empty() {
            let mut acks = Vec::new();
            for id in &ids {
                acks.extend(resp_command(&[b"XACK", STREAM.as_bytes(), b"g", id]));
            }
            stream.write_all(&acks).await?;
            for _ in &ids {
                read_resp(&mut stream, &mut buf).await?;
            }
        }
    }
}

/// Producers `XADD` for `duration` over `connections`; one consumer reads and acknowledges.
pub async fn measure_direct(
    redis: SocketAddr,
    recorder: Arc<Recorder>,
    connections: usize,
    duration: Duration,
) -> Result<Outcome> {
    measure_resp(redis, recorder, connections, duration, 1).await
}

/// The same with `BULK_BATCH` XADDs pipelined per round trip (the direct client's bulk).
pub async fn measure_direct_bulk(
    redis: SocketAddr,
    recorder: Arc<Recorder>,
    connections: usize,
    duration: Duration,
) -> Result<Outcome> {
    measure_resp(redis, recorder, connections, duration, BULK_BATCH).await
}

async fn measure_resp(
    redis: SocketAddr,
    recorder: Arc<Recorder>,
    connections: usize,
    duration: Duration,
    batch: usize,
) -> Result<Outcome> {
    recorder.reset();
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let stop_by = Arc::new(Mutex::new(None));
    let consumer = tokio::spawn(consume(
        redis,
        Arc::clone(&recorder),
        Arc::clone(&target),
        Arc::clone(&stop_by),
    ));
    let seq = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for _ in 0..connections {
        let stream = TcpStream::connect(redis).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for mut stream in streams {
        let seq = Arc::clone(&seq);
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(16 << 10);
            let (mut published, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                let mut commands = Vec::new();
                for _ in 0..batch {
                    let body = payload(seq.fetch_add(1, Ordering::Relaxed));
                    commands.extend(resp_command(&[
                        b"XADD",
                        STREAM.as_bytes(),
                        b"*",
                        b"data",
                        body.as_bytes(),
                    ]));
                }
                stream.write_all(&commands).await?;
                for _ in 0..batch {
                    match read_resp(&mut stream, &mut buf).await? {
                        None => published += 1,
                        Some(_) => errors += 1,
                    }
                }
            }
            anyhow::Ok((published, errors))
        }));
    }
    let (mut published, mut errors) = (0, 0);
    for task in tasks {
        let (p, e) = task.await??;
        published += p;
        errors += e;
    }
    target.store(published, Ordering::Relaxed);
    if let Ok(mut by) = stop_by.lock() {
        *by = Some(Instant::now() + DRAIN);
    }
    consumer.await??;
    Ok(outcome(&recorder, start, published, errors))
}

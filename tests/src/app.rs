//! A stand-in application for pub/sub tests: an HTTP/1.1 server in the test process, on a free
//! loopback port, that the sidecar calls as it calls a Dapr app (`--app-port`).
//!
//! It answers `GET /dapr/subscribe` with a configurable list, records every delivery (any
//! `POST`: path, headers, body, the body parsed as JSON, what it answered) and answers each one
//! by the [`Policy`] of its route (by default `200` with an empty body, which the sidecar reads
//! as success).
//!
//! ```no_run
//! use std::time::Duration;
//! use blockhost_tests::app::{Answer, Policy, TestApp};
//! use serde_json::json;
//!
//! let app = TestApp::start(json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}]));
//! app.set_policy("/orders", Policy::new().fail_first(1).answer("poison", Answer::Drop));
//! // ... start a sidecar with `--app-port app.port()`, publish ...
//! let accepted = app.wait_for_accepted("/orders", 10, Duration::from_secs(10));
//! ```
//!
//! Plain std: one thread accepts, one thread per connection serves requests in order
//! (keep-alive, `Content-Length` or chunked bodies), so a [`Policy::delay`] holds up only
//! the connection it answers on, as a slow app does.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a connection may sit between two requests before its thread checks for shutdown.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long the rest of a started request may take to arrive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bodies larger than this are refused (the tests send small messages).
const MAX_BODY: usize = 16 << 20;

/// What the app answers to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `200` with an empty body: success.
    Ok,
    /// `200 {"status":"SUCCESS"}`.
    Success,
    /// `200 {"status":"RETRY"}`.
    Retry,
    /// `200 {"status":"DROP"}`.
    Drop,
    /// That status with an empty body (`404` means drop, other non-2xx retry).
    Status(u16),
}

impl Answer {
    /// Whether the sidecar counts this answer as the app having processed the message.
    pub fn accepted(self) -> bool {
        matches!(self, Answer::Ok | Answer::Success)
            || matches!(self, Answer::Status(code) if (200..300).contains(&code))
    }

    fn response(self) -> (u16, &'static str) {
        match self {
            Answer::Ok => (200, ""),
            Answer::Success => (200, r#"{"status":"SUCCESS"}"#),
            Answer::Retry => (200, r#"{"status":"RETRY"}"#),
            Answer::Drop => (200, r#"{"status":"DROP"}"#),
            Answer::Status(code) => (code, ""),
        }
    }
}

/// How a route answers. Message ids are the delivered CloudEvent's `id`; attempts are counted
/// per route and id. Checked in this order: an answer set for the id, the first failures of
/// every id, every k-th delivery; otherwise [`Answer::Ok`].
#[derive(Debug, Clone)]
pub struct Policy {
    by_id: Vec<(String, Answer, Option<u32>)>,
    fail_first: u32,
    fail_every: Option<u64>,
    failure: Answer,
    delay: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            by_id: Vec::new(),
            fail_first: 0,
            fail_every: None,
            failure: Answer::Status(500),
            delay: Duration::ZERO,
        }
    }
}

impl Policy {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first `n` deliveries of each message fail (with [`Policy::failing_with`]).
    pub fn fail_first(mut self, n: u32) -> Self {
        self.fail_first = n;
        self
    }

    /// Every `k`-th delivery to the route fails, counting all messages together, except the
    /// delivery that follows a message's own k-th-delivery failure: so this rule alone never
    /// fails one message twice in a row, and with a few retries every message gets through.
    pub fn fail_every(mut self, k: u64) -> Self {
        assert!(k > 0, "fail_every(0)");
        self.fail_every = Some(k);
        self
    }

    /// What a failure from `fail_first`/`fail_every` answers (default `Status(500)`).
    pub fn failing_with(mut self, answer: Answer) -> Self {
        self.failure = answer;
        self
    }

    /// Message `id` always gets `answer`.
    pub fn answer(mut self, id: &str, answer: Answer) -> Self {
        self.by_id.push((id.to_owned(), answer, None));
        self
    }

    /// The first `times` deliveries of message `id` get `answer`; later ones the other rules.
    pub fn answer_first(mut self, id: &str, answer: Answer, times: u32) -> Self {
        self.by_id.push((id.to_owned(), answer, Some(times)));
        self
    }

    /// Sleep this long before answering each delivery.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// `attempt` is 1-based for this message on this route; `nth` 1-based over the route.
    fn decide(&self, id: &str, attempt: u32, nth: u64, after_every_failure: bool) -> Decision {
        for (wanted, answer, times) in &self.by_id {
            if wanted == id && times.is_none_or(|t| attempt <= t) {
                return Decision::Fixed(*answer);
            }
        }
        if attempt <= self.fail_first {
            return Decision::Fixed(self.failure);
        }
        if let Some(k) = self.fail_every {
            if nth.is_multiple_of(k) && !after_every_failure {
                return Decision::EveryKth(self.failure);
            }
        }
        Decision::Fixed(Answer::Ok)
    }
}

enum Decision {
    Fixed(Answer),
    /// A failure by the every-k-th rule (remembered, so the next attempt is spared).
    EveryKth(Answer),
}

/// One request the app received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub method: String,
    pub path: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body as JSON, or `Value::Null` if it is not JSON.
    pub event: Value,
    /// 1-based: how many deliveries of this message id this route has seen, this one included.
    pub attempt: u32,
    pub answer: Answer,
    pub received: Instant,
}

impl Delivery {
    /// The first value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The CloudEvent's `id` (empty if there is none).
    pub fn id(&self) -> &str {
        self.event["id"].as_str().unwrap_or_default()
    }

    /// The CloudEvent's `data`.
    pub fn data(&self) -> &Value {
        &self.event["data"]
    }

    pub fn accepted(&self) -> bool {
        self.answer.accepted()
    }
}

#[derive(Default)]
struct State {
    subscriptions: Value,
    policies: HashMap<String, Policy>,
    deliveries: Vec<Delivery>,
    subscribe_requests: Vec<Delivery>,
    /// Per (route, id): deliveries so far, and whether the last one failed by `fail_every`.
    attempts: HashMap<(String, String), (u32, bool)>,
    route_counts: HashMap<String, u64>,
    /// Deliveries received and not answered yet, and the most there ever were at once.
    in_flight: usize,
    max_in_flight: usize,
    /// Entries per `bulkSubscribe` request, in arrival order.
    bulk_sizes: Vec<usize>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running app; stops listening when dropped.
pub struct TestApp {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestApp {
    /// Listens on a free loopback port; `GET /dapr/subscribe` answers `subscriptions` (a JSON
    /// array; `Value::Null` makes it answer 404, "no subscriptions").
    pub fn start(subscriptions: Value) -> Self {
        Self::start_on(0, subscriptions)
    }

    /// [`TestApp::start`] on a given port (0: any free one), e.g. one a sidecar was told
    /// about before the app came up.
    pub fn start_on(port: u16, subscriptions: Value) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the test app");
        let port = listener.local_addr().expect("test app address").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                subscriptions,
                ..State::default()
            }),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("test-app-{port}"))
                .spawn(move || accept(&listener, &shared))
                .expect("spawn the test app")
        };
        Self {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What `GET /dapr/subscribe` answers from now on.
    pub fn set_subscriptions(&self, subscriptions: Value) {
        self.shared.lock().subscriptions = subscriptions;
    }

    /// How deliveries to `route` (a path such as `/orders`) are answered from now on.
    pub fn set_policy(&self, route: &str, policy: Policy) {
        self.shared.lock().policies.insert(route.to_owned(), policy);
    }

    /// The `GET /dapr/subscribe` requests received so far.
    pub fn subscribe_requests(&self) -> Vec<Delivery> {
        self.shared.lock().subscribe_requests.clone()
    }

    /// The most deliveries the app was answering at the same time (a delivery counts from
    /// its arrival until its answer is written).
    pub fn max_in_flight(&self) -> usize {
        self.shared.lock().max_in_flight
    }

    /// Every delivery so far, in arrival order.
    /// How many entries each `bulkSubscribe` request carried, in arrival order.
    pub fn bulk_sizes(&self) -> Vec<usize> {
        self.shared.lock().bulk_sizes.clone()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// The deliveries to `route` so far.
    pub fn deliveries_to(&self, route: &str) -> Vec<Delivery> {
        on_route(&self.shared.lock().deliveries, route)
    }

    /// The distinct message ids delivered to `route` so far.
    pub fn distinct_ids(&self, route: &str) -> BTreeSet<String> {
        distinct(&self.shared.lock().deliveries, route, false)
    }

    /// The distinct message ids the app accepted on `route` so far.
    pub fn accepted_ids(&self, route: &str) -> BTreeSet<String> {
        distinct(&self.shared.lock().deliveries, route, true)
    }

    /// Waits until `done` holds for the deliveries so far and returns them; panics after
    /// `timeout`, naming `what` and summarising what did arrive.
    #[track_caller]
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if done(&state.deliveries) {
                return state.deliveries.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "test app: still waiting for {what} after {timeout:?}; received:\n{}",
                    summary(&state.deliveries)
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until at least `count` deliveries (to any route) have arrived.
    #[track_caller]
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Delivery> {
        self.wait_until(&format!("{count} deliveries"), timeout, |d| {
            d.len() >= count
        })
    }

    /// Waits until `route` has seen at least `count` deliveries; returns those.
    #[track_caller]
    pub fn wait_for_route(&self, route: &str, count: usize, timeout: Duration) -> Vec<Delivery> {
        let all = self.wait_until(&format!("{count} deliveries to {route}"), timeout, |d| {
            d.iter().filter(|d| d.path == route).count() >= count
        });
        on_route(&all, route)
    }

    /// Waits until the app has accepted at least `count` distinct message ids on `route`;
    /// returns every delivery to `route` so far.
    #[track_caller]
    pub fn wait_for_accepted(&self, route: &str, count: usize, timeout: Duration) -> Vec<Delivery> {
        let what = format!("{count} accepted messages on {route}");
        let all = self.wait_until(&what, timeout, |d| distinct(d, route, true).len() >= count);
        on_route(&all, route)
    }

    /// Asserts that no delivery arrives for `period` (for "nothing more comes" checks; keep
    /// the period short, it is spent in full).
    #[track_caller]
    pub fn assert_quiet(&self, period: Duration) {
        let before = self.shared.lock().deliveries.len();
        let deadline = Instant::now() + period;
        let mut state = self.shared.lock();
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let after = &state.deliveries[before..];
        assert!(
            after.is_empty(),
            "test app: expected no delivery for {period:?}, got:\n{}",
            summary(after)
        );
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor with a connection of our own.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn on_route(deliveries: &[Delivery], route: &str) -> Vec<Delivery> {
    deliveries
        .iter()
        .filter(|d| d.path == route)
        .cloned()
        .collect()
}

fn distinct(deliveries: &[Delivery], route: &str, accepted_only: bool) -> BTreeSet<String> {
    deliveries
        .iter()
        .filter(|d| d.path == route && (!accepted_only || d.accepted()))
        .map(|d| d.id().to_owned())
        .collect()
}

/// Per route: deliveries, distinct ids, accepted ids; then the last few deliveries.
fn summary(deliveries: &[Delivery]) -> String {
    let mut routes: Vec<&str> = deliveries.iter().map(|d| d.path.as_str()).collect();
    routes.sort_unstable();
    routes.dedup();
    let mut out = String::new();
    for route in routes {
        let on: Vec<&Delivery> = deliveries.iter().filter(|d| d.path == route).collect();
        out.push_str(&format!(
            "  {route}: {} deliveries, {} distinct ids, {} accepted\n",
            on.len(),
            distinct(deliveries, route, false).len(),
            distinct(deliveries, route, true).len(),
        ));
    }
    if deliveries.is_empty() {
        out.push_str("  nothing\n");
    }
    for d in deliveries.iter().rev().take(5).rev() {
        out.push_str(&format!(
            "  last: {} {} attempt {} -> {:?}: {}\n",
            d.method,
            d.path,
            d.attempt,
            d.answer,
            String::from_utf8_lossy(&d.body)
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }
    out
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut connections = Vec::new();
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(shared);
        if let Ok(handle) = thread::Builder::new()
            .name("test-app-conn".into())
            .spawn(move || serve(stream, &shared))
        {
            connections.push(handle);
        }
        connections.retain(|c| !c.is_finished());
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Serves requests on one connection until the peer closes it or the app stops.
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        // Between requests: wake up now and then to notice a stop.
        if reader.get_ref().set_read_timeout(Some(IDLE_POLL)).is_err() {
            return;
        }
        loop {
            match reader.fill_buf() {
                Ok([]) => return,
                Ok(_) => break,
                Err(e) if is_timeout(&e) => {
                    if shared.stopping.load(Ordering::SeqCst) {
                        let _ = writer.shutdown(Shutdown::Both);
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        if reader
            .get_ref()
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .is_err()
        {
            return;
        }
        let request = match read_request(&mut reader) {
            Ok(request) => request,
            Err(_) => {
                let _ = write_response(&mut writer, 400, "", true);
                return;
            }
        };
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (status, body, counted) = handle(shared, request);
        let written = write_response(&mut writer, status, &body, close);
        if counted {
            shared.lock().in_flight -= 1;
        }
        if written.is_err() || close {
            return;
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn bad(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(bad("connection closed mid-request"));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("header is not UTF-8"))
}

fn read_request(reader: &mut impl BufRead) -> io::Result<Request> {
    let request_line = read_line(reader)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("malformed header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut request = Request {
        method: method.to_owned(),
        path: target.to_owned(),
        headers,
        body: Vec::new(),
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(reader)?;
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length.parse().map_err(|_| bad("bad Content-Length"))?;
        if length > MAX_BODY {
            return Err(bad("body too large"));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        request.body = body;
    }
    Ok(request)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader)?;
    }
}

fn write_response(writer: &mut impl Write, status: u16, body: &str, close: bool) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(body.as_bytes())?;
    writer.flush()
}

/// Records the request and decides the answer; sleeps (outside the lock) if the policy says so.
/// The flag says whether the request counts as in flight until its answer is written.
fn handle(shared: &Shared, request: Request) -> (u16, String, bool) {
    let received = Instant::now();
    let event: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let mut state = shared.lock();
    if request.method == "GET" && request.path == "/dapr/subscribe" {
        let answer = if state.subscriptions.is_null() {
            (404, String::new())
        } else {
            (200, state.subscriptions.to_string())
        };
        state.subscribe_requests.push(Delivery {
            method: request.method,
            path: request.path,
            headers: request.headers,
            body: request.body,
            event,
            attempt: 1,
            answer: Answer::Status(answer.0),
            received,
        });
        drop(state);
        shared.changed.notify_all();
        return (answer.0, answer.1, false);
    }
    if request.method != "POST" {
        return (404, String::new(), false);
    }
    if event["type"] == "com.dapr.event.sent.bulk" {
        return handle_bulk(shared, state, request, &event, received);
    }
    let id = event["id"].as_str().unwrap_or_default().to_owned();
    let policy = state
        .policies
        .get(&request.path)
        .cloned()
        .unwrap_or_default();
    let nth = {
        let count = state.route_counts.entry(request.path.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let key = (request.path.clone(), id.clone());
    let (previous, after_every_failure) = state.attempts.get(&key).copied().unwrap_or((0, false));
    let attempt = previous + 1;
    let (answer, by_every) = match policy.decide(&id, attempt, nth, after_every_failure) {
        Decision::Fixed(answer) => (answer, false),
        Decision::EveryKth(answer) => (answer, true),
    };
    state.attempts.insert(key, (attempt, by_every));
    state.deliveries.push(Delivery {
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: request.body,
        event,
        attempt,
        answer,
        received,
    });
    state.in_flight += 1;
    state.max_in_flight = state.max_in_flight.max(state.in_flight);
    drop(state);
    shared.changed.notify_all();
    if !policy.delay.is_zero() {
        thread::sleep(policy.delay);
    }
    let (status, body) = answer.response();
    (status, body.to_owned(), true)
}

/// A `bulkSubscribe` request: every entry is recorded as a delivery of its own and answered
/// by the route's policy, all in one `{"statuses": [...]}` answer.
fn handle_bulk(
    shared: &Shared,
    mut state: MutexGuard<'_, State>,
    request: Request,
    envelope: &Value,
    received: Instant,
) -> (u16, String, bool) {
    let policy = state
        .policies
        .get(&request.path)
        .cloned()
        .unwrap_or_default();
    let entries = envelope["entries"].as_array().cloned().unwrap_or_default();
    state.bulk_sizes.push(entries.len());
    let mut statuses = Vec::new();
    for entry in entries {
        let event = entry["event"].clone();
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        let nth = {
            let count = state.route_counts.entry(request.path.clone()).or_insert(0);
            *count += 1;
            *count
        };
        let key = (request.path.clone(), id.clone());
        let (previous, after_every_failure) =
            state.attempts.get(&key).copied().unwrap_or((0, false));
        let attempt = previous + 1;
        let (answer, by_every) = match policy.decide(&id, attempt, nth, after_every_failure) {
            Decision::Fixed(answer) => (answer, false),
            Decision::EveryKth(answer) => (answer, true),
        };
        state.attempts.insert(key, (attempt, by_every));
        let status = match answer {
            Answer::Drop | Answer::Status(404) => "DROP",
            answer if answer.accepted() => "SUCCESS",
            _ => "RETRY",
        };
        statuses.push(serde_json::json!({ "entryId": entry["entryId"], "status": status }));
        state.deliveries.push(Delivery {
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.clone(),
            body: event.to_string().into_bytes(),
            event,
            attempt,
            answer,
            received,
        });
    }
    drop(state);
    shared.changed.notify_all();
    if !policy.delay.is_zero() {
        thread::sleep(policy.delay);
    }
    let body = serde_json::json!({ "statuses": statuses }).to_string();
    (200, body, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn post(port: u16, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer[9..12].parse().unwrap();
        let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    #[test]
    fn policies_and_records() {
        let app = TestApp::start(Value::Null);
        app.set_policy(
            "/r",
            Policy::new()
                .fail_first(1)
                .answer("d", Answer::Drop)
                .answer_first("x", Answer::Retry, 2),
        );
        assert_eq!(post(app.port(), "/r", r#"{"id":"a"}"#).0, 500);
        assert_eq!(
            post(app.port(), "/r", r#"{"id":"a"}"#),
            (200, String::new())
        );
        assert_eq!(
            post(app.port(), "/r", r#"{"id":"d"}"#).1,
            r#"{"status":"DROP"}"#
        );
        assert_eq!(
            post(app.port(), "/r", r#"{"id":"x"}"#).1,
            r#"{"status":"RETRY"}"#
        );
        assert_eq!(
            post(app.port(), "/r", r#"{"id":"x"}"#).1,
            r#"{"status":"RETRY"}"#
        );
        assert_eq!(post(app.port(), "/r", r#"{"id":"x"}"#).0, 200);
        assert_eq!(post(app.port(), "/other", "not json").0, 200);
        assert_eq!(
            app.accepted_ids("/r"),
            BTreeSet::from(["a".to_owned(), "x".to_owned()])
        );
        assert_eq!(app.distinct_ids("/r").len(), 3);
        let all = app.wait_for(7, Duration::from_secs(1));
        assert_eq!(all[1].attempt, 2);
        assert_eq!(all[6].event, Value::Null);
    }

    #[test]
    fn every_kth_never_fails_a_message_twice_in_a_row() {
        let app = TestApp::start(Value::Null);
        app.set_policy("/r", Policy::new().fail_every(1));
        assert_eq!(post(app.port(), "/r", r#"{"id":"a"}"#).0, 500);
        assert_eq!(post(app.port(), "/r", r#"{"id":"a"}"#).0, 200);
        assert_eq!(post(app.port(), "/r", r#"{"id":"a"}"#).0, 500);
    }

    #[test]
    fn subscribe_list_and_404() {
        let app = TestApp::start(Value::Null);
        let mut stream = TcpStream::connect(("127.0.0.1", app.port())).unwrap();
        // Two requests on one connection (keep-alive).
        for expected in ["404", "200"] {
            write!(stream, "GET /dapr/subscribe HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let status_line = read_line(&mut reader).unwrap();
            assert!(status_line.contains(expected), "{status_line}");
            let mut length = 0;
            loop {
                let line = read_line(&mut reader).unwrap();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("Content-Length: ") {
                    length = v.parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            app.set_subscriptions(serde_json::json!([]));
        }
        assert_eq!(app.subscribe_requests().len(), 2);
    }
}

//! Pub/sub plugins under test, the brokers behind them, and a client for the publish routes.
//!
//! - [`PubSubKind`]: `pubsub.in-memory`, `pubsub.redis`, `pubsub.rabbitmq`.
//! - [`Broker`]: what one test publishes through: nothing for in-memory, a `redis-server` of
//!   the test's own for Redis, and for RabbitMQ the broker shared by the whole test binary
//!   (it boots in seconds), held shared, or exclusively by tests that restart it.
//! - [`PubSubApi`]: `POST /v1.0/publish/...` and bulk publish.
//! - [`unique_topic`]: topic names no other test of the binary uses (the RabbitMQ broker keeps
//!   its exchanges and queues across tests).

use std::io::Write as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde_json::Value;

use crate::app::TestApp;
use crate::builder::SidecarBuilder;
use crate::http::{Client, Response};
use crate::rabbitmq::RabbitMqServer;
use crate::redis::RedisServer;
use crate::resources::Component;
use crate::sidecar::Sidecar;

/// The pub/sub component name the suites use.
pub const PUBSUB: &str = "pubsub";

/// A pub/sub plugin the suites run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSubKind {
    InMemory,
    /// `pubsub.redis` (Redis Streams); each test gets a `redis-server` of its own.
    Redis,
    /// `pubsub.rabbitmq`; the tests of one binary share one broker.
    RabbitMq,
}

impl PubSubKind {
    /// `spec.type`.
    pub fn component_type(self) -> &'static str {
        match self {
            PubSubKind::InMemory => "pubsub.in-memory",
            PubSubKind::Redis => "pubsub.redis",
            PubSubKind::RabbitMq => "pubsub.rabbitmq",
        }
    }

    /// The plugin's file in the plugins directory.
    pub fn plugin_file(self) -> &'static str {
        match self {
            PubSubKind::InMemory => "pubsub-in-memory.wasm",
            PubSubKind::Redis => "pubsub-redis.wasm",
            PubSubKind::RabbitMq => "pubsub-rabbitmq.wasm",
        }
    }

    /// Whether sidecars other than the publishing one see its messages (the in-memory bus
    /// lives inside one sidecar).
    pub fn is_shared(self) -> bool {
        self != PubSubKind::InMemory
    }
}

/// `<base>-<n>`, unique within this test process.
pub fn unique_topic(base: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{base}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

enum Backend {
    InMemory,
    Redis(RedisServer),
    Rabbit(RwLockReadGuard<'static, RabbitMqServer>),
    RabbitExclusive(RwLockWriteGuard<'static, RabbitMqServer>),
}

/// The broker side of one test.
pub struct Broker {
    kind: PubSubKind,
    backend: Backend,
    /// Extra component metadata every component of this broker gets.
    metadata: Vec<(String, String)>,
}

impl Broker {
    /// A broker for a test that leaves it running: a fresh `redis-server`, or the shared
    /// RabbitMQ (held shared, so no test restarts it meanwhile).
    #[track_caller]
    pub fn start(kind: PubSubKind) -> Self {
        let backend = match kind {
            PubSubKind::InMemory => Backend::InMemory,
            PubSubKind::Redis => Backend::Redis(RedisServer::start()),
            PubSubKind::RabbitMq => {
                Backend::Rabbit(shared_rabbitmq().read().unwrap_or_else(|e| e.into_inner()))
            }
        };
        Self {
            kind,
            backend,
            metadata: Vec::new(),
        }
    }

    /// A broker that keeps every acknowledged message across [`Broker::restart`] and the
    /// loss of a subscriber: Redis with the append-only file fsynced on every write; the
    /// shared RabbitMQ held exclusively, its components with durable, not auto-deleted
    /// exchanges and queues and persistent messages.
    #[track_caller]
    pub fn durable(kind: PubSubKind) -> Self {
        let backend = match kind {
            PubSubKind::InMemory => panic!("pubsub.in-memory keeps nothing"),
            PubSubKind::Redis => Backend::Redis(RedisServer::builder().aof_always().start()),
            PubSubKind::RabbitMq => Backend::RabbitExclusive(
                shared_rabbitmq().write().unwrap_or_else(|e| e.into_inner()),
            ),
        };
        let mut broker = Self {
            kind,
            backend,
            metadata: Vec::new(),
        };
        broker.metadata = broker.durability_metadata();
        broker
    }

    /// Durable and persistent settings for components of a broker shared with tests that do
    /// not restart it (a lost subscriber must not take its queue with it).
    #[track_caller]
    pub fn shared_durable(kind: PubSubKind) -> Self {
        let mut broker = Self::start(kind);
        broker.metadata = broker.durability_metadata();
        broker
    }

    fn durability_metadata(&self) -> Vec<(String, String)> {
        let pairs: &[(&str, &str)] = match self.kind {
            PubSubKind::RabbitMq => &[
                ("durable", "true"),
                ("deletedWhenUnused", "false"),
                ("deliveryMode", "2"),
            ],
            _ => &[],
        };
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Adds a metadata entry to every component of this broker.
    pub fn with_meta(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn kind(&self) -> PubSubKind {
        self.kind
    }

    /// A component `name` of this broker's kind, connected to it.
    pub fn component(&self, name: &str) -> Component {
        let mut component = Component::new(name, self.kind.component_type());
        component = match &self.backend {
            Backend::InMemory => component,
            Backend::Redis(server) => component.meta("redisHost", &server.addr()),
            Backend::Rabbit(server) => component.meta("connectionString", &server.amqp_url()),
            Backend::RabbitExclusive(server) => {
                component.meta("connectionString", &server.amqp_url())
            }
        };
        for (key, value) in &self.metadata {
            component = component.meta(key, value);
        }
        component
    }

    /// The Redis server behind a Redis broker.
    pub fn redis(&self) -> Option<&RedisServer> {
        match &self.backend {
            Backend::Redis(server) => Some(server),
            _ => None,
        }
    }

    /// The RabbitMQ broker behind a RabbitMQ broker.
    pub fn rabbitmq(&self) -> Option<&RabbitMqServer> {
        match &self.backend {
            Backend::Rabbit(server) => Some(server),
            Backend::RabbitExclusive(server) => Some(server),
            _ => None,
        }
    }

    /// Takes the broker down and up again. Redis is killed (as a crash would; with
    /// [`Broker::durable`] its append-only file has every acknowledged write) and started on
    /// the same port and dir; RabbitMQ is stopped and started (needs [`Broker::durable`]).
    #[track_caller]
    pub fn restart(&mut self) {
        match &mut self.backend {
            Backend::InMemory => panic!("pubsub.in-memory has no broker to restart"),
            Backend::Redis(server) => {
                server.kill();
                server.resume();
            }
            Backend::Rabbit(_) => {
                panic!("the shared RabbitMQ can only be restarted through Broker::durable")
            }
            Backend::RabbitExclusive(server) => server.restart(),
        }
    }

    /// A sidecar for `app_id` with this broker's plugin and a component [`PUBSUB`], plus
    /// `extra` components (e.g. a second pubsub).
    pub fn sidecar(&self, app_id: &str) -> SidecarBuilder {
        Sidecar::builder(app_id)
            .plugin(self.kind.plugin_file())
            .component(&self.component(PUBSUB))
    }

    /// [`Broker::sidecar`] delivering to `app`.
    pub fn subscriber(&self, app_id: &str, app: &TestApp) -> SidecarBuilder {
        self.sidecar(app_id).app_port(app.port())
    }
}

/// The RabbitMQ broker of this test binary, started on first use.
///
/// A static is never dropped, so a watchdog process stops the broker (and removes its files)
/// when this process exits, however it exits: it waits for EOF on a pipe whose write end only
/// this process holds.
fn shared_rabbitmq() -> &'static RwLock<RabbitMqServer> {
    static BROKER: OnceLock<RwLock<RabbitMqServer>> = OnceLock::new();
    static WATCHDOG: Mutex<Option<(Child, ChildStdin)>> = Mutex::new(None);
    BROKER.get_or_init(|| {
        let server = RabbitMqServer::start();
        *WATCHDOG.lock().unwrap_or_else(|e| e.into_inner()) = watchdog(&server);
        RwLock::new(server)
    })
}

/// `sh` waiting for EOF on stdin, then stopping the node and removing its dir.
fn watchdog(server: &RabbitMqServer) -> Option<(Child, ChildStdin)> {
    // The node's own data dir is `<temp dir>/mnesia/<node>`; its temp dir is two levels up.
    let mnesia = server.rabbitmqctl(&["eval", "rabbit_mnesia:dir()."]);
    let mnesia = mnesia.trim().trim_matches('"');
    let temp_dir = std::path::Path::new(mnesia)
        .parent()
        .and_then(std::path::Path::parent)
        .filter(|dir| {
            dir.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("blockhost-rabbitmq-"))
        })
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    let script = r#"cat >/dev/null
rabbitmqctl -n "$1" stop >/dev/null 2>&1
if [ -n "$2" ]; then rm -rf "$2"; fi"#;
    let mut child = Command::new("sh")
        .args([
            "-c",
            script,
            "rabbitmq-watchdog",
            &server.node_name(),
            &temp_dir,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let _ = stdin.flush();
    Some((child, stdin))
}

/// The publish routes of one sidecar for one pubsub component.
#[derive(Clone)]
pub struct PubSubApi {
    client: Client,
    pubsub: String,
}

impl PubSubApi {
    pub fn new(client: Client, pubsub: &str) -> Self {
        Self {
            client,
            pubsub: pubsub.to_owned(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `POST /v1.0/publish/{pubsub}/{topic}{query}` with `body` and, when given, a
    /// Content-Type. `query` is empty or starts with `?`.
    pub fn publish_raw(
        &self,
        topic: &str,
        query: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Response {
        let path = format!("/v1.0/publish/{}/{topic}{query}", self.pubsub);
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| vec![("content-type", c)])
            .unwrap_or_default();
        self.client.request("POST", &path, &headers, Some(body))
    }

    /// Publishes `data` as `application/json`; asserts 204.
    #[track_caller]
    pub fn publish(&self, topic: &str, data: &Value) {
        self.publish_raw(
            topic,
            "",
            Some("application/json"),
            data.to_string().as_bytes(),
        )
        .expect_no_content();
    }

    /// Publishes `data` as `application/json` with the CloudEvent id `id`; asserts 204.
    #[track_caller]
    pub fn publish_with_id(&self, topic: &str, id: &str, data: &Value) {
        self.publish_raw(
            topic,
            &format!("?metadata.cloudevent.id={id}"),
            Some("application/json"),
            data.to_string().as_bytes(),
        )
        .expect_no_content();
    }

    /// Publishes `{"n": 0}` .. `{"n": count - 1}` to `topic`.
    #[track_caller]
    pub fn publish_numbered(&self, topic: &str, count: usize) {
        for n in 0..count {
            self.publish(topic, &serde_json::json!({ "n": n }));
        }
    }

    /// `POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}` with `entries` (a JSON array).
    pub fn bulk_publish(&self, topic: &str, entries: &Value) -> Response {
        let path = format!("/v1.0-alpha1/publish/bulk/{}/{topic}", self.pubsub);
        self.client.post_json(&path, entries)
    }
}

impl Sidecar {
    /// The publish API of component `pubsub`.
    pub fn pubsub(&self, pubsub: &str) -> PubSubApi {
        PubSubApi::new(self.client(), pubsub)
    }

    /// Kills the process at once (SIGKILL), as a crash would, and waits for it.
    pub fn kill_now(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            self.status = child.wait().ok();
        }
    }
}

/// The `n` of every accepted delivery's `data` (`{"n": ..}`), sorted, without repeats.
pub fn accepted_numbers(deliveries: &[crate::app::Delivery]) -> Vec<u64> {
    let mut numbers: Vec<u64> = deliveries
        .iter()
        .filter(|d| d.accepted())
        .filter_map(|d| d.data()["n"].as_u64())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
}

/// A `GET /dapr/subscribe` entry in the v1 form.
pub fn subscription(topic: &str, route: &str) -> Value {
    serde_json::json!({ "pubsubname": PUBSUB, "topic": topic, "route": route })
}

/// How long the suites wait for messages to arrive.
pub const ARRIVAL: Duration = Duration::from_secs(15);

//! State stores under test and a thin client for the state API (`/v1.0/state/...`).

use std::path::Path;

use serde_json::{json, Value};

use crate::http::{Client, Response};
use crate::resources::Component;

/// A state plugin the conformance suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    InMemory,
    Redb,
    /// `state.redis`; [`crate::SidecarBuilder::store`] starts a `redis-server` of its own for
    /// each such store.
    Redis,
    /// `state.etag-only`, a test fixture (tests/fixtures/plugins/state-etag-only) that declares
    /// only ETAG: the conformance suite's proof that it gates cases on declared features.
    EtagOnly,
}

impl StoreKind {
    /// The shipped state plugins.
    pub const ALL: [StoreKind; 3] = [StoreKind::InMemory, StoreKind::Redb, StoreKind::Redis];

    /// `spec.type`.
    pub fn component_type(self) -> &'static str {
        match self {
            StoreKind::InMemory => "state.in-memory",
            StoreKind::Redb => "state.redb",
            StoreKind::Redis => "state.redis",
            StoreKind::EtagOnly => "state.etag-only",
        }
    }

    /// The plugin's file in the plugins directory (or, for [`StoreKind::is_fixture`] kinds,
    /// the fixture plugins directory).
    pub fn plugin_file(self) -> &'static str {
        match self {
            StoreKind::InMemory => "state-in-memory.wasm",
            StoreKind::Redb => "state-redb.wasm",
            StoreKind::Redis => "state-redis.wasm",
            StoreKind::EtagOnly => "state-etag-only.wasm",
        }
    }

    /// Whether the plugin is a test fixture rather than a shipped plugin.
    pub fn is_fixture(self) -> bool {
        self == StoreKind::EtagOnly
    }

    /// The features the plugin is documented to declare in `describe()` (README's plugin
    /// table), in its order. `/v1.0/metadata` must report exactly these, plus the derived
    /// `ACTOR` when both ETAG and TRANSACTIONAL are there.
    pub fn declared_features(self) -> &'static [&'static str] {
        match self {
            StoreKind::InMemory | StoreKind::Redb | StoreKind::Redis => {
                &["ETAG", "TRANSACTIONAL", "TTL"]
            }
            StoreKind::EtagOnly => &["ETAG"],
        }
    }

    /// Whether a store of this kind needs a server (see [`StoreKind::server_component`]).
    pub fn needs_server(self) -> bool {
        self == StoreKind::Redis
    }

    /// A component of this kind named `name` whose backend listens on `addr` (`host:port`).
    pub fn server_component(self, name: &str, addr: &str) -> Component {
        assert!(self.needs_server(), "{self:?} stores need no server");
        Component::new(name, self.component_type()).meta("redisHost", addr)
    }

    /// A component of this kind named `name`. `data_dir` is where a persistent store keeps its
    /// files (it must exist); stores without files ignore it. Kinds that need a server take
    /// [`StoreKind::server_component`] instead.
    pub fn component(self, name: &str, data_dir: &Path) -> Component {
        let component = Component::new(name, self.component_type());
        match self {
            StoreKind::InMemory | StoreKind::EtagOnly => component,
            StoreKind::Redb => {
                component.meta("path", data_dir.to_str().expect("temp paths are UTF-8"))
            }
            StoreKind::Redis => {
                panic!("a state.redis component needs a server address: use server_component")
            }
        }
    }
}

/// The state API of one store of one sidecar. Keys are put in paths verbatim: escape them
/// yourself (`a%20b`).
#[derive(Clone)]
pub struct StateApi {
    client: Client,
    store: String,
}

impl StateApi {
    pub fn new(client: Client, store: &str) -> Self {
        Self {
            client,
            store: store.to_owned(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn path(&self, suffix: &str) -> String {
        format!("/v1.0/state/{}{suffix}", self.store)
    }

    /// `POST /v1.0/state/{store}` with `items` (a JSON array given as text).
    pub fn save_raw(&self, items: &str) -> Response {
        self.client.send_json("POST", &self.path(""), items)
    }

    /// `POST /v1.0/state/{store}` with `items`.
    pub fn save(&self, items: &Value) -> Response {
        self.save_raw(&items.to_string())
    }

    /// Saves one key (last-write) and asserts 204.
    #[track_caller]
    pub fn put(&self, key: &str, value: Value) {
        self.save(&json!([{ "key": key, "value": value }]))
            .expect_no_content();
    }

    /// `GET /v1.0/state/{store}/{key}` (`key` may carry a query string).
    pub fn get(&self, key: &str) -> Response {
        self.client.get(&self.path(&format!("/{key}")))
    }

    /// Gets `key`, asserts 200 and returns `(body, etag)`.
    #[track_caller]
    pub fn get_ok(&self, key: &str) -> (Vec<u8>, String) {
        let response = self.get(key);
        response.expect_status(200);
        let etag = response
            .header("etag")
            .unwrap_or_else(|| panic!("GET {key}: 200 without an ETag header"))
            .to_owned();
        assert!(!etag.is_empty(), "GET {key}: empty ETag header");
        (response.body.clone(), etag)
    }

    /// Gets `key` and asserts its stored bytes are `expected`.
    #[track_caller]
    pub fn assert_value(&self, key: &str, expected: &str) {
        let (body, _) = self.get_ok(key);
        assert_eq!(
            String::from_utf8_lossy(&body),
            expected,
            "stored value of {key:?}"
        );
    }

    /// Asserts `key` does not exist (204, empty body).
    #[track_caller]
    pub fn assert_missing(&self, key: &str) {
        let response = self.get(key);
        assert_eq!(
            response.status,
            204,
            "{key:?} should not exist; got body {:?}",
            response.text()
        );
        assert!(response.body.is_empty());
    }

    /// `DELETE /v1.0/state/{store}/{key}`, with `If-Match: <etag>` when given.
    pub fn delete(&self, key: &str, if_match: Option<&str>) -> Response {
        let headers: Vec<(&str, &str)> = if_match.map(|e| ("if-match", e)).into_iter().collect();
        self.client
            .request("DELETE", &self.path(&format!("/{key}")), &headers, None)
    }

    /// `POST /v1.0/state/{store}/bulk` with `body`.
    pub fn bulk_get(&self, body: &Value) -> Response {
        self.client.post_json(&self.path("/bulk"), body)
    }

    /// `POST /v1.0/state/{store}/transaction` with `body`.
    pub fn transaction(&self, body: &Value) -> Response {
        self.client.post_json(&self.path("/transaction"), body)
    }
}

/// Percent-encodes `key` for use as one path segment (everything but RFC 3986 unreserved
/// characters is escaped, as a careful client would).
pub fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() * 3);
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

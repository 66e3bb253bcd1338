//! The component metadata (read once at `init`), the subscription metadata (per `subscribe`)
//! and the per-message publish metadata, with daprd's names and defaults (components-contrib's
//! `pubsub/rabbitmq`). Keys match case-insensitively and an empty value counts as unset, as in
//! daprd. Everything here is pure so it is unit-tested natively.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::duration::go_duration;
pub use plugin_metadata::{lookup, Secret};

pub const CONNECTION_STRING: &str = "connectionString";
/// daprd's legacy alias of `connectionString`.
pub const HOST: &str = "host";
pub const HOSTNAME: &str = "hostname";

const DEFAULT_PORT: u16 = 5672;
const DEFAULT_USER: &str = "guest";

/// Keys this plugin reads at `init`, plus the ones the host (or daprd's runtime) acts on, which
/// are not worth a "not used" line.
const KNOWN: &[&str] = &[
    CONNECTION_STRING,
    HOST,
    HOSTNAME,
    "protocol",
    "username",
    "password",
    "consumerID",
    "durable",
    "deletedWhenUnused",
    "autoAck",
    "deliveryMode",
    "requeueInFailure",
    "prefetchCount",
    "maxLen",
    "maxLenBytes",
    "exchangeKind",
    "exchangeDeclareMode",
    "enableDeadLetter",
    "publisherConfirm",
    "ttlInSeconds",
    "ttl",
    "clientName",
    "publishMessagePropertiesToMetadata",
    "saslExternal",
    // Read, but with no effect here (see `Config::notes`).
    "heartBeat",
    "reconnectWaitSeconds",
    // The host's: delivery concurrency, scoping.
    "concurrencyMode",
    "concurrency",
    "maxConcurrentHandlers",
    "publishingScopes",
    "subscriptionScopes",
    "allowedTopics",
    "protectedTopics",
    // Subscription-level keys may also be set on the component.
    "queueName",
    "routingKey",
    "maxPriority",
    "queueType",
    "singleActiveConsumer",
];

/// Exchange kinds daprd lets a component declare itself.
const EXCHANGE_KINDS: &[&str] = &["fanout", "topic", "direct", "headers", "x-consistent-hash"];

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub username: String,
    pub password: Secret,
    pub vhost: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub endpoint: Endpoint,
    /// The queue name prefix; the host injects the app id when the YAML sets none.
    pub consumer_id: Option<String>,
    /// Exchange and queue durability (daprd's code defaults to true).
    pub durable: bool,
    /// Exchanges and queues are auto-delete.
    pub delete_when_unused: bool,
    /// Consume without acknowledgements: the broker forgets a message once it is sent.
    pub auto_ack: bool,
    /// Whether a `retry` outcome puts the message back in the queue.
    pub requeue_in_failure: bool,
    /// AMQP delivery mode: 0 (unset) / 1 transient, 2 persistent.
    pub delivery_mode: u8,
    /// basic.qos prefetch count; 0 = unlimited.
    pub prefetch_count: u16,
    pub max_len: Option<i64>,
    pub max_len_bytes: Option<i64>,
    pub exchange_kind: String,
    /// `exchangeDeclareMode: passive`: only check that the exchange exists.
    pub exchange_passive: bool,
    pub enable_dead_letter: bool,
    /// Per-message expiration when a publish names none.
    pub default_ttl: Option<Duration>,
    pub client_name: Option<String>,
    pub properties_to_metadata: bool,
    /// Metadata keys present but unknown, to tell the user once.
    pub ignored: Vec<String>,
    /// Settings accepted for compatibility that have no effect here, with why.
    pub notes: Vec<String>,
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(metadata: &[(String, String)], key: &str) -> Result<Option<bool>, String> {
    match lookup(metadata, key) {
        None => Ok(None),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(Some(true)),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(Some(false)),
        Some(other) => Err(format!(
            "metadata `{key}` must be true or false, got {other:?}"
        )),
    }
}

fn parse_int<T: std::str::FromStr>(
    metadata: &[(String, String)],
    key: &str,
    what: &str,
) -> Result<Option<T>, String> {
    lookup(metadata, key)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| format!("metadata `{key}` must be {what}, got {v:?}"))
        })
        .transpose()
}

/// `maxLen` / `maxLenBytes`: a positive limit, or none (0 and negatives mean unlimited in daprd).
fn parse_limit(metadata: &[(String, String)], key: &str) -> Result<Option<i64>, String> {
    Ok(parse_int::<i64>(metadata, key, "a whole number")?.filter(|n| *n > 0))
}

/// daprd's `TryGetTTL`: `ttl` or `ttlInSeconds`, a Go duration (`90s`, `1m`) or whole seconds.
pub fn parse_ttl(metadata: &[(String, String)]) -> Result<Option<Duration>, String> {
    let Some((key, text)) = ["ttl", "ttlInSeconds"]
        .into_iter()
        .find_map(|key| lookup(metadata, key).map(|v| (key, v.trim())))
    else {
        return Ok(None);
    };
    if let Some(duration) = go_duration(text) {
        return Ok(Some(duration));
    }
    match text.parse::<i64>() {
        Ok(seconds) if seconds > 0 => Ok(Some(Duration::from_secs(seconds.unsigned_abs()))),
        Ok(_) => Err(format!(
            "metadata `{key}` must be more than zero seconds, got {text:?}"
        )),
        Err(_) => Err(format!(
            "metadata `{key}` must be whole seconds or a duration such as 90s, got {text:?}"
        )),
    }
}

impl Config {
    pub fn parse(metadata: &[(String, String)]) -> Result<Self, String> {
        let get = |key: &str| lookup(metadata, key);
        let mut notes = Vec::new();
        let endpoint = parse_endpoint(metadata, &mut notes)?;
        let delivery_mode = parse_int::<u8>(metadata, "deliveryMode", "0, 1 or 2")?.unwrap_or(0);
        if delivery_mode > 2 {
            return Err(format!(
                "metadata `deliveryMode` must be 0, 1 or 2 (2 = persistent), got {delivery_mode}"
            ));
        }
        let exchange_kind = get("exchangeKind").unwrap_or("fanout").to_owned();
        let exchange_passive = match get("exchangeDeclareMode") {
            None => false,
            Some(mode) if mode.eq_ignore_ascii_case("declare") => false,
            Some(mode) if mode.eq_ignore_ascii_case("passive") => true,
            Some(mode) => {
                return Err(format!(
                    "metadata `exchangeDeclareMode` must be declare or passive, got {mode:?}"
                ))
            }
        };
        if !exchange_passive && !EXCHANGE_KINDS.contains(&exchange_kind.as_str()) {
            return Err(format!(
                "metadata `exchangeKind` {exchange_kind:?} is not one this component can declare \
                 ({}); to use another kind, create the exchange yourself and set \
                 exchangeDeclareMode: passive",
                EXCHANGE_KINDS.join(", ")
            ));
        }
        if parse_bool(metadata, "saslExternal")? == Some(true) {
            return Err(
                "metadata `saslExternal` is true, but pubsub.rabbitmq does not support TLS or \
                 SASL EXTERNAL yet: log in with a username and password over amqp://"
                    .into(),
            );
        }
        if parse_bool(metadata, "publisherConfirm")? == Some(false) {
            notes.push(
                "publisherConfirm: false is ignored: a publish always waits for the broker's \
                 confirm, so a 204 means RabbitMQ has the message"
                    .into(),
            );
        }
        if get("heartBeat").is_some() {
            notes.push(
                "heartBeat is ignored: AMQP heartbeats are switched off, because a plugin runs \
                 only while the sidecar calls it and could not answer them between calls; a \
                 closed connection is noticed and replaced on the next call"
                    .into(),
            );
        }
        if get("reconnectWaitSeconds").is_some() {
            notes.push(
                "reconnectWaitSeconds is ignored: a lost connection is replaced on the next call"
                    .into(),
            );
        }
        let client_name = get("clientName").map(str::to_owned);
        if client_name.as_ref().is_some_and(|n| n.len() > 255) {
            return Err("metadata `clientName` must be at most 255 bytes".into());
        }
        Ok(Self {
            endpoint,
            consumer_id: get("consumerID").map(str::to_owned),
            durable: parse_bool(metadata, "durable")?.unwrap_or(true),
            delete_when_unused: parse_bool(metadata, "deletedWhenUnused")?.unwrap_or(true),
            auto_ack: parse_bool(metadata, "autoAck")?.unwrap_or(false),
            requeue_in_failure: parse_bool(metadata, "requeueInFailure")?.unwrap_or(false),
            delivery_mode,
            prefetch_count: parse_int::<u16>(
                metadata,
                "prefetchCount",
                "a whole number from 0 (unlimited) to 65535",
            )?
            .unwrap_or(0),
            max_len: parse_limit(metadata, "maxLen")?,
            max_len_bytes: parse_limit(metadata, "maxLenBytes")?,
            exchange_kind,
            exchange_passive,
            enable_dead_letter: parse_bool(metadata, "enableDeadLetter")?.unwrap_or(false),
            default_ttl: parse_ttl(metadata)?,
            client_name,
            properties_to_metadata: parse_bool(metadata, "publishMessagePropertiesToMetadata")?
                .unwrap_or(false),
            ignored: metadata
                .iter()
                .map(|(k, _)| k)
                .filter(|k| !KNOWN.iter().any(|known| known.eq_ignore_ascii_case(k)))
                .cloned()
                .collect(),
            notes,
        })
    }
}

/// `connectionString` (or its legacy alias `host`), else `protocol` / `hostname` / `username` /
/// `password`, as daprd reads them.
fn parse_endpoint(
    metadata: &[(String, String)],
    notes: &mut Vec<String>,
) -> Result<Endpoint, String> {
    let get = |key: &str| lookup(metadata, key);
    let protocol = get("protocol");
    let uri = match (get(CONNECTION_STRING), get(HOST)) {
        (Some(uri), _) => Some((CONNECTION_STRING, uri)),
        (None, Some(uri)) => {
            notes.push(
                "metadata `host` is deprecated (as in daprd): name the broker with \
                 connectionString instead"
                    .into(),
            );
            Some((HOST, uri))
        }
        (None, None) => None,
    };
    if let Some((key, uri)) = uri {
        let scheme = uri.split_once("://").map(|(s, _)| s);
        if let (Some(protocol), Some(scheme)) = (protocol, scheme) {
            if !protocol.eq_ignore_ascii_case(scheme) {
                return Err(format!(
                    "metadata `protocol` ({protocol}) does not match the scheme of `{key}` ({scheme})"
                ));
            }
        }
        let ignored: Vec<&str> = [HOSTNAME, "username", "password"]
            .into_iter()
            .filter(|k| get(k).is_some())
            .collect();
        if !ignored.is_empty() {
            notes.push(format!(
                "{} ignored because `{key}` is set (the two ways of naming the broker are \
                 mutually exclusive)",
                ignored.join(", ")
            ));
        }
        return parse_uri(uri).map_err(|e| format!("metadata `{key}`: {e}"));
    }
    let Some(hostname) = get(HOSTNAME) else {
        return Err(format!(
            "metadata `{CONNECTION_STRING}` is required: set it to the broker's address, e.g. \
             amqp://guest:guest@localhost:5672 (or give `{HOSTNAME}`, `username`, `password`)"
        ));
    };
    let protocol = protocol.unwrap_or("amqp");
    let mut uri = format!("{protocol}://");
    if let Some(user) = get("username") {
        uri.push_str(&encode(user));
        if let Some(password) = get("password") {
            uri.push(':');
            uri.push_str(&encode(password));
        }
        uri.push('@');
    }
    uri.push_str(hostname);
    parse_uri(&uri).map_err(|e| format!("metadata `{HOSTNAME}` / `protocol`: {e}"))
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn decode(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "percent-encoded text is not UTF-8".to_owned())
}

/// An AMQP URI the way amqp091-go (daprd's client) reads it: user and password default to
/// guest, the port to 5672, an empty path or `/` is the vhost `/`, else the path after the first
/// slash, percent-decoded (`/%2f` is `/`); a query string is ignored. The host hands the value
/// over with its host name already resolved to an IP: the sandbox has no name lookup.
pub fn parse_uri(text: &str) -> Result<Endpoint, String> {
    const SHAPE: &str = "expected amqp://user:password@host:5672/vhost";
    let text = text.trim();
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("not a URI: {SHAPE}"));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "amqp" => {}
        "amqps" => {
            return Err(
                "amqps:// (TLS) is not supported yet: connect over amqp:// or put a TLS proxy \
                 beside the sidecar"
                    .into(),
            )
        }
        other => return Err(format!("the scheme must be amqp://, got {other}://")),
    }
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in the host: {SHAPE}"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected text after the host: {SHAPE}")),
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("no host: {SHAPE}"));
    }
    let ip: IpAddr = host.parse().map_err(|_| {
        format!(
            "the host {host:?} is a name, but the sandbox has no name lookup: blockhost \
             passes endpoint values with the name resolved to an IP address"
        )
    })?;
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("the port must be a number, got {port:?}"))?,
    };
    let (username, password) = match userinfo {
        None => (String::new(), None),
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, password)) => (decode(user)?, Some(decode(password)?)),
            None => (decode(userinfo)?, None),
        },
    };
    let username = if username.is_empty() {
        DEFAULT_USER.to_owned()
    } else {
        username
    };
    let password = password.unwrap_or_else(|| DEFAULT_USER.to_owned());
    let vhost = match path {
        "" | "/" => "/".to_owned(),
        path => decode(&path[1..])?,
    };
    if username.len() > 255 || vhost.len() > 255 {
        return Err("the user name and the vhost must be at most 255 bytes each".into());
    }
    Ok(Endpoint {
        addr: SocketAddr::new(ip, port),
        username,
        password: Secret(password),
        vhost,
    })
}

/// What one subscription declares and consumes, from its metadata (the subscription's merged
/// over the component's) and the component's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionConfig {
    pub topic: String,
    pub queue: String,
    pub routing_keys: Vec<String>,
    pub max_len: Option<i64>,
    pub max_len_bytes: Option<i64>,
    pub max_priority: Option<u8>,
    pub queue_type: String,
    pub single_active_consumer: bool,
}

impl SubscriptionConfig {
    pub fn parse(
        topic: &str,
        metadata: &[(String, String)],
        component: &Config,
    ) -> Result<Self, String> {
        check_name("topic", topic)?;
        let get = |key: &str| lookup(metadata, key);
        let queue = match get("queueName") {
            Some(queue) => queue.to_owned(),
            None => {
                let consumer = get("consumerID")
                    .or(component.consumer_id.as_deref())
                    .ok_or_else(|| {
                        "a subscription needs `consumerID` (the queue is <consumerID>-<topic>) \
                         or `queueName`"
                            .to_owned()
                    })?;
                crate::topology::queue_name(consumer, topic)
            }
        };
        check_name("queue", &queue)?;
        // Like daprd: split on commas, no trimming; no routingKey binds with "".
        let routing_keys: Vec<String> = get("routingKey")
            .unwrap_or("")
            .split(',')
            .map(str::to_owned)
            .collect();
        if routing_keys.iter().any(|k| k.len() > 255) {
            return Err("metadata `routingKey`: each key must be at most 255 bytes".into());
        }
        let queue_type = get("queueType").unwrap_or("classic").to_owned();
        if queue_type != "classic" && queue_type != "quorum" {
            return Err(format!(
                "metadata `queueType` must be classic or quorum, got {queue_type:?}"
            ));
        }
        let max_priority = parse_int::<u64>(metadata, "maxPriority", "a whole number")?
            .map(|p| u8::try_from(p).unwrap_or(u8::MAX));
        Ok(Self {
            topic: topic.to_owned(),
            queue,
            routing_keys,
            max_len: parse_limit(metadata, "maxLen")?.or(component.max_len),
            max_len_bytes: parse_limit(metadata, "maxLenBytes")?.or(component.max_len_bytes),
            max_priority,
            queue_type,
            single_active_consumer: parse_bool(metadata, "singleActiveConsumer")?.unwrap_or(false),
        })
    }
}

/// Exchange and queue names are AMQP short strings; the empty name is the default exchange.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} name must not be empty"));
    }
    if name.len() > 255 {
        return Err(format!(
            "the {what} name must be at most 255 bytes (AMQP limit), got {} bytes",
            name.len()
        ));
    }
    Ok(())
}

/// The AMQP properties and routing of one published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOptions {
    pub routing_key: String,
    pub content_type: String,
    pub delivery_mode: u8,
    /// Milliseconds, as the `expiration` property wants them.
    pub expiration: Option<String>,
    pub priority: Option<u8>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub kind: Option<String>,
}

impl PublishOptions {
    /// daprd's publish: routing key from `routingKey`, expiration from `ttl`/`ttlInSeconds` or
    /// the component's default, `priority`, and the `contentType` / `messageID` /
    /// `correlationID` / `type` properties. The content type is the `contentType` metadata,
    /// else the message's own, else `text/plain` (daprd always sends `text/plain`).
    pub fn parse(
        metadata: &[(String, String)],
        content_type: Option<&str>,
        component: &Config,
    ) -> Result<Self, String> {
        let get = |key: &str| lookup(metadata, key).map(str::to_owned);
        let short = |key: &str| -> Result<Option<String>, String> {
            match get(key) {
                Some(v) if v.len() > 255 => Err(format!(
                    "metadata `{key}` must be at most 255 bytes (AMQP short string)"
                )),
                v => Ok(v),
            }
        };
        let expiration = parse_ttl(metadata)?
            .or(component.default_ttl)
            .map(|ttl| ttl.as_millis().to_string());
        let priority = match lookup(metadata, "priority") {
            None => None,
            Some(p) => Some(match p.trim().parse::<i64>() {
                Ok(n) => u8::try_from(n.max(0)).unwrap_or(u8::MAX),
                Err(_) => {
                    return Err(format!(
                        "metadata `priority` must be a whole number, got {p:?}"
                    ))
                }
            }),
        };
        let content_type = short("contentType")?
            .or_else(|| content_type.filter(|c| !c.is_empty()).map(str::to_owned))
            .unwrap_or_else(|| "text/plain".to_owned());
        if content_type.len() > 255 {
            return Err("the content type must be at most 255 bytes".into());
        }
        Ok(Self {
            routing_key: short("routingKey")?.unwrap_or_default(),
            content_type,
            delivery_mode: component.delivery_mode,
            expiration,
            priority,
            message_id: short("messageID")?,
            correlation_id: short("correlationID")?,
            kind: short("type")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, String> {
        Config::parse(&md(pairs))
    }

    const URI: (&str, &str) = ("connectionString", "amqp://127.0.0.1:5672");

    #[test]
    fn defaults_follow_daprd() {
        let c = parse(&[URI, ("consumerID", "app")]).unwrap();
        assert_eq!(c.endpoint.addr, "127.0.0.1:5672".parse().unwrap());
        assert_eq!(c.endpoint.username, "guest");
        assert_eq!(c.endpoint.password, Secret("guest".into()));
        assert_eq!(c.endpoint.vhost, "/");
        assert_eq!(c.consumer_id.as_deref(), Some("app"));
        assert!(c.durable && c.delete_when_unused);
        assert!(!c.auto_ack && !c.requeue_in_failure && !c.enable_dead_letter);
        assert_eq!((c.delivery_mode, c.prefetch_count), (0, 0));
        assert_eq!((c.max_len, c.max_len_bytes), (None, None));
        assert_eq!(c.exchange_kind, "fanout");
        assert!(!c.exchange_passive);
        assert_eq!(c.default_ttl, None);
        assert!(c.ignored.is_empty() && c.notes.is_empty());
    }

    #[test]
    fn uri_forms() {
        let e = parse_uri("amqp://user:p%40ss@10.1.2.3:5673/orders").unwrap();
        assert_eq!(e.addr, "10.1.2.3:5673".parse().unwrap());
        assert_eq!((e.username.as_str(), e.vhost.as_str()), ("user", "orders"));
        assert_eq!(e.password, Secret("p@ss".into()));
        assert!(
            !format!("{e:?}").contains("p@ss"),
            "password must not print"
        );
        assert_eq!(parse_uri("amqp://127.0.0.1/").unwrap().vhost, "/");
        assert_eq!(parse_uri("amqp://127.0.0.1/%2f").unwrap().vhost, "/");
        assert_eq!(parse_uri("amqp://127.0.0.1/a%2Fb").unwrap().vhost, "a/b");
        let e = parse_uri("amqp://bob@[::1]").unwrap();
        assert_eq!(e.addr, "[::1]:5672".parse().unwrap());
        assert_eq!(
            (e.username.as_str(), e.password.0.as_str()),
            ("bob", "guest")
        );
        assert!(parse_uri("amqps://127.0.0.1").unwrap_err().contains("TLS"));
        assert!(parse_uri("http://127.0.0.1")
            .unwrap_err()
            .contains("amqp://"));
        assert!(parse_uri("amqp://rabbit.local:5672")
            .unwrap_err()
            .contains("name lookup"));
        assert!(parse_uri("not a uri").is_err());
        assert_eq!(
            parse_uri("amqp://127.0.0.1:5673?heartbeat=5")
                .unwrap()
                .addr
                .port(),
            5673
        );
        assert_eq!(
            parse_uri("AMQP://u:@127.0.0.1").unwrap().password,
            Secret(String::new())
        );
        assert!(parse_uri("amqp://127.0.0.1:x")
            .unwrap_err()
            .contains("port"));
        assert!(parse_uri("amqp://[::1").is_err());
        assert!(parse_uri("amqp://u:p@").unwrap_err().contains("host"));
    }

    #[test]
    fn connection_keys() {
        let legacy = parse(&[("host", "amqp://127.0.0.1:1234")]).unwrap();
        assert_eq!(legacy.endpoint.addr.port(), 1234);
        assert!(legacy.notes.iter().any(|n| n.contains("deprecated")));
        let parts = parse(&[
            ("hostname", "127.0.0.1:5674"),
            ("username", "app"),
            ("password", "s3:cr@t"),
        ])
        .unwrap();
        assert_eq!(parts.endpoint.addr, "127.0.0.1:5674".parse().unwrap());
        assert_eq!(parts.endpoint.password, Secret("s3:cr@t".into()));
        assert_eq!(
            parse(&[("hostname", "127.0.0.1")])
                .unwrap()
                .endpoint
                .addr
                .port(),
            5672
        );
        assert!(parse(&[]).unwrap_err().contains("connectionString"));
        let both = parse(&[URI, ("hostname", "127.0.0.2")]).unwrap();
        assert_eq!(both.endpoint.addr.ip().to_string(), "127.0.0.1");
        assert!(both.notes.iter().any(|n| n.contains("hostname")));
        let mismatch = parse(&[URI, ("protocol", "amqps")]).unwrap_err();
        assert!(mismatch.contains("protocol"), "{mismatch}");
        assert!(parse(&[("hostname", "127.0.0.1"), ("protocol", "amqps")])
            .unwrap_err()
            .contains("TLS"));
    }

    #[test]
    fn settings() {
        let c = parse(&[
            URI,
            ("durable", "false"),
            ("DeletedWhenUnused", "0"),
            ("autoAck", "true"),
            ("requeueInFailure", "T"),
            ("deliveryMode", "2"),
            ("prefetchCount", "10"),
            ("maxLen", "100"),
            ("maxLenBytes", "0"),
            ("exchangeKind", "topic"),
            ("enableDeadLetter", "true"),
            ("ttlInSeconds", "60"),
            ("clientName", "pod-1"),
            ("publishMessagePropertiesToMetadata", "true"),
        ])
        .unwrap();
        assert!(!c.durable && !c.delete_when_unused && c.auto_ack && c.requeue_in_failure);
        assert_eq!((c.delivery_mode, c.prefetch_count), (2, 10));
        assert_eq!((c.max_len, c.max_len_bytes), (Some(100), None));
        assert_eq!(c.exchange_kind, "topic");
        assert!(c.enable_dead_letter && c.properties_to_metadata);
        assert_eq!(c.default_ttl, Some(Duration::from_secs(60)));
        assert_eq!(c.client_name.as_deref(), Some("pod-1"));
    }

    #[test]
    fn bad_settings_say_what_to_change() {
        let err = |pairs: &[(&str, &str)]| parse(pairs).unwrap_err();
        assert!(err(&[URI, ("deliveryMode", "3")]).contains("deliveryMode"));
        assert!(err(&[URI, ("durable", "yes")]).contains("true or false"));
        assert!(err(&[URI, ("prefetchCount", "-1")]).contains("prefetchCount"));
        assert!(err(&[URI, ("exchangeKind", "x-delayed")]).contains("passive"));
        assert!(
            parse(&[
                URI,
                ("exchangeKind", "x-delayed"),
                ("exchangeDeclareMode", "passive")
            ])
            .unwrap()
            .exchange_passive
        );
        assert!(err(&[URI, ("exchangeDeclareMode", "maybe")]).contains("exchangeDeclareMode"));
        assert!(err(&[URI, ("ttlInSeconds", "-3")]).contains("ttlInSeconds"));
        assert!(err(&[URI, ("ttlInSeconds", "soon")]).contains("ttlInSeconds"));
        assert!(err(&[URI, ("saslExternal", "true")]).contains("TLS"));
    }

    #[test]
    fn unused_and_noted_keys() {
        let c = parse(&[
            URI,
            ("poolSize", "3"),
            ("heartBeat", "10s"),
            ("publisherConfirm", "false"),
            ("allowedTopics", "a,b"),
        ])
        .unwrap();
        assert_eq!(c.ignored, vec!["poolSize".to_string()]);
        assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
    }

    #[test]
    fn ttl_forms() {
        let ttl = |v: &str| parse_ttl(&md(&[("ttlInSeconds", v)]));
        assert_eq!(ttl("10"), Ok(Some(Duration::from_secs(10))));
        assert_eq!(ttl("1m30s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(ttl("250ms"), Ok(Some(Duration::from_millis(250))));
        assert_eq!(ttl("-5s"), Ok(Some(Duration::ZERO)));
        assert!(ttl("-5").is_err());
        assert_eq!(
            parse_ttl(&md(&[("ttl", "2s")])),
            Ok(Some(Duration::from_secs(2)))
        );
        assert_eq!(parse_ttl(&md(&[])), Ok(None));
    }

    #[test]
    fn subscription_queue_and_bindings() {
        let component = parse(&[URI, ("consumerID", "app"), ("maxLen", "5")]).unwrap();
        let s = SubscriptionConfig::parse("orders", &md(&[]), &component).unwrap();
        assert_eq!(s.queue, "app-orders");
        assert_eq!(s.routing_keys, vec![String::new()]);
        assert_eq!((s.max_len, s.queue_type.as_str()), (Some(5), "classic"));
        let s = SubscriptionConfig::parse(
            "orders",
            &md(&[
                ("consumerID", "other"),
                ("routingKey", "a,b.*"),
                ("maxLen", "9"),
                ("maxPriority", "300"),
                ("queueType", "quorum"),
                ("singleActiveConsumer", "true"),
            ]),
            &component,
        )
        .unwrap();
        assert_eq!(s.queue, "other-orders");
        assert_eq!(s.routing_keys, vec!["a".to_string(), "b.*".to_string()]);
        assert_eq!((s.max_len, s.max_priority), (Some(9), Some(255)));
        assert!(s.single_active_consumer && s.queue_type == "quorum");
        let named = SubscriptionConfig::parse("orders", &md(&[("queueName", "mine")]), &component);
        assert_eq!(named.unwrap().queue, "mine");
        let no_consumer = parse(&[URI]).unwrap();
        assert!(SubscriptionConfig::parse("t", &md(&[]), &no_consumer)
            .unwrap_err()
            .contains("consumerID"));
        assert!(
            SubscriptionConfig::parse("t", &md(&[("queueType", "stream")]), &component)
                .unwrap_err()
                .contains("queueType")
        );
        assert!(
            SubscriptionConfig::parse(&"t".repeat(300), &md(&[]), &component)
                .unwrap_err()
                .contains("255")
        );
        assert!(SubscriptionConfig::parse("", &md(&[]), &component).is_err());
    }

    #[test]
    fn publish_options() {
        let component = parse(&[URI, ("deliveryMode", "2"), ("ttlInSeconds", "30")]).unwrap();
        let p = PublishOptions::parse(&md(&[]), Some("application/cloudevents+json"), &component)
            .unwrap();
        assert_eq!(p.routing_key, "");
        assert_eq!(p.content_type, "application/cloudevents+json");
        assert_eq!(p.delivery_mode, 2);
        assert_eq!(p.expiration.as_deref(), Some("30000"));
        assert_eq!(p.priority, None);
        let p = PublishOptions::parse(
            &md(&[
                ("routingKey", "eu.orders"),
                ("ttlInSeconds", "5"),
                ("priority", "7"),
                ("contenttype", "application/json"),
                ("messageID", "m-1"),
                ("correlationID", "c-1"),
                ("type", "order"),
            ]),
            None,
            &component,
        )
        .unwrap();
        assert_eq!(p.routing_key, "eu.orders");
        assert_eq!(p.expiration.as_deref(), Some("5000"));
        assert_eq!(p.priority, Some(7));
        assert_eq!(p.content_type, "application/json");
        assert_eq!(p.message_id.as_deref(), Some("m-1"));
        assert_eq!(p.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(p.kind.as_deref(), Some("order"));
        let plain = parse(&[URI]).unwrap();
        let p = PublishOptions::parse(&md(&[("priority", "999")]), None, &plain).unwrap();
        assert_eq!(
            (p.content_type.as_str(), p.priority),
            ("text/plain", Some(255))
        );
        assert_eq!(p.expiration, None);
        assert!(PublishOptions::parse(&md(&[("priority", "high")]), None, &plain).is_err());
        let long_key = "k".repeat(256);
        assert!(PublishOptions::parse(&md(&[("routingKey", &long_key)]), None, &plain).is_err());
    }
}

use super::*;
use plugin_metadata::lookup;

fn parse(pairs: &[(&str, &str)]) -> Result<Connection, String> {
    let metadata: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Connection::parse(|key| lookup(&metadata, key), "test.redis")
}

fn message(r: Result<Connection, String>) -> String {
    r.expect_err("expected an invalid setting")
}

#[test]
fn defaults() {
    let c = parse(&[("redisHost", "127.0.0.1:6380")]).unwrap();
    assert_eq!(c.addr, "127.0.0.1:6380".parse().unwrap());
    assert_eq!((c.db, c.max_retries), (0, 3));
    assert_eq!(c.dial_timeout, Some(Duration::from_secs(2)));
    assert_eq!(c.read_timeout, Some(Duration::from_secs(3)));
    assert_eq!(c.write_timeout, c.read_timeout);
    assert_eq!((c.username, c.password), (None, None));
}

#[test]
fn address_forms() {
    let addr = |pairs: &[(&str, &str)]| parse(pairs).unwrap().addr.to_string();
    assert_eq!(addr(&[("redisHost", "10.0.0.1")]), "10.0.0.1:6379");
    assert_eq!(
        addr(&[("redisHost", "10.0.0.1"), ("redisPort", "7000")]),
        "10.0.0.1:7000"
    );
    assert_eq!(addr(&[("redisHost", "[::1]:7001")]), "[::1]:7001");
    assert_eq!(addr(&[("redisHost", "[::1]")]), "[::1]:6379");
    assert!(message(parse(&[])).contains("redisHost"));
    let several = message(parse(&[("redisHost", "a:1,b:2")]));
    assert!(several.contains("single") && several.contains("test.redis"));
    assert!(message(parse(&[("redisHost", "redis.local:6379")])).contains("host:port"));
    let conflict = parse(&[("redisHost", "10.0.0.1:1"), ("redisPort", "2")]);
    assert!(message(conflict).contains("redisPort"));
}

#[test]
fn credentials_and_db() {
    let c = parse(&[
        ("redisHost", "127.0.0.1"),
        ("redisUsername", "app"),
        ("redisPassword", "s3cret"),
        ("redisDB", "4"),
    ])
    .unwrap();
    assert_eq!(c.username.as_deref(), Some("app"));
    assert_eq!(c.db, 4);
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "the password must not be printable"
    );
    for bad in ["-1", "x"] {
        let db = parse(&[("redisHost", "127.0.0.1"), ("redisDB", bad)]);
        assert!(message(db).contains("redisDB"));
    }
}

#[test]
fn retries() {
    let retries = |v: &str| parse(&[("redisHost", "127.0.0.1"), ("redisMaxRetries", v)]);
    assert_eq!(retries("5").unwrap().max_retries, 5);
    assert_eq!(retries("0").unwrap().max_retries, 3);
    assert_eq!(retries("-1").unwrap().max_retries, 0);
    assert!(message(retries("many")).contains("redisMaxRetries"));
    let legacy = parse(&[("redisHost", "127.0.0.1"), ("maxRetries", "1")]);
    assert_eq!(legacy.unwrap().max_retries, 1);
}

#[test]
fn timeouts() {
    let c = parse(&[
        ("redisHost", "127.0.0.1"),
        ("dialTimeout", "250"),
        ("readTimeout", "1.5s"),
    ])
    .unwrap();
    assert_eq!(c.dial_timeout, Some(Duration::from_millis(250)));
    assert_eq!(c.read_timeout, Some(Duration::from_millis(1500)));
    assert_eq!(c.write_timeout, Some(Duration::from_millis(1500)));
    let c = parse(&[("redisHost", "127.0.0.1"), ("readTimeout", "-1")]).unwrap();
    assert_eq!((c.read_timeout, c.write_timeout), (None, None));
    let dial = parse(&[("redisHost", "127.0.0.1"), ("dialTimeout", "soon")]);
    assert!(message(dial).contains("dialTimeout"));
}

#[test]
fn unsupported_settings_are_refused() {
    let tls = message(parse(&[("redisHost", "127.0.0.1"), ("enableTLS", "true")]));
    assert!(
        tls.contains("enableTLS") && tls.contains("test.redis"),
        "{tls}"
    );
    assert!(parse(&[("redisHost", "127.0.0.1"), ("enableTLS", "false")]).is_ok());
    let yes = parse(&[("redisHost", "127.0.0.1"), ("enableTLS", "yes")]);
    assert!(message(yes).contains("true or false"));
    let cluster = parse(&[("redisHost", "127.0.0.1"), ("redisType", "cluster")]);
    assert!(message(cluster).contains("cluster"));
    let failover = parse(&[("redisHost", "127.0.0.1"), ("failover", "true")]);
    assert!(message(failover).contains("failover"));
}

#[test]
fn lookup_ignores_case_and_blanks() {
    let c = parse(&[("redishost", "127.0.0.1"), ("redisDB", " ")]).unwrap();
    assert_eq!((c.addr.port(), c.db), (6379, 0));
}

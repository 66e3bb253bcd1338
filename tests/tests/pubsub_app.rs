//! The sidecar's side of the app contract, whatever the broker (run on `pubsub.in-memory`):
//! the start-up sequence, `GET /dapr/subscribe`, the app token, and a stop that lets the
//! deliveries in flight finish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::thread;
use std::time::{Duration, Instant};

use blockhost_tests::app::{Policy, TestApp};
use blockhost_tests::ports::free_port;
use blockhost_tests::pubsub::{subscription, unique_topic, Broker, PubSubKind, ARRIVAL, PUBSUB};
use blockhost_tests::{metadata, sidecar::READY_TIMEOUT};
use serde_json::{json, Value};

const KIND: PubSubKind = PubSubKind::InMemory;

/// Until the app listens, the sidecar is healthy outbound (components up) but not ready;
/// once it listens, the sidecar reads its subscriptions (with `dapr-app-id`), becomes ready,
/// and delivers.
#[test]
fn readiness_waits_for_the_app_and_its_subscriptions() {
    let broker = Broker::start(KIND);
    let app_port = free_port();
    let mut sidecar = broker.sidecar("late-app").app_port(app_port).spawn();
    let client = sidecar.client();
    let deadline = Instant::now() + READY_TIMEOUT;
    let outbound = || {
        client
            .try_request("GET", "/v1.0/healthz/outbound", &[], None)
            .is_ok_and(|r| r.status == 204)
    };
    while !outbound() {
        assert!(Instant::now() < deadline, "never healthy outbound");
        thread::sleep(Duration::from_millis(20));
    }
    // Some time with no app: still not ready.
    thread::sleep(Duration::from_millis(300));
    client
        .get("/v1.0/healthz")
        .expect_error(500, "ERR_HEALTH_NOT_READY");

    let topic = unique_topic("late");
    let app = TestApp::start_on(app_port, json!([subscription(&topic, "/late")]));
    sidecar.wait_ready(READY_TIMEOUT);
    let requests = app.subscribe_requests();
    assert_eq!(requests.len(), 1, "GET /dapr/subscribe once");
    assert_eq!(requests[0].header("dapr-app-id"), Some("late-app"));
    sidecar.pubsub(PUBSUB).publish(&topic, &json!("first"));
    let deliveries = app.wait_for_route("/late", 1, ARRIVAL);
    assert_eq!(deliveries[0].data(), "first");
}

/// A 404 from `GET /dapr/subscribe` means no subscriptions: the sidecar is ready, lists none,
/// and delivers nothing.
#[test]
fn a_404_from_dapr_subscribe_means_no_subscriptions() {
    let broker = Broker::start(KIND);
    let app = TestApp::start(Value::Null);
    let sidecar = broker.subscriber("quiet-app", &app).start();
    assert_eq!(app.subscribe_requests().len(), 1, "asked once, not retried");
    let listed = metadata::fetch(&sidecar.client());
    let none = listed
        .get("subscriptions")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    assert!(none, "subscriptions listed: {listed}");
    let topic = unique_topic("unheard");
    sidecar
        .pubsub(PUBSUB)
        .publish(&topic, &json!("nobody listens"));
    app.assert_quiet(Duration::from_millis(400));
}

/// With `APP_API_TOKEN` set, every call to the app carries it as `dapr-api-token`.
#[test]
fn the_app_token_goes_with_every_call() {
    let broker = Broker::start(KIND);
    let topic = unique_topic("token");
    let app = TestApp::start(json!([subscription(&topic, "/t")]));
    let sidecar = broker
        .subscriber("token-app", &app)
        .env("APP_API_TOKEN", "app-secret")
        .start();
    sidecar.pubsub(PUBSUB).publish(&topic, &json!(1));
    let delivery = app.wait_for_route("/t", 1, ARRIVAL).remove(0);
    assert_eq!(delivery.header("dapr-api-token"), Some("app-secret"));
    assert_eq!(
        app.subscribe_requests()[0].header("dapr-api-token"),
        Some("app-secret")
    );
}

/// On SIGTERM the subscribers stop pulling, the deliveries in flight are answered, and the
/// sidecar exits 0 once they are.
#[test]
fn sigterm_lets_deliveries_in_flight_finish() {
    const DELAY: Duration = Duration::from_millis(1000);
    let broker = Broker::start(KIND).with_meta("concurrency", "2");
    let topic = unique_topic("draining");
    let app = TestApp::start(json!([subscription(&topic, "/slow")]));
    app.set_policy("/slow", Policy::new().delay(DELAY));
    let mut sidecar = broker.subscriber("draining-app", &app).start();
    sidecar.pubsub(PUBSUB).publish_numbered(&topic, 6);

    let in_flight = app.wait_for_route("/slow", 2, ARRIVAL);
    let signalled = Instant::now();
    let status = sidecar.stop();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", sidecar.stderr());
    let answered_at = in_flight.iter().map(|d| d.received + DELAY).max().unwrap();
    assert!(
        signalled + took + Duration::from_millis(5) >= answered_at,
        "exited {took:?} after SIGTERM, before the app answered its deliveries"
    );
    assert_eq!(
        app.deliveries_to("/slow").len(),
        2,
        "nothing may be delivered after SIGTERM"
    );
}

/// Topic scoping from the component's metadata, as daprd applies it: a publish outside the
/// app's `publishingScopes` is refused with 403 and never delivered; a subscription outside
/// its `subscriptionScopes` is not started.
#[test]
fn topic_scopes_limit_publishing_and_subscribing() {
    let broker = Broker::start(KIND)
        .with_meta("publishingScopes", "scoped-app=open,closed-to-subscribers")
        .with_meta("subscriptionScopes", "scoped-app=open");
    let app = TestApp::start(json!([
        subscription("open", "/open"),
        subscription("closed-to-subscribers", "/closed"),
    ]));
    let sidecar = broker.subscriber("scoped-app", &app).start();
    let pubsub = sidecar.pubsub(PUBSUB);

    pubsub
        .publish_raw("elsewhere", "", Some("application/json"), b"1")
        .expect_error(403, "ERR_PUBSUB_FORBIDDEN");
    pubsub.publish("closed-to-subscribers", &json!("not for us"));
    pubsub.publish("open", &json!("welcome"));

    let deliveries = app.wait_for_route("/open", 1, ARRIVAL);
    assert_eq!(deliveries[0].data(), "welcome");
    app.assert_quiet(Duration::from_millis(300));
    assert!(
        app.deliveries().iter().all(|d| d.path == "/open"),
        "only the scoped subscription delivers"
    );
    let listed = metadata::fetch(&sidecar.client())["subscriptions"].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["topic"], "open");
}

/// Routing rules are CEL, as in daprd: comparisons on JSON numbers (integers and floats alike),
/// `has()`, string functions, `in`; first match wins, then the default. A rule whose
/// evaluation fails on a field an event lacks does not take it (`error && false` is false).
#[test]
fn cel_routing_rules_pick_the_route() {
    let broker = Broker::start(KIND);
    let topic = unique_topic("cel-routes");
    let app = TestApp::start(json!([{
        "pubsubname": PUBSUB,
        "topic": topic,
        "routes": {
            "rules": [
                { "match": "event.data.amount > 100 && has(event.data.priority)", "path": "/big" },
                { "match": "event.type.startsWith(\"order.\")", "path": "/orders" },
                { "match": "has(event.data.tags) && 'vip' in event.data.tags", "path": "/vip" },
            ],
            "default": "/other",
        },
    }]));
    let sidecar = broker.subscriber("cel-router", &app).start();
    let pubsub = sidecar.pubsub(PUBSUB);

    // (id, CloudEvent type, data, expected route)
    let events = [
        (
            "big-int",
            "order.created",
            json!({"amount": 500, "priority": "high"}),
            "/big",
        ),
        (
            "big-float",
            "payment.done",
            json!({"amount": 100.5, "priority": "low"}),
            "/big",
        ),
        (
            "big-no-priority",
            "order.created",
            json!({"amount": 500}),
            "/orders",
        ),
        (
            "small-order",
            "order.created",
            json!({"amount": 5, "priority": "high"}),
            "/orders",
        ),
        (
            "no-amount",
            "order.cancelled",
            json!({"reason": "late"}),
            "/orders",
        ),
        (
            "vip",
            "payment.done",
            json!({"amount": 100, "tags": ["new", "vip"]}),
            "/vip",
        ),
        (
            "not-vip",
            "payment.done",
            json!({"amount": 100, "tags": ["new"]}),
            "/other",
        ),
        (
            "boundary",
            "payment.done",
            json!({"amount": 100, "priority": "high"}),
            "/other",
        ),
        ("no-order", "orders.created", json!({"amount": 1}), "/other"),
    ];
    for (id, event_type, data, _) in &events {
        pubsub
            .publish_raw(
                &topic,
                &format!("?metadata.cloudevent.id={id}&metadata.cloudevent.type={event_type}"),
                Some("application/json"),
                data.to_string().as_bytes(),
            )
            .expect_no_content();
    }

    app.wait_for(events.len(), ARRIVAL);
    app.assert_quiet(Duration::from_millis(400));
    let deliveries = app.deliveries();
    assert_eq!(deliveries.len(), events.len(), "each event once");
    for (id, _, data, route) in &events {
        let got: Vec<&str> = deliveries
            .iter()
            .filter(|d| d.id() == *id)
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(got, [*route], "event {id} with data {data}");
    }
}

/// While every delivery slot waits on the app and more messages wait their turn, the sidecar
/// waits too: it does not poll the broker in a loop (that would burn a core until the app
/// answers).
#[test]
fn waiting_for_a_slow_app_costs_no_cpu() {
    let broker = Broker::start(KIND).with_meta("concurrency", "2");
    let topic = unique_topic("slow");
    let app = TestApp::start(json!([subscription(&topic, "/slow")]));
    app.set_policy("/slow", Policy::new().delay(Duration::from_millis(2500)));
    let sidecar = broker.subscriber("patient", &app).start();
    let pubsub = sidecar.pubsub(PUBSUB);
    for n in 0..3 {
        pubsub.publish(&topic, &json!({ "n": n }));
    }
    app.wait_for_route("/slow", 2, ARRIVAL);
    // Two deliveries are held by the app; the third is read ahead and waits for a slot.
    thread::sleep(Duration::from_millis(200));
    let before = sidecar.cpu_time();
    thread::sleep(Duration::from_secs(1));
    let used = sidecar.cpu_time() - before;
    // Idle it uses 0-10 ms (the epoch ticker); polling the broker every millisecond, as it
    // once did here, used 50 ms.
    assert!(
        used < Duration::from_millis(30),
        "the sidecar used {used:?} of CPU in 1 s while waiting for the app"
    );
    assert_eq!(
        app.deliveries_to("/slow").len(),
        2,
        "two slots: two at a time"
    );
    app.wait_for_accepted("/slow", 3, Duration::from_secs(15));
}

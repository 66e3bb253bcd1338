//! Several sidecars on one broker, and what survives a broker restart or a subscriber's crash
//! (`blockhost_tests::pubsub_conformance`, durability cases), for the plugins whose broker
//! lives outside the sidecar.

use blockhost_tests::pubsub::PubSubKind;
use blockhost_tests::pubsub_durability_suite;

pubsub_durability_suite!(redis, PubSubKind::Redis);
pubsub_durability_suite!(rabbitmq, PubSubKind::RabbitMq);

/// Redis only: a blocked read whose connection breaks may have handed an entry to the
/// subscription's consumer with the reply lost on the way. The subscription takes such entries
/// back from its pending list at once, instead of leaving them to the redelivery check
/// `processingTimeout` (60 s by default) later, as daprd does.
#[test]
fn redis_entries_of_a_lost_read_reply_are_delivered_at_once() {
    use std::time::Duration;

    use blockhost_tests::app::TestApp;
    use blockhost_tests::pubsub::{
        accepted_numbers, subscription, unique_topic, Broker, ARRIVAL, PUBSUB,
    };
    use serde_json::json;

    let broker = Broker::start(PubSubKind::Redis);
    let topic = unique_topic("lost-reply");
    let app = TestApp::start(json!([subscription(&topic, "/lost")]));
    let sidecar = broker.subscriber("reader", &app).start();
    sidecar.pubsub(PUBSUB).publish(&topic, &json!({ "n": 0 }));
    app.wait_for_accepted("/lost", 1, ARRIVAL);

    // Hand entry 1 to the sidecar's consumer ("reader", the app id) in the transaction that
    // adds it, so the sidecar's own blocked read never sees it: as if Redis had answered a
    // read of the sidecar and the reply had been lost.
    let redis = broker.redis().expect("a Redis broker");
    let mut connection = redis.connection();
    let event = json!({
        "id": "lost-1", "specversion": "1.0", "source": "test", "type": "com.dapr.event.sent",
        "datacontenttype": "application/json", "topic": topic, "pubsubname": PUBSUB,
        "data": { "n": 1 }
    });
    let (handed_out,): (::redis::Value,) = ::redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(&topic)
        .arg("*")
        .arg("data")
        .arg(event.to_string())
        .arg("metadata")
        .arg("{}")
        .ignore()
        .cmd("XREADGROUP")
        .arg("GROUP")
        .arg("reader")
        .arg("reader")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&topic)
        .arg(">")
        .query(&mut connection)
        .expect("XADD + XREADGROUP");
    assert_ne!(handed_out, ::redis::Value::Nil, "the entry was handed out");
    app.assert_quiet(Duration::from_millis(500));

    // Break the sidecar's connections (its subscription is blocked in a read).
    let _: ::redis::Value = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut connection)
        .expect("CLIENT KILL");
    let deliveries = app.wait_for_accepted("/lost", 2, Duration::from_secs(10));
    assert_eq!(accepted_numbers(&deliveries), [0, 1]);
}

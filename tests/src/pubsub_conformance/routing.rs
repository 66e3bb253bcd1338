//! Which route gets a message: per topic, by routing rules, by declarative subscriptions.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{start, start_with, QUIET};
use crate::app::Delivery;
use crate::metadata;
use crate::pubsub::{subscription, unique_topic, Broker, PubSubKind, ARRIVAL, PUBSUB};

/// `route -> sorted values of data["n"]` over all deliveries.
fn numbers_by_route(deliveries: &[Delivery]) -> BTreeMap<String, Vec<u64>> {
    let mut routes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for d in deliveries {
        let n = d.data()["n"]
            .as_u64()
            .unwrap_or_else(|| panic!("delivery without data.n: {}", d.event));
        routes.entry(d.path.clone()).or_default().push(n);
    }
    for numbers in routes.values_mut() {
        numbers.sort_unstable();
    }
    routes
}

/// Two subscribed topics each get their own messages, once, on their own route; a topic no
/// one subscribes to reaches no one.
pub fn two_topics(kind: PubSubKind) {
    let a = unique_topic("topic-a");
    let b = unique_topic("topic-b");
    let unheard = unique_topic("topic-c");
    let f = start(
        kind,
        "two-topics",
        json!([subscription(&a, "/a"), subscription(&b, "/b")]),
    );
    for n in 0..10 {
        f.api.publish(&a, &json!({ "n": n }));
        if n < 5 {
            f.api.publish(&b, &json!({ "n": 100 + n }));
            f.api.publish(&unheard, &json!({ "n": 200 + n }));
        }
    }

    f.app.wait_for_accepted("/a", 10, ARRIVAL);
    f.app.wait_for_accepted("/b", 5, ARRIVAL);
    f.app.assert_quiet(QUIET);
    let deliveries = f.app.deliveries();
    let expected = BTreeMap::from([
        ("/a".to_owned(), (0..10).collect::<Vec<u64>>()),
        ("/b".to_owned(), (100..105).collect()),
    ]);
    assert_eq!(numbers_by_route(&deliveries), expected);
    for d in &deliveries {
        let topic = if d.path == "/a" { &a } else { &b };
        assert_eq!(d.event["topic"], topic.as_str(), "{}", d.event);
    }
}

/// Routing rules (`routes.rules`, first match wins, then `routes.default`), over the event's
/// type and data; a topic whose rules have no default drops what matches none.
pub fn routing_rules(kind: PubSubKind) {
    let topic = unique_topic("products");
    let strict = unique_topic("strict");
    let f = start(
        kind,
        "router",
        json!([
            { "pubsubname": PUBSUB, "topic": topic, "routes": {
                "rules": [
                    { "match": "event.type == 'widget'", "path": "/widgets" },
                    { "match": "event.type == \"gadget\" && event.data.size == 'big'",
                      "path": "/big-gadgets" },
                    { "match": "event.type == 'gizmo' || event.data.kind == 'gizmo'",
                      "path": "gizmos" },
                ],
                "default": "/products" } },
            { "pubsubname": PUBSUB, "topic": strict, "routes": {
                "rules": [ { "match": "event.data.n == 50", "path": "/fifty" } ] } },
        ]),
    );
    let publish = |topic: &str, event_type: Option<&str>, data: Value| {
        let query = event_type
            .map(|t| format!("?metadata.cloudevent.type={t}"))
            .unwrap_or_default();
        f.api
            .publish_raw(
                topic,
                &query,
                Some("application/json"),
                data.to_string().as_bytes(),
            )
            .expect_no_content();
    };
    publish(&topic, Some("widget"), json!({"n": 1}));
    publish(&topic, Some("gadget"), json!({"n": 2, "size": "big"}));
    publish(&topic, Some("gadget"), json!({"n": 3, "size": "small"}));
    publish(&topic, Some("gizmo"), json!({"n": 4}));
    publish(&topic, None, json!({"n": 5, "kind": "gizmo"}));
    publish(&topic, None, json!({"n": 6}));
    publish(&topic, Some("widget"), json!({"n": 7, "size": "big"}));
    publish(&strict, None, json!({"n": 49}));
    publish(&strict, None, json!({"n": 50}));

    f.app.wait_for(8, ARRIVAL);
    f.app.assert_quiet(QUIET);
    let expected = BTreeMap::from([
        ("/widgets".to_owned(), vec![1, 7]),
        ("/big-gadgets".to_owned(), vec![2]),
        ("/gizmos".to_owned(), vec![4, 5]),
        ("/products".to_owned(), vec![3, 6]),
        ("/fifty".to_owned(), vec![50]),
    ]);
    assert_eq!(numbers_by_route(&f.app.deliveries()), expected);
}

/// `Subscription` resources, v2alpha1 (rules, default, dead-letter topic) and v1alpha1
/// (`route`), next to the app's own; one scoped to another app id is not used. The app is
/// asked for its subscriptions once, with `dapr-app-id`; `/v1.0/metadata` lists them all.
pub fn declarative_subscriptions(kind: PubSubKind) {
    let v2 = unique_topic("declared-v2");
    let v1 = unique_topic("declared-v1");
    let scoped = unique_topic("declared-elsewhere");
    let own = unique_topic("programmatic");
    let app_id = "declarer";
    let resources = format!(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: v2-sub\nspec:\n  \
         pubsubname: {PUBSUB}\n  topic: {v2}\n  routes:\n    rules:\n    - match: event.type == \"urgent\"\n      \
         path: /urgent\n    default: /normal\n  deadLetterTopic: {v2}-dead\nscopes: [{app_id}]\n---\n\
         apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: v1-sub\nspec:\n  \
         pubsubname: {PUBSUB}\n  topic: {v1}\n  route: /v1\n---\n\
         apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: elsewhere\nspec:\n  \
         pubsubname: {PUBSUB}\n  topic: {scoped}\n  routes:\n    default: /elsewhere\nscopes: [another-app]\n"
    );
    let f = start_with(
        Broker::start(kind),
        app_id,
        json!([subscription(&own, "/own")]),
        |b| b.resource_file("subscriptions.yaml", &resources),
    );
    let requests = f.app.subscribe_requests();
    assert_eq!(requests.len(), 1, "GET /dapr/subscribe once");
    assert_eq!(requests[0].header("dapr-app-id"), Some(app_id));

    let urgent = "?metadata.cloudevent.type=urgent";
    f.api
        .publish_raw(&v2, urgent, Some("application/json"), br#"{"n":1}"#)
        .expect_no_content();
    f.api.publish(&v2, &json!({"n": 2}));
    f.api.publish(&v1, &json!({"n": 3}));
    f.api.publish(&scoped, &json!({"n": 4}));
    f.api.publish(&own, &json!({"n": 5}));

    f.app.wait_for(4, ARRIVAL);
    f.app.assert_quiet(QUIET);
    let expected = BTreeMap::from([
        ("/urgent".to_owned(), vec![1]),
        ("/normal".to_owned(), vec![2]),
        ("/v1".to_owned(), vec![3]),
        ("/own".to_owned(), vec![5]),
    ]);
    assert_eq!(numbers_by_route(&f.app.deliveries()), expected);

    let listed = metadata::fetch(&f.sidecar.client());
    let subscriptions = listed["subscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("no subscriptions in the metadata: {listed}"));
    let find = |topic: &str| {
        subscriptions
            .iter()
            .find(|s| s["topic"] == topic)
            .unwrap_or_else(|| panic!("{topic} not listed: {listed}"))
    };
    assert_eq!(subscriptions.len(), 3, "{listed}");
    let s = find(&v2);
    assert_eq!(s["type"], "DECLARATIVE");
    assert_eq!(s["pubsubname"], PUBSUB);
    assert_eq!(s["deadLetterTopic"], format!("{v2}-dead"));
    assert_eq!(
        s["rules"],
        json!([
            {"match": "event.type == \"urgent\"", "path": "/urgent"},
            {"match": "", "path": "/normal"},
        ])
    );
    assert_eq!(find(&v1)["type"], "DECLARATIVE");
    assert_eq!(find(&own)["type"], "PROGRAMMATIC");
}

//! Delivery to the app and what its answers mean: success, failures retried with backoff,
//! `RETRY`, `DROP`, 404, the dead-letter topic, parallel deliveries.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use super::{start, start_with, QUIET};
use crate::app::{Answer, Delivery, Policy};
use crate::pubsub::{accepted_numbers, subscription, unique_topic, Broker, PubSubKind, ARRIVAL};

/// The sidecar's first retry comes this long (at least) after a failed delivery.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// One delivery plus the sidecar's five retries.
const ATTEMPTS: usize = 6;

/// Publish 50 and receive 50: every message once, each the first attempt, and nothing after.
pub fn publish_and_receive_all(kind: PubSubKind) {
    const N: usize = 50;
    let topic = unique_topic("all");
    let f = start(kind, "receiver", json!([subscription(&topic, "/orders")]));
    f.api.publish_numbered(&topic, N);

    f.app.wait_for_accepted("/orders", N, ARRIVAL);
    f.app.assert_quiet(QUIET);
    let deliveries = f.app.deliveries_to("/orders");
    assert_eq!(
        accepted_numbers(&deliveries),
        (0..N as u64).collect::<Vec<_>>()
    );
    assert_eq!(
        deliveries.len(),
        N,
        "every message exactly once (the app accepted each at once)"
    );
    assert!(deliveries.iter().all(|d| d.attempt == 1));
    assert_eq!(f.app.distinct_ids("/orders").len(), N);
}

/// The app fails the first two deliveries of every message and every fifth delivery besides;
/// every message still arrives, redelivered with the same bytes after a backoff.
pub fn at_least_once_despite_failures(kind: PubSubKind) {
    const N: usize = 30;
    let topic = unique_topic("flaky");
    let f = start(kind, "flaky", json!([subscription(&topic, "/orders")]));
    f.app
        .set_policy("/orders", Policy::new().fail_first(2).fail_every(5));
    f.api.publish_numbered(&topic, N);

    let deliveries = f.app.wait_for_accepted("/orders", N, ARRIVAL);
    assert_eq!(
        accepted_numbers(&deliveries),
        (0..N as u64).collect::<Vec<_>>()
    );
    let failed = deliveries.iter().filter(|d| !d.accepted()).count();
    assert!(
        failed >= 2 * N,
        "{failed} failed deliveries, at least {} expected",
        2 * N
    );
    for id in f.app.distinct_ids("/orders") {
        let of_id: Vec<&Delivery> = deliveries.iter().filter(|d| d.id() == id).collect();
        assert!(of_id.len() >= 3, "message {id}: {} deliveries", of_id.len());
        for pair in of_id.windows(2) {
            assert_eq!(
                pair[0].body, pair[1].body,
                "a redelivery must carry the same bytes"
            );
            let gap = pair[1].received.duration_since(pair[0].received);
            assert!(
                gap >= FIRST_BACKOFF - Duration::from_millis(5),
                "message {id} redelivered after {gap:?}, before the backoff"
            );
        }
    }
    // Every message ends accepted once: nothing is delivered again after its success.
    f.app.assert_quiet(QUIET);
    let accepted = f
        .app
        .deliveries_to("/orders")
        .into_iter()
        .filter(Delivery::accepted)
        .count();
    assert_eq!(accepted, N, "a message delivered again after its success");
}

/// `{"status":"RETRY"}` is delivered again; `{"status":"DROP"}` and 404 are not (and without a
/// dead-letter topic they are gone); `{"status":"SUCCESS"}` is a success.
pub fn retry_redelivers_drop_does_not(kind: PubSubKind) {
    let topic = unique_topic("answers");
    let f = start(kind, "answers", json!([subscription(&topic, "/orders")]));
    let id = |what: &str| format!("{what}-{topic}");
    f.app.set_policy(
        "/orders",
        Policy::new()
            .answer_first(&id("retry"), Answer::Retry, 2)
            .answer(&id("drop"), Answer::Drop)
            .answer(&id("gone"), Answer::Status(404))
            .answer(&id("success"), Answer::Success),
    );
    for what in ["drop", "gone", "success", "retry"] {
        f.api
            .publish_with_id(&topic, &id(what), &json!({ "what": what }));
    }

    let deliveries = f
        .app
        .wait_until("the RETRY message accepted", ARRIVAL, |d| {
            d.iter().any(|d| d.id() == id("retry") && d.accepted())
        });
    f.app.assert_quiet(QUIET);
    let count = |what: &str| deliveries.iter().filter(|d| d.id() == id(what)).count();
    assert_eq!(count("retry"), 3, "RETRY twice, then accepted");
    assert_eq!(count("drop"), 1, "DROP must not be redelivered");
    assert_eq!(count("gone"), 1, "404 must not be redelivered");
    assert_eq!(count("success"), 1, "SUCCESS is final");
    let retries: Vec<&Delivery> = deliveries
        .iter()
        .filter(|d| d.id() == id("retry"))
        .collect();
    assert_eq!(retries[0].body, retries[2].body);
    let gap = retries[1].received.duration_since(retries[0].received);
    assert!(
        gap >= FIRST_BACKOFF - Duration::from_millis(5),
        "RETRY redelivered after {gap:?}"
    );
}

/// A message the app never accepts (500 every time), one it drops and one it answers 404 go to
/// the dead-letter topic, with the original bytes, once the sidecar gives up: after the
/// delivery and five retries, or at once. An accepted message does not.
pub fn dead_letter_topic(kind: PubSubKind) {
    let topic = unique_topic("orders");
    let dead = format!("{topic}-dead");
    let f = start(
        kind,
        "deadletters",
        json!([
            { "pubsubname": "pubsub", "topic": topic, "route": "/orders", "deadLetterTopic": dead },
            subscription(&dead, "/dead"),
        ]),
    );
    let id = |what: &str| format!("{what}-{topic}");
    f.app.set_policy(
        "/orders",
        Policy::new()
            .answer(&id("exhausted"), Answer::Status(500))
            .answer(&id("dropped"), Answer::Drop)
            .answer(&id("gone"), Answer::Status(404)),
    );
    for what in ["exhausted", "dropped", "gone", "fine"] {
        f.api
            .publish_with_id(&topic, &id(what), &json!({ "what": what }));
    }

    let dead_letters = f.app.wait_for_accepted("/dead", 3, ARRIVAL);
    f.app.assert_quiet(QUIET);
    let orders = f.app.deliveries_to("/orders");
    let count = |what: &str| orders.iter().filter(|d| d.id() == id(what)).count();
    assert_eq!(
        count("exhausted"),
        ATTEMPTS,
        "one delivery and five retries"
    );
    assert_eq!(count("dropped"), 1);
    assert_eq!(count("gone"), 1);
    assert_eq!(count("fine"), 1);
    let dead_ids: BTreeSet<String> = dead_letters.iter().map(|d| d.id().to_owned()).collect();
    assert_eq!(
        dead_ids,
        BTreeSet::from([id("exhausted"), id("dropped"), id("gone")]),
        "the accepted message must not be dead-lettered"
    );
    assert_eq!(dead_letters.len(), 3, "each dead letter once");
    for letter in &dead_letters {
        let original = orders.iter().find(|d| d.id() == letter.id()).unwrap();
        assert_eq!(
            letter.body, original.body,
            "the dead letter must carry the original bytes"
        );
        assert_eq!(letter.event["topic"], topic.as_str());
        assert_eq!(letter.header("pubsubname"), Some("pubsub"));
    }
}

/// Deliveries run in parallel up to the component's `concurrency` (10 by default), never more.
pub fn concurrency_bounds_parallel_deliveries(kind: PubSubKind) {
    for (limit, count) in [(None, 16), (Some(3), 8)] {
        let topic = unique_topic("parallel");
        let mut broker = Broker::start(kind);
        if let Some(limit) = limit {
            broker = broker.with_meta("concurrency", &limit.to_string());
        }
        let f = start_with(
            broker,
            "parallel",
            json!([subscription(&topic, "/work")]),
            |b| b,
        );
        f.app
            .set_policy("/work", Policy::new().delay(Duration::from_millis(300)));
        // One bulk publish: the whole backlog is there at once, however slow the machine.
        let entries: Vec<_> = (0..count)
            .map(|n| json!({"entryId": n.to_string(), "event": {"n": n}, "contentType": "application/json"}))
            .collect();
        f.api
            .bulk_publish(&topic, &json!(entries))
            .expect_no_content();
        let deliveries = f.app.wait_for_accepted("/work", count, ARRIVAL);
        assert_eq!(accepted_numbers(&deliveries).len(), count);
        let limit = limit.unwrap_or(10);
        assert_eq!(
            f.app.max_in_flight(),
            limit,
            "at most (and, with a backlog, exactly) {limit} deliveries at once"
        );
    }
}

/// `bulkSubscribe`: the app gets many messages per request (`application/json`, type
/// `com.dapr.event.sent.bulk`) and answers one status per entry: an entry answered RETRY comes
/// again, one answered DROP does not, the others arrive once.
pub fn bulk_subscribe(kind: PubSubKind) {
    let topic = unique_topic("bulk");
    let f = start(
        kind,
        "bulk-reader",
        json!([{
            "pubsubname": crate::pubsub::PUBSUB,
            "topic": topic,
            "route": "/bulk",
            "bulkSubscribe": {"enabled": true, "maxMessagesCount": 5, "maxAwaitDurationMs": 300},
        }]),
    );
    let id = |what: &str| format!("{what}-{topic}");
    f.app.set_policy(
        "/bulk",
        Policy::new()
            .answer_first(&id("retry"), Answer::Retry, 1)
            .answer(&id("drop"), Answer::Drop),
    );
    let mut ids: Vec<String> = (0..10).map(|n| id(&format!("m{n}"))).collect();
    ids.extend([id("retry"), id("drop")]);
    for (n, id) in ids.iter().enumerate() {
        f.api.publish_with_id(&topic, id, &json!({ "n": n }));
    }

    f.app.wait_for_accepted("/bulk", 11, ARRIVAL);
    f.app.assert_quiet(QUIET);
    let deliveries = f.app.deliveries_to("/bulk");
    let times = |id: &str| deliveries.iter().filter(|d| d.id() == id).count();
    assert_eq!(times(&id("retry")), 2, "RETRY delivers it again");
    assert_eq!(times(&id("drop")), 1, "DROP does not");
    for id in &ids[..10] {
        assert_eq!(times(id), 1, "{id} once");
    }
    assert_eq!(f.app.accepted_ids("/bulk").len(), 11);
    let sizes = f.app.bulk_sizes();
    assert_eq!(sizes.iter().sum::<usize>(), 13, "{sizes:?}");
    assert!(sizes.iter().all(|&n| (1..=5).contains(&n)), "{sizes:?}");
    assert!(
        sizes.iter().any(|&n| n > 1),
        "messages share requests: {sizes:?}"
    );
    let first = &deliveries[0];
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("pubsubname"), Some(crate::pubsub::PUBSUB));
    assert_eq!(first.event["topic"], json!(topic));
}

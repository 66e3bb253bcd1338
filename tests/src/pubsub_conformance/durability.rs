//! What a broker outside the sidecar adds: several sidecars on one topic (competing consumers
//! within an app id, fan-out across app ids), and nothing lost when the broker restarts or a
//! subscriber's sidecar crashes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::QUIET;
use crate::app::{Policy, TestApp};
use crate::pubsub::{
    accepted_numbers, subscription, unique_topic, Broker, PubSubKind, ARRIVAL, PUBSUB,
};

/// How long a broker restart, and the reconnects after it, may take.
const RECOVERY: Duration = Duration::from_secs(45);

#[track_caller]
fn assert_shared(kind: PubSubKind) {
    assert!(
        kind.is_shared(),
        "{kind:?} lives inside one sidecar: no durability suite"
    );
}

/// Waits until the apps together have accepted `count` distinct messages on `route`.
#[track_caller]
fn wait_for_all(apps: &[&TestApp], route: &str, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let accepted: BTreeSet<String> = apps
            .iter()
            .flat_map(|app| app.accepted_ids(route))
            .collect();
        if accepted.len() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} messages accepted on {route} after {timeout:?} (per app: {:?})",
            accepted.len(),
            apps.iter()
                .map(|app| app.accepted_ids(route).len())
                .collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Two sidecars of one app id compete: each message reaches exactly one of them, once.
pub fn competing_consumers(kind: PubSubKind) {
    const N: usize = 40;
    assert_shared(kind);
    let broker = Broker::start(kind);
    let topic = unique_topic("jobs");
    let apps = [
        TestApp::start(json!([subscription(&topic, "/jobs")])),
        TestApp::start(json!([subscription(&topic, "/jobs")])),
    ];
    let first = broker.subscriber("workers", &apps[0]).start();
    let _second = broker.subscriber("workers", &apps[1]).start();
    first.pubsub(PUBSUB).publish_numbered(&topic, N);

    wait_for_all(&[&apps[0], &apps[1]], "/jobs", N, ARRIVAL);
    apps[0].assert_quiet(QUIET);
    let [one, two] = [&apps[0], &apps[1]].map(|app| app.deliveries_to("/jobs"));
    let [ids_one, ids_two] = [&apps[0], &apps[1]].map(|app| app.distinct_ids("/jobs"));
    eprintln!(
        "split between the two sidecars: {} / {}",
        one.len(),
        two.len()
    );
    let both: Vec<&String> = ids_one.intersection(&ids_two).collect();
    assert!(
        both.is_empty(),
        "delivered to both sidecars (the app failed none, so none was a retry): {both:?}"
    );
    assert_eq!(one.len() + two.len(), N, "each message exactly once");
    assert_eq!(
        accepted_numbers(&[one, two].concat()),
        (0..N as u64).collect::<Vec<_>>()
    );
}

/// Sidecars of different app ids each get every message, once.
pub fn fan_out_to_app_ids(kind: PubSubKind) {
    const N: usize = 20;
    assert_shared(kind);
    let broker = Broker::start(kind);
    let topic = unique_topic("announcements");
    let apps = [
        TestApp::start(json!([subscription(&topic, "/news")])),
        TestApp::start(json!([subscription(&topic, "/news")])),
    ];
    let billing = broker.subscriber("billing", &apps[0]).start();
    let _shipping = broker.subscriber("shipping", &apps[1]).start();
    billing.pubsub(PUBSUB).publish_numbered(&topic, N);

    for app in &apps {
        app.wait_for_accepted("/news", N, ARRIVAL);
    }
    apps[0].assert_quiet(QUIET);
    for (app, name) in apps.iter().zip(["billing", "shipping"]) {
        let deliveries = app.deliveries_to("/news");
        assert_eq!(deliveries.len(), N, "{name}: every message once");
        assert_eq!(
            accepted_numbers(&deliveries),
            (0..N as u64).collect::<Vec<_>>(),
            "{name}"
        );
    }
}

/// The broker goes down and comes back while messages are published and delivered: the
/// publisher goes on throughout (retrying each message until its publish is acknowledged) and
/// stops ten messages after the broker is back. Every acknowledged message reaches the app.
pub fn broker_restart_loses_nothing(kind: PubSubKind) {
    const BEFORE: usize = 20;
    const AFTER: usize = 10;
    assert_shared(kind);
    let mut broker = Broker::durable(kind).with_meta("concurrency", "2");
    let topic = unique_topic("durable");
    let app = TestApp::start(json!([subscription(&topic, "/durable")]));
    app.set_policy("/durable", Policy::new().delay(Duration::from_millis(100)));
    let sidecar = broker.subscriber("survivor", &app).start();
    let api = sidecar.pubsub(PUBSUB);

    let published = AtomicUsize::new(0);
    let stop_at = AtomicUsize::new(usize::MAX);
    let refused = AtomicUsize::new(0);
    thread::scope(|scope| {
        let publisher = scope.spawn(|| {
            let deadline = Instant::now() + RECOVERY;
            let mut n = 0;
            while n < stop_at.load(Ordering::SeqCst) {
                let body = json!({ "n": n }).to_string();
                loop {
                    let response = api.client().try_request(
                        "POST",
                        &format!("/v1.0/publish/{PUBSUB}/{topic}"),
                        &[("content-type", "application/json")],
                        Some(body.as_bytes()),
                    );
                    if response.as_ref().is_ok_and(|r| r.status == 204) {
                        break;
                    }
                    refused.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        Instant::now() < deadline,
                        "message {n} still refused after {RECOVERY:?}: {response:?}"
                    );
                    thread::sleep(Duration::from_millis(100));
                }
                n += 1;
                published.store(n, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(20));
            }
        });
        while published.load(Ordering::SeqCst) < BEFORE {
            assert!(!publisher.is_finished(), "the publisher stopped early");
            thread::sleep(Duration::from_millis(5));
        }
        let accepted_before = app.accepted_ids("/durable").len();
        let restart_started = Instant::now();
        broker.restart();
        let during = published.load(Ordering::SeqCst);
        stop_at.store(during + AFTER, Ordering::SeqCst);
        eprintln!(
            "restart took {:?}; when it began {accepted_before} messages were accepted, \
             when it ended {during} were published",
            restart_started.elapsed(),
        );
        publisher.join().expect("the publisher panicked");
    });

    // A publish refused when the connection broke may still have reached the broker: then
    // the message comes twice, with two envelope ids. Count messages by their number.
    let n = published.load(Ordering::SeqCst);
    let all: Vec<u64> = (0..n as u64).collect();
    let deliveries = app.wait_until(&format!("messages 0..{n} accepted"), RECOVERY, |d| {
        accepted_numbers(d) == all
    });
    assert_eq!(accepted_numbers(&deliveries), all);
    eprintln!(
        "{} deliveries for {n} messages; {} publish attempts refused",
        deliveries.len(),
        refused.load(Ordering::Relaxed)
    );
}

/// The subscriber's sidecar is killed (SIGKILL) while the app holds some of its deliveries;
/// started again, it delivers every message the app had not accepted, and again every
/// message whose answer came only after the crash (nobody acknowledged it to the broker).
pub fn subscriber_killed_and_restarted(kind: PubSubKind) {
    const N: usize = 60;
    const DELAY: Duration = Duration::from_millis(50);
    assert_shared(kind);
    let mut broker = Broker::shared_durable(kind);
    if kind == PubSubKind::Redis {
        // Messages a dead consumer held come back after a second, not daprd's minute.
        broker = broker
            .with_meta("processingTimeout", "1s")
            .with_meta("redeliverInterval", "500ms");
    }
    let topic = unique_topic("crash");
    let app = TestApp::start(json!([subscription(&topic, "/work")]));
    app.set_policy("/work", Policy::new().delay(DELAY));
    let mut first = broker.subscriber("crashy", &app).start();
    let producer = broker.sidecar("producer").start();
    producer.pubsub(PUBSUB).publish_numbered(&topic, N);

    app.wait_for_accepted("/work", 10, ARRIVAL);
    first.kill_now();
    let crashed = Instant::now();
    let before = app.deliveries_to("/work");
    // Answered after the sidecar was gone: certainly not acknowledged.
    let unanswered: BTreeSet<String> = before
        .iter()
        .filter(|d| d.received + DELAY > crashed)
        .map(|d| d.id().to_owned())
        .collect();
    let accepted_before = app.accepted_ids("/work").len();
    assert!(
        !unanswered.is_empty() && accepted_before < N,
        "the crash came when no delivery was in flight: nothing to test"
    );

    let _second = broker.subscriber("crashy", &app).start();
    let deliveries = app.wait_until(
        "every message accepted, and the unanswered ones delivered again",
        ARRIVAL,
        |all| {
            let after = &all[before.len()..];
            distinct_accepted(all) >= N
                && unanswered
                    .iter()
                    .all(|id| after.iter().any(|d| d.id() == id && d.accepted()))
        },
    );
    assert_eq!(
        accepted_numbers(&deliveries),
        (0..N as u64).collect::<Vec<_>>()
    );
    eprintln!(
        "{} delivered before the crash, {} of them unanswered; {} deliveries in all for {N} \
         messages",
        before.len(),
        unanswered.len(),
        deliveries.len()
    );
}

fn distinct_accepted(deliveries: &[crate::app::Delivery]) -> usize {
    deliveries
        .iter()
        .filter(|d| d.accepted())
        .map(crate::app::Delivery::id)
        .collect::<BTreeSet<_>>()
        .len()
}

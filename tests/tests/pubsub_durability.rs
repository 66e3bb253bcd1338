//! Several sidecars on one broker, and what survives a broker restart or a subscriber's crash
//! (`blockhost_tests::pubsub_conformance`, durability cases), for the plugins whose broker
//! lives outside the sidecar.

use blockhost_tests::pubsub::PubSubKind;
use blockhost_tests::pubsub_durability_suite;

pubsub_durability_suite!(redis, PubSubKind::Redis);
pubsub_durability_suite!(rabbitmq, PubSubKind::RabbitMq);

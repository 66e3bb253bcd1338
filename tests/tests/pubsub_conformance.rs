//! The pub/sub conformance suite (`blockhost_tests::pubsub_conformance`), once per pub/sub
//! plugin. The RabbitMQ cases share one broker, started by the first of them.

use blockhost_tests::pubsub::PubSubKind;
use blockhost_tests::pubsub_conformance_suite;

pubsub_conformance_suite!(in_memory, PubSubKind::InMemory);
pubsub_conformance_suite!(redis, PubSubKind::Redis);
pubsub_conformance_suite!(rabbitmq, PubSubKind::RabbitMq);

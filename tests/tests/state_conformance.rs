//! The state conformance suite (`blockhost_tests::conformance`), once per state plugin.

use blockhost_tests::{state_conformance_suite, StoreKind};

state_conformance_suite!(in_memory, StoreKind::InMemory);
state_conformance_suite!(redb, StoreKind::Redb);
state_conformance_suite!(redis, StoreKind::Redis);
// A fixture that declares only ETAG: the suite gates its TRANSACTIONAL and TTL cases on what a
// store declares (and asserts Dapr's refusal of transactions instead).
state_conformance_suite!(etag_only, StoreKind::EtagOnly);

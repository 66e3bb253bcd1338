//! The state store conformance suite, in the spirit of components-contrib: written once, run
//! against every state plugin. Each case starts its own sidecar with one store, `statestore`,
//! of the given kind. Instantiate it per plugin with [`state_conformance_suite!`].
//!
//! Cases that need a feature (ETAG, TRANSACTIONAL, TTL) are gated on what the store declares,
//! as the sidecar reports it (`/v1.0/metadata` → `components[].capabilities`). Where a feature
//! is absent and Dapr documents what then happens (a transaction on a store without
//! TRANSACTIONAL), the case asserts that instead; otherwise it prints that it does not apply.
//! The generic cases (save, get, bulk get) read ETags, so the suite expects ETAG of every store.

mod bulk;
mod crud;
mod etag;
mod transaction;
mod ttl;

pub use bulk::{bulk_get, bulk_get_edge_cases};
pub use crud::{json_value_kinds, keys_with_escapes, missing_keys, save_get_delete};
pub use etag::{etag_delete, etag_save, first_write};
pub use transaction::{transaction_atomic, transaction_order, transaction_unsupported_operation};
pub use ttl::ttl;

use crate::metadata;
use crate::sidecar::Sidecar;
use crate::state::{StateApi, StoreKind};

/// The store name every case uses.
pub const STORE: &str = "statestore";

/// A running sidecar with one store of `kind`, its state API, and the capabilities the
/// sidecar reports for the store.
pub struct Fixture {
    pub sidecar: Sidecar,
    pub state: StateApi,
    pub kind: StoreKind,
    pub capabilities: Vec<String>,
}

impl Fixture {
    /// Whether the store reports `feature`.
    pub fn has(&self, feature: &str) -> bool {
        self.capabilities.iter().any(|c| c == feature)
    }

    /// Whether `case` applies: true when the store reports every one of `features`; otherwise
    /// prints (to the test's output) which are missing and that the case does not apply.
    pub fn applies(&self, case: &str, features: &[&str]) -> bool {
        let missing: Vec<&str> = features.iter().copied().filter(|f| !self.has(f)).collect();
        if missing.is_empty() {
            return true;
        }
        eprintln!(
            "NOT APPLICABLE: conformance case `{case}` does not apply to {} (`{STORE}`): it \
             declares no {} (capabilities: {:?})",
            self.kind.component_type(),
            missing.join(", "),
            self.capabilities
        );
        false
    }
}

pub fn start(kind: StoreKind) -> Fixture {
    let sidecar = Sidecar::with_store("conformance", kind);
    let state = sidecar.state(STORE);
    let capabilities = metadata::capabilities(&metadata::fetch(&sidecar.client()), STORE);
    Fixture {
        sidecar,
        state,
        kind,
        capabilities,
    }
}

/// The store is listed in `/v1.0/metadata` with its type and exactly the capabilities its
/// plugin declares (plus ACTOR, derived from ETAG + TRANSACTIONAL).
pub fn reports_capabilities(kind: StoreKind) {
    let f = start(kind);
    let metadata = metadata::fetch(&f.sidecar.client());
    metadata::assert_state_component(&metadata, STORE, kind);
}

/// `state_conformance_suite!(module_name, StoreKind::X)` defines `mod module_name` with one
/// `#[test]` per conformance case, run against that kind of store.
#[macro_export]
macro_rules! state_conformance_suite {
    ($module:ident, $kind:expr) => {
        $crate::state_conformance_suite!(@cases $module, $kind, [
            save_get_delete,
            json_value_kinds,
            missing_keys,
            keys_with_escapes,
            bulk_get,
            bulk_get_edge_cases,
            etag_save,
            etag_delete,
            first_write,
            ttl,
            transaction_atomic,
            transaction_order,
            transaction_unsupported_operation,
            reports_capabilities,
        ]);
    };
    (@cases $module:ident, $kind:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::conformance::$case($kind);
                }
            )*
        }
    };
}

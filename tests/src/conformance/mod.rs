//! The state store conformance suite, in the spirit of components-contrib: written once, run
//! against every state plugin. Each case starts its own sidecar with one store, `statestore`,
//! of the given kind. Instantiate it per plugin with [`state_conformance_suite!`].

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

/// A running sidecar with one store of `kind`, and its state API.
pub struct Fixture {
    pub sidecar: Sidecar,
    pub state: StateApi,
}

pub fn start(kind: StoreKind) -> Fixture {
    let sidecar = Sidecar::with_store("conformance", kind);
    let state = sidecar.state(STORE);
    Fixture { sidecar, state }
}

/// The store is listed in `/v1.0/metadata` with its type and the ETAG, TRANSACTIONAL, TTL and
/// (derived) ACTOR capabilities.
pub fn reports_capabilities(kind: StoreKind) {
    let f = start(kind);
    let metadata = metadata::fetch(&f.sidecar.client());
    metadata::assert_state_component(&metadata, STORE, kind.component_type());
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

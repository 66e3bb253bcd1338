//! State management: key prefixing, the store's capabilities, and calls into its plugin.
//! Independent of HTTP; the API layer maps [`StateError`] to Dapr's codes.

use std::sync::Arc;

use crate::plugins::bindings::state::exports::blockhost::plugin::state_store as wit;
use crate::plugins::bindings::state::StatePlugin;
use crate::plugins::bindings::{describe_error, PluginError};
use crate::plugins::pool::{CallError, Instance, Pool};

pub use wit::{
    BulkGetItem, Concurrency, Consistency, DeleteRequest, GetRequest, Operation, SetRequest,
    StoredItem,
};

/// The separator Dapr puts between a key's prefix and the key; keys may not contain it.
const SEPARATOR: &str = "||";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("input key/keyPrefix '{0}' can't contain '||'")]
    IllegalKey(String),
    #[error("state store does not support transactions")]
    NotTransactional,
    #[error("{}", describe_error(.0))]
    Plugin(PluginError),
    #[error("{0}")]
    Call(#[from] CallError),
}

/// How stored keys are prefixed (`keyPrefix` component metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPrefix {
    AppId,
    Name,
    Namespace,
    None,
    Literal(String),
}

impl KeyPrefix {
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        let prefix = match value.map(str::trim) {
            None | Some("") => Self::AppId,
            Some(v) if v.eq_ignore_ascii_case("appid") => Self::AppId,
            Some(v) if v.eq_ignore_ascii_case("name") => Self::Name,
            Some(v) if v.eq_ignore_ascii_case("namespace") => Self::Namespace,
            Some(v) if v.eq_ignore_ascii_case("none") => Self::None,
            Some(v) if v.contains(SEPARATOR) => {
                return Err(format!("keyPrefix '{v}' can't contain '||'"))
            }
            Some(v) => Self::Literal(v.to_owned()),
        };
        Ok(prefix)
    }

    /// The text before `||`, or `None` when keys are stored as given.
    fn resolve(&self, app_id: &str, store: &str, namespace: Option<&str>) -> Option<String> {
        match self {
            Self::AppId => Some(app_id.to_owned()),
            Self::Name => Some(store.to_owned()),
            Self::Namespace => Some(match namespace {
                Some(ns) if !ns.is_empty() => format!("{ns}.{app_id}"),
                _ => app_id.to_owned(),
            }),
            Self::None => None,
            Self::Literal(text) => Some(text.clone()),
        }
    }
}

pub struct StateStore {
    name: String,
    pool: Arc<Pool<StatePlugin>>,
    features: Vec<String>,
    prefix: Option<String>,
}

impl StateStore {
    pub fn new(
        name: String,
        pool: Arc<Pool<StatePlugin>>,
        features: Vec<String>,
        key_prefix: &KeyPrefix,
        app_id: &str,
        namespace: Option<&str>,
    ) -> Self {
        let prefix = key_prefix.resolve(app_id, &name, namespace);
        Self {
            name,
            pool,
            features,
            prefix,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn features(&self) -> &[String] {
        &self.features
    }

    pub fn is_transactional(&self) -> bool {
        self.features.iter().any(|f| f == "TRANSACTIONAL")
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Validates a caller's key and returns the key as stored.
    pub fn stored_key(&self, key: &str) -> Result<String, StateError> {
        if key.contains(SEPARATOR) {
            return Err(StateError::IllegalKey(key.to_owned()));
        }
        Ok(match &self.prefix {
            Some(prefix) => format!("{prefix}{SEPARATOR}{key}"),
            None => key.to_owned(),
        })
    }

    pub async fn get(&self, mut request: GetRequest) -> Result<Option<StoredItem>, StateError> {
        request.key = self.stored_key(&request.key)?;
        self.call(move |i| {
            Box::pin(async move {
                let store = i.bindings.blockhost_plugin_state_store();
                store.call_get(&mut i.store, &request).await
            })
        })
        .await
    }

    /// Items come back in request order, under the caller's (unprefixed) keys.
    pub async fn bulk_get(
        &self,
        mut requests: Vec<GetRequest>,
    ) -> Result<Vec<BulkGetItem>, StateError> {
        let mut keys = Vec::with_capacity(requests.len());
        for request in &mut requests {
            let stored = self.stored_key(&request.key)?;
            keys.push(std::mem::replace(&mut request.key, stored));
        }
        let mut items = self
            .call(move |i| {
                Box::pin(async move {
                    let store = i.bindings.blockhost_plugin_state_store();
                    store.call_bulk_get(&mut i.store, &requests).await
                })
            })
            .await?;
        if items.len() != keys.len() {
            return Err(StateError::Plugin(PluginError::Internal(format!(
                "plugin answered {} items for {} keys",
                items.len(),
                keys.len()
            ))));
        }
        for (item, key) in items.iter_mut().zip(keys) {
            item.key = key;
        }
        Ok(items)
    }

    pub async fn bulk_set(&self, mut requests: Vec<SetRequest>) -> Result<(), StateError> {
        for request in &mut requests {
            request.key = self.stored_key(&request.key)?;
        }
        self.call(move |i| {
            Box::pin(async move {
                let store = i.bindings.blockhost_plugin_state_store();
                store.call_bulk_set(&mut i.store, &requests).await
            })
        })
        .await
    }

    pub async fn delete(&self, mut request: DeleteRequest) -> Result<(), StateError> {
        request.key = self.stored_key(&request.key)?;
        self.call(move |i| {
            Box::pin(async move {
                let store = i.bindings.blockhost_plugin_state_store();
                store.call_delete(&mut i.store, &request).await
            })
        })
        .await
    }

    pub async fn transact(
        &self,
        mut operations: Vec<Operation>,
        metadata: Vec<(String, String)>,
    ) -> Result<(), StateError> {
        if !self.is_transactional() {
            return Err(StateError::NotTransactional);
        }
        for operation in &mut operations {
            let key = match operation {
                Operation::Upsert(set) => &mut set.key,
                Operation::Delete(delete) => &mut delete.key,
            };
            *key = self.stored_key(key)?;
        }
        self.call(move |i| {
            Box::pin(async move {
                let store = i.bindings.blockhost_plugin_state_store();
                store
                    .call_transact(&mut i.store, &operations, &metadata)
                    .await
            })
        })
        .await
    }

    async fn call<R, F>(&self, work: F) -> Result<R, StateError>
    where
        R: Send + 'static,
        F: for<'a> FnOnce(
                &'a mut Instance<StatePlugin>,
            ) -> crate::plugins::pool::Work<'a, Result<R, PluginError>>
            + Send
            + 'static,
    {
        match self.pool.call(work).await? {
            Ok(value) => Ok(value),
            Err(err) => Err(StateError::Plugin(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeyPrefix;

    #[test]
    fn key_prefix_strategies() {
        let resolve =
            |v: Option<&str>| KeyPrefix::parse(v).map(|p| p.resolve("app", "store", Some("ns")));
        assert_eq!(resolve(None), Ok(Some("app".into())));
        assert_eq!(resolve(Some("name")), Ok(Some("store".into())));
        assert_eq!(resolve(Some("namespace")), Ok(Some("ns.app".into())));
        assert_eq!(resolve(Some("none")), Ok(None));
        assert_eq!(resolve(Some("custom")), Ok(Some("custom".into())));
        assert!(resolve(Some("a||b")).is_err());
    }
}

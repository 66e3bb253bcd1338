//! State management: key prefixing, Dapr's request rules (options, metadata overlays, what
//! an empty request means) and how a store's failures read, independent of the transport.

mod key;
mod model;

use std::sync::Arc;

use super::metadata::{self, Metadata};
use super::{
    BackendError, Block, BlockError, BoxFuture, ComponentContext, ErrorKind, Lookup, Resolver,
};
pub use key::KeyPrefix;
pub use model::{
    BulkGetItem, Concurrency, Consistency, DeleteRequest, GetRequest, Operation, SetRequest,
    StoredItem, TransactionVerb,
};

/// What a state store asks of its plugin. Keys arrive prefixed.
pub trait StateBackend: Send + Sync {
    fn get(&self, request: GetRequest) -> BoxFuture<'_, Result<Option<StoredItem>, BackendError>>;
    /// Answers in the order of `requests`.
    fn bulk_get(
        &self,
        requests: Vec<GetRequest>,
    ) -> BoxFuture<'_, Result<Vec<BulkGetItem>, BackendError>>;
    fn bulk_set(&self, requests: Vec<SetRequest>) -> BoxFuture<'_, Result<(), BackendError>>;
    fn delete(&self, request: DeleteRequest) -> BoxFuture<'_, Result<(), BackendError>>;
    fn transact(
        &self,
        operations: Vec<Operation>,
        metadata: Metadata,
    ) -> BoxFuture<'_, Result<(), BackendError>>;
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// The state operations, for Dapr's error codes and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateOp {
    Get,
    BulkGet,
    Save,
    Delete,
    Transaction,
}

impl StateOp {
    pub fn code(self) -> &'static str {
        match self {
            StateOp::Get => "ERR_STATE_GET",
            StateOp::BulkGet => "ERR_STATE_BULK_GET",
            StateOp::Save => "ERR_STATE_SAVE",
            StateOp::Delete => "ERR_STATE_DELETE",
            StateOp::Transaction => "ERR_STATE_TRANSACTION",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            StateOp::Get | StateOp::BulkGet => "getting",
            StateOp::Save => "saving",
            StateOp::Delete => "deleting",
            StateOp::Transaction => "executing the transaction",
        }
    }
}

/// A running state store component.
pub struct StateStore {
    name: String,
    backend: Arc<dyn StateBackend>,
    transactional: bool,
    prefix: Option<String>,
}

pub struct StateSettings {
    prefix: Option<String>,
    transactional: bool,
}

impl Block for StateStore {
    const CATEGORY: &'static str = "state";
    type Backend = dyn StateBackend;
    type Settings = StateSettings;

    fn configure(component: &mut ComponentContext<'_>) -> Result<StateSettings, String> {
        let prefix = KeyPrefix::parse(metadata::value(component.metadata, "keyPrefix"))?;
        Ok(StateSettings {
            prefix: prefix.resolve(component.app_id, component.name, component.namespace),
            transactional: component.features.iter().any(|f| f == "TRANSACTIONAL"),
        })
    }

    fn build(name: &str, settings: StateSettings, backend: Arc<dyn StateBackend>) -> Self {
        Self {
            name: name.to_owned(),
            backend,
            transactional: settings.transactional,
            prefix: settings.prefix,
        }
    }

    /// A store with ETags and transactions can hold actor state; daprd lists that as `ACTOR`.
    fn capabilities(features: &[String]) -> Vec<String> {
        let mut capabilities = features.to_vec();
        let has = |feature: &str| features.iter().any(|f| f == feature);
        if has("ETAG") && has("TRANSACTIONAL") {
            capabilities.push("ACTOR".to_owned());
        }
        capabilities
    }

    async fn close(&self) {
        self.backend.close().await;
    }
}

impl StateStore {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `GET`: `None` when the key does not exist.
    pub async fn get(&self, mut request: GetRequest) -> Result<Option<StoredItem>, BlockError> {
        request.key = self.stored_key(&request.key)?;
        let op = StateOp::Get;
        self.backend
            .get(request)
            .await
            .map_err(|e| self.failed(op, e))
    }

    /// Items come back in request order, under the caller's keys; no keys, no items.
    pub async fn bulk_get(
        &self,
        keys: Vec<String>,
        metadata: Metadata,
    ) -> Result<Vec<BulkGetItem>, BlockError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let op = StateOp::BulkGet;
        let requests = keys
            .iter()
            .map(|key| {
                Ok(GetRequest {
                    key: self.stored_key(key)?,
                    metadata: metadata.clone(),
                    consistency: Consistency::Eventual,
                })
            })
            .collect::<Result<Vec<_>, BlockError>>()?;
        let mut items = self
            .backend
            .bulk_get(requests)
            .await
            .map_err(|e| self.failed(op, e))?;
        if items.len() != keys.len() {
            let message = format!(
                "plugin answered {} items for {} keys",
                items.len(),
                keys.len()
            );
            return Err(self.failed(op, BackendError::new(ErrorKind::Internal, message)));
        }
        for (item, key) in items.iter_mut().zip(keys) {
            item.key = key;
        }
        Ok(items)
    }

    /// Saves `items` all or none. `request_metadata` (the request's own) overrides each
    /// item's entries; an item's `contentType` metadata is its content type.
    pub async fn save(
        &self,
        mut items: Vec<SetRequest>,
        request_metadata: &[(String, String)],
    ) -> Result<(), BlockError> {
        if items.is_empty() {
            return Ok(());
        }
        for item in &mut items {
            metadata::merge(&mut item.metadata, request_metadata);
            self.prepare_set(item)?;
        }
        let op = StateOp::Save;
        self.backend
            .bulk_set(items)
            .await
            .map_err(|e| self.failed(op, e))
    }

    pub async fn delete(&self, mut request: DeleteRequest) -> Result<(), BlockError> {
        request.key = self.stored_key(&request.key)?;
        let op = StateOp::Delete;
        self.backend
            .delete(request)
            .await
            .map_err(|e| self.failed(op, e))
    }

    /// Applies `operations` in order, all or none. The request's metadata reaches every
    /// operation; an operation's own entries win.
    pub async fn transact(
        &self,
        mut operations: Vec<Operation>,
        metadata: Metadata,
    ) -> Result<(), BlockError> {
        if !self.transactional {
            return Err(BlockError::new(
                ErrorKind::Unsupported,
                "ERR_STATE_STORE_NOT_SUPPORTED",
                format!("state store {} doesn't support transactions", self.name),
            ));
        }
        if operations.is_empty() {
            return Ok(());
        }
        for operation in &mut operations {
            let own = match operation {
                Operation::Upsert(set) => {
                    self.prepare_set(set)?;
                    &mut set.metadata
                }
                Operation::Delete(delete) => {
                    delete.key = self.stored_key(&delete.key)?;
                    &mut delete.metadata
                }
            };
            let mut merged = metadata.clone();
            metadata::merge(&mut merged, own);
            *own = merged;
        }
        self.backend
            .transact(operations, metadata)
            .await
            .map_err(|e| self.failed(StateOp::Transaction, e))
    }

    fn prepare_set(&self, item: &mut SetRequest) -> Result<(), BlockError> {
        item.key = self.stored_key(&item.key)?;
        if item.content_type.is_none() {
            item.content_type = metadata::value(&item.metadata, "contentType").map(str::to_owned);
        }
        Ok(())
    }

    /// Validates a caller's key and returns the key as stored.
    fn stored_key(&self, key: &str) -> Result<String, BlockError> {
        key::stored(self.prefix.as_deref(), key).ok_or_else(|| {
            BlockError::invalid(
                "ERR_MALFORMED_REQUEST",
                format!("input key/keyPrefix '{key}' can't contain '||'"),
            )
        })
    }

    /// daprd's reading of a store failure: an ETag mismatch conflicts, a bad ETag or
    /// argument is the caller's, anything else (and anything in a transaction) is internal.
    fn failed(&self, op: StateOp, err: BackendError) -> BlockError {
        let kind = match err.kind {
            _ if op == StateOp::Transaction => ErrorKind::Internal,
            kind @ (ErrorKind::Conflict | ErrorKind::Invalid) => kind,
            _ => ErrorKind::Internal,
        };
        let message = format!(
            "failed {} state in state store {}: {}",
            op.verb(),
            self.name,
            err.message
        );
        BlockError::new(kind, op.code(), message)
    }
}

/// The state store `name`, as daprd answers when there is none.
pub fn find(
    components: &dyn Resolver<StateStore>,
    name: &str,
) -> Result<Arc<StateStore>, BlockError> {
    match components.resolve(name) {
        Lookup::Found(store) => Ok(store),
        Lookup::NoneOfBlock => Err(BlockError::internal(
            "ERR_STATE_STORE_NOT_CONFIGURED",
            "state store is not configured",
        )),
        Lookup::Missing => Err(BlockError::invalid(
            "ERR_STATE_STORE_NOT_FOUND",
            format!("state store {name} is not found"),
        )),
    }
}

//! The state block's backend served by a `state-plugin`: domain types in, WIT types across.

use std::sync::Arc;

use super::bindings::state::exports::blockhost::plugin::state_store as wit;
use super::bindings::state::{StatePlugin, StatePluginPre};
use super::pool::{call_plugin, world_bindings, Pool};
use super::PluginBackend;
use crate::blocks::state::{
    BulkGetItem, Concurrency, Consistency, DeleteRequest, GetRequest, Operation, SetRequest,
    StateBackend, StoredItem,
};
use crate::blocks::{BackendError, BoxFuture, Metadata};

world_bindings!(StatePlugin, StatePluginPre);

struct StatePool {
    pool: Arc<Pool<StatePlugin>>,
}

impl PluginBackend for dyn StateBackend {
    type World = StatePlugin;
    const INTERFACE: &'static str = "state-store";

    fn over_pool(pool: Arc<Pool<StatePlugin>>) -> Arc<Self> {
        Arc::new(StatePool { pool })
    }
}

impl StateBackend for StatePool {
    fn get(&self, request: GetRequest) -> BoxFuture<'_, Result<Option<StoredItem>, BackendError>> {
        let request = wit_get(request);
        Box::pin(async move {
            let item = call_plugin(&self.pool, move |i| {
                Box::pin(async move {
                    let store = i.bindings.blockhost_plugin_state_store();
                    store.call_get(&mut i.store, &request).await
                })
            })
            .await?;
            Ok(item.map(stored_item))
        })
    }

    fn bulk_get(
        &self,
        requests: Vec<GetRequest>,
    ) -> BoxFuture<'_, Result<Vec<BulkGetItem>, BackendError>> {
        let requests: Vec<wit::GetRequest> = requests.into_iter().map(wit_get).collect();
        Box::pin(async move {
            let items = call_plugin(&self.pool, move |i| {
                Box::pin(async move {
                    let store = i.bindings.blockhost_plugin_state_store();
                    store.call_bulk_get(&mut i.store, &requests).await
                })
            })
            .await?;
            Ok(items
                .into_iter()
                .map(|item| BulkGetItem {
                    key: item.key,
                    item: item.item.map(stored_item),
                    error: item.error,
                })
                .collect())
        })
    }

    fn bulk_set(&self, requests: Vec<SetRequest>) -> BoxFuture<'_, Result<(), BackendError>> {
        let requests: Vec<wit::SetRequest> = requests.into_iter().map(wit_set).collect();
        Box::pin(call_plugin(&self.pool, move |i| {
            Box::pin(async move {
                let store = i.bindings.blockhost_plugin_state_store();
                store.call_bulk_set(&mut i.store, &requests).await
            })
        }))
    }

    fn delete(&self, request: DeleteRequest) -> BoxFuture<'_, Result<(), BackendError>> {
        let request = wit_delete(request);
        Box::pin(call_plugin(&self.pool, move |i| {
            Box::pin(async move {
                let store = i.bindings.blockhost_plugin_state_store();
                store.call_delete(&mut i.store, &request).await
            })
        }))
    }

    fn transact(
        &self,
        operations: Vec<Operation>,
        metadata: Metadata,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        let operations: Vec<wit::Operation> = operations
            .into_iter()
            .map(|operation| match operation {
                Operation::Upsert(set) => wit::Operation::Upsert(wit_set(set)),
                Operation::Delete(delete) => wit::Operation::Delete(wit_delete(delete)),
            })
            .collect();
        Box::pin(call_plugin(&self.pool, move |i| {
            Box::pin(async move {
                let store = i.bindings.blockhost_plugin_state_store();
                store
                    .call_transact(&mut i.store, &operations, &metadata)
                    .await
            })
        }))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.close())
    }
}

fn wit_concurrency(concurrency: Concurrency) -> wit::Concurrency {
    match concurrency {
        Concurrency::LastWrite => wit::Concurrency::LastWrite,
        Concurrency::FirstWrite => wit::Concurrency::FirstWrite,
    }
}

fn wit_consistency(consistency: Consistency) -> wit::Consistency {
    match consistency {
        Consistency::Eventual => wit::Consistency::Eventual,
        Consistency::Strong => wit::Consistency::Strong,
    }
}

fn wit_get(request: GetRequest) -> wit::GetRequest {
    wit::GetRequest {
        key: request.key,
        metadata: request.metadata,
        consistency: wit_consistency(request.consistency),
    }
}

fn wit_set(request: SetRequest) -> wit::SetRequest {
    wit::SetRequest {
        key: request.key,
        value: request.value,
        etag: request.etag,
        metadata: request.metadata,
        concurrency: wit_concurrency(request.concurrency),
        consistency: wit_consistency(request.consistency),
        content_type: request.content_type,
    }
}

fn wit_delete(request: DeleteRequest) -> wit::DeleteRequest {
    wit::DeleteRequest {
        key: request.key,
        etag: request.etag,
        metadata: request.metadata,
        concurrency: wit_concurrency(request.concurrency),
        consistency: wit_consistency(request.consistency),
    }
}

fn stored_item(item: wit::StoredItem) -> StoredItem {
    StoredItem {
        data: item.data,
        etag: item.etag,
        metadata: item.metadata,
        content_type: item.content_type,
    }
}

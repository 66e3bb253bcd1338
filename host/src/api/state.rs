//! `/v1.0/state/...`: save, get, bulk get, delete, transaction (reference §1.2).

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, ETAG, IF_MATCH};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;

use super::error::{empty, json_response, ApiError, Body};
use super::query::{merge_metadata, Query};
use crate::blocks::state::{
    Concurrency, Consistency, DeleteRequest, GetRequest, Operation, SetRequest, StateError,
    StateStore, StoredItem,
};
use crate::json::Object;
use crate::plugins::bindings::PluginError;
use crate::registry::Registry;

/// Which operation failed, for Dapr's error code and message.
#[derive(Clone, Copy)]
enum Op {
    Get,
    BulkGet,
    Save,
    Delete,
    Transaction,
}

impl Op {
    fn code(self) -> &'static str {
        match self {
            Op::Get => "ERR_STATE_GET",
            Op::BulkGet => "ERR_STATE_BULK_GET",
            Op::Save => "ERR_STATE_SAVE",
            Op::Delete => "ERR_STATE_DELETE",
            Op::Transaction => "ERR_STATE_TRANSACTION",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Op::Get | Op::BulkGet => "getting",
            Op::Save => "saving",
            Op::Delete => "deleting",
            Op::Transaction => "executing the transaction",
        }
    }
}

fn store_error(op: Op, store: &str, err: StateError) -> ApiError {
    let message = format!("failed {} state in state store {store}: {err}", op.verb());
    let status = match (&err, op) {
        (StateError::IllegalKey(_), _) => return ApiError::malformed(err.to_string()),
        (StateError::NotTransactional, _) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_STATE_STORE_NOT_SUPPORTED",
                format!("state store {store} doesn't support transactions"),
            )
        }
        // Inside a transaction every failure is a 500, as daprd answers.
        (_, Op::Transaction) => StatusCode::INTERNAL_SERVER_ERROR,
        (StateError::Plugin(PluginError::EtagMismatch), _) => StatusCode::CONFLICT,
        (StateError::Plugin(PluginError::EtagInvalid), _) => StatusCode::BAD_REQUEST,
        (StateError::Plugin(PluginError::InvalidArgument(_)), _) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, op.code(), message)
}

pub fn find_store(registry: &Registry, name: &str) -> Result<Arc<StateStore>, ApiError> {
    if registry.state.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_CONFIGURED",
            "state store is not configured",
        ));
    }
    registry.state.get(name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_NOT_FOUND",
            format!("state store {name} is not found"),
        )
    })
}

/// `POST|PUT /v1.0/state/{store}`: a JSON array of items.
pub async fn save(
    store: &StateStore,
    query: &Query,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let items: Vec<&RawValue> = serde_json::from_slice(body)
        .map_err(|err| ApiError::malformed(format!("failed to decode the request body: {err}")))?;
    let query_metadata = query.metadata();
    let requests = items
        .into_iter()
        .map(|raw| {
            let item = Object::parse(raw).map_err(ApiError::malformed)?;
            set_request(&item, &query_metadata)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if requests.is_empty() {
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    store
        .bulk_set(requests)
        .await
        .map_err(|err| store_error(Op::Save, store.name(), err))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /v1.0/state/{store}/{key}`
pub async fn get(store: &StateStore, key: &str, query: &Query) -> Result<Response<Body>, ApiError> {
    let request = GetRequest {
        key: key.to_owned(),
        metadata: query.metadata(),
        consistency: consistency(query.get("consistency"), Op::Get)?,
    };
    let item = store
        .get(request)
        .await
        .map_err(|err| store_error(Op::Get, store.name(), err))?;
    let Some(item) = item else {
        return Ok(empty(StatusCode::NO_CONTENT));
    };
    let mut response = json_response(StatusCode::OK, Bytes::from(item.data));
    let headers = response.headers_mut();
    if let Some(content_type) = item.content_type.as_deref().and_then(header_value) {
        headers.insert(CONTENT_TYPE, content_type);
    }
    if let Some(etag) = item.etag.as_deref().and_then(header_value) {
        headers.insert(ETAG, etag);
    }
    insert_metadata_headers(headers, &item.metadata);
    Ok(response)
}

/// `POST|PUT /v1.0/state/{store}/bulk`: `{"keys": [...], "parallelism": n, "metadata": {}}`.
pub async fn bulk_get(
    store: &StateStore,
    query: &Query,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let request = body_object(body)?;
    let keys: Vec<String> = request
        .array("keys")
        .map_err(ApiError::malformed)?
        .into_iter()
        .map(|k| serde_json::from_str(k.get()))
        .collect::<Result<_, _>>()
        .map_err(|_| ApiError::malformed("keys must be strings"))?;
    let mut metadata = request
        .string_map("metadata")
        .map_err(ApiError::malformed)?;
    merge_metadata(&mut metadata, &query.metadata());
    if keys.is_empty() {
        return Ok(json_response(StatusCode::OK, Bytes::from_static(b"[]")));
    }
    let requests = keys
        .into_iter()
        .map(|key| GetRequest {
            key,
            metadata: metadata.clone(),
            consistency: Consistency::Eventual,
        })
        .collect();
    let items = store
        .bulk_get(requests)
        .await
        .map_err(|err| store_error(Op::BulkGet, store.name(), err))?;
    let entries: Vec<BulkEntry> = items
        .iter()
        .map(|item| BulkEntry::new(&item.key, item.item.as_ref(), item.error.as_deref()))
        .collect();
    let body = serde_json::to_vec(&entries).map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Op::BulkGet.code(),
            err.to_string(),
        )
    })?;
    Ok(json_response(StatusCode::OK, body.into()))
}

/// One element of the bulk get answer; empty fields are left out, as daprd does.
#[derive(Serialize)]
struct BulkEntry<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<std::collections::BTreeMap<&'a str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Stored bytes that are JSON go out verbatim; anything else as a JSON string.
#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Json(&'a RawValue),
    Text(std::borrow::Cow<'a, str>),
}

impl<'a> BulkEntry<'a> {
    fn new(key: &'a str, item: Option<&'a StoredItem>, error: Option<&'a str>) -> Self {
        let data = item.map(
            |item| match serde_json::from_slice::<&RawValue>(&item.data) {
                Ok(raw) => Data::Json(raw),
                Err(_) => Data::Text(String::from_utf8_lossy(&item.data)),
            },
        );
        let metadata = item.filter(|item| !item.metadata.is_empty()).map(|item| {
            item.metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        });
        Self {
            key,
            data,
            etag: item.and_then(|item| item.etag.as_deref()),
            metadata,
            error: error.filter(|e| !e.is_empty()),
        }
    }
}

/// `DELETE /v1.0/state/{store}/{key}` with an optional `If-Match` ETag.
pub async fn delete(
    store: &StateStore,
    key: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let etag = headers
        .get(IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let request = DeleteRequest {
        key: key.to_owned(),
        etag,
        metadata: query.metadata(),
        concurrency: concurrency(query.get("concurrency"), Op::Delete)?,
        consistency: consistency(query.get("consistency"), Op::Delete)?,
    };
    store
        .delete(request)
        .await
        .map_err(|err| store_error(Op::Delete, store.name(), err))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST|PUT /v1.0/state/{store}/transaction`: `{"operations": [...], "metadata": {}}`.
pub async fn transaction(
    store: &StateStore,
    query: &Query,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let request = body_object(body)?;
    let mut metadata = request
        .string_map("metadata")
        .map_err(ApiError::malformed)?;
    merge_metadata(&mut metadata, &query.metadata());
    let mut operations = Vec::new();
    for raw in request.array("operations").map_err(ApiError::malformed)? {
        let entry = Object::parse(raw).map_err(ApiError::malformed)?;
        let kind = entry.string("operation").map_err(ApiError::malformed)?;
        let item = entry.object("request").map_err(ApiError::malformed)?;
        let operation = match kind.as_deref() {
            Some("upsert") => Operation::Upsert(set_request(&item, &[])?),
            Some("delete") => Operation::Delete(delete_request(&item)?),
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "ERR_NOT_SUPPORTED_STATE_OPERATION",
                    format!("operation type {} not supported", other.unwrap_or_default()),
                ))
            }
        };
        operations.push(operation);
    }
    if operations.is_empty() {
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    // Request-level metadata reaches every operation; an operation's own entries win.
    for operation in &mut operations {
        let own = match operation {
            Operation::Upsert(set) => &mut set.metadata,
            Operation::Delete(delete) => &mut delete.metadata,
        };
        let mut merged = metadata.clone();
        merge_metadata(&mut merged, own);
        *own = merged;
    }
    store
        .transact(operations, metadata)
        .await
        .map_err(|err| store_error(Op::Transaction, store.name(), err))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// A request body that must be one JSON object.
fn body_object(body: &Bytes) -> Result<Object<'_>, ApiError> {
    let raw: &RawValue = serde_json::from_slice(body)
        .map_err(|err| ApiError::malformed(format!("failed to decode the request body: {err}")))?;
    Object::parse(raw).map_err(ApiError::malformed)
}

/// A save item or an upsert: key, value, etag, metadata, options.
fn set_request(item: &Object<'_>, overrides: &[(String, String)]) -> Result<SetRequest, ApiError> {
    let key = required_key(item)?;
    let value = item.raw("value").map_or("null", RawValue::get);
    let mut metadata = item.string_map("metadata").map_err(ApiError::malformed)?;
    merge_metadata(&mut metadata, overrides);
    let options = item.object("options").map_err(ApiError::malformed)?;
    let content_type = metadata
        .iter()
        .find(|(k, _)| k == "contentType")
        .map(|(_, v)| v.clone());
    Ok(SetRequest {
        key,
        value: value.as_bytes().to_vec(),
        etag: item
            .string("etag")
            .map_err(ApiError::malformed)?
            .filter(|e| !e.is_empty()),
        metadata,
        concurrency: concurrency(
            options
                .string("concurrency")
                .map_err(ApiError::malformed)?
                .as_deref(),
            Op::Save,
        )?,
        consistency: consistency(
            options
                .string("consistency")
                .map_err(ApiError::malformed)?
                .as_deref(),
            Op::Save,
        )?,
        content_type,
    })
}

fn delete_request(item: &Object<'_>) -> Result<DeleteRequest, ApiError> {
    let options = item.object("options").map_err(ApiError::malformed)?;
    Ok(DeleteRequest {
        key: required_key(item)?,
        etag: item
            .string("etag")
            .map_err(ApiError::malformed)?
            .filter(|e| !e.is_empty()),
        metadata: item.string_map("metadata").map_err(ApiError::malformed)?,
        concurrency: concurrency(
            options
                .string("concurrency")
                .map_err(ApiError::malformed)?
                .as_deref(),
            Op::Delete,
        )?,
        consistency: consistency(
            options
                .string("consistency")
                .map_err(ApiError::malformed)?
                .as_deref(),
            Op::Delete,
        )?,
    })
}

fn required_key(item: &Object<'_>) -> Result<String, ApiError> {
    match item.string("key").map_err(ApiError::malformed)? {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(ApiError::malformed("a state item has no key")),
    }
}

fn concurrency(value: Option<&str>, op: Op) -> Result<Concurrency, ApiError> {
    match value.unwrap_or_default() {
        "" | "last-write" => Ok(Concurrency::LastWrite),
        "first-write" => Ok(Concurrency::FirstWrite),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            op.code(),
            format!("invalid concurrency '{other}': use first-write or last-write"),
        )),
    }
}

fn consistency(value: Option<&str>, op: Op) -> Result<Consistency, ApiError> {
    match value.unwrap_or_default() {
        "" | "eventual" => Ok(Consistency::Eventual),
        "strong" => Ok(Consistency::Strong),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            op.code(),
            format!("invalid consistency '{other}': use strong or eventual"),
        )),
    }
}

fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// Response metadata travels as `metadata.<name>` headers.
fn insert_metadata_headers(headers: &mut HeaderMap, metadata: &[(String, String)]) {
    for (name, value) in metadata {
        let name = HeaderName::from_bytes(format!("metadata.{name}").as_bytes());
        if let (Ok(name), Some(value)) = (name, header_value(value)) {
            headers.insert(name, value);
        }
    }
}

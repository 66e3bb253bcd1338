//! `/v1.0/state/...` (<https://docs.dapr.io/reference/api/state_api/>): JSON in and out; the
//! rules are the state block's.

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, ETAG, IF_MATCH};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;

use super::error::{empty, json_response, ApiError, Body};
use super::query::Query;
use crate::blocks::metadata::merge;
use crate::blocks::state::{
    BulkGetItem, Concurrency, Consistency, DeleteRequest, GetRequest, Operation, SetRequest,
    StateOp, StateStore, StoredItem, TransactionVerb,
};
use crate::json::Object;

/// `POST|PUT /v1.0/state/{store}`: a JSON array of items.
pub async fn save(
    store: &StateStore,
    query: &Query,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let items: Vec<&RawValue> = serde_json::from_slice(body)
        .map_err(|err| ApiError::malformed(format!("failed to decode the request body: {err}")))?;
    let requests = items
        .into_iter()
        .map(|raw| set_request(&Object::parse(raw).map_err(ApiError::malformed)?))
        .collect::<Result<Vec<_>, _>>()?;
    store.save(requests, &query.metadata()).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /v1.0/state/{store}/{key}`
pub async fn get(store: &StateStore, key: &str, query: &Query) -> Result<Response<Body>, ApiError> {
    let request = GetRequest {
        key: key.to_owned(),
        metadata: query.metadata(),
        consistency: Consistency::parse(query.get("consistency"), StateOp::Get)?,
    };
    let Some(item) = store.get(request).await? else {
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
    merge(&mut metadata, &query.metadata());
    let items = store.bulk_get(keys, metadata).await?;
    let entries: Vec<BulkEntry> = items.iter().map(BulkEntry::new).collect();
    let body = serde_json::to_vec(&entries).map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            StateOp::BulkGet.code(),
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
    fn new(entry: &'a BulkGetItem) -> Self {
        let item: Option<&StoredItem> = entry.item.as_ref();
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
            key: &entry.key,
            data,
            etag: item.and_then(|item| item.etag.as_deref()),
            metadata,
            error: entry.error.as_deref().filter(|e| !e.is_empty()),
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
    let op = StateOp::Delete;
    let request = DeleteRequest {
        key: key.to_owned(),
        etag,
        metadata: query.metadata(),
        concurrency: Concurrency::parse(query.get("concurrency"), op)?,
        consistency: Consistency::parse(query.get("consistency"), op)?,
    };
    store.delete(request).await?;
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
    merge(&mut metadata, &query.metadata());
    let mut operations = Vec::new();
    for raw in request.array("operations").map_err(ApiError::malformed)? {
        let entry = Object::parse(raw).map_err(ApiError::malformed)?;
        let verb = entry.string("operation").map_err(ApiError::malformed)?;
        let item = entry.object("request").map_err(ApiError::malformed)?;
        let operation = match Operation::check_name(verb.as_deref())? {
            TransactionVerb::Upsert => Operation::Upsert(set_request(&item)?),
            TransactionVerb::Delete => Operation::Delete(delete_request(&item)?),
        };
        operations.push(operation);
    }
    store.transact(operations, metadata).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// A request body that must be one JSON object.
fn body_object(body: &Bytes) -> Result<Object<'_>, ApiError> {
    let raw: &RawValue = serde_json::from_slice(body)
        .map_err(|err| ApiError::malformed(format!("failed to decode the request body: {err}")))?;
    Object::parse(raw).map_err(ApiError::malformed)
}

/// A save item or an upsert: key, value, etag, metadata, options. An upsert's options are
/// checked with the save's error code, as daprd does.
fn set_request(item: &Object<'_>) -> Result<SetRequest, ApiError> {
    let (concurrency, consistency) = options(item, StateOp::Save)?;
    Ok(SetRequest {
        key: required_key(item)?,
        value: item
            .raw("value")
            .map_or("null", RawValue::get)
            .as_bytes()
            .to_vec(),
        etag: etag(item)?,
        metadata: item.string_map("metadata").map_err(ApiError::malformed)?,
        concurrency,
        consistency,
        content_type: None,
    })
}

fn delete_request(item: &Object<'_>) -> Result<DeleteRequest, ApiError> {
    let (concurrency, consistency) = options(item, StateOp::Delete)?;
    Ok(DeleteRequest {
        key: required_key(item)?,
        etag: etag(item)?,
        metadata: item.string_map("metadata").map_err(ApiError::malformed)?,
        concurrency,
        consistency,
    })
}

fn options(item: &Object<'_>, op: StateOp) -> Result<(Concurrency, Consistency), ApiError> {
    let options = item.object("options").map_err(ApiError::malformed)?;
    let field = |name: &str| options.string(name).map_err(ApiError::malformed);
    Ok((
        Concurrency::parse(field("concurrency")?.as_deref(), op)?,
        Consistency::parse(field("consistency")?.as_deref(), op)?,
    ))
}

fn etag(item: &Object<'_>) -> Result<Option<String>, ApiError> {
    Ok(item
        .string("etag")
        .map_err(ApiError::malformed)?
        .filter(|e| !e.is_empty()))
}

fn required_key(item: &Object<'_>) -> Result<String, ApiError> {
    match item.string("key").map_err(ApiError::malformed)? {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(ApiError::malformed("a state item has no key")),
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

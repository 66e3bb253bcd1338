//! The Dapr HTTP API on hyper: routing, the API token, request bodies. One module per
//! building block turns JSON into the block's requests; `error.rs` maps the blocks' errors.

mod error;
mod meta;
mod pubsub;
mod query;
mod server;
mod state;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};

use crate::sidecar::Sidecar;
use error::{empty, plain, ApiError, Body};
use query::Query;
pub use server::serve;

/// daprd's default `--max-body-size`.
const MAX_BODY_BYTES: usize = 4 << 20;

const TOKEN_HEADER: &str = "dapr-api-token";

pub async fn handle(sidecar: Arc<Sidecar>, request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let segments = match path_segments(parts.uri.path()) {
        Ok(segments) => segments,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let is_health = matches!(
        segments.as_slice(),
        ["v1.0", "healthz"] | ["v1.0", "healthz", "outbound"]
    );
    if !is_health && !token_accepted(&sidecar, parts.headers.get(TOKEN_HEADER)) {
        return plain(StatusCode::UNAUTHORIZED, "invalid api token");
    }
    let query = Query::parse(parts.uri.query());
    let method = &parts.method;
    let result = match segments.as_slice() {
        ["v1.0", "healthz"] => only(method, &[Method::GET], || {
            Ok(meta::healthz(&sidecar, &query, false))
        }),
        ["v1.0", "healthz", "outbound"] => only(method, &[Method::GET], || {
            Ok(meta::healthz(&sidecar, &query, true))
        }),
        ["v1.0", "metadata"] => only(method, &[Method::GET], || Ok(meta::metadata(&sidecar))),
        ["v1.0", "metadata", name] => match *method {
            Method::PUT => match read_body(body).await {
                Ok(bytes) => Ok(meta::set_attribute(&sidecar, name, &bytes)),
                Err(err) => Err(err),
            },
            _ => Ok(method_not_allowed(&[Method::PUT])),
        },
        ["v1.0", "shutdown"] => only(method, &[Method::POST], || Ok(meta::shutdown(&sidecar))),
        ["v1.0" | "v1.0-alpha1", "publish", "bulk", name, topic @ ..]
        | ["v1.0", "publish", name, topic @ ..] => {
            let bulk = segments.get(2) == Some(&"bulk") && segments.get(3) == Some(name);
            let topic = topic.join("/");
            let target = PublishTarget {
                name,
                topic: &topic,
                bulk,
            };
            publish_route(&sidecar, method, target, &query, &parts.headers, body).await
        }
        ["v1.0", "state", store, rest @ ..] => {
            state_route(&sidecar, method, store, rest, &query, &parts.headers, body).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_NOT_FOUND",
            format!("no API route for {method} {}", parts.uri.path()),
        )),
    };
    result.unwrap_or_else(ApiError::into_response)
}

async fn state_route(
    sidecar: &Sidecar,
    method: &Method,
    store_name: &str,
    rest: &[&str],
    query: &Query,
    headers: &hyper::HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let write = [Method::POST, Method::PUT];
    let allowed: &[Method] = match rest {
        [] => &write,
        ["bulk"] | ["transaction"] => &[Method::GET, Method::DELETE, Method::POST, Method::PUT],
        _ => &[Method::GET, Method::DELETE],
    };
    if !allowed.contains(method) {
        return Ok(method_not_allowed(allowed));
    }
    sidecar.wait_ready().await;
    let store = crate::blocks::state::find(&*sidecar.components, store_name)?;
    // Keys may hold '/', so everything after the store name is the key.
    let key = rest.join("/");
    match (method, rest) {
        (&Method::POST | &Method::PUT, []) => {
            state::save(&store, query, &read_body(body).await?).await
        }
        (&Method::POST | &Method::PUT, ["bulk"]) => {
            state::bulk_get(&store, query, &read_body(body).await?).await
        }
        (&Method::POST | &Method::PUT, ["transaction"]) => {
            state::transaction(&store, query, &read_body(body).await?).await
        }
        (&Method::GET, _) => state::get(&store, &key, query).await,
        (&Method::DELETE, _) => state::delete(&store, &key, query, headers).await,
        _ => Ok(method_not_allowed(allowed)),
    }
}

/// `/publish/{pubsub}/{topic}` or `/publish/bulk/{pubsub}/{topic}`.
struct PublishTarget<'a> {
    name: &'a str,
    topic: &'a str,
    bulk: bool,
}

async fn publish_route(
    sidecar: &Sidecar,
    method: &Method,
    target: PublishTarget<'_>,
    query: &Query,
    headers: &hyper::HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let allowed = [Method::POST, Method::PUT];
    if !allowed.contains(method) {
        return Ok(method_not_allowed(&allowed));
    }
    sidecar.wait_ready().await;
    let pubsub = crate::blocks::pubsub::find_for_publish(
        &*sidecar.components,
        target.name,
        target.topic,
        &sidecar.app_id,
    )?;
    let body = read_body(body).await?;
    if target.bulk {
        pubsub::bulk_publish(&pubsub, target.topic, query, &body).await
    } else {
        pubsub::publish(&pubsub, target.topic, query, headers, &body).await
    }
}

fn only(
    method: &Method,
    allowed: &[Method],
    respond: impl FnOnce() -> Result<Response<Body>, ApiError>,
) -> Result<Response<Body>, ApiError> {
    if allowed.contains(method) {
        respond()
    } else {
        Ok(method_not_allowed(allowed))
    }
}

fn method_not_allowed(allowed: &[Method]) -> Response<Body> {
    let mut response = empty(StatusCode::METHOD_NOT_ALLOWED);
    let list = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(value) = HeaderValue::from_str(&list) {
        response.headers_mut().insert(hyper::header::ALLOW, value);
    }
    response
}

async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_BODY_READ",
            format!("failed to read the request body (the limit is {MAX_BODY_BYTES} bytes): {err}"),
        )),
    }
}

/// Splits a path into URL-decoded segments, ignoring empty ones (daprd cleans `//` and
/// trailing slashes before routing). Segments are unescaped as daprd does, with Go's
/// `url.QueryUnescape`: `+` reads as a space, `%2B` as a plus.
fn path_segments(path: &str) -> Result<Vec<String>, &'static str> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = s.replace('+', " ");
            percent_encoding::percent_decode_str(&s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "invalid URL escape in the path")
        })
        .collect()
}

/// Constant-time comparison, so response timing reveals nothing about the token.
fn token_accepted(sidecar: &Sidecar, given: Option<&HeaderValue>) -> bool {
    let Some(expected) = sidecar.api_token.as_deref() else {
        return true;
    };
    let given = given.map(HeaderValue::as_bytes).unwrap_or_default();
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::path_segments;

    #[test]
    fn paths_are_cleaned_and_decoded() {
        assert_eq!(
            path_segments("//v1.0/state/s/a%20b/").unwrap(),
            vec!["v1.0", "state", "s", "a b"]
        );
        assert_eq!(path_segments("/v1.0/state/s/a%2Fb").unwrap()[3], "a/b");
        assert_eq!(path_segments("/s/a+b%2Bc").unwrap()[1], "a b+c");
        assert!(path_segments("/v1.0/%FF").is_err());
    }
}

//! State operations in daprd's Redis layout: each key a hash `{data, version}`, the version
//! being the ETag. Reads are pipelines of HGETALL + PTTL; every write, from a single set to a
//! transaction, is one run of `write.lua`, which checks all ETags before it changes anything.

use redis::{Script, Value};
use state_common::bindings::exports::blockhost::plugin::state_store::StoredItem;
use state_common::{
    format_rfc3339, lookup, now_unix_ms, parse_ttl, requested_etag, Concurrency, Metadata, Op,
    ReadResult, StateError, TTL_EXPIRE_TIME, TTL_IN_SECONDS,
};

use crate::client::{Client, Retry};
use crate::config::Ttl;

pub struct Store {
    client: Client,
    script: Script,
    default_ttl: Option<Ttl>,
}

impl Store {
    pub fn new(client: Client, default_ttl: Option<Ttl>) -> Self {
        Self {
            client,
            script: Script::new(include_str!("write.lua")),
            default_ttl,
        }
    }

    /// Reads `keys` in one round trip, answering in order.
    pub fn read(&mut self, keys: &[&str]) -> Result<Vec<ReadResult>, StateError> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HGETALL").arg(*key).cmd("PTTL").arg(*key);
        }
        // Per-key error replies (a key of another type) come back as values, not as a failure
        // of the whole batch.
        pipe.ignore_errors();
        let replies: Vec<Value> = self.client.run(Retry::Always, |link| pipe.query(link))?;
        let now_ms = now_unix_ms();
        let mut replies = replies.into_iter();
        let mut results = Vec::with_capacity(keys.len());
        for key in keys {
            let (Some(hash), Some(ttl)) = (replies.next(), replies.next()) else {
                return Err(StateError::Internal(
                    "Redis answered a bulk read with too few replies".into(),
                ));
            };
            results.push(item(key, hash, ttl, now_ms));
        }
        Ok(results)
    }

    /// Applies `ops` atomically and in order; fails without writing anything if any check fails.
    pub fn write(&mut self, ops: &[Op<'_>], batch_metadata: &Metadata) -> Result<(), StateError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut invocation = self.script.prepare_invoke();
        let mut retry = Retry::Always;
        for op in ops {
            let (key, etag) = match op {
                Op::Upsert(u) => (u.key, u.etag),
                Op::Delete(d) => (d.key, d.etag),
            };
            let etag = requested_etag(etag);
            if let Some(etag) = etag {
                // daprd parses ETags with Go's Atoi: anything else can never match a version.
                etag.parse::<i64>().map_err(|_| StateError::EtagInvalid)?;
                retry = Retry::IfUnsent;
            }
            invocation.key(key);
            match op {
                Op::Upsert(u) => {
                    let first_write = u.concurrency == Concurrency::FirstWrite;
                    if first_write {
                        retry = Retry::IfUnsent;
                    }
                    let ttl = match self.ttl(u.metadata, batch_metadata)? {
                        Some(Ttl::Expire(seconds)) => seconds,
                        Some(Ttl::Persist) | None => 0,
                    };
                    invocation
                        .arg("set")
                        .arg(etag.unwrap_or(""))
                        .arg(if first_write { "1" } else { "0" })
                        .arg(ttl)
                        .arg(u.value);
                }
                Op::Delete(_) => {
                    invocation
                        .arg("del")
                        .arg(etag.unwrap_or(""))
                        .arg("0")
                        .arg("0")
                        .arg("");
                }
            }
        }
        let failed: usize = self.client.run(retry, |link| invocation.invoke(link))?;
        match failed {
            0 => Ok(()),
            _ => Err(StateError::EtagMismatch),
        }
    }

    /// The operation's own `ttlInSeconds`, else the batch's (Dapr copies transaction metadata
    /// into each operation), else the component's. No TTL at all clears an earlier one, as in
    /// blockhost's other stores (daprd would leave an earlier expiry in place).
    fn ttl(&self, own: &Metadata, batch: &Metadata) -> Result<Option<Ttl>, StateError> {
        for metadata in [own, batch] {
            if lookup(metadata, TTL_IN_SECONDS).is_some() {
                return Ok(Some(match parse_ttl(metadata)? {
                    Some(seconds) => Ttl::Expire(seconds),
                    None => Ttl::Persist,
                }));
            }
        }
        Ok(self.default_ttl)
    }
}

/// One key's HGETALL and PTTL replies as an item.
fn item(key: &str, hash: Value, pttl: Value, now_ms: u64) -> ReadResult {
    let fields = match hash {
        Value::Array(fields) => fields,
        Value::ServerError(err) => return Err(format!("cannot read key {key}: {err}")),
        other => return Err(format!("cannot read key {key}: unexpected reply {other:?}")),
    };
    if fields.is_empty() {
        return Ok(None);
    }
    let (mut data, mut version) = (None, None);
    let mut pairs = fields.into_iter();
    while let (Some(Value::BulkString(name)), Some(Value::BulkString(value))) =
        (pairs.next(), pairs.next())
    {
        match name.as_slice() {
            b"data" => data = Some(value),
            b"version" => version = Some(value),
            _ => {}
        }
    }
    let (Some(data), Some(version)) = (data, version) else {
        return Err(format!(
            "key {key} is a hash without the `data` and `version` fields of Dapr's state layout"
        ));
    };
    let metadata = match pttl {
        // Expired between the two commands: gone by now.
        Value::Int(-2) => return Ok(None),
        Value::Int(ms) if ms >= 0 => {
            let at = now_ms.saturating_add(ms.unsigned_abs());
            vec![(TTL_EXPIRE_TIME.to_owned(), format_rfc3339(at))]
        }
        _ => Vec::new(),
    };
    Ok(Some(StoredItem {
        data,
        etag: Some(String::from_utf8_lossy(&version).into_owned()),
        metadata,
        content_type: None,
    }))
}

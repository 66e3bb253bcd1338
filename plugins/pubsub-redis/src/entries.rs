//! Stream entries in daprd's layout: field `data` holds the message bytes (the CloudEvent the
//! host built, or a raw payload), field `metadata` a JSON object of the message's metadata.
//! Also the parsing of XREADGROUP and XAUTOCLAIM replies.

use std::collections::BTreeMap;

use redis::Value;

pub const DATA_FIELD: &str = "data";
pub const METADATA_FIELD: &str = "metadata";

/// The `metadata` field daprd writes: `json.Marshal` of a `map[string]string`, so one value per
/// name (a later duplicate wins) and names in sorted order.
pub fn encode_metadata(metadata: &[(String, String)]) -> Vec<u8> {
    let map: BTreeMap<&str, &str> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Serialising a map of strings cannot fail; an empty object is a safe fallback anyway.
    serde_json::to_vec(&map).unwrap_or_else(|_| b"{}".to_vec())
}

/// Reads a `metadata` field back. daprd unmarshals into `map[string]string`; values written by
/// other producers that are not strings are kept as their JSON text rather than failing the
/// whole map.
pub fn decode_metadata(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(map
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

/// One entry as a reply lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEntry {
    Present {
        id: String,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Still in the pending list, but deleted from the stream (trimmed or XDEL'd); Redis 6.2's
    /// XAUTOCLAIM lists such entries with no fields.
    Gone { id: String },
}

/// A message ready for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub data: Vec<u8>,
    pub metadata: Vec<(String, String)>,
}

/// Turns an entry's fields into a message. A `metadata` field that does not parse is reported
/// (as daprd logs it) and the message goes out without metadata.
pub fn to_message(id: String, fields: Vec<(Vec<u8>, Vec<u8>)>) -> (Message, Option<String>) {
    let mut data = Vec::new();
    let mut metadata = Vec::new();
    let mut warning = None;
    for (name, value) in fields {
        if name == DATA_FIELD.as_bytes() {
            data = value;
        } else if name == METADATA_FIELD.as_bytes() {
            match decode_metadata(&value) {
                Ok(m) => metadata = m,
                Err(e) => {
                    warning = Some(format!(
                        "could not read the metadata of stream entry {id}: {e}; delivering it without"
                    ));
                }
            }
        }
    }
    (Message { id, data, metadata }, warning)
}

/// An XAUTOCLAIM reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Where the next scan starts; `0-0` when the pending list has been scanned to its end.
    pub cursor: String,
    pub entries: Vec<RawEntry>,
    /// Entries Redis (7.0+) found deleted and removed from the pending list itself.
    pub deleted: Vec<String>,
}

/// Parses an XREADGROUP reply for one stream: nil when the block timed out, else
/// `[[stream, [entry...]]]` (or a map keyed by stream in RESP3).
pub fn parse_read(value: Value) -> Result<Vec<RawEntry>, String> {
    let streams = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => Ok(pair.remove(1)),
                other => Err(format!("unexpected stream in XREADGROUP reply: {other:?}")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        other => return Err(format!("unexpected XREADGROUP reply: {other:?}")),
    };
    let mut entries = Vec::new();
    for list in streams {
        entries.extend(parse_entries(list)?);
    }
    Ok(entries)
}

/// Parses an XAUTOCLAIM reply: `[cursor, [entry...]]`, plus `[deleted id...]` from Redis 7.0.
pub fn parse_autoclaim(value: Value) -> Result<Claimed, String> {
    let Value::Array(parts) = value else {
        return Err(format!("unexpected XAUTOCLAIM reply: {value:?}"));
    };
    let mut parts = parts.into_iter();
    let cursor = match parts.next() {
        Some(v) => text(v).ok_or("XAUTOCLAIM reply without a cursor")?,
        None => return Err("empty XAUTOCLAIM reply".into()),
    };
    let entries = match parts.next() {
        Some(list) => parse_entries(list)?,
        None => Vec::new(),
    };
    let deleted = match parts.next() {
        Some(Value::Array(ids)) => ids.into_iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    Ok(Claimed {
        cursor,
        entries,
        deleted,
    })
}

fn parse_entries(list: Value) -> Result<Vec<RawEntry>, String> {
    let items = match list {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(format!("unexpected list of stream entries: {other:?}")),
    };
    items.into_iter().map(parse_entry).collect()
}

fn parse_entry(entry: Value) -> Result<RawEntry, String> {
    let Value::Array(parts) = entry else {
        return Err(format!("unexpected stream entry: {entry:?}"));
    };
    let mut parts = parts.into_iter();
    let id = parts
        .next()
        .and_then(text)
        .ok_or("stream entry without an id")?;
    let fields = match parts.next() {
        None | Some(Value::Nil) => return Ok(RawEntry::Gone { id }),
        Some(Value::Array(flat)) => {
            let mut fields = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                fields.push((bytes(name), bytes(value)));
            }
            fields
        }
        Some(Value::Map(pairs)) => pairs
            .into_iter()
            .map(|(name, value)| (bytes(name), bytes(value)))
            .collect(),
        Some(other) => return Err(format!("unexpected fields of stream entry {id}: {other:?}")),
    };
    Ok(RawEntry::Present { id, fields })
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn bytes(value: Value) -> Vec<u8> {
    match value {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(n) => n.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

/// Whether `id` has the shape of a stream entry id (`<ms>-<seq>`), as every id this plugin
/// hands out does.
pub fn is_entry_id(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    matches!(id.split_once('-'), Some((ms, seq)) if digits(ms) && digits(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(
                fields
                    .iter()
                    .flat_map(|(k, v)| [bulk(k), bulk(v)])
                    .collect(),
            ),
        ])
    }

    #[test]
    fn metadata_round_trips_as_daprd_writes_it() {
        let md = vec![
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "\"quoted\"".to_string()),
            ("b".to_string(), "3".to_string()),
        ];
        let json = encode_metadata(&md);
        assert_eq!(json, br#"{"a":"\"quoted\"","b":"3"}"#);
        assert_eq!(
            decode_metadata(&json).unwrap(),
            vec![
                ("a".to_string(), "\"quoted\"".to_string()),
                ("b".to_string(), "3".to_string())
            ]
        );
        assert_eq!(encode_metadata(&[]), b"{}");
        assert_eq!(
            decode_metadata(br#"{"n":1,"s":"x"}"#).unwrap(),
            vec![
                ("n".to_string(), "1".to_string()),
                ("s".to_string(), "x".to_string())
            ]
        );
        assert!(decode_metadata(b"not json").is_err());
        assert!(decode_metadata(b"[1]").is_err());
    }

    #[test]
    fn read_reply() {
        assert_eq!(parse_read(Value::Nil).unwrap(), vec![]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("orders"),
            Value::Array(vec![
                entry("1-0", &[("data", "{}"), ("metadata", r#"{"k":"v"}"#)]),
                entry("2-0", &[("data", "x")]),
            ]),
        ])]);
        let entries = parse_read(reply).unwrap();
        assert_eq!(entries.len(), 2);
        let RawEntry::Present { id, fields } = entries[0].clone() else {
            panic!("{:?}", entries[0]);
        };
        let (msg, warning) = to_message(id, fields);
        assert_eq!(warning, None);
        assert_eq!(msg.id, "1-0");
        assert_eq!(msg.data, b"{}");
        assert_eq!(msg.metadata, vec![("k".to_string(), "v".to_string())]);
        assert!(parse_read(bulk("nope")).is_err());
    }

    #[test]
    fn bad_metadata_is_reported_not_fatal() {
        let (msg, warning) = to_message(
            "5-1".into(),
            vec![
                (b"metadata".to_vec(), b"{oops".to_vec()),
                (b"data".to_vec(), b"payload".to_vec()),
                (b"other".to_vec(), b"ignored".to_vec()),
            ],
        );
        assert_eq!(msg.data, b"payload");
        assert!(msg.metadata.is_empty());
        assert!(warning.unwrap().contains("5-1"));
    }

    #[test]
    fn autoclaim_reply() {
        // Redis 7: cursor, entries, deleted ids.
        let reply = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![entry("3-0", &[("data", "a")])]),
            Value::Array(vec![bulk("1-0")]),
        ]);
        let claimed = parse_autoclaim(reply).unwrap();
        assert_eq!(claimed.cursor, "0-0");
        assert_eq!(claimed.entries.len(), 1);
        assert_eq!(claimed.deleted, vec!["1-0".to_string()]);
        // Redis 6.2: a deleted entry shows with no fields, and there is no third element.
        let reply = Value::Array(vec![
            bulk("7-0"),
            Value::Array(vec![Value::Array(vec![bulk("4-0"), Value::Nil])]),
        ]);
        let claimed = parse_autoclaim(reply).unwrap();
        assert_eq!(claimed.cursor, "7-0");
        assert_eq!(claimed.entries, vec![RawEntry::Gone { id: "4-0".into() }]);
        assert!(parse_autoclaim(Value::Nil).is_err());
    }

    #[test]
    fn entry_ids() {
        assert!(is_entry_id("1700000000000-0"));
        assert!(is_entry_id("0-1"));
        for bad in ["", "1", "-1", "1-", "a-1", "1-2-3", "1 -2"] {
            assert!(!is_entry_id(bad), "{bad}");
        }
    }
}

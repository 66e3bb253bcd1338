//! Dapr's publish rules, for every transport: per-request `metadata.*` options
//! (`rawPayload`, `ttlInSeconds`, `cloudevent.*`), the CloudEvent envelope, and bulk entries.

use std::collections::HashSet;
use std::time::Duration;

use super::cloudevent::{self, Publish, CLOUDEVENTS_JSON};
use super::PubSub;
use crate::blocks::metadata::{self, Metadata};
use crate::blocks::BlockError;

const REQUEST_METADATA: &str = "ERR_PUBSUB_REQUEST_METADATA";
const EVENTS_SER: &str = "ERR_PUBSUB_EVENTS_SER";

/// Per-request options carried in metadata: what the sidecar interprets, and what goes on
/// to the component.
pub(super) struct PublishOptions {
    raw_payload: bool,
    ttl: Option<Duration>,
    cloudevent_overrides: Metadata,
    pub component_metadata: Metadata,
}

impl PublishOptions {
    pub fn from_metadata(request: Metadata) -> Result<Self, BlockError> {
        let mut options = Self {
            raw_payload: false,
            ttl: None,
            cloudevent_overrides: Vec::new(),
            component_metadata: Vec::new(),
        };
        for (key, value) in request {
            if let Some(field) = key.strip_prefix("cloudevent.") {
                options.cloudevent_overrides.push((field.to_owned(), value));
                continue;
            }
            match key.as_str() {
                "rawPayload" => {
                    options.raw_payload = metadata::parse_bool(&value).ok_or_else(|| {
                        BlockError::invalid(
                            REQUEST_METADATA,
                            format!("rawPayload '{value}' is not a boolean"),
                        )
                    })?;
                }
                "ttlInSeconds" | "ttl" => {
                    let ttl = crate::resources::duration::parse(&value).ok_or_else(|| {
                        BlockError::invalid(
                            REQUEST_METADATA,
                            format!("{key} '{value}' is not a number of seconds"),
                        )
                    })?;
                    options.ttl = Some(ttl);
                }
                _ => {}
            }
            options.component_metadata.push((key, value));
        }
        Ok(options)
    }
}

/// One entry of a bulk publish, its event already decoded to bytes.
pub struct BulkPublishEntry {
    pub entry_id: String,
    pub event: Vec<u8>,
    pub content_type: String,
    pub metadata: Metadata,
}

/// Checks that every entry has an id of its own, as daprd requires.
pub fn check_entry_ids(entries: &[BulkPublishEntry]) -> Result<(), BlockError> {
    let mut seen = HashSet::new();
    for entry in entries {
        if entry.entry_id.is_empty() {
            return Err(BlockError::invalid(
                EVENTS_SER,
                "every entry needs an entryId",
            ));
        }
        if !seen.insert(entry.entry_id.as_str()) {
            return Err(BlockError::invalid(
                EVENTS_SER,
                format!("entryId {} is duplicated", entry.entry_id),
            ));
        }
    }
    Ok(())
}

impl PubSub {
    /// What goes to the broker: the envelope (or the raw bytes) and its content type.
    pub(super) fn message_bytes(
        &self,
        topic: &str,
        body: &[u8],
        content_type: Option<&str>,
        options: &PublishOptions,
    ) -> Result<(Vec<u8>, String), BlockError> {
        if options.raw_payload {
            let content_type = content_type
                .unwrap_or("application/octet-stream")
                .to_owned();
            return Ok((body.to_vec(), content_type));
        }
        let publish = Publish {
            app_id: &self.app_id,
            pubsub: &self.name,
            topic,
            content_type,
            overrides: &options.cloudevent_overrides,
            // Brokers that enforce TTL get it as metadata; for the rest the envelope carries it.
            expires_in: options.ttl.filter(|_| !self.broker_ttl),
        };
        let envelope = cloudevent::envelope(body, &publish).map_err(|err| {
            BlockError::internal(
                "ERR_PUBSUB_CLOUD_EVENTS_SER",
                format!("error when creating the cloud event for topic {topic}: {err}"),
            )
        })?;
        Ok((envelope, CLOUDEVENTS_JSON.to_owned()))
    }
}

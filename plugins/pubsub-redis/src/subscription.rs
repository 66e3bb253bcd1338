//! One subscription: a consumer group named after `consumerID` on the topic's stream, read by
//! a consumer of the same name (as daprd does), over a connection of its own.
//!
//! - `next` reads new entries with `XREADGROUP ... BLOCK`; when a redelivery check is due it
//!   first claims, with XAUTOCLAIM, entries that have been pending for `processingTimeout`,
//!   and returns those.
//! - A read whose connection breaks after it was sent may have handed out entries whose reply
//!   was lost; the next read takes them back from this consumer's pending list at once
//!   (daprd leaves them to the redelivery check, `processingTimeout` later).
//! - `ack` sends one `XACK` for every success and drop in its batch; a retry leaves the entry
//!   pending, so it comes back through the redelivery check once it has been pending for
//!   `processingTimeout`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use redis::Value;
use redis_common::duration::ceil_millis;
use redis_common::Link;

use crate::bindings::blockhost::plugin::log::{log, Level};
use crate::client::{self, CallError, Client, IntoPubsubError, Retry};
use crate::config::{Config, SubscribeSettings};
use crate::entries::{is_entry_id, parse_autoclaim, parse_read, to_message, Message, RawEntry};
use crate::error::{PubsubError, Result};
use crate::reclaim::Reclaim;

/// Added to a blocking read's block time to make its socket read timeout, when `readTimeout`
/// is not set: Redis answers a timed-out block with a nil reply, which must arrive in time.
const BLOCK_MARGIN: Duration = Duration::from_secs(3);

/// What the host decided about one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Success or drop: remove it from the pending list.
    Done,
    /// Leave it pending for redelivery.
    Retry,
}

pub struct Subscription {
    client: Client,
    topic: String,
    /// The consumer group, and this consumer's name in it.
    group: String,
    queue_depth: u32,
    reclaim: Option<Reclaim>,
    /// The id of the newest entry a read handed out.
    last_read: Option<String>,
    /// A read's reply may have been lost with its connection: the entries it handed out are
    /// pending for this consumer, above `last_read`, and nobody will deliver them.
    recover: bool,
}

impl Subscription {
    /// Opens the subscription on `link` when given (the instance's idle connection: the host
    /// runs subscriptions on instances of their own, which publish nothing), else on a new
    /// connection.
    pub fn open(
        config: Rc<Config>,
        link: Option<Link>,
        topic: String,
        settings: SubscribeSettings,
    ) -> Result<Self> {
        crate::publish::check_topic(&topic)?;
        let Some(group) = settings.consumer_id.clone() else {
            return Err(PubsubError::InvalidArgument(
                "metadata `consumerID` is missing: it names the consumer group \
                 (the sidecar normally sets it to the app id)"
                    .into(),
            ));
        };
        let client = match link {
            Some(link) => client::with_link(&config, link),
            None => client::connect(&config)?,
        };
        let mut sub = Self {
            client,
            topic,
            group,
            queue_depth: settings.queue_depth,
            reclaim: settings
                .redelivery()
                .map(|r| Reclaim::new(r, Instant::now())),
            last_read: None,
            recover: false,
        };
        sub.create_group()?;
        let redelivery = match &sub.reclaim {
            Some(r) => format!(
                "entries pending for {:?} are redelivered, checked every {:?}",
                r.config.min_idle, r.config.interval
            ),
            None => "redelivery is off".to_owned(),
        };
        log(
            Level::Info,
            &format!(
                "subscribed to stream {:?} as consumer group {:?}; {redelivery}",
                sub.topic, sub.group
            ),
        );
        Ok(sub)
    }

    /// `XGROUP CREATE <topic> <group> 0 MKSTREAM`; a group that exists is fine.
    fn create_group(&mut self) -> Result<()> {
        let (topic, group) = (&self.topic, &self.group);
        let created = self.client.run(Retry::Always, |link| {
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(topic)
                .arg(group)
                .arg("0")
                .arg("MKSTREAM")
                .query::<()>(link)
        });
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) if e.code() == Some("WRONGTYPE") => Err(PubsubError::InvalidArgument(format!(
                "the Redis key {topic:?} holds something other than a stream, so it cannot be \
                 used as a topic"
            ))),
            Err(e) => Err(e.into_error(&format!(
                "creating consumer group {group:?} on stream {topic:?}"
            ))),
        }
    }

    /// Up to `max` messages (the `queueDepth` when 0), waiting up to `timeout_ms` for the
    /// first; an empty list when the wait ran out.
    pub fn next(&mut self, max: u32, timeout_ms: u32) -> Result<Vec<Message>> {
        let count = if max == 0 { self.queue_depth } else { max };
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.into());
        let mut recreated = false;
        let mut lost_once = false;
        loop {
            if self.recover {
                let recovered = self.read_own_pending(count)?;
                self.recover = false;
                if !recovered.is_empty() {
                    log(
                        Level::Info,
                        &format!(
                            "recovered {} entries of stream {:?} that a read handed out when \
                             its connection broke",
                            recovered.len(),
                            self.topic
                        ),
                    );
                    return Ok(recovered);
                }
            }
            if self
                .reclaim
                .as_ref()
                .is_some_and(|r| r.is_due(Instant::now()))
            {
                let claimed = self.reclaim(count)?;
                if !claimed.is_empty() {
                    return Ok(claimed);
                }
            }
            let now = Instant::now();
            let mut block = deadline.saturating_duration_since(now);
            if let Some(r) = &self.reclaim {
                block = block.min(r.until_due(now));
            }
            // The first attempt does not retry by itself once the read is sent: Redis may
            // have handed out entries whose reply the broken connection lost.
            let retry = if lost_once {
                Retry::Always
            } else {
                Retry::IfUnsent
            };
            match self.read_new(count, block, retry) {
                Ok(messages) if !messages.is_empty() => return Ok(messages),
                Ok(_) => {}
                Err(CallError::Down(_)) if !lost_once => {
                    lost_once = true;
                    self.recover = true;
                    continue;
                }
                // The group is gone: Redis lost its data (a restart without persistence) or
                // someone deleted the stream. Recreate it, as daprd does, and read on.
                Err(e) if e.code() == Some("NOGROUP") && !recreated => {
                    log(
                        Level::Warn,
                        &format!(
                            "consumer group {:?} of stream {:?} does not exist (Redis lost its \
                             data, or the stream was deleted); recreating it",
                            self.group, self.topic
                        ),
                    );
                    self.create_group()?;
                    if let Some(r) = &mut self.reclaim {
                        r.restart(Instant::now());
                    }
                    recreated = true;
                    continue;
                }
                Err(e) => return Err(e.into_error(&format!("reading stream {:?}", self.topic))),
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    /// `XREADGROUP GROUP <g> <g> COUNT <count> [BLOCK <ms>] STREAMS <topic> >`. A zero block
    /// does not wait at all (Redis's `BLOCK 0` would wait forever, so it is left out).
    fn read_new(
        &mut self,
        count: u32,
        block: Duration,
        retry: Retry,
    ) -> Result<Vec<Message>, CallError> {
        let block_ms = ceil_millis(block);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.group)
            .arg("COUNT")
            .arg(count);
        let socket_timeout = if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
            let margin = self.client.config().read_timeout.unwrap_or(BLOCK_MARGIN);
            Some(Duration::from_millis(block_ms) + margin)
        } else {
            self.client.config().read_timeout
        };
        cmd.arg("STREAMS").arg(&self.topic).arg(">");
        let reply: Value = self.client.run(retry, |link| {
            link.with_read_timeout(socket_timeout, |link| cmd.query(link))
        })?;
        let entries = parse_read(reply).map_err(|e| {
            CallError::Down(format!("Redis sent a reply this plugin cannot read: {e}"))
        })?;
        let messages = self.messages(entries).0;
        self.note_read(&messages);
        Ok(messages)
    }

    /// Keeps `last_read` at the newest id handed out by any read or claim.
    fn note_read(&mut self, messages: &[Message]) {
        let key = |id: &str| {
            let (ms, seq) = id.split_once('-')?;
            Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?))
        };
        for message in messages {
            let newer = match &self.last_read {
                Some(last) => key(&message.id) > key(last),
                None => true,
            };
            if newer {
                self.last_read = Some(message.id.clone());
            }
        }
    }

    /// This consumer's pending entries above `last_read`: what a lost reply handed out.
    /// (`XREADGROUP` with an id instead of `>` reads the consumer's pending list.) A
    /// competing sidecar of the same app shares the consumer name, so an entry it holds may
    /// come twice; at-least-once allows that, and it happens only after a broken read.
    fn read_own_pending(&mut self, count: u32) -> Result<Vec<Message>> {
        let after = self.last_read.clone().unwrap_or_else(|| "0-0".to_owned());
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.group)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&self.topic)
            .arg(&after);
        let reply: Value = match self.client.run(Retry::Always, |link| cmd.query(link)) {
            Ok(reply) => reply,
            // The group is gone with Redis's data: nothing is pending; the read recreates it.
            Err(e) if e.code() == Some("NOGROUP") => return Ok(Vec::new()),
            Err(e) => {
                return Err(e.into_error(&format!(
                    "reading the pending entries of stream {:?}",
                    self.topic
                )))
            }
        };
        let entries = parse_read(reply).map_err(|e| {
            PubsubError::Internal(format!("Redis sent a reply this plugin cannot read: {e}"))
        })?;
        let messages = self.messages(entries).0;
        self.note_read(&messages);
        Ok(messages)
    }

    /// One XAUTOCLAIM step of the redelivery check.
    fn reclaim(&mut self, count: u32) -> Result<Vec<Message>> {
        let Some(reclaim) = &self.reclaim else {
            return Ok(Vec::new());
        };
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.topic)
            .arg(&self.group)
            .arg(&self.group)
            .arg(u64::try_from(reclaim.config.min_idle.as_millis()).unwrap_or(u64::MAX))
            .arg(reclaim.cursor())
            .arg("COUNT")
            .arg(count);
        let reply = self
            .client
            .run(Retry::Always, |link| cmd.query::<Value>(link));
        let now = Instant::now();
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if e.code() == Some("NOGROUP") => {
                // The read that follows recreates the group.
                if let Some(r) = &mut self.reclaim {
                    r.restart(now);
                }
                return Ok(Vec::new());
            }
            Err(e) => {
                return Err(e.into_error(&format!(
                    "claiming pending entries of stream {:?}",
                    self.topic
                )))
            }
        };
        let claimed = parse_autoclaim(reply).map_err(|e| {
            PubsubError::Internal(format!("Redis sent a reply this plugin cannot read: {e}"))
        })?;
        if let Some(r) = &mut self.reclaim {
            r.advance(claimed.cursor, now);
        }
        if !claimed.deleted.is_empty() {
            log(
                Level::Debug,
                &format!(
                    "{} pending entries of stream {:?} were deleted before delivery; Redis dropped them from the pending list",
                    claimed.deleted.len(),
                    self.topic
                ),
            );
        }
        let (messages, gone) = self.messages(claimed.entries);
        self.note_read(&messages);
        if !gone.is_empty() {
            // Redis 6.2 lists deleted entries without fields and keeps them pending: acknowledge
            // them so they stop coming back, as daprd does.
            log(
                Level::Debug,
                &format!(
                    "{} pending entries of stream {:?} no longer exist; acknowledging them",
                    gone.len(),
                    self.topic
                ),
            );
            let (topic, group) = (&self.topic, &self.group);
            self.client
                .run(Retry::Always, |link| {
                    redis::cmd("XACK")
                        .arg(topic)
                        .arg(group)
                        .arg(&gone)
                        .query::<i64>(link)
                })
                .map_err(|e| e.into_error("acknowledging deleted entries"))?;
        }
        if !messages.is_empty() {
            log(
                Level::Debug,
                &format!(
                    "redelivering {} entries of stream {:?} pending for over {:?}",
                    messages.len(),
                    self.topic,
                    self.reclaim
                        .as_ref()
                        .map(|r| r.config.min_idle)
                        .unwrap_or_default()
                ),
            );
        }
        Ok(messages)
    }

    /// The deliverable messages, and the ids of entries that no longer exist.
    fn messages(&self, entries: Vec<RawEntry>) -> (Vec<Message>, Vec<String>) {
        let mut messages = Vec::with_capacity(entries.len());
        let mut gone = Vec::new();
        for entry in entries {
            match entry {
                RawEntry::Present { id, fields } => {
                    let (message, warning) = to_message(id, fields);
                    if let Some(w) = warning {
                        log(Level::Warn, &format!("stream {:?}: {w}", self.topic));
                    }
                    messages.push(message);
                }
                RawEntry::Gone { id } => gone.push(id),
            }
        }
        (messages, gone)
    }

    /// Settles a batch with one `XACK` for every entry that is done; entries to retry stay
    /// pending. Returns the ids that are not entry ids of this stream, each with its error.
    pub fn ack(&mut self, settled: &[(String, Settle)]) -> Result<Vec<(String, PubsubError)>> {
        let mut done = Vec::with_capacity(settled.len());
        let mut rejected = Vec::new();
        for (id, settle) in settled {
            if !is_entry_id(id) {
                rejected.push((
                    id.clone(),
                    PubsubError::InvalidArgument(format!(
                        "{id:?} is not a message id this subscription handed out (stream entry \
                         ids look like 1700000000000-0)"
                    )),
                ));
            } else if *settle == Settle::Done {
                done.push(id.as_str());
            }
            // Settle::Retry stays pending: the redelivery check claims it once it has been
            // pending for processingTimeout.
        }
        if done.is_empty() {
            return Ok(rejected);
        }
        let (topic, group) = (&self.topic, &self.group);
        let acked = self.client.run(Retry::Always, |link| {
            redis::cmd("XACK")
                .arg(topic)
                .arg(group)
                .arg(&done)
                .query::<i64>(link)
        });
        match acked {
            Ok(n) => {
                let missing = done.len().saturating_sub(usize::try_from(n).unwrap_or(0));
                if missing > 0 {
                    log(
                        Level::Debug,
                        &format!(
                            "{missing} of {} acknowledged entries of stream {topic:?} were no \
                             longer pending",
                            done.len()
                        ),
                    );
                }
                Ok(rejected)
            }
            // No group, nothing pending: the acknowledgement has nothing left to do.
            Err(e) if e.code() == Some("NOGROUP") => Ok(rejected),
            Err(e) => Err(e.into_error(&format!(
                "acknowledging {} entries of stream {topic:?}",
                done.len()
            ))),
        }
    }
}

//! One AMQP 0-9-1 connection with one channel, over a blocking `TcpStream` (WASI sockets in the
//! guest). Frames are encoded and decoded by `amq-protocol`; this module frames the byte stream,
//! runs the handshake, reassembles deliveries (method + header + body frames), and answers what
//! the broker may send at any time (connection.close, channel.close, blocked/unblocked).
//!
//! Heartbeats are negotiated off (0): a plugin instance runs only while the sidecar calls into
//! it, so it could not send or answer heartbeats between calls, and the broker would cut idle
//! connections. A connection the broker closed meanwhile is noticed before the next use
//! ([`Connection::is_stale`]) or by the failing read/write, and replaced.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{
    basic, channel, confirm, connection, exchange, queue, AMQPClass, BasicProperties,
};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::config::Endpoint;
use crate::topology::{ExchangeSpec, QueueSpec};

/// The one channel every connection uses.
const CHANNEL: u16 = 1;
/// Connecting to a healthy broker on the network takes milliseconds; a dead address should fail
/// well inside the host's per-call deadline (10 s by default).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the broker may take to answer a synchronous method (handshake, declare, confirm).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// What we offer in tune-ok (RabbitMQ's default is 128 KiB).
const FRAME_MAX: u32 = 128 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Bodies larger than this are refused rather than buffered (RabbitMQ's own limit is 128 MiB by
/// default and at most 512 MiB).
const MAX_BODY: u64 = 512 * 1024 * 1024;
/// The 8 bytes of a frame that are not payload: type, channel, size, frame-end.
const FRAME_OVERHEAD: usize = 8;

/// Why an AMQP operation failed.
#[derive(Debug)]
pub enum AmqpError {
    /// No TCP connection could be made.
    Dial(io::Error),
    /// The connection broke (reset, end of stream, write failure).
    Io(io::Error),
    /// The broker did not answer in time; the connection is no longer trusted.
    Timeout(&'static str),
    /// The broker closed the connection (connection.close).
    ConnectionClosed { code: u16, text: String },
    /// The broker closed the socket right after the login, without a reason: RabbitMQ does that
    /// on a refused login to clients that do not ask for `authentication_failure_close`.
    LoginDropped,
    /// The broker closed the channel (channel.close): the request was refused.
    ChannelClosed { code: u16, text: String },
    /// Bytes that are not AMQP 0-9-1, or a method we did not expect.
    Protocol(String),
    /// A name or value that AMQP cannot carry (a short string over 255 bytes).
    Invalid(String),
}

impl AmqpError {
    /// Whether the connection is lost (or unusable) and must be replaced, as opposed to a
    /// refusal on a connection that is still fine.
    pub fn breaks_connection(&self) -> bool {
        !matches!(
            self,
            AmqpError::ChannelClosed { .. } | AmqpError::Invalid(_)
        )
    }
}

/// One message delivered to our consumer.
#[derive(Debug)]
pub struct Delivery {
    pub tag: u64,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

/// What arrived on the channel.
#[derive(Debug)]
pub enum Event {
    Method(AMQPClass),
    // Boxed: message properties make a delivery several times larger than a method.
    Delivery(Box<Delivery>),
}

/// How long a read may wait for bytes.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Only what is buffered or already readable.
    NoWait,
    Until(Instant),
}

/// A delivery or a returned message whose content frames are still coming.
struct Incoming {
    deliver: Option<basic::Deliver>,
    properties: Option<BasicProperties>,
    size: u64,
    body: Vec<u8>,
}

pub struct Connection {
    stream: TcpStream,
    addr: SocketAddr,
    inbuf: Vec<u8>,
    /// Start of the unparsed bytes in `inbuf`.
    pos: usize,
    frame_max: u32,
    channel_open: bool,
    /// Set once the connection must not be used any more (and not closed politely).
    broken: bool,
    incoming: Option<Incoming>,
    /// Events read while waiting for a reply to something else.
    backlog: VecDeque<Event>,
    /// Delivery tag the broker gives the next publish in confirm mode (0: not in confirm mode).
    next_publish_tag: u64,
}

impl Connection {
    /// Connects, logs in, opens the vhost and channel 1.
    pub fn open(endpoint: &Endpoint, client_name: Option<&str>) -> Result<Self, AmqpError> {
        let stream = TcpStream::connect_timeout(&endpoint.addr, DIAL_TIMEOUT)
            .and_then(|stream| {
                // On wasip2, std's `connect_timeout` returns once the attempt is over, also
                // when it failed: the outcome is in the socket's pending error.
                if let Some(failed) = stream.take_error()? {
                    return Err(failed);
                }
                stream.set_nodelay(true)?;
                stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Ok(stream)
            })
            .map_err(AmqpError::Dial)?;
        let mut conn = Self {
            stream,
            addr: endpoint.addr,
            inbuf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            frame_max: FRAME_MAX,
            channel_open: false,
            broken: false,
            incoming: None,
            backlog: VecDeque::new(),
            next_publish_tag: 0,
        };
        match conn.handshake(endpoint, client_name) {
            Ok(()) => Ok(conn),
            Err(e) => {
                conn.broken = true;
                Err(e)
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn handshake(
        &mut self,
        endpoint: &Endpoint,
        client_name: Option<&str>,
    ) -> Result<(), AmqpError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        self.write_bytes(b"AMQP\x00\x00\x09\x01")?;
        let start = match self.connection_method(deadline)? {
            connection::AMQPMethod::Start(start) => start,
            other => return Err(unexpected("connection.start", &other)),
        };
        let mechanisms = String::from_utf8_lossy(start.mechanisms.as_bytes()).into_owned();
        if !mechanisms.split(' ').any(|m| m == "PLAIN") {
            return Err(AmqpError::Protocol(format!(
                "the broker offers no PLAIN login (it offers {mechanisms})"
            )));
        }
        let response = format!("\0{}\0{}", endpoint.username, endpoint.password.0);
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: client_properties(client_name),
                mechanism: ShortString::from("PLAIN"),
                response: LongString::from(response),
                locale: ShortString::from("en_US"),
            })),
        )?;
        let tune = match self.connection_method(deadline) {
            Ok(connection::AMQPMethod::Tune(tune)) => tune,
            Ok(connection::AMQPMethod::Secure(_)) => {
                return Err(AmqpError::Protocol(
                    "the broker asked for a SASL challenge, which PLAIN does not have".into(),
                ))
            }
            Ok(other) => return Err(unexpected("connection.tune", &other)),
            Err(AmqpError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(AmqpError::LoginDropped)
            }
            Err(e) => return Err(e),
        };
        self.frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        };
        self.send_frames(&[
            AMQPFrame::Method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                    channel_max: tune.channel_max,
                    frame_max: self.frame_max,
                    heartbeat: 0,
                })),
            ),
            AMQPFrame::Method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                    virtual_host: short(&endpoint.vhost)?,
                })),
            ),
        ])?;
        match self.connection_method(deadline)? {
            connection::AMQPMethod::OpenOk(_) => {}
            other => return Err(unexpected("connection.open-ok", &other)),
        }
        self.open_channel()
    }

    /// Reads the next method on channel 0 during the handshake.
    fn connection_method(
        &mut self,
        deadline: Instant,
    ) -> Result<connection::AMQPMethod, AmqpError> {
        loop {
            let Some(frame) = self.read_frame(Wait::Until(deadline))? else {
                return Err(AmqpError::Timeout("the connection handshake"));
            };
            match frame {
                AMQPFrame::Heartbeat | AMQPFrame::InvalidHeartbeat(_) => {}
                AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                    return Err(self.closed_by_broker(c))
                }
                AMQPFrame::Method(0, AMQPClass::Connection(method)) => return Ok(method),
                other => {
                    return Err(AmqpError::Protocol(format!(
                        "unexpected frame during the handshake: {other}"
                    )))
                }
            }
        }
    }

    /// (Re)opens channel 1 after the handshake or after the broker closed it.
    pub fn open_channel(&mut self) -> Result<(), AmqpError> {
        self.rpc(
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            |m| matches!(m, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))),
            "channel.open",
        )?;
        self.channel_open = true;
        self.next_publish_tag = 0;
        Ok(())
    }

    pub fn channel_open(&self) -> bool {
        self.channel_open
    }

    /// Puts the channel in confirm mode: the broker acks (or nacks) every publish by tag.
    pub fn confirm_select(&mut self) -> Result<(), AmqpError> {
        self.rpc(
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
            |m| matches!(m, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))),
            "confirm.select",
        )?;
        self.next_publish_tag = 1;
        Ok(())
    }

    pub fn declare_exchange(&mut self, spec: &ExchangeSpec) -> Result<(), AmqpError> {
        self.rpc(
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
                exchange: short(&spec.name)?,
                kind: short(&spec.kind)?,
                passive: spec.passive,
                durable: spec.durable,
                auto_delete: spec.auto_delete,
                internal: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
            |m| matches!(m, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(_))),
            "exchange.declare",
        )
        .map(drop)
    }

    pub fn declare_queue(&mut self, spec: &QueueSpec) -> Result<(), AmqpError> {
        self.rpc(
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: short(&spec.name)?,
                passive: false,
                durable: spec.durable,
                exclusive: false,
                auto_delete: spec.auto_delete,
                nowait: false,
                arguments: spec.arguments.clone(),
            })),
            |m| matches!(m, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))),
            "queue.declare",
        )
        .map(drop)
    }

    pub fn bind_queue(&mut self, queue: &str, exchange: &str, key: &str) -> Result<(), AmqpError> {
        self.rpc(
            AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                queue: short(queue)?,
                exchange: short(exchange)?,
                routing_key: short(key)?,
                nowait: false,
                arguments: FieldTable::default(),
            })),
            |m| matches!(m, AMQPClass::Queue(queue::AMQPMethod::BindOk(_))),
            "queue.bind",
        )
        .map(drop)
    }

    pub fn qos(&mut self, prefetch_count: u16) -> Result<(), AmqpError> {
        self.rpc(
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count,
                global: false,
            })),
            |m| matches!(m, AMQPClass::Basic(basic::AMQPMethod::QosOk(_))),
            "basic.qos",
        )
        .map(drop)
    }

    /// Starts a consumer (the broker names it) and returns its tag.
    pub fn consume(&mut self, queue: &str, no_ack: bool) -> Result<String, AmqpError> {
        let reply = self.rpc(
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: short(queue)?,
                consumer_tag: ShortString::from(""),
                no_local: false,
                no_ack,
                exclusive: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
            |m| matches!(m, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))),
            "basic.consume",
        )?;
        match reply {
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)) => Ok(ok.consumer_tag.to_string()),
            _ => Ok(String::new()),
        }
    }

    /// Acks and nacks many deliveries in one write: `Some(requeue)` nacks, `None` acks.
    pub fn settle(&mut self, deliveries: &[(u64, Option<bool>)]) -> Result<(), AmqpError> {
        let frames: Vec<AMQPFrame> = deliveries
            .iter()
            .map(|&(delivery_tag, nack)| {
                let method = match nack {
                    None => basic::AMQPMethod::Ack(basic::Ack {
                        delivery_tag,
                        multiple: false,
                    }),
                    Some(requeue) => basic::AMQPMethod::Nack(basic::Nack {
                        delivery_tag,
                        multiple: false,
                        requeue,
                    }),
                };
                AMQPFrame::Method(CHANNEL, AMQPClass::Basic(method))
            })
            .collect();
        self.send_frames(&frames)
    }

    /// Appends one basic.publish (method, header and body frames) to `out` and returns the
    /// delivery tag its confirm will carry.
    pub fn encode_publish(
        &mut self,
        out: &mut Vec<u8>,
        exchange: &ShortString,
        routing_key: &ShortString,
        properties: &BasicProperties,
        body: &[u8],
    ) -> Result<u64, AmqpError> {
        let method = AMQPFrame::Method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: exchange.clone(),
                routing_key: routing_key.clone(),
                mandatory: false,
                immediate: false,
            })),
        );
        encode(out, &method)?;
        encode(
            out,
            &AMQPFrame::Header(
                CHANNEL,
                AMQPContentHeader {
                    class_id: 60,
                    body_size: body.len() as u64,
                    properties: properties.clone(),
                },
            ),
        )?;
        let chunk = (self.frame_max as usize)
            .saturating_sub(FRAME_OVERHEAD)
            .max(1);
        for part in body.chunks(chunk) {
            encode(out, &AMQPFrame::Body(CHANNEL, part.to_vec()))?;
        }
        let tag = self.next_publish_tag;
        self.next_publish_tag += 1;
        Ok(tag)
    }

    /// Writes bytes produced by the `encode_*` functions.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), AmqpError> {
        if let Err(e) = self.stream.write_all(bytes) {
            self.broken = true;
            return Err(AmqpError::Io(e));
        }
        Ok(())
    }

    /// The next event on the channel, `None` when nothing arrived in time. Connection-level
    /// frames are handled here; a channel.close is answered and reported as an error.
    pub fn next_event(&mut self, wait: Wait) -> Result<Option<Event>, AmqpError> {
        if let Some(event) = self.backlog.pop_front() {
            return Ok(Some(event));
        }
        loop {
            let Some(frame) = self.read_frame(wait)? else {
                return Ok(None);
            };
            if let Some(event) = self.on_frame(frame)? {
                return Ok(Some(event));
            }
        }
    }

    /// Whether the broker closed the connection (or it broke) while we were not looking.
    /// Costs one non-blocking read; consumes whatever arrived meanwhile.
    pub fn is_stale(&mut self) -> bool {
        if self.broken {
            return true;
        }
        loop {
            match self.next_event(Wait::NoWait) {
                Ok(None) => return false,
                Ok(Some(event)) => self.backlog.push_back(event),
                Err(e) => return e.breaks_connection() || !self.channel_open,
            }
            // A well-behaved broker sends nothing unasked to an idle publisher; stop holding on
            // to whatever it is once it piles up.
            if self.backlog.len() > 1024 {
                self.backlog.clear();
            }
        }
    }

    /// Sends a method and waits for the reply `is_reply` recognises; other events that arrive
    /// meanwhile are kept for [`Connection::next_event`].
    fn rpc(
        &mut self,
        method: AMQPClass,
        is_reply: impl Fn(&AMQPClass) -> bool,
        what: &'static str,
    ) -> Result<AMQPClass, AmqpError> {
        self.send_method(CHANNEL, method)?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut kept = VecDeque::new();
        let result = loop {
            match self.next_event(Wait::Until(deadline)) {
                Ok(Some(Event::Method(m))) if is_reply(&m) => break Ok(m),
                Ok(Some(event)) => kept.push_back(event),
                Ok(None) => {
                    self.broken = true;
                    break Err(AmqpError::Timeout(what));
                }
                Err(e) => break Err(e),
            }
        };
        kept.append(&mut self.backlog);
        self.backlog = kept;
        result
    }

    fn send_method(&mut self, channel: u16, method: AMQPClass) -> Result<(), AmqpError> {
        self.send_frames(&[AMQPFrame::Method(channel, method)])
    }

    fn send_frames(&mut self, frames: &[AMQPFrame]) -> Result<(), AmqpError> {
        let mut out = Vec::new();
        for frame in frames {
            encode(&mut out, frame)?;
        }
        self.write_bytes(&out)
    }

    fn on_frame(&mut self, frame: AMQPFrame) -> Result<Option<Event>, AmqpError> {
        match frame {
            AMQPFrame::Heartbeat | AMQPFrame::InvalidHeartbeat(_) => Ok(None),
            AMQPFrame::Method(0, AMQPClass::Connection(method)) => match method {
                connection::AMQPMethod::Close(c) => Err(self.closed_by_broker(c)),
                // Resource alarm: publishes wait (and time out) until it clears.
                connection::AMQPMethod::Blocked(_) | connection::AMQPMethod::Unblocked(_) => {
                    Ok(None)
                }
                other => Err(unexpected("a connection method", &other)),
            },
            AMQPFrame::Method(CHANNEL, AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
                // Acknowledge, so the channel can be opened again on this connection.
                self.channel_open = false;
                self.incoming = None;
                self.send_method(
                    CHANNEL,
                    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                )?;
                Err(AmqpError::ChannelClosed {
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                })
            }
            AMQPFrame::Method(CHANNEL, AMQPClass::Basic(basic::AMQPMethod::Deliver(d))) => {
                self.incoming = Some(Incoming {
                    deliver: Some(d),
                    properties: None,
                    size: 0,
                    body: Vec::new(),
                });
                Ok(None)
            }
            AMQPFrame::Method(CHANNEL, AMQPClass::Basic(basic::AMQPMethod::Return(_))) => {
                // We never publish `mandatory`, but a returned message's content still follows.
                self.incoming = Some(Incoming {
                    deliver: None,
                    properties: None,
                    size: 0,
                    body: Vec::new(),
                });
                Ok(None)
            }
            AMQPFrame::Method(CHANNEL, method) => Ok(Some(Event::Method(method))),
            AMQPFrame::Header(CHANNEL, header) => {
                let Some(incoming) = self.incoming.as_mut() else {
                    return Err(AmqpError::Protocol(
                        "content header without a method".into(),
                    ));
                };
                if header.body_size > MAX_BODY {
                    return Err(AmqpError::Protocol(format!(
                        "a message of {} bytes is larger than this plugin accepts ({MAX_BODY})",
                        header.body_size
                    )));
                }
                incoming.size = header.body_size;
                incoming.body = Vec::with_capacity(header.body_size.min(1 << 20) as usize);
                incoming.properties = Some(header.properties);
                Ok(self.complete_content())
            }
            AMQPFrame::Body(CHANNEL, bytes) => {
                let Some(incoming) = self.incoming.as_mut().filter(|i| i.properties.is_some())
                else {
                    return Err(AmqpError::Protocol("content body without a header".into()));
                };
                incoming.body.extend_from_slice(&bytes);
                if incoming.body.len() as u64 > incoming.size {
                    return Err(AmqpError::Protocol(
                        "content body longer than announced".into(),
                    ));
                }
                Ok(self.complete_content())
            }
            other => Err(AmqpError::Protocol(format!("unexpected frame: {other}"))),
        }
    }

    /// The delivery whose body is complete, if any.
    fn complete_content(&mut self) -> Option<Event> {
        let done = self
            .incoming
            .as_ref()
            .is_some_and(|i| i.properties.is_some() && i.body.len() as u64 == i.size);
        if !done {
            return None;
        }
        let incoming = self.incoming.take()?;
        let deliver = incoming.deliver?;
        Some(Event::Delivery(Box::new(Delivery {
            tag: deliver.delivery_tag,
            properties: incoming.properties.unwrap_or_default(),
            body: incoming.body,
        })))
    }

    /// Answers a connection.close and turns it into an error.
    fn closed_by_broker(&mut self, close: connection::Close) -> AmqpError {
        let _ = self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
        );
        self.broken = true;
        AmqpError::ConnectionClosed {
            code: close.reply_code,
            text: close.reply_text.to_string(),
        }
    }

    /// The next whole frame, reading from the socket as `wait` allows.
    fn read_frame(&mut self, wait: Wait) -> Result<Option<AMQPFrame>, AmqpError> {
        loop {
            if let Some(frame) = self.parse_buffered()? {
                return Ok(Some(frame));
            }
            if !self.fill(wait)? {
                return Ok(None);
            }
        }
    }

    /// One frame from the buffer, if a whole one is there.
    fn parse_buffered(&mut self) -> Result<Option<AMQPFrame>, AmqpError> {
        let data = &self.inbuf[self.pos..];
        if data.first() == Some(&b'A') {
            self.broken = true;
            return Err(AmqpError::Protocol(
                "the broker does not speak AMQP 0-9-1 (it answered with its own protocol header)"
                    .into(),
            ));
        }
        if data.len() < 7 {
            return Ok(None);
        }
        let size = u32::from_be_bytes([data[3], data[4], data[5], data[6]]) as usize;
        if size > self.frame_max as usize + FRAME_OVERHEAD {
            self.broken = true;
            return Err(AmqpError::Protocol(format!(
                "a frame of {size} bytes exceeds the negotiated frame-max ({})",
                self.frame_max
            )));
        }
        let total = size + FRAME_OVERHEAD;
        if data.len() < total {
            return Ok(None);
        }
        let frame = match parse_frame(&data[..total]) {
            Ok(([], frame)) => frame,
            _ => {
                self.broken = true;
                return Err(AmqpError::Protocol(format!(
                    "a malformed frame (type {}, channel {})",
                    data[0],
                    u16::from_be_bytes([data[1], data[2]])
                )));
            }
        };
        self.pos += total;
        if self.pos == self.inbuf.len() {
            self.inbuf.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.inbuf.drain(..self.pos);
            self.pos = 0;
        }
        Ok(Some(frame))
    }

    /// Reads more bytes; `false` when none came in time.
    fn fill(&mut self, wait: Wait) -> Result<bool, AmqpError> {
        let len = self.inbuf.len();
        self.inbuf.resize(len + READ_CHUNK, 0);
        let result = match wait {
            Wait::NoWait => self.read_nonblocking(len),
            Wait::Until(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    // Out of time (or a zero timeout): still take what is already there.
                    self.read_nonblocking(len)
                } else {
                    // A zero timeout is an error for std; wake at least every second to
                    // re-check the deadline.
                    let timeout =
                        (deadline - now).clamp(Duration::from_millis(1), Duration::from_secs(1));
                    match self.stream.set_read_timeout(Some(timeout)) {
                        Ok(()) => self.stream.read(&mut self.inbuf[len..]),
                        Err(e) => Err(e),
                    }
                }
            }
        };
        match result {
            Ok(0) => {
                self.inbuf.truncate(len);
                self.broken = true;
                Err(AmqpError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the broker closed the connection",
                )))
            }
            Ok(n) => {
                self.inbuf.truncate(len + n);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                self.inbuf.truncate(len);
                // Not the deadline yet (a one-second slice, or a spurious wake-up): go on.
                Ok(matches!(wait, Wait::Until(deadline) if Instant::now() < deadline))
            }
            Err(e) => {
                self.inbuf.truncate(len);
                self.broken = true;
                Err(AmqpError::Io(e))
            }
        }
    }

    fn read_nonblocking(&mut self, len: usize) -> io::Result<usize> {
        self.stream.set_nonblocking(true)?;
        let result = self.stream.read(&mut self.inbuf[len..]);
        self.stream.set_nonblocking(false)?;
        result
    }
}

impl Drop for Connection {
    /// Closes politely (connection.close, then wait briefly for close-ok) unless the connection
    /// is already broken. The broker requeues whatever this connection had not acknowledged.
    fn drop(&mut self) {
        if self.broken {
            return;
        }
        let close = AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: ShortString::from("closed by blockhost"),
            class_id: 0,
            method_id: 0,
        }));
        if self.send_method(0, close).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Ok(Some(frame)) = self.read_frame(Wait::Until(deadline)) {
            if matches!(
                frame,
                AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))
                    | AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(_)))
            ) {
                return;
            }
        }
    }
}

fn encode(out: &mut Vec<u8>, frame: &AMQPFrame) -> Result<(), AmqpError> {
    let buffer = std::mem::take(out);
    match gen_frame(frame)(WriteContext::from(buffer)) {
        Ok(context) => {
            *out = context.write;
            Ok(())
        }
        Err(e) => Err(AmqpError::Protocol(format!("cannot encode a frame: {e:?}"))),
    }
}

/// A short string from text that may be too long for one.
pub fn short(text: &str) -> Result<ShortString, AmqpError> {
    ShortString::try_new(text).map_err(|_| {
        AmqpError::Invalid(format!(
            "{:?}… is {} bytes long; AMQP allows at most 255 here",
            text.chars().take(40).collect::<String>(),
            text.len()
        ))
    })
}

fn unexpected(wanted: &str, got: &impl std::fmt::Debug) -> AmqpError {
    AmqpError::Protocol(format!("expected {wanted}, the broker sent {got:?}"))
}

fn client_properties(client_name: Option<&str>) -> FieldTable {
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let mut capabilities = FieldTable::default();
    for capability in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        // A refused login then comes as connection.close with a reason, not a bare hang-up.
        "authentication_failure_close",
    ] {
        capabilities.insert(ShortString::from(capability), AMQPValue::Boolean(true));
    }
    let mut properties = FieldTable::default();
    properties.insert(
        ShortString::from("product"),
        text("blockhost pubsub.rabbitmq"),
    );
    properties.insert(
        ShortString::from("version"),
        text(env!("CARGO_PKG_VERSION")),
    );
    properties.insert(ShortString::from("platform"), text("Rust, wasm32-wasip2"));
    properties.insert(
        ShortString::from("capabilities"),
        AMQPValue::FieldTable(capabilities),
    );
    if let Some(name) = client_name {
        properties.insert(ShortString::from("connection_name"), text(name));
    }
    properties
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_frames_round_trip_through_the_codec() {
        let mut out = Vec::new();
        let properties = BasicProperties::default()
            .with_content_type(ShortString::from("text/plain"))
            .with_delivery_mode(2);
        let body = vec![7u8; 300];
        let method = AMQPFrame::Method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: ShortString::from("orders"),
                routing_key: ShortString::from(""),
                mandatory: false,
                immediate: false,
            })),
        );
        encode(&mut out, &method).unwrap();
        encode(
            &mut out,
            &AMQPFrame::Header(
                CHANNEL,
                AMQPContentHeader {
                    class_id: 60,
                    body_size: 300,
                    properties: properties.clone(),
                },
            ),
        )
        .unwrap();
        for part in body.chunks(128) {
            encode(&mut out, &AMQPFrame::Body(CHANNEL, part.to_vec())).unwrap();
        }
        let mut rest = out.as_slice();
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let (tail, frame) = parse_frame(rest).unwrap();
            frames.push(frame);
            rest = tail;
        }
        assert_eq!(frames.len(), 2 + 3);
        assert_eq!(frames[0], method);
        match &frames[1] {
            AMQPFrame::Header(1, h) => {
                assert_eq!(h.body_size, 300);
                assert_eq!(h.properties, properties);
            }
            other => panic!("{other:?}"),
        }
        let received: Vec<u8> = frames[2..]
            .iter()
            .flat_map(|f| match f {
                AMQPFrame::Body(1, b) => b.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(received, body);
    }
}

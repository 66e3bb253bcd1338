//! A connection that heals itself: opened on first use, checked before every request, replaced
//! whenever it breaks, with daprd's `redisMaxRetries` applied to what is safe to send again.

use std::io;
use std::thread::sleep;
use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::connection::{Connection, REDIS_HOST};
use crate::link::{Link, OpenError};

/// go-redis's default backoff bounds between retries.
const MIN_BACKOFF: Duration = Duration::from_millis(8);
const MAX_BACKOFF: Duration = Duration::from_millis(512);

/// When a request that failed on a broken connection may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Requests whose repetition is harmless.
    Always,
    /// Requests a second attempt would apply twice (a conditional write, a publish): sent
    /// again only if the first never left.
    IfUnsent,
}

/// The log levels the client writes at; each plugin maps them onto its own host binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Warn,
}

/// What differs between the plugins: where logs go (their WIT bindings are their own), and
/// what a lost `IfUnsent` request means to the caller.
#[derive(Clone, Copy)]
pub struct Hooks {
    pub log: fn(Level, &str),
    /// Appended to the error when an `IfUnsent` request was lost after it was sent.
    pub unsent_fate: &'static str,
}

/// A request's failure.
#[derive(Debug)]
pub enum CallError {
    /// Redis answered with an error reply; the connection is fine.
    Server(RedisError),
    /// Redis cannot be reached, or the connection broke; the text says which.
    Down(String),
}

impl CallError {
    /// The Redis error code (`NOGROUP`, `BUSYGROUP`, `WRONGTYPE`...), if Redis answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Server(e) => e.code(),
            Self::Down(_) => None,
        }
    }
}

/// Whether an error reply says Redis is not ready yet (loading, or its master is down): the
/// plugins report it as unavailable rather than as a failed request.
pub fn not_ready(err: &RedisError) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown)
    )
}

pub struct Client {
    config: Connection,
    hooks: Hooks,
    link: Option<Link>,
}

impl Client {
    /// A client that connects on first use.
    pub fn new(config: Connection, hooks: Hooks) -> Self {
        Self::with(config, hooks, None)
    }

    /// A client that starts out with `link`, if any (checked before first use like any other).
    pub fn with(config: Connection, hooks: Hooks, link: Option<Link>) -> Self {
        Self {
            config,
            hooks,
            link,
        }
    }

    /// Connects and pings, as daprd's init does, so a wrong address or password fails at once.
    pub fn connect(config: Connection, hooks: Hooks) -> Result<Self, CallError> {
        let mut client = Self::new(config, hooks);
        // Opening the link already pinged.
        client.run(Retry::Always, |_link| Ok(()))?;
        Ok(client)
    }

    /// Gives up the open connection, if any; the client opens a new one when next used.
    pub fn take_link(&mut self) -> Option<Link> {
        self.link.take()
    }

    pub fn config(&self) -> &Connection {
        &self.config
    }

    /// Runs `request` on a healthy connection, reconnecting and retrying per `retry`.
    pub fn run<T>(
        &mut self,
        retry: Retry,
        mut request: impl FnMut(&mut Link) -> redis::RedisResult<T>,
    ) -> Result<T, CallError> {
        let mut retries = 0;
        loop {
            let may_retry = retries < self.config.max_retries;
            let link = match self.ready_link() {
                Ok(link) => link,
                // Nothing was sent, so any request may try again, unless waiting would only
                // repeat a timeout, or Redis answered and refused (it would refuse again).
                Err(OpenError::Dial(err)) if may_retry && err.kind() != io::ErrorKind::TimedOut => {
                    backoff(&mut retries);
                    continue;
                }
                Err(OpenError::Setup(err))
                    if may_retry && breaks_link(&err) && !err.is_timeout() =>
                {
                    backoff(&mut retries);
                    continue;
                }
                Err(err) => return Err(CallError::Down(self.open_error(&err))),
            };
            match request(link) {
                Ok(value) => return Ok(value),
                Err(err) if breaks_link(&err) => {
                    self.link = None;
                    let lost = format!("connection to Redis at {} lost: {err}", self.config.addr);
                    (self.hooks.log)(Level::Warn, &lost);
                    if may_retry && retry == Retry::Always && !err.is_timeout() {
                        backoff(&mut retries);
                        continue;
                    }
                    return Err(CallError::Down(self.lost_error(&err, retry)));
                }
                Err(err) => return Err(CallError::Server(err)),
            }
        }
    }

    /// The open connection if Redis has not closed it meanwhile, else a new one.
    fn ready_link(&mut self) -> Result<&mut Link, OpenError> {
        if self.link.as_mut().is_some_and(Link::is_stale) {
            (self.hooks.log)(
                Level::Debug,
                &format!(
                    "Redis at {} closed the idle connection; reconnecting",
                    self.config.addr
                ),
            );
            self.link = None;
        }
        match &mut self.link {
            Some(link) => Ok(link),
            slot => Ok(slot.insert(Link::open(&self.config)?)),
        }
    }

    fn open_error(&self, err: &OpenError) -> String {
        let addr = self.config.addr;
        match err {
            OpenError::Dial(e) if e.kind() == io::ErrorKind::TimedOut => format!(
                "cannot connect to Redis at {addr} ({REDIS_HOST}): no answer within {:?} (dialTimeout)",
                self.config.dial_timeout.unwrap_or_default()
            ),
            OpenError::Dial(e) => format!("cannot connect to Redis at {addr} ({REDIS_HOST}): {e}"),
            OpenError::Setup(e) if e.is_timeout() => self.no_reply(),
            OpenError::Setup(e) if breaks_link(e) => {
                format!("connection to Redis at {addr} lost while connecting: {e}")
            }
            OpenError::Setup(e) if e.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading) => {
                format!("Redis at {addr} is still loading its data: {e}")
            }
            // An error reply to AUTH / SELECT; Redis's text never echoes the password.
            OpenError::Setup(e) => format!(
                "Redis at {addr} refused the connection setup \
                 (check redisUsername, redisPassword, redisDB): {e}"
            ),
        }
    }

    fn lost_error(&self, err: &RedisError, retry: Retry) -> String {
        let what = if err.is_timeout() {
            self.no_reply()
        } else {
            format!("connection to Redis at {} lost: {err}", self.config.addr)
        };
        let fate = match retry {
            Retry::Always => "",
            Retry::IfUnsent => self.hooks.unsent_fate,
        };
        format!("{what}{fate}")
    }

    fn no_reply(&self) -> String {
        match self.config.read_timeout {
            Some(t) => format!(
                "Redis at {} did not answer within {t:?} (readTimeout)",
                self.config.addr
            ),
            None => format!("Redis at {} stopped answering", self.config.addr),
        }
    }
}

/// Errors after which the byte stream cannot be trusted: the socket failed, or the reply did
/// not parse. Error replies from Redis leave the connection usable.
fn breaks_link(err: &RedisError) -> bool {
    matches!(err.kind(), ErrorKind::Io | ErrorKind::Parse)
}

/// The first retry goes at once (the usual failure is a connection Redis closed); later ones
/// back off exponentially.
fn backoff(retries: &mut u32) {
    if *retries > 0 {
        let factor = 1u32 << (*retries - 1).min(6);
        sleep((MIN_BACKOFF * factor).min(MAX_BACKOFF));
    }
    *retries += 1;
}

//! A connection that heals itself: opened on first use, checked before every request, replaced
//! whenever it breaks, with daprd's `redisMaxRetries` applied to what is safe to send again.
//! Each plugin instance has one for publishing; each subscription has one of its own (its
//! reads block).

use std::io;
use std::rc::Rc;
use std::thread::sleep;
use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::bindings::blockhost::plugin::log::{log, Level};
use crate::config::{Config, REDIS_HOST};
use crate::error::PubsubError;
use crate::link::{Link, OpenError};

/// go-redis's default backoff bounds between retries.
const MIN_BACKOFF: Duration = Duration::from_millis(8);
const MAX_BACKOFF: Duration = Duration::from_millis(512);

/// When a request that failed on a broken connection may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Requests whose repetition is harmless (XACK, XGROUP CREATE, reads: an entry handed out
    /// by a read whose reply was lost stays pending and is redelivered).
    Always,
    /// XADD: a second attempt after the first reached Redis would publish the message twice,
    /// so it is sent again only if the first never left.
    IfUnsent,
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

    pub fn into_error(self, doing: &str) -> PubsubError {
        match self {
            Self::Down(m) => PubsubError::Unavailable(m),
            Self::Server(e) => match e.kind() {
                ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown) => {
                    PubsubError::Unavailable(format!("Redis is not ready: {e}"))
                }
                _ => PubsubError::Internal(format!("{doing}: Redis answered with an error: {e}")),
            },
        }
    }
}

pub struct Client {
    config: Rc<Config>,
    link: Option<Link>,
}

impl Client {
    /// Connects and pings, as daprd's init does, so a wrong address or password fails at once.
    pub fn connect(config: Rc<Config>) -> Result<Self, PubsubError> {
        let mut client = Self { config, link: None };
        // Opening the link already pinged.
        client
            .run(Retry::Always, |_link| Ok(()))
            .map_err(|e| e.into_error("connecting"))?;
        Ok(client)
    }

    /// A client that starts out with `link` (checked before first use like any other).
    pub fn with_link(config: Rc<Config>, link: Link) -> Self {
        Self {
            config,
            link: Some(link),
        }
    }

    /// Gives up the open connection, if any; the client opens a new one when next used.
    pub fn take_link(&mut self) -> Option<Link> {
        self.link.take()
    }

    pub fn config(&self) -> &Config {
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
                    log(
                        Level::Warn,
                        &format!("connection to Redis at {} lost: {err}", self.config.addr),
                    );
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
            log(
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
            Retry::IfUnsent => "; the message may or may not have been published",
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

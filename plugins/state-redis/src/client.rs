//! The instance's one connection: opened at init, reused by every call, replaced whenever it
//! breaks, with daprd's `redisMaxRetries` applied to what is safe to send again.

use std::io;
use std::thread::sleep;
use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};
use state_common::bindings::blockhost::plugin::log::{log, Level};
use state_common::StateError;

use crate::config::{Config, REDIS_HOST};
use crate::link::{Link, OpenError};

/// go-redis's default backoff bounds between retries.
const MIN_BACKOFF: Duration = Duration::from_millis(8);
const MAX_BACKOFF: Duration = Duration::from_millis(512);

/// When a request that failed on a broken connection may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads, and writes that leave the same data when applied twice (no ETag, no first-write).
    Always,
    /// Conditional writes: a second attempt after the first reached Redis would report a
    /// conflict with itself, so they are sent again only if the first never left.
    IfUnsent,
}

pub struct Client {
    config: Config,
    link: Option<Link>,
}

impl Client {
    /// Connects and pings, as daprd's init does, so a wrong address or password fails the
    /// component at load time.
    pub fn connect(config: Config) -> Result<Self, StateError> {
        let mut client = Self { config, link: None };
        // Opening the link already pinged.
        client.run(Retry::Always, |_link| Ok(()))?;
        Ok(client)
    }

    /// Runs `request` on a healthy connection, reconnecting and retrying per `retry`.
    pub fn run<T>(
        &mut self,
        retry: Retry,
        mut request: impl FnMut(&mut Link) -> redis::RedisResult<T>,
    ) -> Result<T, StateError> {
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
                Err(err) => return Err(self.open_error(&err)),
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
                    return Err(self.lost_error(&err, retry));
                }
                Err(err) => return Err(server_error(&err)),
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

    fn open_error(&self, err: &OpenError) -> StateError {
        let addr = self.config.addr;
        StateError::Unavailable(match err {
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
        })
    }

    fn lost_error(&self, err: &RedisError, retry: Retry) -> StateError {
        let what = if err.is_timeout() {
            self.no_reply()
        } else {
            format!("connection to Redis at {} lost: {err}", self.config.addr)
        };
        let fate = match retry {
            Retry::Always => "",
            Retry::IfUnsent => {
                "; the write may or may not have been applied: read the key for its current ETag"
            }
        };
        StateError::Unavailable(format!("{what}{fate}"))
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

fn server_error(err: &RedisError) -> StateError {
    match err.kind() {
        ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown) => {
            StateError::Unavailable(format!("Redis is not ready: {err}"))
        }
        _ => StateError::Internal(format!("Redis answered with an error: {err}")),
    }
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

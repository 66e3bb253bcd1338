//! The instance's one connection (`redis_common::Client`), with its failures as state-store
//! errors and its logs on the host's log.

use redis::RedisError;
use redis_common::{not_ready, CallError, Connection, Hooks, Level, Link};
use state_common::bindings::blockhost::plugin::log::{log, Level as HostLevel};
use state_common::StateError;

pub use redis_common::Retry;

const HOOKS: Hooks = Hooks {
    log: log_to_host,
    // Conditional writes are `IfUnsent`: a second attempt would conflict with itself.
    unsent_fate: "; the write may or may not have been applied: read the key for its current ETag",
};

fn log_to_host(level: Level, message: &str) {
    let level = match level {
        Level::Debug => HostLevel::Debug,
        Level::Warn => HostLevel::Warn,
    };
    log(level, message);
}

pub struct Client(redis_common::Client);

impl Client {
    /// Connects and pings, as daprd's init does, so a wrong address or password fails the
    /// component at load time.
    pub fn connect(config: Connection) -> Result<Self, StateError> {
        redis_common::Client::connect(config, HOOKS)
            .map(Self)
            .map_err(state_error)
    }

    /// Runs `request` on a healthy connection, reconnecting and retrying per `retry`.
    pub fn run<T>(
        &mut self,
        retry: Retry,
        request: impl FnMut(&mut Link) -> redis::RedisResult<T>,
    ) -> Result<T, StateError> {
        self.0.run(retry, request).map_err(state_error)
    }
}

fn state_error(err: CallError) -> StateError {
    match err {
        CallError::Down(message) => StateError::Unavailable(message),
        CallError::Server(err) => server_error(&err),
    }
}

fn server_error(err: &RedisError) -> StateError {
    if not_ready(err) {
        StateError::Unavailable(format!("Redis is not ready: {err}"))
    } else {
        StateError::Internal(format!("Redis answered with an error: {err}"))
    }
}

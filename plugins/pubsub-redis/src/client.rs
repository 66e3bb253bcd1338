//! The shared self-healing client (`redis_common::Client`) with this plugin's logging and
//! errors. Each plugin instance has one for publishing; each subscription has one of its own
//! (its reads block).

use redis_common::{not_ready, Hooks, Level, Link};

pub use redis_common::{CallError, Client, Retry};

use crate::bindings::blockhost::plugin::log::{log, Level as HostLevel};
use crate::config::Config;
use crate::error::PubsubError;

const HOOKS: Hooks = Hooks {
    log: log_to_host,
    // XADD is `IfUnsent`: a second attempt after the first reached Redis would publish twice.
    // (XACK and XGROUP CREATE are `Always`. A read is `IfUnsent` at first: when its reply is
    // lost, the subscription reads back what it handed out, see `Subscription::next`.)
    unsent_fate: "; the message may or may not have been published",
};

fn log_to_host(level: Level, message: &str) {
    let level = match level {
        Level::Debug => HostLevel::Debug,
        Level::Warn => HostLevel::Warn,
    };
    log(level, message);
}

/// Connects and pings, as daprd's init does, so a wrong address or password fails at once.
pub fn connect(config: &Config) -> Result<Client, PubsubError> {
    Client::connect(config.conn.clone(), HOOKS).map_err(|e| e.into_error("connecting"))
}

/// A client that starts out with `link` (checked before first use like any other).
pub fn with_link(config: &Config, link: Link) -> Client {
    Client::with(config.conn.clone(), HOOKS, Some(link))
}

/// A failed request as this plugin reports it; `doing` says what was being attempted.
pub trait IntoPubsubError {
    fn into_error(self, doing: &str) -> PubsubError;
}

impl IntoPubsubError for CallError {
    fn into_error(self, doing: &str) -> PubsubError {
        match self {
            Self::Down(m) => PubsubError::Unavailable(m),
            Self::Server(e) if not_ready(&e) => {
                PubsubError::Unavailable(format!("Redis is not ready: {e}"))
            }
            Self::Server(e) => {
                PubsubError::Internal(format!("{doing}: Redis answered with an error: {e}"))
            }
        }
    }
}

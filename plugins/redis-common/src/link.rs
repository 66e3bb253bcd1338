//! One TCP connection to Redis, speaking through the `redis` crate's command packing and reply
//! parser. It is ours rather than `redis::Connection` for two reasons: before a request goes out
//! we can ask the socket whether Redis has closed the connection while it sat idle (a restart,
//! an idle timeout) and reconnect *before* sending, and a blocking read can stretch the socket's
//! read timeout past its block time for just that one command.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use redis::{ConnectionLike, Parser, RedisError, RedisResult, Value};

use crate::connection::Connection;

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// No TCP connection: refused, unreachable, or no answer within `dialTimeout`.
    Dial(io::Error),
    /// Connected, but the AUTH / SELECT / PING exchange failed.
    Setup(RedisError),
}

pub struct Link {
    stream: TcpStream,
    parser: Parser,
    db: i64,
    read_timeout: Option<Duration>,
}

impl Link {
    /// Connects, authenticates, selects the database and pings, in one round trip after the
    /// TCP handshake.
    pub fn open(config: &Connection) -> Result<Self, OpenError> {
        let stream = match config.dial_timeout {
            Some(timeout) => TcpStream::connect_timeout(&config.addr, timeout),
            None => TcpStream::connect(config.addr),
        }
        .and_then(|stream| {
            // On wasip2, std's `connect_timeout` returns once the attempt is over, also when it
            // failed: the outcome is in the socket's pending error.
            if let Some(failed) = stream.take_error()? {
                return Err(failed);
            }
            stream.set_nodelay(true)?;
            stream.set_read_timeout(config.read_timeout)?;
            stream.set_write_timeout(config.write_timeout)?;
            Ok(stream)
        })
        .map_err(OpenError::Dial)?;
        let mut link = Self {
            stream,
            parser: Parser::new(),
            db: config.db,
            read_timeout: config.read_timeout,
        };
        let mut hello = redis::pipe();
        if let Some(password) = &config.password {
            let auth = hello.cmd("AUTH");
            if let Some(user) = &config.username {
                auth.arg(user);
            }
            auth.arg(&password.0).ignore();
        }
        if config.db != 0 {
            hello.cmd("SELECT").arg(config.db).ignore();
        }
        hello.cmd("PING").ignore();
        hello.query::<()>(&mut link).map_err(OpenError::Setup)?;
        Ok(link)
    }

    /// Whether the connection is unusable although nothing is in flight: Redis closed it (end of
    /// stream), reset it, or sent bytes nobody asked for. Costs one non-blocking read.
    pub fn is_stale(&mut self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let probe = self.stream.read(&mut byte);
        let restored = self.stream.set_nonblocking(false).is_ok();
        let idle = matches!(&probe, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        !(idle && restored)
    }

    /// Runs `request` with the socket's read timeout set to `timeout` (a blocking read needs
    /// more than the usual), then restores the usual one.
    pub fn with_read_timeout<T>(
        &mut self,
        timeout: Option<Duration>,
        request: impl FnOnce(&mut Self) -> RedisResult<T>,
    ) -> RedisResult<T> {
        self.stream.set_read_timeout(timeout)?;
        let result = request(self);
        // A failure to restore is a broken socket: the next request finds out.
        let _ = self.stream.set_read_timeout(self.read_timeout);
        result
    }

    fn send(&mut self, bytes: &[u8]) -> RedisResult<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    fn reply(&mut self) -> RedisResult<Value> {
        self.parser.parse_value(&mut self.stream)
    }
}

impl ConnectionLike for Link {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.send(cmd)?;
        self.reply()
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.send(cmd)?;
        let mut replies = Vec::with_capacity(count);
        // Every reply is read, even after an error reply, so the stream stays in step.
        for index in 0..offset + count {
            let reply = self.reply()?;
            if index >= offset {
                replies.push(reply);
            }
        }
        Ok(replies)
    }

    fn get_db(&self) -> i64 {
        self.db
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").query::<()>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        true
    }
}

//! A real `redis-server` for a test: its own free loopback port and temp dir, no persistence
//! unless asked, killed when dropped.
//!
//! ```no_run
//! use blockhost_tests::redis::RedisServer;
//!
//! let mut server = RedisServer::start();      // answers PING when this returns
//! let redis_host = server.addr();             // "127.0.0.1:<port>", for a component
//! let mut con = server.connection();          // a direct client, for checks
//! redis::cmd("SET").arg("k").arg("v").exec(&mut con).unwrap();
//! server.restart();                           // same port, same dir; clients are cut off
//! server.stop();                              // down until `resume()`
//! let _durable = RedisServer::builder().aof_always().start();
//! ```
//!
//! The binary is `redis-server` from the PATH (`BLOCKHOST_REDIS_SERVER` overrides it);
//! `cargo xtask test` installs Debian's package (7.0) on machines that lack it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use redis::IntoConnectionInfo as _;
use tempfile::TempDir;

use crate::ports::free_port;

/// How long a server may take to answer PING after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for [`RedisServer`]; create with [`RedisServer::builder`].
#[derive(Debug, Clone, Default)]
pub struct RedisBuilder {
    aof_always: bool,
    password: Option<String>,
}

impl RedisBuilder {
    /// Turns on the append-only file with `appendfsync always`: every acknowledged write
    /// survives [`RedisServer::restart`] and [`RedisServer::kill`].
    pub fn aof_always(mut self) -> Self {
        self.aof_always = true;
        self
    }

    /// Requires clients to `AUTH` with `password` (`requirepass`).
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Starts the server and waits until it answers PING.
    #[track_caller]
    pub fn start(self) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("blockhost-redis-")
            .tempdir()
            .expect("create redis temp dir");
        let mut server = RedisServer {
            port: free_port(),
            dir,
            options: self,
            child: None,
        };
        server.spawn();
        server
    }
}

/// A running `redis-server` on `127.0.0.1:<port()>`.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    options: RedisBuilder,
    child: Option<Child>,
}

impl RedisServer {
    /// A server with the default options: no RDB snapshots, no AOF, no password.
    #[track_caller]
    pub fn start() -> Self {
        Self::builder().start()
    }

    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, as a component's `redisHost` takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's working directory (AOF files, `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A direct client connection (authenticated when the server has a password).
    #[track_caller]
    pub fn connection(&self) -> redis::Connection {
        self.try_connection()
            .unwrap_or_else(|e| panic!("connect to redis at {}: {e}", self.addr()))
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    #[track_caller]
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // `kill` from the PATH keeps this crate free of unsafe code and libc.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server on port {} ignored SIGTERM", self.port);
            }
            sleep(Duration::from_millis(5));
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again on the same port with the same dir; returns when it
    /// answers PING. Clients see their connections closed.
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts the server again after [`RedisServer::stop`] or [`RedisServer::kill`].
    #[track_caller]
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        let mut info = redis::RedisConnectionInfo::default();
        if let Some(password) = &self.options.password {
            info = info.set_password(password);
        }
        let addr = redis::ConnectionAddr::Tcp("127.0.0.1".into(), self.port);
        let client = redis::Client::open(addr.into_connection_info()?.set_redis_settings(info))?;
        client.get_connection_with_timeout(Duration::from_secs(2))
    }

    #[track_caller]
    fn spawn(&mut self) {
        let bin = std::env::var("BLOCKHOST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut command = Command::new(&bin);
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(["--save", ""])
            .args(["--daemonize", "no"]);
        if self.options.aof_always {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        if let Some(password) = &self.options.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}): run `cargo xtask test`, which installs it, or set BLOCKHOST_REDIS_SERVER")
            });
        self.child = Some(child);
        self.wait_ready();
    }

    #[track_caller]
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "redis-server on port {} exited with {status}; its log:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
            let pong = self
                .try_connection()
                .and_then(|mut con| redis::cmd("PING").query::<String>(&mut con));
            if pong.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} not answering PING after {READY_TIMEOUT:?}: {pong:?}; log:\n{}",
                self.port,
                self.log()
            );
            sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

//! A real RabbitMQ broker for a test run: its own free AMQP and distribution ports, node name and
//! data/log dirs in a temp dir, no plugins, the default `guest`/`guest` user (allowed from
//! loopback). It takes seconds to boot: start one per test binary and share it (separate topics
//! or consumer ids keep tests apart), not one per test.
//!
//! ```no_run
//! use blockhost_tests::rabbitmq::RabbitMqServer;
//!
//! let mut broker = RabbitMqServer::start();      // accepts AMQP connections when this returns
//! let url = broker.amqp_url();                   // "amqp://guest:guest@127.0.0.1:<port>/"
//! let queues = broker.rabbitmqctl(&["list_queues", "name", "messages"]);
//! assert_eq!(broker.queue_messages("app-orders"), None); // not declared yet
//! broker.restart();                              // same port and data; clients are cut off
//! broker.stop();                                 // down until `resume()`
//! ```
//!
//! `rabbitmq-server` and `rabbitmqctl` come from the PATH (Debian's `rabbitmq-server` package,
//! 3.10). Run as root, the server switches to the `rabbitmq` user, so its dirs are made
//! world-writable. It re-execs itself, so it is stopped with `rabbitmqctl stop` (or, failing
//! that, by killing its `beam.smp` through the pid file), never through the spawned pid. The
//! `epmd` daemon it starts outlives it, harmlessly, and is reused by the next broker.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;

/// Boot takes ~5.5 s on the reference machine; leave room for a loaded CI box.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `rabbitmqctl stop` may take before the broker is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running broker on `127.0.0.1:<port()>`.
pub struct RabbitMqServer {
    port: u16,
    dist_port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl RabbitMqServer {
    /// Starts a broker and waits until its AMQP port accepts connections.
    #[track_caller]
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("blockhost-rabbitmq-")
            .tempdir()
            .expect("create rabbitmq temp dir");
        let mut server = Self {
            port: free_port(),
            dist_port: free_port(),
            dir,
            child: None,
        };
        server.prepare_dirs();
        server.spawn();
        server
    }

    /// The AMQP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/`, for a component's `connectionString`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/", self.port)
    }

    /// The Erlang node name, for `rabbitmqctl -n`.
    pub fn node_name(&self) -> String {
        format!("blockhost{}@localhost", self.port)
    }

    /// Runs `rabbitmqctl -n <node> <args>` and returns its standard output; panics if it fails.
    #[track_caller]
    pub fn rabbitmqctl(&self, args: &[&str]) -> String {
        let output = Command::new("rabbitmqctl")
            .arg("-n")
            .arg(self.node_name())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run rabbitmqctl: {e}"));
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// How many messages the queue holds (ready + unacknowledged), or `None` if there is no
    /// such queue.
    #[track_caller]
    pub fn queue_messages(&self, queue: &str) -> Option<u64> {
        self.rabbitmqctl(&[
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages",
        ])
        .lines()
        .filter_map(|line| line.rsplit_once('\t'))
        .find(|(name, _)| *name == queue)
        .and_then(|(_, count)| count.trim().parse().ok())
    }

    /// Everything the broker logged so far.
    pub fn log(&self) -> String {
        let mut log = fs::read_to_string(self.log_dir().join(format!("{}.log", self.node_name())))
            .unwrap_or_default();
        for name in ["stdout", "stderr"] {
            log.push_str(&fs::read_to_string(self.dir.path().join(name)).unwrap_or_default());
        }
        log
    }

    /// Stops the broker (`rabbitmqctl stop`) and waits until it is gone. Durable queues and
    /// persistent messages survive into [`RabbitMqServer::resume`].
    #[track_caller]
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid_file = self.pid_file();
        let stopped = Command::new("rabbitmqctl")
            .arg("-n")
            .arg(self.node_name())
            .arg("stop")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .is_ok_and(|ctl| wait_for(ctl, STOP_TIMEOUT));
        if !stopped {
            self.kill_beam();
        }
        let _ = child.kill();
        let _ = child.wait();
        self.wait_port_closed();
    }

    /// Stops the broker and starts it again on the same ports with the same data; returns when
    /// it accepts connections. Clients see their connections closed.
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts the broker again after [`RabbitMqServer::stop`].
    #[track_caller]
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        self.spawn();
    }

    fn mnesia_dir(&self) -> PathBuf {
        self.dir.path().join("mnesia")
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// RabbitMQ's default pid file: `<mnesia base>/<node name>.pid`, holding `beam.smp`'s pid.
    fn pid_file(&self) -> PathBuf {
        self.mnesia_dir().join(format!("{}.pid", self.node_name()))
    }

    /// The server runs as the `rabbitmq` user: it must be able to enter and write its dirs.
    #[track_caller]
    fn prepare_dirs(&self) {
        for dir in [self.mnesia_dir(), self.log_dir()] {
            fs::create_dir_all(&dir).expect("create rabbitmq dir");
            world_writable(&dir);
        }
        world_writable(self.dir.path());
        fs::write(self.dir.path().join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
    }

    #[track_caller]
    fn spawn(&mut self) {
        let dir = self.dir.path();
        let stdout = fs::File::create(dir.join("stdout")).expect("create stdout file");
        let stderr = fs::File::create(dir.join("stderr")).expect("create stderr file");
        let child = Command::new("rabbitmq-server")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_NODENAME", self.node_name())
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", self.mnesia_dir())
            .env("RABBITMQ_LOG_BASE", self.log_dir())
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            // Files that do not exist: no config beyond the defaults.
            .env("RABBITMQ_CONFIG_FILE", dir.join("no-config"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("no-advanced.config"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start rabbitmq-server ({e}): install it (apt-get install rabbitmq-server)")
            });
        self.child = Some(child);
        self.wait_ready();
    }

    #[track_caller]
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    // The launcher exits early only when the node failed to boot.
                    if !status.success() {
                        self.child = None;
                        panic!(
                            "rabbitmq-server on port {} exited with {status}; its log:\n{}",
                            self.port,
                            self.log()
                        );
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "rabbitmq-server on port {} not accepting connections after {READY_TIMEOUT:?}; log:\n{}",
                self.port,
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn wait_port_closed(&self) {
        let deadline = Instant::now() + STOP_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while Instant::now() < deadline
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        {
            sleep(Duration::from_millis(50));
        }
    }

    /// The last resort: SIGKILL the `beam.smp` named in the pid file.
    fn kill_beam(&self) {
        let Ok(pid) = fs::read_to_string(self.pid_file()) else {
            return;
        };
        let pid = pid.trim();
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
            // `kill` from the PATH keeps this crate free of unsafe code and libc.
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

impl Drop for RabbitMqServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

fn world_writable(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o777))
        .unwrap_or_else(|e| panic!("chmod 777 {}: {e}", path.display()));
}

/// Waits for a child up to `timeout`; kills it and returns false if it takes longer or fails.
fn wait_for(mut child: Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

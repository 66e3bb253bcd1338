//! A running `blockhost` process: a temp dir of its own with resources and plugins, a free
//! port, logs captured to files, readiness, shutdown, kill on drop.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::builder::SidecarBuilder;
use crate::http::Client;
use crate::logs::strip_ansi;
use crate::redis::RedisServer;
use crate::state::{StateApi, StoreKind};

/// How long a sidecar whose plugins are already in the compile cache may take to get healthy.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The same when a plugin must be compiled first.
pub const COLD_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a sidecar may take to exit after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A running (or exited) `blockhost` process. Dropping it stops it (SIGTERM, then SIGKILL),
/// and prints its logs if the test is panicking.
pub struct Sidecar {
    pub(crate) app_id: String,
    pub(crate) port: u16,
    pub(crate) token: Option<String>,
    pub(crate) child: Option<Child>,
    pub(crate) status: Option<ExitStatus>,
    pub(crate) stdout_path: PathBuf,
    pub(crate) stderr_path: PathBuf,
    /// Stopped after the sidecar (fields drop after `Drop::drop`).
    pub(crate) _redis_servers: Vec<RedisServer>,
    pub(crate) _dir: TempDir,
}

impl Sidecar {
    /// Describes a sidecar for `app_id`; see [`SidecarBuilder`].
    pub fn builder(app_id: &str) -> SidecarBuilder {
        SidecarBuilder::new(app_id)
    }

    /// A started sidecar with one state store `statestore` of `kind`.
    #[track_caller]
    pub fn with_store(app_id: &str, kind: StoreKind) -> Sidecar {
        Self::builder(app_id).store(kind, "statestore").start()
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// User + system CPU time the process has used so far, from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        let pid = self.child.as_ref().map(Child::id).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        // The kernel's USER_HZ is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }

    /// A client for this sidecar, sending its API token if it was started with one.
    pub fn client(&self) -> Client {
        Client::new(self.port, self.token.as_deref())
    }

    /// The state API of store `store` (through [`Sidecar::client`]).
    pub fn state(&self, store: &str) -> StateApi {
        StateApi::new(self.client(), store)
    }

    /// Everything the sidecar wrote to stderr so far, without colour codes.
    pub fn stderr(&self) -> String {
        strip_ansi(&fs::read_to_string(&self.stderr_path).unwrap_or_default())
    }

    fn stdout(&self) -> String {
        strip_ansi(&fs::read_to_string(&self.stdout_path).unwrap_or_default())
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = &mut self.child {
                self.status = child.try_wait().expect("try_wait");
            }
        }
        self.status
    }

    /// Polls `GET /v1.0/healthz` until 204; panics (with the logs) on timeout or early exit.
    #[track_caller]
    pub fn wait_ready(&mut self, timeout: Duration) {
        let client = self.client().without_token();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                panic!(
                    "blockhost ({}) exited with {status} before becoming healthy; stderr:\n{}",
                    self.app_id,
                    self.stderr()
                );
            }
            if let Ok(response) = client.try_request("GET", "/v1.0/healthz", &[], None) {
                if response.status == 204 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "blockhost ({}) not healthy after {timeout:?}; stderr:\n{}",
                self.app_id,
                self.stderr()
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit on its own; panics (with the logs) on timeout.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "blockhost ({}) still running after {timeout:?}; stderr:\n{}",
                self.app_id,
                self.stderr()
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status; panics if the process does not exit within
    /// [`SHUTDOWN_GRACE`] (it is then killed).
    #[track_caller]
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        self.sigterm();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status() {
                return status;
            }
            sleep(Duration::from_millis(20));
        }
        self.kill();
        panic!(
            "blockhost ({}) did not exit within {SHUTDOWN_GRACE:?} of SIGTERM; stderr:\n{}",
            self.app_id,
            self.stderr()
        );
    }

    fn sigterm(&self) {
        if let Some(child) = &self.child {
            // `kill` from the PATH keeps this crate free of unsafe code and libc.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            self.status = child.wait().ok();
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.sigterm();
            let deadline = Instant::now() + SHUTDOWN_GRACE;
            while self.try_status().is_none() && Instant::now() < deadline {
                sleep(Duration::from_millis(20));
            }
            if self.try_status().is_none() {
                self.kill();
            }
        }
        if std::thread::panicking() {
            let status = self
                .status
                .map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
            eprintln!(
                "----- blockhost ({}) on port {} ({status}); stderr: -----\n{}",
                self.app_id,
                self.port,
                self.stderr()
            );
            let stdout = self.stdout();
            if !stdout.is_empty() {
                eprintln!("----- stdout: -----\n{stdout}");
            }
            eprintln!("----- end of blockhost ({}) logs -----", self.app_id);
        }
    }
}

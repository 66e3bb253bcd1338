//! The processes a run starts (sidecars, the null server), what `/proc` says about them, and
//! a one-shot blocking HTTP exchange for set-up and readiness checks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A child process that is killed (SIGTERM, then SIGKILL) when dropped.
pub struct Process {
    pub name: String,
    pub child: Child,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits up to `grace` (SIGKILL after that).
    pub fn stop(&mut self, grace: Duration) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        // `kill` from the PATH keeps the crate free of unsafe code and libc.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            sleep(Duration::from_millis(5));
        }
        self.child.kill().ok();
        self.child.wait().ok();
        bail!("{} did not stop within {grace:?} of SIGTERM", self.name)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop(Duration::from_secs(5));
        }
    }
}

/// How a bench sidecar is started.
pub struct SidecarSpec {
    pub bin: PathBuf,
    pub app_id: String,
    pub plugins_dir: PathBuf,
    pub resources: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    /// The working directory (the default `statestore` keeps `./data/statestore` there).
    pub workdir: PathBuf,
    pub log_file: PathBuf,
    /// `--app-port`, when the sidecar delivers to an app.
    pub app_port: Option<u16>,
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub struct Sidecar {
    pub process: Process,
    pub port: u16,
    pub spawned: Instant,
}

impl SidecarSpec {
    pub fn spawn(&self) -> Result<Sidecar> {
        let port = free_port()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .with_context(|| format!("cannot open {}", self.log_file.display()))?;
        let mut command = Command::new(&self.bin);
        command
            .arg("run")
            .args(["--app-id", &self.app_id])
            .args(["--dapr-http-port", &port.to_string()])
            .arg("--plugins-path")
            .arg(&self.plugins_dir)
            .arg("--plugin-cache-dir")
            .arg(&self.cache_dir)
            .current_dir(&self.workdir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(app_port) = self.app_port {
            command.args(["--app-port", &app_port.to_string()]);
        }
        for dir in &self.resources {
            command.arg("--resources-path").arg(dir);
        }
        for var in [
            "DAPR_API_TOKEN",
            "APP_ID",
            "APP_PORT",
            "DAPR_HTTP_PORT",
            "NAMESPACE",
            "BLOCKHOST_PLUGINS_PATH",
            "BLOCKHOST_PLUGIN_CACHE_DIR",
            "RUST_LOG",
        ] {
            command.env_remove(var);
        }
        let spawned = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        Ok(Sidecar {
            process: Process {
                name: format!("blockhost on port {port}"),
                child,
            },
            port,
            spawned,
        })
    }
}

impl Sidecar {
    /// Polls `GET /v1.0/healthz` (every millisecond) until 204 and returns the time since
    /// the process was spawned.
    pub fn wait_healthy(&mut self, timeout: Duration, log: &Path) -> Result<Duration> {
        let deadline = self.spawned + timeout;
        loop {
            if let Some(status) = self.process.child.try_wait()? {
                bail!(
                    "blockhost exited with {status} before becoming healthy; its log:\n{}",
                    tail(log)
                );
            }
            if let Ok(answer) = http_once(self.port, "GET", "/v1.0/healthz", None) {
                if answer.status == 204 {
                    return Ok(self.spawned.elapsed());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "blockhost not healthy after {timeout:?}; its log:\n{}",
                    tail(log)
                );
            }
            sleep(Duration::from_millis(1));
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Starts `blockhost-bench null-server` (this executable) and returns it with its port.
pub fn spawn_null_server(body: &str, content_type: &str, etag: &str) -> Result<(Process, u16)> {
    spawn_listener(
        "the null server",
        &[
            "null-server",
            "--body",
            body,
            "--content-type",
            content_type,
            "--etag",
            etag,
        ],
    )
}

/// Starts `blockhost-bench relay` (this executable) and returns it with its port.
pub fn spawn_relay(redis_port: u16, app_port: u16) -> Result<(Process, u16)> {
    spawn_listener(
        "the relay",
        &[
            "relay",
            "--redis-port",
            &redis_port.to_string(),
            "--app-port",
            &app_port.to_string(),
        ],
    )
}

/// Starts this executable with `args`; it prints `listening <port>` once it serves.
fn spawn_listener(name: &str, args: &[&str]) -> Result<(Process, u16)> {
    let exe = std::env::current_exe().context("cannot find the bench executable")?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child
        .stdout
        .take()
        .with_context(|| format!("{name}: no stdout"))?;
    let process = Process {
        name: name.to_owned(),
        child,
    };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("{name} said {line:?} instead of its port"))?;
    Ok((process, port))
}

/// One answer of [`http_once`].
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), blocking.
pub fn http_once(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("incomplete HTTP answer")?;
    let (status, body_len) = crate::load::parse_head(&raw[..head_end])?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body_start = head_end + 4;
    let body = raw
        .get(body_start..body_start + body_len)
        .context("truncated HTTP body")?
        .to_vec();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// `VmRSS` (or another `/proc/<pid>/status` field) in kB.
pub fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// User + system CPU time the process has used so far.
pub fn cpu_time(pid: u32, ticks_per_second: u64) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/pid/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("malformed /proc/pid/stat")
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(
        total as f64 / ticks_per_second.max(1) as f64,
    ))
}

/// `getconf CLK_TCK`, 100 when that cannot be asked.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Samples a process's `VmRSS` every 100 ms on a thread of its own, keeping the largest.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                if let Ok(kb) = status_kb(pid, "VmRSS") {
                    peak = peak.max(kb);
                }
                sleep(Duration::from_millis(100));
            }
            peak
        });
        Self { stop, thread }
    }

    /// The peak `VmRSS` seen, in kB.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

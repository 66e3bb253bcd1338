//! The results file: machine facts, the figures as ratios against their baselines, and the
//! targets beside them. A hand-written "Where the time goes" section already in the file is
//! carried over to the new one.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::RunArgs;

/// Where hand-written profiling findings start; kept across runs.
const FINDINGS_HEADING: &str = "## Where the time goes";

/// Targets (from the benchmark issue).
const TARGET_MEMORY_GET_RATIO: f64 = 0.6;
const TARGET_REDIS_GET_ADDED_P50_US: f64 = 100.0;
const TARGET_IDLE_RSS_MB: f64 = 30.0;
const TARGET_START_MS: f64 = 100.0;
const TARGET_PUBSUB_RATIO: f64 = 0.5;

pub struct Facts {
    pub date: String,
    pub cores: usize,
    pub cpu: String,
    pub memory: String,
    pub kernel: String,
    pub commit: String,
    pub rustc: String,
    pub load_before: String,
    pub command: String,
}

impl Facts {
    pub fn gather() -> Result<Self> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or_else(
                || "unknown".to_owned(),
                |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
            );
        let dirty = !output("git", &["status", "--porcelain"]).is_empty();
        let commit = format!(
            "{}{}",
            output("git", &["rev-parse", "--short", "HEAD"]),
            if dirty {
                " (with uncommitted changes in the work tree)"
            } else {
                ""
            }
        );
        let command = std::env::var("BLOCKHOST_BENCH_COMMAND").unwrap_or_else(|_| {
            std::env::args()
                .map(|a| shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" ")
        });
        Ok(Self {
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            memory,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            commit,
            rustc: output("rustc", &["--version"]),
            load_before: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            command,
        })
    }
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn shell_quote(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// One server's figures in one measurement.
#[derive(Debug, Clone)]
pub struct Measured {
    pub throughput: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests: usize,
    pub errors: u64,
    /// The server process's CPU time (user + system) per request, when it is ours to read.
    pub cpu_us_per_request: Option<f64>,
}

/// Subject and baseline measured back to back with the same load.
pub struct Comparison {
    pub subject_name: String,
    pub op: &'static str,
    pub connections: usize,
    pub baseline: Measured,
    pub subject: Measured,
}

impl Comparison {
    fn ratio(&self) -> f64 {
        self.subject.throughput / self.baseline.throughput
    }

    fn added_p50(&self) -> f64 {
        self.subject.p50_us - self.baseline.p50_us
    }
}

pub struct StartUp {
    pub starts: Vec<Duration>,
}

impl StartUp {
    fn sorted_ms(&self) -> Vec<f64> {
        let mut ms: Vec<f64> = self
            .starts
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    }

    fn median_ms(&self) -> f64 {
        let ms = self.sorted_ms();
        match ms.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => ms[n / 2],
            n => (ms[n / 2 - 1] + ms[n / 2]) / 2.0,
        }
    }
}

pub struct Report {
    pub facts: Facts,
    pub args: RunArgs,
    pub redis_version: Option<String>,
    pub comparisons: Vec<Comparison>,
    pub start_up: StartUp,
    pub idle_rss_kb: u64,
    pub load_rss_kb: u64,
    pub hwm_kb: u64,
    pub null_idle_rss_kb: u64,
    pub null_load_rss_kb: u64,
    pub components: Vec<String>,
    pub pubsub: Option<crate::pubsub::PubsubComparison>,
}

fn mb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

fn us(value: f64) -> String {
    format!("{value:.0} µs")
}

/// A latency that may run to seconds (a pubsub backlog): ms from 10 ms up.
fn latency(value: f64) -> String {
    if value.abs() >= 10_000.0 {
        format!("{:.0} ms", value / 1000.0)
    } else {
        us(value)
    }
}

fn signed_latency(value: f64) -> String {
    if value.abs() >= 10_000.0 {
        format!("{:+.0} ms", value / 1000.0)
    } else {
        signed_us(value)
    }
}

fn signed_us(value: f64) -> String {
    format!("{value:+.0} µs")
}

impl Report {
    fn find(&self, subject: &str, op: &str, connections: usize) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .find(|c| c.subject_name == subject && c.op == op && c.connections == connections)
    }

    /// The results file; `previous` is the file as it was, whose findings section is kept.
    pub fn render(&self, previous: &str) -> String {
        let mut md = String::new();
        let f = &self.facts;
        let a = &self.args;
        let _ = writeln!(md, "# blockhost benchmark results\n");
        let _ = writeln!(
            md,
            "Written by `cargo xtask bench` (the `blockhost-bench` crate in `host/bench`); not \
             part of the test suite. Every figure is set against a baseline measured in the \
             same run, on the same machine, with the same load.\n"
        );
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| date | {} |", f.date);
        let _ = writeln!(
            md,
            "| machine | {} cores, {}, {} RAM, Linux {} |",
            f.cores, f.cpu, f.memory, f.kernel
        );
        let _ = writeln!(md, "| commit | {} |", f.commit);
        let _ = writeln!(md, "| toolchain | {} |", f.rustc);
        if let Some(version) = &self.redis_version {
            let _ = writeln!(md, "| redis-server | {version} |");
        }
        let _ = writeln!(md, "| command | `{}` |", f.command);
        let _ = writeln!(
            md,
            "| load average before the run | {} (1, 5, 15 min) |",
            f.load_before
        );
        let _ = writeln!(
            md,
            "| load | {} keep-alive connections (\"loaded\") and 1 connection (\"unloaded\"), \
             each a closed loop; {} s warm-up per server, {} s per loaded and {} s per unloaded \
             measurement, cut into ~{} s slices in which baseline and sidecar alternate; the \
             generator runs {} tokio worker thread(s) in the bench process |",
            a.connections, a.warmup_secs, a.secs, a.serial_secs, a.slice_secs, a.client_threads
        );
        let _ = writeln!(
            md,
            "| sidecar | release build, default flags (`--log-level info`), warm compile cache; \
             components: {}{} |\n",
            self.components.join(", "),
            if a.redis_metadata.is_empty() {
                String::new()
            } else {
                format!(
                    "; extra state.redis metadata: `{}`",
                    a.redis_metadata.join("`, `")
                )
            }
        );

        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(md, "| target | figure | verdict |\n|---|---|---|");
        match self.find("state.in-memory", "GET", a.connections) {
            Some(c) => {
                let _ = writeln!(
                md,
                "| in-memory GET throughput ≥ {TARGET_MEMORY_GET_RATIO}× the null server | {:.2}× ({:.0} vs {:.0} req/s, {} connections) | {} |",
                c.ratio(),
                c.subject.throughput,
                c.baseline.throughput,
                c.connections,
                verdict(c.ratio() >= TARGET_MEMORY_GET_RATIO)
            );
            }
            None => {
                let _ = writeln!(
                    md,
                    "| in-memory GET throughput ≥ {TARGET_MEMORY_GET_RATIO}× the null server | not measured in this run | — |"
                );
            }
        }
        match self.find("state.redis", "GET", 1) {
            Some(c) => {
                let _ = writeln!(
                    md,
                    "| Redis GET added latency p50 ≤ {:.1} ms over a direct client | {} ({} vs {}, 1 connection) | {} |",
                    TARGET_REDIS_GET_ADDED_P50_US / 1000.0,
                    signed_us(c.added_p50()),
                    us(c.subject.p50_us),
                    us(c.baseline.p50_us),
                    verdict(c.added_p50() <= TARGET_REDIS_GET_ADDED_P50_US)
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "| Redis GET added latency p50 ≤ {:.1} ms over a direct client | not measured (no `state-redis.wasm`) | — |",
                    TARGET_REDIS_GET_ADDED_P50_US / 1000.0
                );
            }
        }
        match self.pubsub.as_ref().and_then(|p| p.rows.first()) {
            Some(p) => {
                let _ = writeln!(
                    md,
                    "| pubsub.redis publish → deliver throughput ≥ {TARGET_PUBSUB_RATIO}× a direct XADD/XREADGROUP/XACK client | {:.2}× ({:.0} vs {:.0} msg/s, {} publisher connections; the plugin-less relay reaches {:.2}×, and the sidecar {:.2}× the relay) | {} |",
                    p.ratio(),
                    p.subject.measured.throughput,
                    p.baseline.measured.throughput,
                    p.connections,
                    p.floor_ratio(),
                    p.ratio_to_floor(),
                    verdict(p.ratio() >= TARGET_PUBSUB_RATIO)
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "| pubsub.redis publish → deliver throughput ≥ {TARGET_PUBSUB_RATIO}× a direct XADD/XREADGROUP/XACK client | not measured in this run | — |"
                );
            }
        }
        let idle_mb = mb(self.idle_rss_kb);
        let _ = writeln!(
            md,
            "| idle RSS ≤ {TARGET_IDLE_RSS_MB:.0} MB | {idle_mb:.1} MB | {} |",
            verdict(idle_mb <= TARGET_IDLE_RSS_MB)
        );
        let median = self.start_up.median_ms();
        if self.start_up.starts.is_empty() {
            let _ = writeln!(
                md,
                "| start to healthy ≤ {TARGET_START_MS:.0} ms, warm cache | not measured in this run | — |\n"
            );
        } else {
            let _ = writeln!(
                md,
                "| start to healthy ≤ {TARGET_START_MS:.0} ms, warm cache | {median:.0} ms (median of {}) | {} |\n",
                self.start_up.starts.len(),
                verdict(median <= TARGET_START_MS)
            );
        }

        self.render_http(&mut md);
        self.render_redis(&mut md);
        self.render_pubsub(&mut md);
        self.render_process(&mut md);

        let _ = writeln!(md, "## How to read these figures\n");
        let _ = writeln!(
            md,
            "- *ratio* is the sidecar's throughput divided by the baseline's; *added* is the \
             sidecar's latency minus the baseline's at the same percentile.\n\
             - Loaded figures are at saturation: the load generator, the server and (for Redis) \
             redis-server share the machine's cores, so loaded latency is mostly queueing \
             (connections ÷ throughput). The unloaded (1-connection) rows show what one request \
             costs end to end, and are the ones the latency target is judged on.\n\
             - *server CPU/req* is the server process's user+system CPU time during the \
             measurement divided by the requests served (from `/proc/<pid>/stat`, 10 ms ticks): \
             the cost of a request independent of how the cores were shared.\n\
             - RSS is `VmRSS` from `/proc/<pid>/status`; MB = 10⁶ bytes. \"Under load\" is the \
             highest value sampled every 100 ms during all sidecar measurements.\n"
        );

        if let Some(start) = previous.find(FINDINGS_HEADING) {
            md.push_str(previous[start..].trim_end());
            md.push('\n');
        } else {
            let _ = writeln!(md, "{FINDINGS_HEADING}\n\n(No profiling findings yet.)");
        }
        md
    }

    fn table(&self, md: &mut String, subject: &str) {
        let _ = writeln!(
            md,
            "| op | connections | baseline req/s | sidecar req/s | ratio | baseline p50 | sidecar p50 | added p50 | baseline p99 | sidecar p99 | added p99 | server CPU/req (baseline → sidecar) | errors / requests |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for c in self
            .comparisons
            .iter()
            .filter(|c| c.subject_name == subject)
        {
            let cpu = match (c.baseline.cpu_us_per_request, c.subject.cpu_us_per_request) {
                (Some(b), Some(s)) => format!("{b:.1} → {s:.1} µs"),
                (None, Some(s)) => format!("— → {s:.1} µs"),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.0} | **{:.2}×** | {} | {} | **{}** | {} | {} | **{}** | {} | {} / {} |",
                c.op,
                c.connections,
                c.baseline.throughput,
                c.subject.throughput,
                c.ratio(),
                us(c.baseline.p50_us),
                us(c.subject.p50_us),
                signed_us(c.added_p50()),
                us(c.baseline.p99_us),
                us(c.subject.p99_us),
                signed_us(c.subject.p99_us - c.baseline.p99_us),
                cpu,
                c.baseline.errors + c.subject.errors,
                c.baseline.requests + c.subject.requests,
            );
        }
        md.push('\n');
    }

    fn render_http(&self, md: &mut String) {
        let _ = writeln!(md, "## state.in-memory vs. a null hyper server\n");
        let _ = writeln!(
            md,
            "Baseline: a separate process (`blockhost-bench null-server`) running hyper with \
             the sidecar's connection builder (`hyper_util` auto, HTTP/1.1 + h2c), tokio's \
             default multi-thread runtime and `TCP_NODELAY`. It answers the same requests with \
             the same shape: GET → 200 with the JSON body, `Content-Type` and `ETag` the sidecar \
             answered for the key; POST → reads the body, 204. Requests: `GET \
             /v1.0/state/bench-memory/bench-get` and `POST /v1.0/state/bench-memory` with one \
             item (`[{{\"key\":\"bench-post-<connection>\",\"value\":{}}}]`, {} bytes).\n",
            crate::VALUE,
            crate::VALUE.len() + 36,
        );
        self.table(md, "state.in-memory");
    }

    fn render_redis(&self, md: &mut String) {
        let _ = writeln!(md, "## state.redis vs. a direct Redis client\n");
        if self.redis_version.is_none() {
            let _ = writeln!(
                md,
                "Not measured in this run (`state-redis.wasm` was not built, or `--no-redis`).\n"
            );
            return;
        }
        let _ = writeln!(
            md,
            "Baseline: the bench process's own RESP2 client over the same number of \
             connections to the same redis-server, sending what the plugin sends for the same \
             request: GET ≈ {}; POST ≈ {}. The sidecar's rows go through HTTP, the host and \
             the plugin's own Redis connection.\n",
            crate::redis::GET_DESCRIPTION,
            crate::redis::SET_DESCRIPTION,
        );
        self.table(md, "state.redis");
    }

    fn render_pubsub(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "## pubsub.redis publish → deliver vs. a direct Redis client\n"
        );
        let Some(p) = &self.pubsub else {
            let _ = writeln!(
                md,
                "Not measured in this run (no redis-server or `pubsub-redis.wasm`, or \
                 `--no-pubsub`).\n"
            );
            return;
        };
        let _ = writeln!(
            md,
            "Both sides publish for {} s over {} keep-alive connections (each a closed loop), \
             then the receiver drains; throughput is messages delivered ÷ (first send → last \
             delivery), latency is send → arrival at the receiver (the payload carries the send \
             time in Unix ns: `{}`). Sidecar: a sidecar of its own with `--app-port` to an \
             HTTP/1.1 app (hyper) in the bench process, a `{}` component of type \
             `pubsub.redis` on the same redis-server, publishing `POST \
             /v1.0/publish/{}/{}` (expects 204); the app answers `GET /dapr/subscribe` and \
             `POST /bench` (200 `{{\"status\":\"SUCCESS\"}}`) and reads the time from the \
             CloudEvent's `data`. Direct: the same number of connections sending `XADD \
             bench-direct * data <payload>`, and one consumer looping `XREADGROUP GROUP g c \
             COUNT 100 BLOCK 1000 STREAMS bench-direct >`, then one `XACK` per message \
             (pipelined). Relay: `blockhost-bench relay`, a process of its own that does \
             only what any sidecar of Dapr's HTTP API must do per message — take the publish \
             over HTTP, wrap it in a minimal CloudEvent, `XADD` it, read it back with \
             `XREADGROUP COUNT 100`, POST it to the same app with 10 deliveries in flight (the \
             default concurrency) using the same hyper client as the sidecar, and `XACK` the \
             answered ones in batches — with no plugin, sandbox, routing or retries: the floor \
             of this API on this machine (see `host/bench/src/relay.rs`). A 1 s warm-up of \
             each side precedes them. The loaded row's latency \
             includes any backlog the publishers build up when delivery is slower than \
             publishing; the 1-connection row shows the latency of one message at a time \
             (and its throughput is bounded by the publish round trip).\n",
            p.secs,
            p.rows.first().map_or(0, |r| r.connections),
            crate::pubsub::payload(0).replace(|c: char| c.is_ascii_digit(), "0"),
            crate::pubsub::COMPONENT,
            crate::pubsub::COMPONENT,
            crate::pubsub::TOPIC,
        );
        let _ = writeln!(
            md,
            "| connections | side | published | delivered | msg/s | p50 | p99 | errors + lost |\n|---|---|---|---|---|---|---|---|"
        );
        for row in &p.rows {
            for (name, o) in [
                ("direct XADD / XREADGROUP / XACK", &row.baseline),
                ("relay (the HTTP API's floor)", &row.floor),
                ("sidecar (pubsub.redis)", &row.subject),
            ] {
                outcome_row(md, row.connections, name, o);
            }
            for (label, a, b) in [
                ("**sidecar ÷ direct**", &row.subject, &row.baseline),
                ("relay ÷ direct", &row.floor, &row.baseline),
                ("sidecar ÷ relay", &row.subject, &row.floor),
            ] {
                ratio_row(md, row.connections, label, a, b);
            }
        }
        md.push('\n');
        if let Some(bulk) = &p.bulk {
            let _ = writeln!(
                md,
                "### With the batched APIs\n\nThe same measurement with Dapr's bulk APIs on both \
                 ends of the sidecar: publishers send `POST /v1.0-alpha1/publish/bulk/{}/{}` with \
                 {} messages per request, and the app subscribes to that topic with \
                 `bulkSubscribe` (`maxMessagesCount` {}, `maxAwaitDurationMs` {}) and answers one \
                 status per entry. The direct client batches as much: {} `XADD`s pipelined per \
                 round trip, and the same consumer.\n",
                crate::pubsub::COMPONENT,
                crate::pubsub::BULK_TOPIC,
                crate::pubsub::BULK_BATCH,
                crate::pubsub::BULK_MAX_MESSAGES,
                crate::pubsub::BULK_MAX_AWAIT_MS,
                crate::pubsub::BULK_BATCH,
            );
            let _ = writeln!(
                md,
                "| connections | side | published | delivered | msg/s | p50 | p99 | errors + lost |\n|---|---|---|---|---|---|---|---|"
            );
            for (name, o) in [
                ("direct, pipelined XADDs", &bulk.baseline),
                ("sidecar, bulk publish + bulkSubscribe", &bulk.subject),
            ] {
                outcome_row(md, bulk.connections, name, o);
            }
            ratio_row(
                md,
                bulk.connections,
                "**sidecar ÷ direct**",
                &bulk.subject,
                &bulk.baseline,
            );
            md.push('\n');
        }
    }

    fn render_process(&self, md: &mut String) {
        let _ = writeln!(md, "## Memory and start-up\n");
        let _ = writeln!(
            md,
            "| figure | sidecar | baseline (null server) | target |\n|---|---|---|---|"
        );
        let _ = writeln!(
            md,
            "| RSS idle (1 s after healthy) | {:.1} MB | {:.1} MB | ≤ {TARGET_IDLE_RSS_MB:.0} MB |",
            mb(self.idle_rss_kb),
            mb(self.null_idle_rss_kb)
        );
        let _ = writeln!(
            md,
            "| RSS under load (peak sampled) | {:.1} MB | {:.1} MB | — |",
            mb(self.load_rss_kb),
            mb(self.null_load_rss_kb)
        );
        let _ = writeln!(
            md,
            "| peak RSS of the process (`VmHWM`) | {:.1} MB | — | — |",
            mb(self.hwm_kb)
        );
        let ms = self.start_up.sorted_ms();
        let list = ms
            .iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        let start_up = if ms.is_empty() {
            "not measured".to_owned()
        } else {
            format!(
                "{:.0} ms median (runs: {list} ms)",
                self.start_up.median_ms()
            )
        };
        let _ = writeln!(
            md,
            "| spawn → `/v1.0/healthz` 204, warm cache | {start_up} | — | ≤ {TARGET_START_MS:.0} ms |\n"
        );
        let _ = writeln!(
            md,
            "Start-up is timed from `spawn()` of the process to the first 204 of \
             `/v1.0/healthz`, polled every millisecond, with the same components as above; \
             one start before the timed ones fills the compile cache.\n"
        );
    }
}
/// One side of a pub/sub measurement as a table row.
fn outcome_row(md: &mut String, connections: usize, name: &str, o: &crate::pubsub::Outcome) {
    let _ = writeln!(
        md,
        "| {connections} | {name} | {} | {} | {:.0} | {} | {} | {} |",
        o.published,
        o.measured.requests,
        o.measured.throughput,
        latency(o.measured.p50_us),
        latency(o.measured.p99_us),
        o.measured.errors
    );
}

/// Side `a` against side `b`: throughput ratio and added latency.
fn ratio_row(
    md: &mut String,
    connections: usize,
    label: &str,
    a: &crate::pubsub::Outcome,
    b: &crate::pubsub::Outcome,
) {
    let (a, b) = (&a.measured, &b.measured);
    let _ = writeln!(
        md,
        "| {connections} | {label} | | | {:.2}× | {} | {} | |",
        a.throughput / b.throughput,
        signed_latency(a.p50_us - b.p50_us),
        signed_latency(a.p99_us - b.p99_us),
    );
}

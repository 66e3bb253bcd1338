//! `cargo xtask bench`: blockhost measured against baselines taken in the same run, written to
//! `host/bench/RESULTS.md`.
//!
//! - state GET / POST through `state.in-memory` against a null hyper server (its own process,
//!   this binary re-executed as `null-server`) answering the same exchange;
//! - state GET / POST through `state.redis` against a direct client sending the equivalent
//!   commands to the same `redis-server`;
//! - the sidecar's RSS idle and under load, and the time from spawn to `/v1.0/healthz` 204
//!   with a warm compile cache.
//!
//! The sidecar is a separate process; the load comes from this process over a fixed number
//! of keep-alive connections (see [`load`]).

mod load;
mod null;
mod procs;
mod pubsub;
mod redis;
mod relay;
mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use hyper::header::HeaderValue;

use load::{Protocol, Target};
use procs::{http_once, status_kb, RssSampler, SidecarSpec};
use report::{Comparison, Measured, Report, StartUp};

#[derive(Parser)]
#[command(name = "blockhost-bench", about = "blockhost's benchmark command")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every measurement and write the results file (the default).
    Run(RunArgs),
    /// The baseline HTTP server (started by `run`; serves until killed).
    NullServer(NullArgs),
    /// The floor of publish → deliver over the HTTP API (started by `run`; serves until
    /// killed).
    Relay(RelayArgs),
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Connections of the loaded measurements.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Warm-up per server before its measurements, in seconds (half GET, half POST).
    #[arg(long, default_value_t = 5)]
    pub warmup_secs: u64,
    /// Length of each loaded measurement, in seconds.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Length of each one-connection (unloaded latency) measurement, in seconds.
    #[arg(long, default_value_t = 4)]
    pub serial_secs: u64,
    /// Measurements are cut into slices of about this many seconds, baseline and sidecar
    /// alternating.
    #[arg(long, default_value_t = 2.0)]
    pub slice_secs: f64,
    /// Timed sidecar starts (after one that warms the compile cache).
    #[arg(long, default_value_t = 7)]
    pub starts: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Skip the Redis measurements.
    #[arg(long)]
    pub no_redis: bool,
    /// Skip the pubsub.redis publish → deliver measurement.
    #[arg(long)]
    pub no_pubsub: bool,
    /// Publishing time of each side of the pubsub measurement, in seconds.
    #[arg(long, default_value_t = 5)]
    pub pubsub_secs: u64,
    /// Publisher connections of the pubsub measurement.
    #[arg(long, default_value_t = 8)]
    pub pubsub_connections: usize,
    /// Skip the state.in-memory measurements.
    #[arg(long)]
    pub no_memory: bool,
    /// Skip both state measurements (in-memory and Redis), e.g. to iterate on pub/sub.
    #[arg(long)]
    pub no_state: bool,
    /// Extra `spec.metadata` of the bench's state.redis component, e.g.
    /// `blockhost.maxInstances=32` or `readTimeout=-1` (repeatable; for experiments).
    #[arg(long = "redis-metadata", value_name = "KEY=VALUE")]
    pub redis_metadata: Vec<String>,
    /// Where the results go.
    #[arg(long, default_value = "host/bench/RESULTS.md")]
    pub out: PathBuf,
    /// The sidecar binary.
    #[arg(long, default_value = "target/release/blockhost")]
    pub bin: PathBuf,
    /// The plugin directory.
    #[arg(long, default_value = "target/plugins")]
    pub plugins: PathBuf,
    /// The default resources loaded beside the benchmark's own components.
    #[arg(long, default_value = "components")]
    pub components: PathBuf,
    /// The bench's compile cache (kept between runs; the first start of a run warms it).
    #[arg(long, default_value = "target/bench-cache")]
    pub cache_dir: PathBuf,
}

#[derive(Args)]
struct NullArgs {
    #[arg(long)]
    body: String,
    #[arg(long)]
    content_type: String,
    #[arg(long)]
    etag: String,
}

#[derive(Args)]
struct RelayArgs {
    #[arg(long)]
    redis_port: u16,
    #[arg(long)]
    app_port: u16,
}

const APP_ID: &str = "bench";
const MEMORY_STORE: &str = "bench-memory";
const REDIS_STORE: &str = "bench-redis";
const GET_KEY: &str = "bench-get";
/// The stored value (a small JSON document, as most state values are).
const VALUE: &str = r#"{"item":"tea","qty":2,"note":"a small JSON value"}"#;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);

fn main() -> Result<()> {
    let mut cli = Cli::parse();
    if cli.command.is_none() {
        cli = Cli::parse_from(["blockhost-bench", "run"]);
    }
    match cli.command {
        Some(Cmd::NullServer(args)) => null::serve(null::Answer {
            body: args.body.into_bytes().into(),
            content_type: HeaderValue::from_str(&args.content_type)
                .context("--content-type is not a header value")?,
            etag: HeaderValue::from_str(&args.etag).context("--etag is not a header value")?,
        }),
        Some(Cmd::Relay(args)) => relay::serve(args.redis_port, args.app_port),
        Some(Cmd::Run(args)) => run(&args),
        None => bail!("no command"),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

fn run(args: &RunArgs) -> Result<()> {
    let facts = report::Facts::gather()?;
    let work = tempfile::Builder::new()
        .prefix("blockhost-bench-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let bin = absolute(&args.bin)?;
    if !bin.is_file() {
        bail!(
            "{} not found: run `cargo xtask bench` (it builds the host and the plugins)",
            bin.display()
        );
    }
    let plugins = absolute(&args.plugins)?;
    let redis = if args.no_redis {
        None
    } else if !plugins.join("state-redis.wasm").is_file() {
        eprintln!(
            "bench: no state-redis.wasm in {}: skipping Redis",
            plugins.display()
        );
        None
    } else {
        Some(redis::start(&std::env::current_dir()?).context("cannot start redis-server")?)
    };

    let resources = work.path().join("bench-resources");
    std::fs::create_dir_all(&resources)?;
    std::fs::write(
        resources.join("bench.yaml"),
        bench_components(redis.as_ref().map(|r| r.port), &args.redis_metadata)?,
    )?;
    let workdir = work.path().join("workdir");
    std::fs::create_dir_all(&workdir)?;
    let log_file = work.path().join("blockhost.log");
    let spec = SidecarSpec {
        bin,
        app_id: APP_ID.to_owned(),
        plugins_dir: plugins,
        resources: vec![absolute(&args.components)?, resources],
        cache_dir: absolute(&args.cache_dir)?,
        workdir,
        log_file: log_file.clone(),
        app_port: None,
    };

    // Start-up: the first start warms the compile cache and is not counted.
    eprintln!("bench: {} timed sidecar starts", args.starts);
    let mut starts = Vec::new();
    for index in 0..=args.starts {
        let mut sidecar = spec.spawn()?;
        let took = sidecar.wait_healthy(READY_TIMEOUT, &log_file)?;
        sidecar.process.stop(STOP_GRACE)?;
        if index > 0 {
            starts.push(took);
        }
    }

    let mut sidecar = spec.spawn()?;
    sidecar.wait_healthy(READY_TIMEOUT, &log_file)?;
    std::thread::sleep(Duration::from_secs(1));
    let sidecar_pid = sidecar.process.pid();
    let idle_rss_kb = status_kb(sidecar_pid, "VmRSS")?;

    let answer = seed(sidecar.port, MEMORY_STORE)?;
    if let Some(redis) = &redis {
        let redis_answer = seed(sidecar.port, REDIS_STORE)?;
        if redis_answer.body != answer.body {
            bail!("state.redis answers another body than state.in-memory");
        }
        eprintln!(
            "bench: redis-server {} on port {}",
            redis.version, redis.port
        );
    }
    let body = String::from_utf8(answer.body.clone()).context("the stored value is not UTF-8")?;
    let content_type = answer.header("content-type").unwrap_or("application/json");
    let etag = answer
        .header("etag")
        .context("the sidecar's GET has no ETag")?;
    let (null_server, null_port) = procs::spawn_null_server(&body, content_type, etag)?;
    std::thread::sleep(Duration::from_millis(300));
    let null_idle_rss_kb = status_kb(null_server.pid(), "VmRSS")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the load generator's runtime")?;
    let bench = Bench {
        runtime: &runtime,
        args,
        ticks: procs::clock_ticks(),
    };

    let sidecar_addr = ([127, 0, 0, 1], sidecar.port).into();
    let null_addr = ([127, 0, 0, 1], null_port).into();
    let http = |addr, store: &str| Pair {
        get: Target {
            addr,
            protocol: Protocol::Http { expect_status: 200 },
            requests: vec![http_get(store, GET_KEY)],
        },
        post: Target {
            addr,
            protocol: Protocol::Http { expect_status: 204 },
            requests: (0..args.connections.max(1))
                .map(|i| http_post(store, &format!("bench-post-{i}")))
                .collect(),
        },
    };

    let sampler = RssSampler::start(sidecar_pid);
    let null_sampler = RssSampler::start(null_server.pid());
    let mut comparisons = Vec::new();
    if !args.no_memory && !args.no_state {
        eprintln!("bench: state.in-memory against the null server");
        comparisons.extend(bench.compare(
            "null hyper server",
            &http(null_addr, MEMORY_STORE),
            Some(null_server.pid()),
            "state.in-memory",
            &http(sidecar_addr, MEMORY_STORE),
            Some(sidecar_pid),
        )?);
    }
    if let Some(redis) = redis.as_ref().filter(|_| !args.no_state) {
        eprintln!("bench: state.redis against a direct client");
        let redis_addr = ([127, 0, 0, 1], redis.port).into();
        let direct = Pair {
            get: Target {
                addr: redis_addr,
                protocol: Protocol::Resp { replies: 2 },
                requests: vec![redis.get_request(&stored_key(GET_KEY))],
            },
            post: Target {
                addr: redis_addr,
                protocol: Protocol::Resp { replies: 1 },
                requests: (0..args.connections.max(1))
                    .map(|i| redis.set_request(&stored_key(&format!("bench-post-{i}")), VALUE))
                    .collect(),
            },
        };
        comparisons.extend(bench.compare(
            "direct Redis client",
            &direct,
            None,
            "state.redis",
            &http(sidecar_addr, REDIS_STORE),
            Some(sidecar_pid),
        )?);
    }
    let load_rss_kb = sampler.finish();
    let null_load_rss_kb = null_sampler.finish();
    let hwm_kb = status_kb(sidecar_pid, "VmHWM")?;
    drop(null_server);
    sidecar.process.stop(STOP_GRACE)?;

    let pubsub = match &redis {
        Some(redis) if !args.no_pubsub => {
            if spec.plugins_dir.join("pubsub-redis.wasm").is_file() {
                Some(measure_pubsub(
                    &runtime,
                    args,
                    &spec,
                    work.path(),
                    redis.port,
                )?)
            } else {
                eprintln!("bench: no pubsub-redis.wasm: skipping pubsub");
                None
            }
        }
        _ => None,
    };

    let report = Report {
        facts,
        args: args.clone(),
        redis_version: redis.as_ref().map(|r| r.version.clone()),
        comparisons,
        start_up: StartUp { starts },
        idle_rss_kb,
        load_rss_kb,
        hwm_kb,
        null_idle_rss_kb,
        null_load_rss_kb,
        components: component_list(args, redis.is_some()),
        pubsub,
    };
    let previous = std::fs::read_to_string(&args.out).unwrap_or_default();
    let text = report.render(&previous);
    std::fs::write(&args.out, &text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("{text}");
    eprintln!("bench: wrote {}", args.out.display());
    Ok(())
}

/// Publish → deliver through `pubsub.redis` (a sidecar of its own, started with `--app-port`
/// to an app in this process) against a direct XADD / XREADGROUP / XACK client.
fn measure_pubsub(
    runtime: &tokio::runtime::Runtime,
    args: &RunArgs,
    spec: &SidecarSpec,
    work: &Path,
    redis_port: u16,
) -> Result<pubsub::PubsubComparison> {
    let resources = work.join("pubsub-resources");
    std::fs::create_dir_all(&resources)?;
    std::fs::write(resources.join("pubsub.yaml"), pubsub::component(redis_port))?;
    let recorder = std::sync::Arc::new(pubsub::Recorder::default());
    let app_port = runtime.block_on(pubsub::start_app(std::sync::Arc::clone(&recorder)))?;
    let spec = SidecarSpec {
        bin: spec.bin.clone(),
        app_id: APP_ID.to_owned(),
        plugins_dir: spec.plugins_dir.clone(),
        resources: vec![absolute(&args.components)?, resources],
        cache_dir: spec.cache_dir.clone(),
        workdir: spec.workdir.clone(),
        log_file: spec.log_file.clone(),
        app_port: Some(app_port),
    };
    let mut sidecar = spec.spawn()?;
    sidecar.wait_healthy(READY_TIMEOUT, &spec.log_file)?;
    std::thread::sleep(Duration::from_secs(1));
    pubsub::prepare_direct(redis_port)?;
    let connections = args.pubsub_connections.max(1);
    let secs = Duration::from_secs(args.pubsub_secs.max(1));
    let sidecar_addr = ([127, 0, 0, 1], sidecar.port).into();
    let redis_addr = ([127, 0, 0, 1], redis_port).into();
    let (relay, relay_port) = procs::spawn_relay(redis_port, app_port)?;
    let relay_addr = ([127, 0, 0, 1], relay_port).into();
    eprintln!("bench: pubsub.redis against a direct XADD/XREADGROUP/XACK client and the relay");
    // A one-second warm-up of each side, not counted.
    let warm = Duration::from_secs(1);
    runtime.block_on(pubsub::measure_direct(
        redis_addr,
        std::sync::Arc::clone(&recorder),
        connections,
        warm,
    ))?;
    for addr in [relay_addr, sidecar_addr] {
        runtime.block_on(pubsub::measure_sidecar(addr, &recorder, connections, warm))?;
    }
    let mut rows = Vec::new();
    for connections in [connections, 1] {
        let baseline = runtime.block_on(pubsub::measure_direct(
            redis_addr,
            std::sync::Arc::clone(&recorder),
            connections,
            secs,
        ))?;
        let floor = runtime.block_on(pubsub::measure_sidecar(
            relay_addr,
            &recorder,
            connections,
            secs,
        ))?;
        let subject = runtime.block_on(pubsub::measure_sidecar(
            sidecar_addr,
            &recorder,
            connections,
            secs,
        ))?;
        for (name, o) in [
            ("direct client", &baseline),
            ("relay", &floor),
            ("pubsub.redis", &subject),
        ] {
            pubsub::log_outcome("pubsub", connections, name, o);
        }
        rows.push(pubsub::PubsubRow {
            connections,
            baseline,
            floor,
            subject,
        });
    }
    drop(relay);
    eprintln!("bench: bulk publish + bulkSubscribe against pipelined XADDs");
    runtime.block_on(pubsub::measure_direct_bulk(
        redis_addr,
        std::sync::Arc::clone(&recorder),
        connections,
        warm,
    ))?;
    runtime.block_on(pubsub::measure_sidecar_bulk(
        sidecar_addr,
        &recorder,
        connections,
        warm,
    ))?;
    let bulk_baseline = runtime.block_on(pubsub::measure_direct_bulk(
        redis_addr,
        std::sync::Arc::clone(&recorder),
        connections,
        secs,
    ))?;
    let bulk_subject = runtime.block_on(pubsub::measure_sidecar_bulk(
        sidecar_addr,
        &recorder,
        connections,
        secs,
    ))?;
    for (name, o) in [
        ("pipelined direct client", &bulk_baseline),
        ("bulk pubsub.redis", &bulk_subject),
    ] {
        pubsub::log_outcome("bulk", connections, name, o);
    }
    let bulk = pubsub::BulkRow {
        connections,
        baseline: bulk_baseline,
        subject: bulk_subject,
    };
    sidecar.process.stop(STOP_GRACE)?;
    Ok(pubsub::PubsubComparison {
        secs: args.pubsub_secs,
        rows,
        bulk: Some(bulk),
    })
}

/// The request pair one server is measured with.
struct Pair {
    get: Target,
    post: Target,
}

struct Bench<'a> {
    runtime: &'a tokio::runtime::Runtime,
    args: &'a RunArgs,
    ticks: u64,
}

impl Bench<'_> {
    /// Warms both servers up, then measures GET and POST, loaded and on one connection,
    /// baseline and subject back to back.
    fn compare(
        &self,
        baseline_name: &str,
        baseline: &Pair,
        baseline_pid: Option<u32>,
        subject_name: &str,
        subject: &Pair,
        subject_pid: Option<u32>,
    ) -> Result<Vec<Comparison>> {
        let warm = Duration::from_millis(self.args.warmup_secs * 500);
        for pair in [baseline, subject] {
            for target in [&pair.get, &pair.post] {
                self.runtime
                    .block_on(load::measure(target, self.args.connections, warm))?;
            }
        }
        let mut out = Vec::new();
        for (op, base, subj) in [
            ("GET", &baseline.get, &subject.get),
            ("POST", &baseline.post, &subject.post),
        ] {
            for (connections, secs) in [
                (self.args.connections, self.args.secs),
                (1, self.args.serial_secs),
            ] {
                // Baseline and subject alternate in short slices (B S, S B, ...), so a burst
                // of load from elsewhere on the machine hits both alike.
                let slices = (secs as f64 / self.args.slice_secs.max(0.1))
                    .round()
                    .max(1.0) as u32;
                let slice = Duration::from_secs_f64(secs as f64 / f64::from(slices));
                let mut b = Accumulated::default();
                let mut s = Accumulated::default();
                for round in 0..slices {
                    if round % 2 == 0 {
                        self.slice(base, connections, slice, baseline_pid, &mut b)?;
                        self.slice(subj, connections, slice, subject_pid, &mut s)?;
                    } else {
                        self.slice(subj, connections, slice, subject_pid, &mut s)?;
                        self.slice(base, connections, slice, baseline_pid, &mut b)?;
                    }
                }
                let (b, s) = (b.finish(), s.finish());
                eprintln!(
                    "bench: {op} x{connections}: {baseline_name} {:.0}/s p50 {:.1} µs, \
                     {subject_name} {:.0}/s p50 {:.1} µs",
                    b.throughput, b.p50_us, s.throughput, s.p50_us
                );
                out.push(Comparison {
                    subject_name: subject_name.to_owned(),
                    op,
                    connections,
                    baseline: b,
                    subject: s,
                });
            }
        }
        Ok(out)
    }

    /// One slice of a measurement, added to `into`.
    fn slice(
        &self,
        target: &Target,
        connections: usize,
        duration: Duration,
        server_pid: Option<u32>,
        into: &mut Accumulated,
    ) -> Result<()> {
        let cpu_before = server_pid
            .map(|pid| procs::cpu_time(pid, self.ticks))
            .transpose()?;
        let sample = self
            .runtime
            .block_on(load::measure(target, connections, duration))?;
        if let (Some(pid), Some(before)) = (server_pid, cpu_before) {
            let used = procs::cpu_time(pid, self.ticks)?.saturating_sub(before);
            *into.cpu.get_or_insert(Duration::ZERO) += used;
        }
        if sample.errors > 0 {
            eprintln!(
                "bench: {} errors, the first: {}",
                sample.errors,
                sample.first_error.as_deref().unwrap_or("?")
            );
        }
        into.latencies_ns.extend(sample.latencies_ns);
        into.elapsed += sample.elapsed;
        into.errors += sample.errors;
        Ok(())
    }
}

/// The slices of one server's measurement, put together.
#[derive(Default)]
struct Accumulated {
    latencies_ns: Vec<u64>,
    elapsed: Duration,
    errors: u64,
    cpu: Option<Duration>,
}

impl Accumulated {
    fn finish(mut self) -> Measured {
        self.latencies_ns.sort_unstable();
        let requests = self.latencies_ns.len();
        let sample = load::Sample {
            latencies_ns: self.latencies_ns,
            elapsed: self.elapsed,
            errors: self.errors,
            first_error: None,
        };
        Measured {
            throughput: sample.throughput(),
            p50_us: sample.percentile_us(50.0),
            p99_us: sample.percentile_us(99.0),
            requests,
            errors: self.errors,
            cpu_us_per_request: self
                .cpu
                .map(|cpu| cpu.as_secs_f64() * 1e6 / requests.max(1) as f64),
        }
    }
}

/// Stores `VALUE` under `GET_KEY` in `store` and returns the sidecar's GET answer.
fn seed(port: u16, store: &str) -> Result<procs::Answer> {
    let items = format!(r#"[{{"key":"{GET_KEY}","value":{VALUE}}}]"#);
    let saved = http_once(port, "POST", &format!("/v1.0/state/{store}"), Some(&items))?;
    if saved.status != 204 {
        bail!(
            "seeding {store} answered {}: {}",
            saved.status,
            String::from_utf8_lossy(&saved.body)
        );
    }
    let answer = http_once(port, "GET", &format!("/v1.0/state/{store}/{GET_KEY}"), None)?;
    if answer.status != 200 {
        bail!("GET from {store} answered {}", answer.status);
    }
    Ok(answer)
}

/// The key as the sidecar stores it (`keyPrefix` appid).
fn stored_key(key: &str) -> String {
    format!("{APP_ID}||{key}")
}

fn http_get(store: &str, key: &str) -> Vec<u8> {
    format!("GET /v1.0/state/{store}/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

fn http_post(store: &str, key: &str) -> Vec<u8> {
    let body = format!(r#"[{{"key":"{key}","value":{VALUE}}}]"#);
    format!(
        "POST /v1.0/state/{store} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn bench_components(redis_port: Option<u16>, redis_metadata: &[String]) -> Result<String> {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {MEMORY_STORE}\n\
         spec:\n  type: state.in-memory\n  version: v1\n  metadata: []\n"
    );
    if let Some(port) = redis_port {
        yaml.push_str(&format!(
            "---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {REDIS_STORE}\n\
             spec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    \
             value: \"127.0.0.1:{port}\"\n"
        ));
        for entry in redis_metadata {
            let (key, value) = entry
                .split_once('=')
                .with_context(|| format!("--redis-metadata {entry:?}: write KEY=VALUE"))?;
            yaml.push_str(&format!(
                "  - name: {}\n    value: {}\n",
                serde_json::Value::from(key),
                serde_json::Value::from(value)
            ));
        }
    }
    Ok(yaml)
}

/// The components every bench sidecar loads, for the report.
fn component_list(args: &RunArgs, redis: bool) -> Vec<String> {
    let mut list = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&args.components) {
        let mut files: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .collect();
        files.sort();
        list.extend(
            files
                .into_iter()
                .map(|f| format!("{}/{f}", args.components.display())),
        );
    }
    list.push(format!("{MEMORY_STORE} (state.in-memory)"));
    if redis {
        list.push(format!("{REDIS_STORE} (state.redis)"));
    }
    list
}

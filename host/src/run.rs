//! `blockhost run`: listen, load plugins and components, serve, shut down cleanly.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::net::TcpListener;

use crate::cli::RunArgs;
use crate::plugins::cache::CompileCache;
use crate::plugins::catalog::{build_linker, Catalog};
use crate::plugins::engine::{build_engine, start_epoch_ticker, EngineLimits};
use crate::plugins::pool::Limits;
use crate::registry::{Loader, Registry};
use crate::sidecar::{PluginSummary, Sidecar, SkippedPlugin};

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let api_token = std::env::var("DAPR_API_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let sidecar = Sidecar::new(args.app_id.clone(), api_token);

    // Listen first: the SDKs poll /v1.0/metadata while components start.
    let listeners = bind(&args.dapr_listen_addresses, args.dapr_http_port).await?;
    tracing::info!(
        app_id = %args.app_id,
        port = args.dapr_http_port,
        "HTTP API listening"
    );
    tokio::spawn(stop_on_signal(Arc::clone(&sidecar)));
    let grace = Duration::from_secs(args.dapr_graceful_shutdown_seconds);
    let stop = {
        let sidecar = Arc::clone(&sidecar);
        async move { sidecar.stop_requested().await }
    };
    let server = tokio::spawn(crate::api::serve(
        listeners,
        Arc::clone(&sidecar),
        stop,
        grace,
    ));

    tokio::select! {
        loaded = load(&args, &sidecar) => {
            sidecar.registry.store(Arc::new(loaded?));
            sidecar.set_ready();
            tracing::info!(elapsed = ?started.elapsed(), "blockhost is ready");
        }
        () = sidecar.stop_requested() => tracing::info!("stopped during start-up"),
    }

    server.await.context("the HTTP server task failed")?;
    sidecar.registry.load().close().await;
    tracing::info!("blockhost stopped");
    Ok(())
}

async fn load(args: &RunArgs, sidecar: &Sidecar) -> anyhow::Result<Registry> {
    let memory_bytes = args.plugin_memory_limit_mb << 20;
    let engine = build_engine(&EngineLimits {
        max_memory_bytes: memory_bytes,
        ..EngineLimits::default()
    })
    .context("cannot configure the WebAssembly engine")?;
    start_epoch_ticker(&engine).context("cannot start the epoch ticker thread")?;
    let linker = build_linker(&engine)
        .map_err(anyhow::Error::from)
        .context("cannot build the plugin linker")?;
    let cache = CompileCache::new(&engine, args.cache_dir());

    let catalog = Catalog::load_dir(&engine, &linker, &cache, &args.plugins_path)
        .await
        .with_context(|| {
            format!(
                "cannot read the plugins directory {} (build the plugins with `cargo xtask build`, \
                 or pass --plugins-path)",
                args.plugins_path.display()
            )
        })?;
    sidecar
        .plugins
        .store(Arc::new((summaries(&catalog), skipped(&catalog))));

    let resources = crate::resources::load(&args.resources_path)?;
    let limits = Limits {
        memory_bytes,
        call_timeout: args.plugin_call_timeout,
        ..Limits::default()
    };
    let loader = Loader {
        engine: &engine,
        catalog: &catalog,
        app_id: &args.app_id,
        namespace: args.namespace.as_deref(),
        limits: &limits,
    };
    Ok(loader.load(&resources.components).await?)
}

fn summaries(catalog: &Catalog) -> Vec<PluginSummary> {
    catalog
        .plugins()
        .map(|p| PluginSummary {
            file: p.file_name.clone(),
            component_type: p.info.component_type.clone(),
            version: p.info.version.clone(),
            block: p.kind.interface().to_owned(),
            features: p.info.features.clone(),
        })
        .collect()
}

fn skipped(catalog: &Catalog) -> Vec<SkippedPlugin> {
    catalog
        .skipped
        .iter()
        .map(|s| SkippedPlugin {
            file: s.file_name.clone(),
            error: s.reason.clone(),
        })
        .collect()
}

async fn bind(addresses: &str, port: u16) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for address in addresses
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        let ip: IpAddr = address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .with_context(|| {
                format!("--dapr-listen-addresses: '{address}' is not an IP address")
            })?;
        let addr = SocketAddr::new(ip, port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (is another sidecar running? pick another --dapr-http-port)"))?;
        listeners.push(listener);
    }
    if listeners.is_empty() {
        bail!("--dapr-listen-addresses names no address");
    }
    Ok(listeners)
}

async fn stop_on_signal(sidecar: Arc<Sidecar>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop the sidecar with POST /v1.0/shutdown");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
    sidecar.request_stop();
}

//! `blockhost run`: listen, load plugins and components, serve, shut down cleanly.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::channel::AppChannel;
use crate::app::discovery::discover;
use crate::blocks::pubsub::delivery::{DeliveryPolicy, EventSink, Subscriber};
use crate::blocks::pubsub::subscription::SubscriptionSpec;
use crate::blocks::pubsub::PubSub;
use crate::blocks::Resolver;
use crate::cli::RunArgs;
use crate::components::{BlockEntry, Starter};
use crate::plugins::cache::CompileCache;
use crate::plugins::catalog::{build_linker, Catalog};
use crate::plugins::engine::{build_engine, start_epoch_ticker, EngineLimits};
use crate::plugins::pool::Limits;
use crate::resources::DeclaredSubscription;
use crate::sidecar::{PluginSummary, RuleInfo, Sidecar, SkippedPlugin, SubscriptionInfo};

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

    let (stop_subscribers, subscribers_stop) = watch::channel(false);
    let mut subscribers = JoinSet::new();
    let started_up = async {
        let declared = load(&args, &sidecar).await?;
        sidecar.set_outbound_ready();
        let specs = subscriptions(&args, &sidecar, declared).await;
        let first_attempts =
            start_subscribers(&sidecar, specs, &subscribers_stop, &mut subscribers);
        // Ready only once every subscription is open (or failed once): a publish that
        // follows a healthy /v1.0/healthz must reach the app, as with daprd.
        for attempt in first_attempts {
            let _ = attempt.await;
        }
        sidecar.set_ready();
        tracing::info!(elapsed = ?started.elapsed(), "blockhost is ready");
        anyhow::Ok(())
    };
    tokio::select! {
        result = started_up => result?,
        () = sidecar.stop_requested() => tracing::info!("stopped during start-up"),
    }

    // Subscribers stop pulling at once and finish their deliveries while the server drains.
    let drain_subscribers = async {
        sidecar.stop_requested().await;
        let _ = stop_subscribers.send(true);
        let all_done = async { while subscribers.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::warn!(
                "deliveries did not finish within {grace:?}; the broker redelivers them"
            );
        }
    };
    let (server, ()) = tokio::join!(server, drain_subscribers);
    server.context("the HTTP server task failed")?;
    sidecar.components.close_all().await;
    tracing::info!("blockhost stopped");
    Ok(())
}

/// Declarative subscriptions for this app, then the app's own from `GET /dapr/subscribe`.
async fn subscriptions(
    args: &RunArgs,
    sidecar: &Sidecar,
    declared: Vec<DeclaredSubscription>,
) -> Vec<(SubscriptionSpec, Arc<dyn EventSink>)> {
    let declared: Vec<SubscriptionSpec> = declared
        .into_iter()
        .filter(|d| d.in_scope(&args.app_id))
        .map(|d| d.spec)
        .collect();
    let Some(port) = args.app_port else {
        if !declared.is_empty() {
            tracing::warn!("Subscription resources are ignored: without --app-port there is no app to deliver to");
        }
        return Vec::new();
    };
    let app_token = std::env::var("APP_API_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let channel = Arc::new(AppChannel::new(port, sidecar.app_id.clone(), app_token));
    channel.wait_for_app().await;
    let mut specs = declared;
    specs.extend(discover(&channel).await);
    let app: Arc<dyn EventSink> = channel;
    specs
        .into_iter()
        .map(|spec| (spec, Arc::clone(&app)))
        .collect()
}

/// One subscriber per subscription whose component exists and lets this app subscribe.
/// Subscribers resolve their component by name on every (re)subscribe.
fn start_subscribers(
    sidecar: &Sidecar,
    specs: Vec<(SubscriptionSpec, Arc<dyn EventSink>)>,
    stop: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) -> Vec<tokio::sync::oneshot::Receiver<()>> {
    let mut shown = Vec::new();
    let mut first_attempts = Vec::new();
    for (spec, app) in specs {
        let Some(pubsub) = sidecar.components.get::<PubSub>(&spec.pubsub) else {
            tracing::warn!(
                pubsub = %spec.pubsub,
                topic = %spec.topic,
                "subscription ignored: no pub/sub component of that name"
            );
            continue;
        };
        if !pubsub.scopes().may_subscribe(&sidecar.app_id, &spec.topic) {
            tracing::warn!(
                component = %spec.pubsub,
                topic = %spec.topic,
                "subscription ignored: the component's subscriptionScopes, allowedTopics or \
                 protectedTopics do not allow this app the topic"
            );
            continue;
        }
        shown.push(SubscriptionInfo {
            pubsubname: spec.pubsub.clone(),
            topic: spec.topic.clone(),
            rules: spec
                .rules
                .iter()
                .map(|r| RuleInfo {
                    expression: r.expression.clone(),
                    path: r.path.clone(),
                })
                .collect(),
            dead_letter_topic: spec.dead_letter_topic.clone(),
            kind: spec.kind,
        });
        let subscriber = Subscriber {
            policy: DeliveryPolicy::default(),
            components: Arc::clone(&sidecar.components) as Arc<dyn Resolver<PubSub>>,
            app,
            spec,
        };
        let (first_attempt, attempted) = tokio::sync::oneshot::channel();
        first_attempts.push(attempted);
        tasks.spawn(subscriber.run(stop.clone(), first_attempt));
    }
    sidecar.subscriptions.store(Arc::new(shown));
    first_attempts
}

/// Loads the plugins and starts every component; returns the declared subscriptions.
async fn load(args: &RunArgs, sidecar: &Sidecar) -> anyhow::Result<Vec<DeclaredSubscription>> {
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

    let hosted = BlockEntry::hosted_interfaces();
    let catalog = Catalog::load_dir(&engine, &linker, &cache, &args.plugins_path, &hosted)
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
    let starter = Starter {
        engine,
        catalog: Arc::new(catalog),
        app_id: args.app_id.clone(),
        namespace: args.namespace.clone(),
        limits: Limits {
            memory_bytes,
            call_timeout: args.plugin_call_timeout,
            ..Limits::default()
        },
    };
    starter
        .start_all(&resources.components, &sidecar.components)
        .await?;
    Ok(resources.subscriptions)
}

fn summaries(catalog: &Catalog) -> Vec<PluginSummary> {
    catalog
        .plugins()
        .map(|p| PluginSummary {
            file: p.file_name.clone(),
            component_type: p.info.component_type.clone(),
            version: p.info.version.clone(),
            block: p.interface.to_owned(),
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

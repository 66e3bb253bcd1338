//! Command line, with daprd's flag names where daprd has the flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "blockhost",
    version,
    about = "A Dapr-compatible sidecar with WebAssembly plugin backends"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the sidecar.
    Run(RunArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The application's id: it prefixes state keys and names the app to other sidecars.
    #[arg(long, env = "APP_ID", default_value = "blockhost")]
    pub app_id: String,

    /// The port the application listens on (used for pub/sub delivery and invocation).
    #[arg(long, env = "APP_PORT")]
    pub app_port: Option<u16>,

    /// HTTP port of the Dapr API.
    #[arg(long, env = "DAPR_HTTP_PORT", default_value_t = 3500)]
    pub dapr_http_port: u16,

    /// Comma-separated addresses the API listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub dapr_listen_addresses: String,

    /// Directory of resource YAML (repeatable).
    #[arg(
        long = "resources-path",
        alias = "components-path",
        default_value = "./components"
    )]
    pub resources_path: Vec<PathBuf>,

    /// Directory of plugin `.wasm` files.
    #[arg(
        long,
        env = "BLOCKHOST_PLUGINS_PATH",
        default_value = "./target/plugins"
    )]
    pub plugins_path: PathBuf,

    /// Where compiled plugins are cached [default: $XDG_CACHE_HOME/blockhost or ~/.cache/blockhost].
    #[arg(long, env = "BLOCKHOST_PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<PathBuf>,

    /// Compile every plugin at start instead of using the on-disk cache.
    #[arg(long)]
    pub no_plugin_cache: bool,

    /// debug, info, warn or error.
    #[arg(long, default_value = "info", value_parser = ["trace", "debug", "info", "warn", "error", "fatal"])]
    pub log_level: String,

    /// Most memory one plugin instance may use, in MiB.
    #[arg(long, default_value_t = 128)]
    pub plugin_memory_limit_mb: usize,

    /// Longest one call into a plugin may run (a Go-style duration such as 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub plugin_call_timeout: Duration,

    /// How long in-flight requests may run on after a shutdown signal, in seconds.
    #[arg(long, default_value_t = 5)]
    pub dapr_graceful_shutdown_seconds: u64,

    /// Namespace used by the `namespace` key prefix strategy and `{namespace}` templates.
    #[arg(long, env = "NAMESPACE")]
    pub namespace: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::resources::duration::parse(text)
        .ok_or_else(|| format!("'{text}' is not a duration (write e.g. 10s, 500ms)"))
}

impl RunArgs {
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_plugin_cache {
            return None;
        }
        self.plugin_cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("blockhost"))
        })
    }
}

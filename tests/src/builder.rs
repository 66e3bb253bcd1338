//! Describing a sidecar before it starts: its plugins, resources, environment and cache, and
//! starting it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use tempfile::TempDir;

use crate::paths;
use crate::ports::free_port;
use crate::redis::RedisServer;
use crate::resources::Component;
use crate::sidecar::{Sidecar, COLD_READY_TIMEOUT, READY_TIMEOUT};
use crate::state::StoreKind;

/// Plugins known to be in the shared compile cache, and a lock that serialises the starts that
/// still have to compile (so parallel tests do not all compile the same plugin at once).
static WARM_PLUGINS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static COLD_START: Mutex<()> = Mutex::new(());

enum PluginSource {
    Built(PathBuf),
    Bytes(Vec<u8>),
}

/// Describes a sidecar before it starts. Create with [`Sidecar::builder`].
pub struct SidecarBuilder {
    app_id: String,
    dir: TempDir,
    plugins: Vec<(String, PluginSource)>,
    plugins_dir: Option<PathBuf>,
    resources: Vec<Vec<(String, String)>>,
    env: Vec<(String, String)>,
    token: Option<String>,
    cache_dir: Option<PathBuf>,
    args: Vec<String>,
    /// Servers started for the stores; the sidecar owns them once spawned.
    redis_servers: Vec<RedisServer>,
}

impl SidecarBuilder {
    pub(crate) fn new(app_id: &str) -> Self {
        Self {
            app_id: app_id.to_owned(),
            dir: tempfile::Builder::new()
                .prefix("blockhost-test-")
                .tempdir()
                .expect("create temp dir"),
            plugins: Vec::new(),
            plugins_dir: None,
            resources: Vec::new(),
            env: Vec::new(),
            token: None,
            cache_dir: None,
            args: Vec::new(),
            redis_servers: Vec::new(),
        }
    }

    /// The sidecar's own temp dir (resources, plugins, logs, store data live below it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Copies `file` from the plugins directory into this sidecar's plugins dir.
    pub fn plugin(self, file: &str) -> Self {
        let path = paths::built_file(&paths::plugins_dir(), file);
        self.add_plugin(file, PluginSource::Built(path))
    }

    /// Copies `file` from the fixture plugins directory into this sidecar's plugins dir.
    pub fn fixture_plugin(self, file: &str) -> Self {
        let path = paths::built_file(&paths::fixtures_dir(), file);
        self.add_plugin(file, PluginSource::Built(path))
    }

    /// Writes `bytes` as `file` into this sidecar's plugins dir.
    pub fn plugin_bytes(self, file: &str, bytes: &[u8]) -> Self {
        self.add_plugin(file, PluginSource::Bytes(bytes.to_vec()))
    }

    fn add_plugin(mut self, file: &str, source: PluginSource) -> Self {
        if !self.plugins.iter().any(|(f, _)| f == file) {
            self.plugins.push((file.to_owned(), source));
        }
        self
    }

    /// Uses `dir` (which may already hold plugins) as `--plugins-path` instead of a fresh one.
    pub fn plugins_dir(mut self, dir: &Path) -> Self {
        self.plugins_dir = Some(dir.to_path_buf());
        self
    }

    /// Writes `component` as `<name>.yaml` into the first resources dir.
    pub fn component(self, component: &Component) -> Self {
        let file = format!("{}.yaml", component.name);
        self.resource_file(&file, &component.to_yaml())
    }

    /// Writes a resources file with the given text into the first resources dir.
    pub fn resource_file(self, file: &str, contents: &str) -> Self {
        self.resource_file_in(0, file, contents)
    }

    /// Writes a resources file into resources dir number `dir` (each one is passed as its own
    /// `--resources-path`, in order).
    pub fn resource_file_in(mut self, dir: usize, file: &str, contents: &str) -> Self {
        if self.resources.len() <= dir {
            self.resources.resize_with(dir + 1, Vec::new);
        }
        self.resources[dir].push((file.to_owned(), contents.to_owned()));
        self
    }

    /// A state store `name` of `kind`, its plugin, and (for persistent kinds) a data dir of its
    /// own in the sidecar's temp dir, or (for server kinds) a server of its own that lives as
    /// long as the sidecar.
    pub fn store(mut self, kind: StoreKind, name: &str) -> Self {
        if kind.needs_server() {
            let server = RedisServer::start();
            let component = kind.server_component(name, &server.addr());
            self.redis_servers.push(server);
            return self.plugin(kind.plugin_file()).component(&component);
        }
        let data = self.dir.path().join(format!("data-{name}"));
        fs::create_dir_all(&data).expect("create store data dir");
        let component = kind.component(name, &data);
        let with_plugin = if kind.is_fixture() {
            self.fixture_plugin(kind.plugin_file())
        } else {
            self.plugin(kind.plugin_file())
        };
        with_plugin.component(&component)
    }

    /// Starts the sidecar with `DAPR_API_TOKEN=<token>`; its [`Sidecar::client`] sends it.
    pub fn api_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Uses `dir` as `--plugin-cache-dir` instead of the cache shared by the test run.
    pub fn cache_dir(mut self, dir: &Path) -> Self {
        self.cache_dir = Some(dir.to_path_buf());
        self
    }

    /// `--app-port <port>`: the sidecar delivers to (and reads subscriptions from) the app
    /// listening there, e.g. a [`crate::app::TestApp`].
    pub fn app_port(mut self, port: u16) -> Self {
        self.args
            .extend(["--app-port".to_owned(), port.to_string()]);
        self
    }

    /// Passes extra flags to `blockhost run`, after the ones the builder sets (e.g.
    /// `&["--plugin-call-timeout", "1s"]`).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Starts the process and returns at once (for tests that expect it to exit).
    pub fn spawn(self) -> Sidecar {
        let root = self.dir.path().to_path_buf();
        let plugins_dir = self
            .plugins_dir
            .clone()
            .unwrap_or_else(|| root.join("plugins"));
        fs::create_dir_all(&plugins_dir).expect("create plugins dir");
        for (file, source) in &self.plugins {
            let target = plugins_dir.join(file);
            match source {
                PluginSource::Built(path) => fs::copy(path, &target).map(drop),
                PluginSource::Bytes(bytes) => fs::write(&target, bytes),
            }
            .unwrap_or_else(|e| panic!("write plugin {}: {e}", target.display()));
        }
        let cache_dir = self
            .cache_dir
            .clone()
            .unwrap_or_else(paths::shared_cache_dir);
        fs::create_dir_all(&cache_dir).expect("create plugin cache dir");

        let port = free_port();
        let mut command = Command::new(paths::blockhost_bin());
        command
            .arg("run")
            .args(["--app-id", &self.app_id])
            .args(["--dapr-http-port", &port.to_string()]);
        let resource_dirs = self.resources.len().max(1);
        for index in 0..resource_dirs {
            let dir = root.join(format!("resources-{index}"));
            fs::create_dir_all(&dir).expect("create resources dir");
            for (file, contents) in self.resources.get(index).into_iter().flatten() {
                fs::write(dir.join(file), contents).expect("write resources file");
            }
            command.arg("--resources-path").arg(&dir);
        }
        command
            .arg("--plugins-path")
            .arg(&plugins_dir)
            .arg("--plugin-cache-dir")
            .arg(&cache_dir)
            .args(["--log-level", "debug"])
            .args(&self.args);

        // Settings the host also reads from the environment must come from the test alone.
        for var in [
            "DAPR_API_TOKEN",
            "APP_API_TOKEN",
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
        command.env("NO_COLOR", "1");
        if let Some(token) = &self.token {
            command.env("DAPR_API_TOKEN", token);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }

        let stdout_path = root.join("stdout.log");
        let stderr_path = root.join("stderr.log");
        let child = command
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("create stdout.log"))
            .stderr(fs::File::create(&stderr_path).expect("create stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program()));

        Sidecar {
            app_id: self.app_id,
            port,
            token: self.token,
            child: Some(child),
            status: None,
            stdout_path,
            stderr_path,
            _redis_servers: self.redis_servers,
            _dir: self.dir,
        }
    }

    /// Starts the process and waits until `GET /v1.0/healthz` answers 204.
    #[track_caller]
    pub fn start(self) -> Sidecar {
        let cold = self.cache_dir.is_some() || {
            let warm = WARM_PLUGINS.lock().unwrap_or_else(|e| e.into_inner());
            self.compiled_plugins().any(|file| !warm.contains(&file))
        };
        let compiled: Vec<String> = self.compiled_plugins().collect();
        let shared_cache = self.cache_dir.is_none();
        let _cold_guard = cold.then(|| COLD_START.lock().unwrap_or_else(|e| e.into_inner()));
        let mut sidecar = self.spawn();
        sidecar.wait_ready(if cold {
            COLD_READY_TIMEOUT
        } else {
            READY_TIMEOUT
        });
        if shared_cache {
            let mut warm = WARM_PLUGINS.lock().unwrap_or_else(|e| e.into_inner());
            for file in compiled {
                if !warm.contains(&file) {
                    warm.push(file);
                }
            }
        }
        sidecar
    }

    fn compiled_plugins(&self) -> impl Iterator<Item = String> + '_ {
        self.plugins
            .iter()
            .filter(|(_, source)| matches!(source, PluginSource::Built(_)))
            .map(|(file, _)| file.clone())
    }
}

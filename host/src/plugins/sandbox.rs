//! Least privilege from the YAML: a plugin may reach exactly the endpoints and paths its
//! component metadata names, through the keys its `describe()` declares.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::bindings::PluginInfo;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("metadata '{key}' names the path '{path}', which cannot be used: {reason}")]
    Path {
        key: String,
        path: String,
        reason: String,
    },
    #[error("metadata '{key}' names the endpoint '{value}', which cannot be resolved: {reason}")]
    Endpoint {
        key: String,
        value: String,
        reason: String,
    },
}

/// Where a plugin may connect: exact socket addresses, or every port of a host when the
/// metadata named the host without a port.
#[derive(Debug, Default, Clone)]
struct NetworkGrant {
    addrs: HashSet<SocketAddr>,
    any_port: HashSet<IpAddr>,
}

impl NetworkGrant {
    fn allows(&self, addr: &SocketAddr) -> bool {
        self.addrs.contains(addr) || self.any_port.contains(&addr.ip())
    }
}

#[derive(Debug, Clone)]
struct PathGrant {
    host: PathBuf,
    /// The guest sees the directory at the same absolute path, so metadata values need
    /// no translation.
    guest: String,
    writable: bool,
}

/// What one component's instances may touch; computed once per component.
#[derive(Debug, Clone, Default)]
pub struct SandboxPolicy {
    network: Arc<NetworkGrant>,
    paths: Vec<PathGrant>,
}

impl SandboxPolicy {
    /// Derives the grants from `metadata`, resolving endpoint names in the host, and
    /// rewrites path values to absolute paths (what the guest will see).
    pub async fn from_metadata(
        info: &PluginInfo,
        metadata: &mut [(String, String)],
    ) -> Result<Self, SandboxError> {
        let mut network = NetworkGrant::default();
        let mut paths = Vec::new();
        for (key, value) in metadata.iter_mut() {
            if value.trim().is_empty() {
                continue;
            }
            if info.endpoint_keys.iter().any(|k| k == key) {
                *value = grant_endpoints(key, value, &mut network).await?;
            }
            if info.path_keys.iter().any(|k| k == key) {
                let writable = info.writable_path_keys.iter().any(|k| k == key);
                let (grant, absolute) = grant_path(key, value, writable)?;
                *value = absolute;
                paths.push(grant);
            }
        }
        Ok(Self {
            network: Arc::new(network),
            paths,
        })
    }

    /// A WASI context with nothing but the grants: no environment, no arguments, no stdio,
    /// no name lookups (names were resolved by the host).
    pub fn wasi_ctx(&self, component: &Arc<str>) -> Result<WasiCtx, SandboxError> {
        let mut builder = WasiCtxBuilder::new();
        for grant in &self.paths {
            let perms = if grant.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder
                .preopened_dir(&grant.host, &grant.guest, perms)
                .map_err(|err| SandboxError::Path {
                    key: grant.guest.clone(),
                    path: grant.host.display().to_string(),
                    reason: err.to_string(),
                })?;
        }
        // Sockets are checked even when nothing is granted, so that every refusal is logged
        // (with TCP simply off, a plugin's connect would fail without a trace in the log).
        let network = Arc::clone(&self.network);
        let component = Arc::clone(component);
        builder.allow_tcp(true);
        builder.socket_addr_check(move |addr, usage| {
            let allowed = match usage {
                // A connect first binds implicitly to the unspecified address.
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                SocketAddrUse::TcpConnect => network.allows(&addr),
                _ => false,
            };
            if !allowed {
                tracing::warn!(
                    component = &*component,
                    %addr,
                    ?usage,
                    "sandbox refused a socket use: the address is not named in the component's metadata"
                );
            }
            Box::pin(async move { allowed })
        });
        Ok(builder.build())
    }
}

/// Grants every address an endpoint resolves to, and returns the value rewritten with a
/// resolved IP in place of each host name: the guest has no name lookup, so it must be
/// handed addresses it can connect to.
async fn grant_endpoints(
    key: &str,
    value: &str,
    grant: &mut NetworkGrant,
) -> Result<String, SandboxError> {
    let mut rewritten = Vec::new();
    for endpoint in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = split_endpoint(endpoint);
        let fail = |reason: String| SandboxError::Endpoint {
            key: key.to_owned(),
            value: endpoint.to_owned(),
            reason,
        };
        let resolved: Vec<SocketAddr> =
            tokio::net::lookup_host((parsed.host, parsed.port.unwrap_or(0)))
                .await
                .map_err(|err| fail(err.to_string()))?
                .collect();
        let chosen = resolved
            .iter()
            .find(|a| a.is_ipv4())
            .or(resolved.first())
            .ok_or_else(|| fail("the name resolves to no address".into()))?
            .ip();
        for addr in &resolved {
            match parsed.port {
                Some(_) => grant.addrs.insert(*addr),
                None => grant.any_port.insert(addr.ip()),
            };
        }
        rewritten.push(parsed.with_host(chosen));
    }
    Ok(rewritten.join(","))
}

/// An endpoint's host (a slice of the original text) and port.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint<'a> {
    text: &'a str,
    host: &'a str,
    port: Option<u16>,
}

impl Endpoint<'_> {
    /// The original text with `ip` in place of the host.
    fn with_host(&self, ip: IpAddr) -> String {
        if self.host.parse::<IpAddr>().is_ok() {
            return self.text.to_owned();
        }
        let start = self.host.as_ptr() as usize - self.text.as_ptr() as usize;
        let end = start + self.host.len();
        let ip = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        format!("{}{ip}{}", &self.text[..start], &self.text[end..])
    }
}

/// Accepts `host`, `host:port`, `[v6]:port` and URLs (`scheme://user:pass@host:port/path`).
fn split_endpoint(endpoint: &str) -> Endpoint<'_> {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, endpoint),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':')),
            None => (v6, None),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (host_port, None),
        }
    };
    let port = port
        .and_then(|p| p.parse().ok())
        .or_else(|| scheme.and_then(default_port));
    Endpoint {
        text: endpoint,
        host,
        port,
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "amqp" => Some(5672),
        "amqps" => Some(5671),
        "redis" => Some(6379),
        "rediss" => Some(6380),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Returns the directory to preopen and the absolute form of `value` the plugin is given.
fn grant_path(key: &str, value: &str, writable: bool) -> Result<(PathGrant, String), SandboxError> {
    let fail = |reason: String| SandboxError::Path {
        key: key.to_owned(),
        path: value.to_owned(),
        reason,
    };
    let path = PathBuf::from(value);
    if writable && !path.exists() {
        std::fs::create_dir_all(&path).map_err(|err| fail(format!("cannot create it: {err}")))?;
    }
    let absolute = path
        .canonicalize()
        .map_err(|err| fail(format!("{err} (does it exist?)")))?;
    // Only directories can be preopened; a file is reached through its directory.
    let dir = if absolute.is_dir() {
        absolute.clone()
    } else {
        absolute
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| fail("it has no parent directory".into()))?
    };
    let utf8 = |p: &std::path::Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| fail("the path is not valid UTF-8".into()))
    };
    let grant = PathGrant {
        guest: utf8(&dir)?,
        host: dir,
        writable,
    };
    Ok((grant, utf8(&absolute)?))
}

#[cfg(test)]
mod tests {
    use super::split_endpoint;
    use std::net::IpAddr;

    #[test]
    fn endpoints_in_every_shape() {
        let parts = |e| {
            let p = split_endpoint(e);
            (p.host.to_owned(), p.port)
        };
        assert_eq!(parts("localhost:6379"), ("localhost".into(), Some(6379)));
        assert_eq!(parts("redis-host"), ("redis-host".into(), None));
        assert_eq!(
            parts("amqp://guest:guest@127.0.0.1/vhost"),
            ("127.0.0.1".into(), Some(5672))
        );
        assert_eq!(parts("[::1]:7000"), ("::1".into(), Some(7000)));
        assert_eq!(parts("::1"), ("::1".into(), None));
    }

    #[test]
    fn names_are_replaced_by_addresses() {
        let v4: IpAddr = "10.0.0.7".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(split_endpoint("redis:6379").with_host(v4), "10.0.0.7:6379");
        assert_eq!(
            split_endpoint("amqp://u:p@broker:5672/v").with_host(v6),
            "amqp://u:p@[::1]:5672/v"
        );
        assert_eq!(split_endpoint("127.0.0.1:1").with_host(v4), "127.0.0.1:1");
    }
}

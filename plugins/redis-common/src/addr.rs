//! `redisHost` (and `redisPort`) to a socket address.

use std::net::{IpAddr, SocketAddr};

use crate::connection::REDIS_HOST;

const DEFAULT_PORT: u16 = 6379;

/// The host hands over `redisHost` with its name already resolved (`localhost:6379` arrives as
/// `127.0.0.1:6379`): the sandbox has no name lookup. `plugin` names who refuses a cluster.
pub fn parse_addr(host: &str, port: Option<u16>, plugin: &str) -> Result<SocketAddr, String> {
    let host = host.trim();
    if host.contains(',') {
        return Err(format!(
            "metadata `{REDIS_HOST}` lists several addresses ({host}): {plugin} supports a single Redis node"
        ));
    }
    let (addr, given_port) = if let Ok(addr) = host.parse::<SocketAddr>() {
        (addr.ip(), Some(addr.port()))
    } else if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        (ip, None)
    } else {
        return Err(format!(
            "metadata `{REDIS_HOST}` must be host:port, got {host:?}"
        ));
    };
    let port = match (given_port, port) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "metadata `{REDIS_HOST}` names port {a} but `redisPort` is {b}: remove one of them"
            ))
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => DEFAULT_PORT,
    };
    Ok(SocketAddr::new(addr, port))
}

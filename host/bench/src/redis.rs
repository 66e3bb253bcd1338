//! The Redis half of the run: a real `redis-server` on a free port (started by the test
//! harness, `blockhost_tests::redis::RedisServer`), and what a direct client sends as the
//! baseline: the same commands the `state.redis` plugin sends for the same request.
//!
//! - state GET → the plugin pipelines `HGETALL key` + `PTTL key` (one round trip);
//! - state POST of one item without ETag → `EVALSHA <sha of write.lua> 1 key set "" 0 0 value`
//!   (the `redis` crate's `Script::invoke`; the script is the plugin's own `write.lua`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use anyhow::{bail, Context, Result};
use blockhost_tests::redis::RedisServer;

use crate::load::{resp_command, resp_reply};

/// The plugin's write script, relative to the workspace root.
const WRITE_SCRIPT: &str = "plugins/state-redis/src/write.lua";

/// How the baseline GET is described in the results.
pub const GET_DESCRIPTION: &str = "`HGETALL <key>` + `PTTL <key>`, pipelined (one round trip)";
/// How the baseline POST is described in the results.
pub const SET_DESCRIPTION: &str =
    "`EVALSHA <sha1 of plugins/state-redis/src/write.lua> 1 <key> set \"\" 0 0 <value>`";

/// A running `redis-server`; stopped when dropped.
pub struct Redis {
    pub port: u16,
    pub version: String,
    /// The SHA1 `SCRIPT LOAD` gave for the plugin's write script.
    pub script_sha: String,
    _server: RedisServer,
}

pub fn start(root: &Path) -> Result<Redis> {
    let script_path = root.join(WRITE_SCRIPT);
    let script = std::fs::read_to_string(&script_path)
        .with_context(|| format!("cannot read {}", script_path.display()))?;
    let server = RedisServer::start();
    let port = server.port();
    let reply = exchange(
        port,
        &resp_command(&[b"SCRIPT", b"LOAD", script.as_bytes()]),
    )?;
    let script_sha = reply
        .strip_prefix("$40\r\n")
        .and_then(|r| r.get(..40))
        .with_context(|| format!("SCRIPT LOAD answered {reply:?}"))?
        .to_owned();
    let info = exchange(port, &resp_command(&[b"INFO", b"server"]))?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    Ok(Redis {
        port,
        version,
        script_sha,
        _server: server,
    })
}

/// One command on a fresh connection; the raw reply.
pub fn exchange(port: u16, command: &[u8]) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("cannot connect to redis-server on port {port}"))?;
    stream.write_all(command)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((end, error)) = resp_reply(&buf, 0)? {
            let reply = String::from_utf8_lossy(&buf[..end]).into_owned();
            if error {
                bail!("redis-server answered {reply}");
            }
            return Ok(reply);
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            bail!("redis-server closed the connection");
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

impl Redis {
    /// The direct equivalent of a state GET (two pipelined commands, two replies).
    pub fn get_request(&self, stored_key: &str) -> Vec<u8> {
        let mut request = resp_command(&[b"HGETALL", stored_key.as_bytes()]);
        request.extend(resp_command(&[b"PTTL", stored_key.as_bytes()]));
        request
    }

    /// The direct equivalent of a state POST of one item without ETag or TTL.
    pub fn set_request(&self, stored_key: &str, value: &str) -> Vec<u8> {
        resp_command(&[
            b"EVALSHA",
            self.script_sha.as_bytes(),
            b"1",
            stored_key.as_bytes(),
            b"set",
            b"",
            b"0",
            b"0",
            value.as_bytes(),
        ])
    }
}

//! The load generator: a fixed number of keep-alive connections, each a closed loop (send one
//! request, read the whole answer, send the next), with every request's latency recorded so
//! percentiles are exact rather than estimated from a histogram.
//!
//! It speaks just enough HTTP/1.1 (fixed request bytes, `Content-Length` answers) and RESP2
//! to keep its own CPU cost small: on a 2-core machine the generator shares the cores with
//! the server it measures, and the less it spends the more the figures say about the server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How answers are framed and judged.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// HTTP/1.1; an answer with another status counts as an error.
    Http { expect_status: u16 },
    /// RESP2 (Redis): each request is `replies` pipelined commands; an error reply
    /// (`-ERR ...`) counts as an error.
    Resp { replies: usize },
}

/// What one measurement sends: connection `i` sends `requests[i % requests.len()]` again
/// and again.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub requests: Vec<Vec<u8>>,
}

/// The outcome of one measurement.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Every completed request's latency in nanoseconds, sorted.
    pub latencies_ns: Vec<u64>,
    pub elapsed: Duration,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Sample {
    pub fn throughput(&self) -> f64 {
        self.latencies_ns.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile, in microseconds.
    pub fn percentile_us(&self, p: f64) -> f64 {
        let n = self.latencies_ns.len();
        if n == 0 {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let index = rank.clamp(1, n) - 1;
        self.latencies_ns[index] as f64 / 1000.0
    }
}

/// Opens `connections` connections, then drives them for `duration`.
pub async fn measure(target: &Target, connections: usize, duration: Duration) -> Result<Sample> {
    if target.requests.is_empty() {
        bail!("no request to send");
    }
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("cannot connect to {}", target.addr))?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for (index, stream) in streams.into_iter().enumerate() {
        let request = target.requests[index % target.requests.len()].clone();
        let protocol = target.protocol;
        tasks.push(tokio::spawn(drive(stream, request, protocol, deadline)));
    }
    let mut sample = Sample {
        latencies_ns: Vec::new(),
        elapsed: Duration::ZERO,
        errors: 0,
        first_error: None,
    };
    for task in tasks {
        let outcome = task.await.context("a load connection task failed")??;
        sample.latencies_ns.extend(outcome.latencies_ns);
        sample.errors += outcome.errors;
        if sample.first_error.is_none() {
            sample.first_error = outcome.first_error;
        }
    }
    sample.elapsed = start.elapsed();
    sample.latencies_ns.sort_unstable();
    Ok(sample)
}

struct Outcome {
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

async fn drive(
    mut stream: TcpStream,
    request: Vec<u8>,
    protocol: Protocol,
    deadline: Instant,
) -> Result<Outcome> {
    let mut outcome = Outcome {
        latencies_ns: Vec::with_capacity(1 << 16),
        errors: 0,
        first_error: None,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        stream
            .write_all(&request)
            .await
            .context("writing a request")?;
        let verdict = match protocol {
            Protocol::Http { expect_status } => {
                let status = read_http(&mut stream, &mut buf).await?;
                (status != expect_status).then(|| format!("HTTP status {status}"))
            }
            Protocol::Resp { replies } => {
                let mut error = None;
                for _ in 0..replies {
                    let verdict = read_resp(&mut stream, &mut buf).await?;
                    error = error.or(verdict);
                }
                error
            }
        };
        let latency = sent.elapsed();
        outcome.latencies_ns.push(latency.as_nanos() as u64);
        if let Some(error) = verdict {
            outcome.errors += 1;
            outcome.first_error.get_or_insert(error);
        }
    }
    Ok(outcome)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 << 10);
    }
    let read = stream.read_buf(buf).await.context("reading an answer")?;
    if read == 0 {
        bail!("the server closed the connection");
    }
    Ok(())
}

/// Reads one HTTP/1.1 answer (status line, headers, `Content-Length` body) and returns its
/// status; `buf` keeps whatever follows it.
pub async fn read_http(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16> {
    loop {
        if let Some(head_end) = find(buf, b"\r\n\r\n") {
            let (status, body_len) = parse_head(&buf[..head_end])?;
            let total = head_end + 4 + body_len;
            while buf.len() < total {
                fill(stream, buf).await?;
            }
            buf.drain(..total);
            return Ok(status);
        }
        fill(stream, buf).await?;
    }
}

/// The status and body length of an answer head (without the blank line).
pub fn parse_head(head: &[u8]) -> Result<(u16, usize)> {
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .context("malformed HTTP status line")?;
    let mut body_len = 0;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            body_len = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .context("malformed Content-Length")?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            bail!("chunked answers are not expected here");
        }
    }
    Ok((status, body_len))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one complete RESP2 reply; `Some(message)` when it is (or holds) an error reply.
pub async fn read_resp(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<String>> {
    loop {
        if let Some((end, error)) = resp_reply(buf, 0)? {
            let error = error.then(|| String::from_utf8_lossy(&buf[..end.min(200)]).into_owned());
            buf.drain(..end);
            return Ok(error);
        }
        fill(stream, buf).await?;
    }
}

/// Where the reply starting at `pos` ends, and whether it holds an error; `None` when `buf`
/// does not hold all of it yet.
pub fn resp_reply(buf: &[u8], pos: usize) -> Result<Option<(usize, bool)>> {
    let Some(line_len) = buf.get(pos..).and_then(|rest| find(rest, b"\r\n")) else {
        return Ok(None);
    };
    let line = &buf[pos + 1..pos + line_len];
    let after_line = pos + line_len + 2;
    let number = || -> Result<i64> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .context("malformed RESP length")
    };
    match buf[pos] {
        b'+' | b':' => Ok(Some((after_line, false))),
        b'-' => Ok(Some((after_line, true))),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((after_line, false)));
            }
            let end = after_line + len as usize + 2;
            Ok((buf.len() >= end).then_some((end, false)))
        }
        b'*' => {
            let count = number()?;
            let mut at = after_line;
            let mut error = false;
            for _ in 0..count.max(0) {
                match resp_reply(buf, at)? {
                    Some((end, e)) => {
                        at = end;
                        error |= e;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((at, error)))
        }
        other => bail!("unexpected RESP type byte {other:#04x}"),
    }
}

/// A RESP2 command as bytes.
pub fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_heads_are_parsed() -> Result<()> {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 22";
        assert_eq!(parse_head(head)?, (200, 22));
        assert_eq!(parse_head(b"HTTP/1.1 204 No Content\r\ndate: x")?, (204, 0));
        Ok(())
    }

    #[test]
    fn resp_replies_are_framed() -> Result<()> {
        let reply = b"*4\r\n$4\r\ndata\r\n$3\r\n\"a\"\r\n$7\r\nversion\r\n$1\r\n1\r\n";
        assert_eq!(resp_reply(reply, 0)?, Some((reply.len(), false)));
        assert_eq!(resp_reply(&reply[..reply.len() - 1], 0)?, None);
        assert_eq!(resp_reply(b":5\r\n", 0)?, Some((4, false)));
        assert_eq!(resp_reply(b"-ERR x\r\n", 0)?, Some((8, true)));
        assert_eq!(resp_reply(b"$-1\r\n", 0)?, Some((5, false)));
        Ok(())
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let sample = Sample {
            latencies_ns: (1..=100).map(|i| i * 1000).collect(),
            elapsed: Duration::from_secs(1),
            errors: 0,
            first_error: None,
        };
        assert_eq!(sample.percentile_us(50.0), 50.0);
        assert_eq!(sample.percentile_us(99.0), 99.0);
        assert_eq!(sample.throughput(), 100.0);
    }
}

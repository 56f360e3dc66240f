//! A minimal blocking JSON-RPC 2.0 client over plain HTTP/1.1 (`http://` URLs only):
//! one request per connection, `Content-Length` or chunked responses.

use serde_json::{Value, json};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// The server could not be reached or answered something that is not JSON-RPC.
    Transport(String),
    /// The server answered with a JSON-RPC error object.
    Rpc { code: i64, message: String },
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "transport: {e}"),
            Self::Rpc { code, message } => write!(f, "JSON-RPC error {code}: {message}"),
        }
    }
}

impl std::error::Error for RpcError {}

/// A JSON-RPC endpoint.
#[derive(Debug)]
pub struct Rpc {
    url: String,
    host: String,
    port: u16,
    path: String,
    next_id: AtomicU64,
    timeout: Duration,
}

impl Rpc {
    /// `http://host[:port][/path]`.
    pub fn new(url: &str) -> Result<Self, RpcError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| RpcError::Transport(format!("{url}: only http:// URLs are supported")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.to_string(), p.parse().map_err(|_| RpcError::Transport(format!("{url}: bad port")))?)
            }
            _ => (authority.to_string(), 80),
        };
        if host.is_empty() {
            return Err(RpcError::Transport(format!("{url}: no host")));
        }
        Ok(Self {
            url: url.to_string(),
            host,
            port,
            path,
            next_id: AtomicU64::new(1),
            timeout: Duration::from_secs(60),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with `params`: the `result` member.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let answer = self.post(&body).map_err(|e| RpcError::Transport(format!("{} {method}: {e}", self.url)))?;
        let mut value: Value = serde_json::from_slice(&answer).map_err(|e| {
            RpcError::Transport(format!(
                "{method}: not JSON ({e}): {}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            ))
        })?;
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            return Err(RpcError::Rpc {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
            });
        }
        match value.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(RpcError::Transport(format!("{method}: no result in {value}"))),
        }
    }

    fn post(&self, body: &str) -> std::io::Result<Vec<u8>> {
        let address = (self.host.trim_start_matches('[').trim_end_matches(']'), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut stream = TcpStream::connect_timeout(&address, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.path,
            self.host,
            self.port,
            body.len(),
            body
        );
        stream.write_all(request.as_bytes())?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        let code: u16 = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    length = value.parse::<usize>().ok();
                } else if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                if size == 0 {
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                reader.read_exact(&mut body[start..])?;
                let mut crlf = [0u8; 2];
                reader.read_exact(&mut crlf)?;
            }
        } else if let Some(length) = length {
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        } else {
            reader.read_to_end(&mut body)?;
        }
        if !(200..300).contains(&code) && serde_json::from_slice::<Value>(&body).is_err() {
            return Err(std::io::Error::other(format!(
                "HTTP {code}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        Ok(body)
    }
}

/// `0x`-hex of a number, as JSON-RPC quantities are written.
pub fn quantity(n: u64) -> String {
    format!("{n:#x}")
}

/// A JSON-RPC quantity (`"0x.."`) or a plain number.
pub fn parse_u64(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => u64::from_str_radix(s.strip_prefix("0x")?, 16).ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

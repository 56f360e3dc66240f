//! A small blocking JSON-RPC 2.0 client over HTTP, for tests that talk to
//! tephra or anvil as a wallet would.

use std::time::Duration;

use serde_json::{Value, json};

/// A JSON-RPC endpoint.
#[derive(Debug, Clone)]
pub struct RpcClient {
    url: String,
    agent: ureq::Agent,
}

impl RpcClient {
    /// A client of `url`; HTTP error statuses are answers, not failures.
    pub fn new(url: impl Into<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        Self { url: url.into(), agent }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One call: the result, or the error object.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let reply = self.post(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
        match reply.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(reply["result"].clone()),
        }
    }

    /// One call that must succeed: its result.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.call(method, params).unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Posts `body` (a request or a batch) and returns the reply.
    pub fn post(&self, body: &Value) -> Value {
        self.try_post(body).unwrap_or_else(|e| panic!("{}: {e}", self.url))
    }

    /// As `post`, with a failure to connect or to read JSON as an error.
    pub fn try_post(&self, body: &Value) -> Result<Value, String> {
        let mut response = self.agent.post(&self.url).send_json(body).map_err(|e| e.to_string())?;
        response.body_mut().read_json().map_err(|e| e.to_string())
    }

    /// GET `path` on the same host: the status and the body.
    pub fn get(&self, url: &str) -> Result<(u16, String), String> {
        let mut response = self.agent.get(url).call().map_err(|e| e.to_string())?;
        Ok((response.status().as_u16(), response.body_mut().read_to_string().map_err(|e| e.to_string())?))
    }
}

/// A JSON-RPC quantity ("0x1f") as a number.
pub fn quantity(value: &Value) -> u64 {
    let text = value.as_str().unwrap_or_else(|| panic!("a quantity, not {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{text}: {e}"))
}

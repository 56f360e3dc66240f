//! A small blocking JSON-RPC 2.0 client over HTTP, for tests that talk to
//! tephra or anvil as a wallet would.

use std::time::Duration;

use serde_json::{Value, json};

/// Why a request got no result.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// `method` got no reply: no connection, or no JSON reply.
    #[error("{method}: {source}")]
    Unanswered { method: String, source: ureq::Error },
    /// `method` was answered with the JSON-RPC error object `error`.
    #[error("{method}: {error}")]
    Refused { method: String, error: Value },
}

/// A JSON-RPC endpoint.
#[derive(Debug, Clone)]
pub struct RpcClient {
    url: String,
    agent: ureq::Agent,
}

impl RpcClient {
    /// A client of `url`; HTTP error statuses are answers, not failures.
    /// Each request may take up to 60 s (see [`RpcClient::timeout`]).
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), agent: agent(DEFAULT_TIMEOUT) }
    }

    /// A client of `url` over `agent`, whose settings (timeouts, whether an
    /// HTTP error status is a failure) and connections it shares.
    pub fn with_agent(url: impl Into<String>, agent: ureq::Agent) -> Self {
        Self { url: url.into(), agent }
    }

    /// This client, each request of which may take at most `limit`.
    pub fn timeout(self, limit: Duration) -> Self {
        Self { agent: agent(limit), ..self }
    }

    /// One call: the result, or the error object.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let reply = self.post(&request(method, params));
        match reply.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(reply["result"].clone()),
        }
    }

    /// One call: the result, or why not (no connection, no JSON reply, or
    /// the error object), naming the method.
    pub fn try_call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let reply = self
            .try_post(&request(method, params))
            .map_err(|source| RpcError::Unanswered { method: method.to_string(), source })?;
        match reply.get("error") {
            Some(error) => Err(RpcError::Refused { method: method.to_string(), error: error.clone() }),
            None => Ok(reply["result"].clone()),
        }
    }

    /// Waits up to `limit` for the server to answer `eth_chainId` (a node or
    /// anvil just started); panics naming `what` if it does not.
    pub fn wait_answering(&self, what: &str, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while let Err(error) = self.try_call("eth_chainId", serde_json::json!([])) {
            assert!(std::time::Instant::now() < deadline, "{what} did not answer within {limit:?}: {error}");
            std::thread::sleep(Duration::from_millis(50));
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
    pub fn try_post(&self, body: &Value) -> Result<Value, ureq::Error> {
        let mut response = self.agent.post(&self.url).send_json(body)?;
        response.body_mut().read_json()
    }

    /// GET `path` on the same host: the status and the body.
    pub fn get(&self, url: &str) -> Result<(u16, String), ureq::Error> {
        let mut response = self.agent.get(url).call()?;
        Ok((response.status().as_u16(), response.body_mut().read_to_string()?))
    }
}

/// How long a request of [`RpcClient::new`]'s may take.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A request of one call.
fn request(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
}

/// A batch request: one call of `method` for each of `params`, with ids 0, 1, ...
pub fn batch(method: &str, params: impl IntoIterator<Item = Value>) -> Value {
    let calls = params.into_iter().enumerate();
    Value::Array(
        calls.map(|(id, params)| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).collect(),
    )
}

/// An agent that reads HTTP error statuses as answers.
fn agent(limit: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(limit)).build().new_agent()
}

/// A JSON-RPC quantity ("0x1f") as a number.
pub fn quantity(value: &Value) -> u64 {
    let text = value.as_str().unwrap_or_else(|| panic!("a quantity, not {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{text}: {e}"))
}

//! JSON-RPC request handling: every method the server answers, fed arbitrary
//! parameters, replies with exactly one of a result or an error object; never
//! a panic, never a hang. An input is `method\nparams` (the committed seeds),
//! or else its first byte picks the method; the parameters are JSON when they
//! parse, else one string. A real node on a scratch data dir answers
//! in-process.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tephra_node::{config::Config, node::Running};

struct Harness {
    runtime: tokio::runtime::Runtime,
    node: Running,
    methods: Vec<&'static str>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tephra-fuzz-rpc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Ephemeral ports; eth_sendRawTransactionSync waits at most 20 ms.
        let config = Config::from_toml(&format!(
            "[node]\ndata_dir = {:?}\n[rpc]\nlisten = \"127.0.0.1:0\"\nsend_raw_sync_timeout_ms_default = 20\n\
             send_raw_sync_timeout_ms_max = 20\n[metrics]\nlisten = \"127.0.0.1:0\"\n[udp]\nlisten = \"127.0.0.1:0\"\n",
            dir.display().to_string()
        ))
        .expect("the fuzz config is valid");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let node = runtime.block_on(tephra_node::node::start(config)).expect("the node starts");
        // Subscriptions live on a connection, which an in-process call lacks:
        // the WebSocket end-to-end tests (cli/tests/clients.rs) cover them.
        let mut methods = node.rpc_method_names();
        methods.retain(|name| !name.ends_with("subscribe"));
        Harness { runtime, node, methods }
    })
}

fuzz_target!(|bytes: &[u8]| {
    let harness = harness();
    let named = bytes.iter().position(|&b| b == b'\n').and_then(|newline| {
        let name = std::str::from_utf8(&bytes[..newline]).ok()?;
        let method = harness.methods.iter().find(|m| **m == name)?;
        Some((*method, &bytes[newline + 1..]))
    });
    let (method, params) = match named {
        Some(named) => named,
        None => {
            let Some((&selector, params)) = bytes.split_first() else { return };
            (harness.methods[usize::from(selector) % harness.methods.len()], params)
        }
    };
    let params: Value =
        serde_json::from_slice(params).unwrap_or_else(|_| json!([String::from_utf8_lossy(params)]));
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    // jsonrpsee refuses what is not a request at all (params neither array nor object).
    let Ok(response) = harness.runtime.block_on(harness.node.rpc_request(&request)) else { return };
    let response: Value = serde_json::from_str(&response).expect("the reply is JSON");
    assert!(
        response.get("result").is_some() != response.get("error").is_some(),
        "{method} {params}: exactly one of result and error in {response}"
    );
});

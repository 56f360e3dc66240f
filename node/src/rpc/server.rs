//! The server: HTTP and WebSocket on one port, behind tephra's own accept
//! loop, which counts connections per client address and gives each
//! connection its address's rate limit.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use alloy_primitives::{B256, keccak256};
use jsonrpsee::{
    Methods,
    core::{middleware::RpcServiceBuilder, traits::IdProvider},
    server::{
        BatchRequestConfig, Server, ServerConfig, ServerHandle, StopHandle, serve_with_graceful_shutdown, stop_channel,
    },
    types::SubscriptionId,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

use super::limits::ClientBuckets;
use crate::{config::RpcConfig, metrics::Metrics};

/// Subscription ids as geth makes them: hex strings (viem matches on them).
#[derive(Debug)]
struct HexIds {
    next: AtomicU64,
    salt: B256,
}

impl IdProvider for HexIds {
    fn next_id(&self) -> SubscriptionId<'static> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut input = self.salt.to_vec();
        input.extend_from_slice(&n.to_be_bytes());
        let id = keccak256(input);
        SubscriptionId::Str(format!("0x{}", hex::encode(&id[..16])).into())
    }
}

/// Open connections per client address: taken at accept, given back when the
/// connection ends. Holds only addresses with a connection open, so it is
/// bounded by `rpc.connections_max`.
#[derive(Debug, Default)]
struct ConnectionsPerClient(Mutex<HashMap<IpAddr, u32>>);

impl ConnectionsPerClient {
    fn take(&self, client: IpAddr, max: u32) -> bool {
        let mut open = self.0.lock().expect("connections lock");
        let count = open.entry(client).or_insert(0);
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    fn give_back(&self, client: IpAddr) {
        let mut open = self.0.lock().expect("connections lock");
        if let Some(count) = open.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&client);
            }
        }
    }
}

/// A client's connection, holding its place in `ConnectionsPerClient` until
/// the stream is dropped: after a WebSocket upgrade the stream lives on in
/// the upgraded connection, so the place is held as long as it is open.
struct CountedStream {
    stream: TcpStream,
    open: Arc<ConnectionsPerClient>,
    client: IpAddr,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.open.give_back(self.client);
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Who may connect, and at what rate: the accept loop's limits.
struct Admission {
    open: Arc<ConnectionsPerClient>,
    per_client_max: u32,
    buckets: ClientBuckets,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// The connection, counted against its client's address; none (and
    /// counted as refused) past `rpc.connections_per_client_max`.
    fn admit(&self, stream: TcpStream, client: IpAddr) -> Option<CountedStream> {
        if !self.open.take(client, self.per_client_max) {
            self.metrics.rpc_connections_refused.inc();
            return None;
        }
        Some(CountedStream { stream, open: self.open.clone(), client })
    }
}

/// Starts the JSON-RPC server (HTTP and WebSocket on one port) on `methods`.
/// Its own accept loop refuses a client address past
/// `rpc.connections_per_client_max` open connections, so that one client
/// cannot hold every connection `rpc.connections_max` allows, and gives each
/// connection its address's rate limit (`limits`).
pub async fn serve(
    limits: RpcConfig,
    methods: Methods,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let limits = &limits;
    let config = server_config(limits);
    let listener = TcpListener::bind(limits.listen).await?;
    let address = listener.local_addr()?;
    let (stop, handle) = stop_channel();
    let admission = Admission {
        open: Arc::new(ConnectionsPerClient::default()),
        per_client_max: limits.connections_per_client_max,
        buckets: ClientBuckets::new(limits, metrics.rpc_rate_limited.clone()),
        metrics,
    };
    tokio::spawn(accept_loop(listener, config, methods, stop, admission));
    Ok((address, handle))
}

/// jsonrpsee's side of the limits: sizes, connections, batches, buffers.
fn server_config(limits: &RpcConfig) -> ServerConfig {
    ServerConfig::builder()
        .max_request_body_size(limits.request_size_max_bytes)
        .max_response_body_size(limits.response_size_max_bytes)
        .max_connections(limits.connections_max)
        .set_message_buffer_capacity(limits.subscription_buffer_max)
        .set_batch_request_config(BatchRequestConfig::Limit(limits.batch_size_max))
        .set_id_provider(HexIds { next: AtomicU64::new(0), salt: keccak256(crate::sequencer::unix_ms().to_be_bytes()) })
        .build()
}

/// Accepts connections until `stop`, each admitted one served on its own
/// task behind its client's rate limit.
async fn accept_loop(
    listener: TcpListener,
    config: ServerConfig,
    methods: Methods,
    stop: StopHandle,
    admission: Admission,
) {
    let service = Server::builder().set_config(config).to_service_builder();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.clone().shutdown() => return,
        };
        // Out of file descriptors, say: the loop goes on with the next.
        let Ok((stream, client)) = accepted else { continue };
        // Answers go out as soon as they are written: with Nagle's algorithm
        // a pipelining client's next answer waited for the last one's
        // acknowledgement, up to the peer's delayed-ACK timer (jsonrpsee's
        // own accept loop sets this too).
        if stream.set_nodelay(true).is_err() {
            continue;
        }
        let Some(stream) = admission.admit(stream, client.ip()) else { continue };
        let buckets = admission.buckets.clone();
        let limit = RpcServiceBuilder::new().layer_fn(move |inner| buckets.layer(client.ip(), inner));
        let service = service.clone().set_rpc_middleware(limit).build(methods.clone(), stop.clone());
        tokio::spawn(serve_with_graceful_shutdown(stream, service, stop.clone().shutdown()));
    }
}

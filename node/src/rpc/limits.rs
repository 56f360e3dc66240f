//! The JSON-RPC rate limit per client address: one token bucket per address
//! (the dataplane's `RateLimiter`, shared by all of the address's
//! connections, its table bounded by `rpc.clients_max`), one token per call,
//! notification or batch entry. A call over the limit is answered at once
//! with -32005 (EIP-1474's "limit exceeded"), before any work is done, so
//! one client cannot take the workers and the verify stage from the others.
//!
//! A batch's calls run at once here (jsonrpsee's own batch awaits each call
//! before starting the next): a batch of eth_sendRawTransaction is verified
//! in order on one worker and reaches the sequencer in one turn, instead of
//! paying one sequencer round trip per call. Answers keep the batch's order.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures_util::future::join_all;
use jsonrpsee::{
    MethodResponse,
    core::{
        middleware::{Batch, BatchEntry, BatchEntryErr, Notification, ResponseFuture, RpcServiceT},
        server::BatchResponseBuilder,
    },
    types::{ErrorObject, Id, Request},
};
use prometheus_client::metrics::counter::Counter;
use tephra_dataplane::ratelimit::{RateLimiter, Verdict};

use super::errors::LIMIT_EXCEEDED;
use crate::config::RpcConfig;

/// The buckets of every client address; none when the limit is off.
#[derive(Clone, Debug)]
pub struct ClientBuckets {
    limiter: Option<Arc<Mutex<RateLimiter>>>,
    refused: Counter,
    /// `rpc.response_size_max_bytes`: a batch's answers together, at most.
    response_size_max_bytes: usize,
}

impl ClientBuckets {
    /// `rpc.client_requests_per_s = 0` turns the limit off.
    pub fn new(limits: &RpcConfig, refused: Counter) -> Self {
        let limiter = (limits.client_requests_per_s > 0).then(|| {
            Arc::new(Mutex::new(RateLimiter::new(
                limits.client_requests_per_s,
                limits.client_burst_requests,
                limits.clients_max,
                Instant::now(),
            )))
        });
        Self { limiter, refused, response_size_max_bytes: limits.response_size_max_bytes as usize }
    }

    /// The middleware for one connection from `client`.
    pub fn layer<S>(&self, client: IpAddr, inner: S) -> ClientLimit<S> {
        ClientLimit { inner, client, buckets: self.clone() }
    }

    fn allow(&self, client: IpAddr) -> bool {
        let Some(limiter) = &self.limiter else { return true };
        let verdict = limiter.lock().expect("rate limiter lock").check(client, 1, Instant::now());
        if verdict != Verdict::Allow {
            self.refused.inc();
        }
        verdict == Verdict::Allow
    }
}

/// Installing a filter counts against the client's address: the method
/// reads it from the request's extensions. Only those calls carry it, so
/// that no other call pays the extensions' allocation.
fn tag_client(request: &mut Request<'_>, client: IpAddr) {
    if request.method_name().starts_with("eth_new") {
        request.extensions_mut().insert(client);
    }
}

fn limit_exceeded() -> ErrorObject<'static> {
    ErrorObject::owned(
        LIMIT_EXCEEDED,
        "request rate limit exceeded for this client address (rpc.client_requests_per_s)",
        None::<()>,
    )
}

/// One connection's rate limit, in front of the methods.
#[derive(Clone, Debug)]
pub struct ClientLimit<S> {
    inner: S,
    client: IpAddr,
    buckets: ClientBuckets,
}

impl<S> RpcServiceT for ClientLimit<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, mut request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        tag_client(&mut request, self.client);
        if self.buckets.allow(self.client) {
            ResponseFuture::future(self.inner.call(request))
        } else {
            ResponseFuture::ready(MethodResponse::error(request.id, limit_exceeded()))
        }
    }

    fn batch<'a>(&self, mut batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        for entry in batch.iter_mut() {
            let id = match entry {
                Ok(BatchEntry::Call(request)) => {
                    tag_client(request, self.client);
                    request.id.clone()
                }
                // A notification has no id to answer to: its refusal names none.
                Ok(BatchEntry::Notification(_)) => Id::Null,
                Err(_) => continue,
            };
            if !self.buckets.allow(self.client) {
                *entry = Err(BatchEntryErr::new(id, limit_exceeded()));
            }
        }
        let (inner, response_size_max_bytes) = (self.inner.clone(), self.buckets.response_size_max_bytes);
        async move {
            let inner = &inner;
            // Each call starts (a transaction is verified and queued) in the
            // batch's order when first polled; all then wait together.
            let calls = batch.into_iter().map(|entry| async move {
                match entry {
                    Ok(BatchEntry::Call(request)) => Some(inner.call(request).await),
                    Ok(BatchEntry::Notification(notification)) => {
                        inner.notification(notification).await;
                        None
                    }
                    Err(error) => {
                        let (error, id) = error.into_parts();
                        Some(MethodResponse::error(id, error))
                    }
                }
            });
            batch_response(join_all(calls).await, response_size_max_bytes)
        }
    }

    fn notification<'a>(&self, notification: Notification<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        if self.buckets.allow(self.client) {
            ResponseFuture::future(self.inner.notification(notification))
        } else {
            ResponseFuture::ready(MethodResponse::notification())
        }
    }
}

/// A batch's answers as one response, as jsonrpsee 0.26's `RpcService::batch`
/// builds it (check it again on an upgrade): in order, the
/// notifications left out; only notifications answer nothing; an empty batch
/// is an invalid request; past `response_size_max_bytes`, an error alone.
fn batch_response(answers: Vec<Option<MethodResponse>>, response_size_max_bytes: usize) -> MethodResponse {
    let got_notification = answers.iter().any(Option::is_none);
    let mut builder = BatchResponseBuilder::new_with_limit(response_size_max_bytes);
    for answer in answers.into_iter().flatten() {
        if let Err(too_big) = builder.append(answer) {
            return too_big;
        }
    }
    if builder.is_empty() && got_notification {
        MethodResponse::notification()
    } else {
        MethodResponse::from_batch(builder.finish())
    }
}

//! Making links: dialling a configured remote and accepting newcomers, each authenticated
//! (SPAKE2, `auth.rs`) and introduced by Hello within the timeouts of ARCHITECTURE.md §4.4.

use crate::auth::{self, Side};
use crate::link::{describe_close, read_frame};
use crate::node::{Event, NewLink};
use crate::proto::handshake::{self, AuthBackoff, HelloError, Peer};
use crate::proto::{AUTH_TIMEOUT, Input, close};
use crate::secret::Secret;
use crate::stats::RemoteState;
use crate::wire::{self, Msg, NodeId};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::warn;

/// Exchanges Hello messages and checks versions. Returns (peer, name, workers).
pub async fn exchange_hello(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    hello: &Msg,
) -> Result<(NodeId, String, u32), (RemoteState, String)> {
    let frame = wire::encode(hello).map_err(|e| (RemoteState::Unreachable, e.to_string()))?;
    tokio::time::timeout(AUTH_TIMEOUT, send.write_all(&frame))
        .await
        .map_err(|_| {
            (
                RemoteState::Unreachable,
                "Hello not sent in time".to_string(),
            )
        })?
        .map_err(|e| (RemoteState::Unreachable, e.to_string()))?;
    let body = tokio::time::timeout(AUTH_TIMEOUT, read_frame(recv))
        .await
        .map_err(|_| (RemoteState::Unreachable, "no Hello in time".to_string()))?
        .map_err(|e| refused_or_unreachable(conn, String::from(e)))?
        .ok_or((
            RemoteState::Unreachable,
            "link closed before Hello".to_string(),
        ))?;
    let msg = wire::decode_msg(&body).map_err(|e| (RemoteState::Unreachable, e.to_string()))?;
    match handshake::check_hello(hello, msg) {
        Ok(Peer {
            node,
            name,
            workers,
        }) => Ok((node, name, workers)),
        Err(e @ HelloError::VersionMismatch { .. }) => {
            let text = e.to_string();
            conn.close(close::VERSION_MISMATCH.into(), text.as_bytes());
            Err((RemoteState::VersionMismatch, text))
        }
        Err(e) => Err((RemoteState::Unreachable, e.to_string())),
    }
}

/// The peer's reason if it closed the link over a version mismatch (it read our Hello first
/// and closed before its own Hello reached us), else `error`.
fn refused_or_unreachable(conn: &quinn::Connection, error: String) -> (RemoteState, String) {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(a))
            if a.error_code.into_inner() == u64::from(close::VERSION_MISMATCH) =>
        {
            let reason = wire::sanitize(&String::from_utf8_lossy(&a.reason), wire::MAX_REASON);
            (
                RemoteState::VersionMismatch,
                format!("refused by the peer, which says: {reason}"),
            )
        }
        _ => (RemoteState::Unreachable, error),
    }
}

/// What a dial needs.
pub(crate) struct DialContext {
    pub endpoint: quinn::Endpoint,
    pub tx: mpsc::UnboundedSender<Event>,
    pub secret: Secret,
    pub hello: Msg,
    pub remote: usize,
    pub address: String,
}

/// Dials a configured remote; the result comes back as an event.
pub(crate) async fn dial(ctx: DialContext) {
    let fail = |state: RemoteState, error: String| {
        let remote = ctx.remote;
        // Shown in Statistics and Preferences: a transport error may carry the peer's words.
        let error = wire::sanitize(&error, wire::MAX_REASON);
        let _ = ctx.tx.send(Event::Input(Input::RemoteFailed {
            remote,
            state,
            error,
        }));
    };
    let addr = match tokio::net::lookup_host(&ctx.address).await {
        Ok(mut a) => match a.next() {
            Some(a) => a,
            None => {
                return fail(
                    RemoteState::Unreachable,
                    "address resolves to nothing".into(),
                );
            }
        },
        Err(e) => return fail(RemoteState::Unreachable, format!("cannot resolve: {e}")),
    };
    match connect_and_authenticate(&ctx.endpoint, addr, &ctx.secret, &ctx.hello).await {
        Ok((conn, send, recv, peer, name, workers)) => {
            let _ = ctx.tx.send(Event::LinkUp(Box::new(NewLink {
                conn,
                send,
                recv,
                peer,
                name,
                workers,
                remote: Some(ctx.remote),
            })));
        }
        Err((state, error)) => fail(state, error),
    }
}

type Authenticated = (
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
    NodeId,
    String,
    u32,
);

/// Dials `addr`, authenticates with the pool secret and exchanges Hello.
pub async fn connect_and_authenticate(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    secret: &Secret,
    hello: &Msg,
) -> Result<Authenticated, (RemoteState, String)> {
    let unreachable = |e: &dyn std::fmt::Display| (RemoteState::Unreachable, e.to_string());
    let connecting = endpoint
        .connect(addr, "millpond-node")
        .map_err(|e| unreachable(&e))?;
    let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| (RemoteState::Unreachable, "no answer within 5 s".to_string()))?
        .map_err(|e| unreachable(&e))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| unreachable(&e))?;
    let auth = tokio::time::timeout(
        AUTH_TIMEOUT,
        auth::authenticate(&conn, &mut send, &mut recv, secret.as_bytes(), Side::Dialer),
    )
    .await;
    match auth {
        Ok(Ok(_)) => {}
        Ok(Err(_)) | Err(_) => {
            // The acceptor closes with AUTH_FAILED; a short wait lets its reason arrive.
            let reason = tokio::time::timeout(Duration::from_millis(300), conn.closed()).await;
            conn.close(close::AUTH_FAILED.into(), b"authentication failed");
            let text = match reason {
                Ok(e) if matches!(&e, quinn::ConnectionError::ApplicationClosed(a) if a.error_code.into_inner() as u32 == close::AUTH_FAILED) => {
                    "authentication failed: the peer has a different pool secret".to_string()
                }
                Ok(e) if matches!(&e, quinn::ConnectionError::ApplicationClosed(_)) => {
                    describe_close(&e)
                }
                _ => "authentication failed".to_string(),
            };
            return Err((RemoteState::AuthenticationFailed, text));
        }
    }
    conn.set_max_concurrent_uni_streams(64u32.into());
    let (peer, name, workers) = exchange_hello(&conn, &mut send, &mut recv, hello).await?;
    Ok((conn, send, recv, peer, name, workers))
}

/// Accepts newcomers for as long as the endpoint is open. A failing address is refused for a
/// growing time.
pub async fn accept_loop(
    endpoint: quinn::Endpoint,
    tx: mpsc::UnboundedSender<Event>,
    secret: Secret,
    hello: Msg,
) {
    let backoff: Arc<Mutex<AuthBackoff>> = Arc::default();
    while let Some(incoming) = endpoint.accept().await {
        let ip = incoming.remote_address().ip();
        let blocked = backoff
            .lock()
            .map(|b| b.refuses(ip, Instant::now()))
            .unwrap_or(false);
        if blocked {
            incoming.refuse();
            continue;
        }
        let (tx, secret, hello, backoff) =
            (tx.clone(), secret.clone(), hello.clone(), backoff.clone());
        tokio::spawn(async move {
            let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), incoming).await else {
                return;
            };
            let streams = tokio::time::timeout(AUTH_TIMEOUT, conn.accept_bi()).await;
            let Ok(Ok((mut send, mut recv))) = streams else {
                conn.close(close::AUTH_FAILED.into(), b"no authentication in time");
                return;
            };
            let auth = tokio::time::timeout(
                AUTH_TIMEOUT,
                auth::authenticate(
                    &conn,
                    &mut send,
                    &mut recv,
                    secret.as_bytes(),
                    Side::Acceptor,
                ),
            )
            .await;
            if !matches!(auth, Ok(Ok(_))) {
                warn!("authentication failed from {}", conn.remote_address());
                if let Ok(mut b) = backoff.lock() {
                    b.failed(ip, Instant::now());
                }
                conn.close(close::AUTH_FAILED.into(), b"authentication failed");
                return;
            }
            if let Ok(mut b) = backoff.lock() {
                b.succeeded(ip);
            }
            conn.set_max_concurrent_uni_streams(64u32.into());
            match exchange_hello(&conn, &mut send, &mut recv, &hello).await {
                Ok((peer, name, workers)) => {
                    let _ = tx.send(Event::LinkUp(Box::new(NewLink {
                        conn,
                        send,
                        recv,
                        peer,
                        name,
                        workers,
                        remote: None,
                    })));
                }
                Err((_, e)) => warn!(
                    "newcomer {}: {}",
                    conn.remote_address(),
                    wire::sanitize(&e, wire::MAX_REASON)
                ),
            }
        });
    }
}

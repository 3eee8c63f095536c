//! Making links: dialling a configured remote and accepting newcomers, each authenticated
//! (SPAKE2, `auth.rs`) and introduced by Hello within the timeouts of ARCHITECTURE.md §4.4.

use crate::auth::{self, Side};
use crate::detached::server::{Service, serve_client};
use crate::link::{describe_close, read_frame};
use crate::node::{Event, NewLink};
use crate::proto::admission::{Admission, Ending, Verdict};
use crate::proto::handshake::{self, HelloError, Peer};
use crate::proto::{AUTH_TIMEOUT, HANDSHAKE_TIMEOUT, Input, close};
use crate::secret::Secret;
use crate::stats::{NewcomerStats, RemoteState};
use crate::wire::{self, Msg, NodeId, PROTOCOL_VERSION};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Exchanges Hello messages and checks versions. Returns (peer, name, workers).
pub async fn exchange_hello(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    hello: &Msg,
) -> Result<(NodeId, String, u32), (RemoteState, String)> {
    let msg = send_hello_read_first(conn, send, recv, hello).await?;
    check_member(conn, hello, msg)
}

/// Sends this node's Hello and reads the peer's first message (a Hello, or a client's
/// greeting at an acceptor).
async fn send_hello_read_first(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    hello: &Msg,
) -> Result<Msg, (RemoteState, String)> {
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
    read_first(conn, recv).await
}

/// The peer's first message after authentication, within [`AUTH_TIMEOUT`].
pub(crate) async fn read_first(
    conn: &quinn::Connection,
    recv: &mut quinn::RecvStream,
) -> Result<Msg, (RemoteState, String)> {
    let body = tokio::time::timeout(AUTH_TIMEOUT, read_frame(recv))
        .await
        .map_err(|_| (RemoteState::Unreachable, "no Hello in time".to_string()))?
        .map_err(|e| refused_or_unreachable(conn, String::from(e)))?
        .ok_or((
            RemoteState::Unreachable,
            "link closed before Hello".to_string(),
        ))?;
    wire::decode_msg(&body).map_err(|e| (RemoteState::Unreachable, e.to_string()))
}

/// A member's Hello checked against ours (`proto::handshake`); a mismatch closes the link.
fn check_member(
    conn: &quinn::Connection,
    hello: &Msg,
    msg: Msg,
) -> Result<(NodeId, String, u32), (RemoteState, String)> {
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
            let remote = Some(ctx.remote);
            hand_over(&ctx.tx, (conn, send, recv), (peer, name, workers), remote);
        }
        Err((state, error)) => fail(state, error),
    }
}

/// Hands the loop a link authenticated and past Hello: its connection and control streams,
/// and the peer's id, name and workers; `remote`: the remote it was dialled for, if any.
fn hand_over(
    tx: &mpsc::UnboundedSender<Event>,
    (conn, send, recv): (quinn::Connection, quinn::SendStream, quinn::RecvStream),
    (peer, name, workers): (NodeId, String, u32),
    remote: Option<usize>,
) {
    let link = NewLink {
        conn,
        send,
        recv,
        peer,
        name,
        workers,
        remote,
    };
    let _ = tx.send(Event::LinkUp(Box::new(link)));
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
    let (conn, mut send, mut recv) = connect_authenticated(endpoint, addr, secret).await?;
    let (peer, name, workers) = exchange_hello(&conn, &mut send, &mut recv, hello).await?;
    Ok((conn, send, recv, peer, name, workers))
}

/// Dials `addr` and authenticates with the pool secret (a member's link, or a detached-jobs
/// client's connection: the same TLS and SPAKE2, §4.2): the connection and its first stream.
pub(crate) async fn connect_authenticated(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    secret: &Secret,
) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream), (RemoteState, String)> {
    let unreachable = |e: &dyn std::fmt::Display| (RemoteState::Unreachable, e.to_string());
    let connecting = endpoint
        .connect(addr, "millpond-node")
        .map_err(|e| unreachable(&e))?;
    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| {
            let text = format!("no answer within {} s", HANDSHAKE_TIMEOUT.as_secs());
            (RemoteState::Unreachable, text)
        })?
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
    crate::tls::authenticated(&conn);
    Ok((conn, send, recv))
}

/// Accepts newcomers for as long as the endpoint is open. Each incoming connection is first
/// put to `admission` (`proto::admission`): one refused (too many pending, or its source
/// backing off) or asked to retry costs one packet and nothing else, no task; one admitted
/// gets a task that holds its slot until it has authenticated or is closed.
pub(crate) async fn accept_loop(
    endpoint: quinn::Endpoint,
    tx: mpsc::UnboundedSender<Event>,
    secret: Secret,
    hello: Msg,
    admission: Arc<Mutex<Admission>>,
    detached: Arc<Service>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let from = incoming.remote_address();
        let validated = incoming.remote_address_validated();
        let verdict = match admission.lock() {
            Ok(mut a) => a.admit(from, validated, Instant::now()),
            Err(_) => return,
        };
        match verdict {
            Verdict::Admit => {}
            Verdict::Retry => {
                // Asked only of a connection without a token, which quinn may always retry.
                if let Err(e) = incoming.retry() {
                    e.into_incoming().refuse();
                }
                continue;
            }
            Verdict::Refuse(why) => {
                debug!("refused a newcomer from {from}: {why:?}");
                incoming.refuse();
                continue;
            }
        }
        let slot = Slot {
            admission: admission.clone(),
            from,
            ended: false,
        };
        let (tx, secret, hello) = (tx.clone(), secret.clone(), hello.clone());
        let detached = detached.clone();
        tokio::spawn(newcomer(
            incoming, slot, validated, tx, secret, hello, detached,
        ));
    }
}

/// An admitted newcomer's slot in the admission table, given back once, by [`Slot::end`] or
/// on drop (the node stopping: no one is blamed).
struct Slot {
    admission: Arc<Mutex<Admission>>,
    from: SocketAddr,
    ended: bool,
}

impl Slot {
    fn end(mut self, ending: Ending) {
        self.give_back(ending);
    }

    fn give_back(&mut self, ending: Ending) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if let Ok(mut a) = self.admission.lock() {
            a.end(self.from, ending, Instant::now());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.give_back(Ending::Dropped);
    }
}

/// An admitted newcomer: its handshake within [`HANDSHAKE_TIMEOUT`], then the auth stream
/// opened and SPAKE2 done within [`AUTH_TIMEOUT`], or it is closed and its source backs off
/// (its host too once its address is proven: the handshake completed, or `validated`); the
/// slot is given back as it authenticates, before the Hello (which has its own timeout).
async fn newcomer(
    incoming: quinn::Incoming,
    slot: Slot,
    validated: bool,
    tx: mpsc::UnboundedSender<Event>,
    secret: Secret,
    hello: Msg,
    detached: Arc<Service>,
) {
    let from = slot.from;
    // Dropping a handshake that is not done in time closes it.
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            debug!("newcomer {from}: handshake failed: {e}");
            return slot.end(Ending::Failed { proven: validated });
        }
        Err(_) => {
            debug!("newcomer {from}: no handshake in time");
            return slot.end(Ending::Failed { proven: validated });
        }
    };
    let auth = tokio::time::timeout(AUTH_TIMEOUT, async {
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|_| "no stream")?;
        let side = Side::Acceptor;
        match auth::authenticate(&conn, &mut send, &mut recv, secret.as_bytes(), side).await {
            Ok(()) => Ok((send, recv)),
            Err(_) => Err("authentication failed"),
        }
    })
    .await;
    let (mut send, mut recv) = match auth {
        Ok(Ok(streams)) => streams,
        Ok(Err(why)) => {
            if why == "authentication failed" {
                warn!("authentication failed from {from}");
            } else {
                debug!("newcomer {from}: {why}");
            }
            conn.close(close::AUTH_FAILED.into(), b"authentication failed");
            return slot.end(Ending::Failed { proven: true });
        }
        Err(_) => {
            debug!("newcomer {from}: no authentication in time");
            conn.close(close::AUTH_FAILED.into(), b"no authentication in time");
            return slot.end(Ending::Failed { proven: true });
        }
    };
    slot.end(Ending::Authenticated);
    crate::tls::authenticated(&conn);
    // A member says Hello; a detached-jobs client greets as one (§4.13) and is served apart:
    // it never becomes a link, so it takes no part in jobs, gossip or scheduling.
    let first = send_hello_read_first(&conn, &mut send, &mut recv, &hello).await;
    let first = match first {
        Ok(Msg::Client { protocol }) => {
            if protocol != PROTOCOL_VERSION {
                let text = format!(
                    "version mismatch: this member speaks protocol {PROTOCOL_VERSION}, the \
                     client protocol {protocol}"
                );
                warn!("client {from}: {text}");
                conn.close(close::VERSION_MISMATCH.into(), text.as_bytes());
                return;
            }
            tokio::spawn(serve_client(conn, send, recv, detached));
            return;
        }
        Ok(msg) => check_member(&conn, &hello, msg),
        Err(e) => Err(e),
    };
    match first {
        Ok(hello) => hand_over(&tx, (conn, send, recv), hello, None),
        Err((_, e)) => warn!("newcomer {from}: {}", wire::sanitize(&e, wire::MAX_REASON)),
    }
}

/// How often the newcomers' counts may be logged ([`report_newcomers`]).
const NEWCOMER_REPORT: Duration = Duration::from_secs(1);

/// Says in the log, at most every [`NEWCOMER_REPORT`], what became of newcomers when
/// something went wrong with them (refused, asked to retry, closed unauthenticated), and once
/// more when the pending ones changed after such a line: a flood shows as a few lines a
/// second at most, never one per connection, and an honest pool's log says nothing.
pub async fn report_newcomers(admission: Arc<Mutex<Admission>>) {
    let trouble = |s: &NewcomerStats| {
        (
            s.refused_full,
            s.refused_backing_off,
            s.retried,
            s.unauthenticated,
        )
    };
    let mut said: Option<NewcomerStats> = None;
    let mut tick = tokio::time::interval(NEWCOMER_REPORT);
    loop {
        tick.tick().await;
        let Ok(now) = admission.lock().map(|a| a.stats()) else {
            return;
        };
        let changed = match &said {
            None => trouble(&now) != (0, 0, 0, 0),
            Some(s) => trouble(s) != trouble(&now) || s.pending != now.pending,
        };
        if changed {
            info!("{}", describe_newcomers(&now));
            said = Some(now);
        }
    }
}

/// The newcomers' counts in one line (what [`report_newcomers`] logs; tests read it).
pub fn describe_newcomers(s: &NewcomerStats) -> String {
    format!(
        "newcomers: {} pending (at most {} at once), {} admitted, {} authenticated, {} closed \
         unauthenticated, {} refused as too many, {} refused backing off, {} asked to retry, \
         {} remembered",
        s.pending,
        s.peak_pending,
        s.admitted,
        s.authenticated,
        s.unauthenticated,
        s.refused_full,
        s.refused_backing_off,
        s.retried,
        s.remembered
    )
}

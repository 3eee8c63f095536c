//! The async shell around the protocol (ARCHITECTURE.md §4.10): one event loop that feeds
//! [`proto::Node`](crate::proto::Node) the time and each [`Event`], and carries out the
//! [`Action`]s it returns. The shell owns everything that is I/O — the quinn endpoint and
//! connections, the per-link tasks (`link.rs`), dialling and accepting (`dial.rs`), the timer,
//! the blocking tasks that compute chunks, index meshes and assemble jobs, the job owners'
//! event channels and the shared statistics — and decides nothing.

use crate::dial::{self, DialContext};
use crate::link::{self, spawn_link_tasks};
use crate::proto::{
    self, Action, ChunkOutcome, ChunkTask, Input, LinkId, LinkStats, LinkUp, NodeSettings,
};
use crate::secret::Secret;
use crate::stats::PoolStats;
use crate::wire::{self, JobId, Msg, NodeId};
use crate::{ComputeChunk, JobEvent, PoolError};
use millpond_core::job::JobOutput;
use millpond_core::{JobContext, TriangleIndex};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::{debug, warn};

pub(crate) use crate::dial::accept_loop;
pub use crate::dial::{
    connect_and_authenticate, describe_newcomers, exchange_hello, report_newcomers,
};
pub use crate::link::describe_close;
pub use crate::proto::close;

/// What the loop reacts to.
pub enum Event {
    /// Passed to the protocol as it is (from the link tasks, dials, the job handles).
    Input(Input),
    /// An authenticated link whose Hello was exchanged.
    LinkUp(Box<NewLink>),
    /// The app submits a job: its events go to `events`, its id or refusal to `reply`.
    /// `nonce`: the random half of its id, drawn by [`Pool::submit_job`](crate::Pool).
    Submit {
        ctx: Box<JobContext>,
        nonce: u128,
        events: std::sync::mpsc::Sender<JobEvent>,
        reply: std::sync::mpsc::Sender<Result<JobId, PoolError>>,
    },
    /// A bulk stream's header arrived on `link`: `reply` says whether to read its payload
    /// (the protocol's [`Action::TakeBulk`]; dropped unanswered: no).
    BulkOffered {
        link: LinkId,
        header: wire::BulkHeader,
        reply: tokio::sync::oneshot::Sender<crate::proto::Take>,
    },
    /// The timer; the shell adds each link's transport figures.
    Tick,
    Shutdown,
}

/// An authenticated link, ready to be added.
pub struct NewLink {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub peer: NodeId,
    pub name: String,
    pub workers: u32,
    pub remote: Option<usize>,
}

/// A link's I/O side.
struct Link {
    conn: quinn::Connection,
    /// To the link's writer task; `None` until the protocol accepts the link.
    ctrl: Option<mpsc::Sender<Vec<u8>>>,
    /// Permits of the link's reader (`link::MAX_UNHANDLED`): one given back per message
    /// handled.
    unhandled: Arc<tokio::sync::Semaphore>,
    /// The streams, until the link's tasks take them.
    streams: Option<(quinn::SendStream, quinn::RecvStream)>,
    name: String,
}

/// The loop: the protocol state and the I/O it drives.
pub struct Shell {
    node: proto::Node,
    endpoint: quinn::Endpoint,
    tx: mpsc::UnboundedSender<Event>,
    secret: Secret,
    hello: Msg,
    shared: Arc<Mutex<PoolStats>>,
    links: HashMap<LinkId, Link>,
    next_link: LinkId,
    /// Where each owned job's events go, until it is finished.
    owners: HashMap<JobId, std::sync::mpsc::Sender<JobEvent>>,
    /// The channels of the submission being handled.
    submitting: Option<Submitting>,
    /// Where the answer to the bulk stream offered in the input being handled goes.
    offering: Option<tokio::sync::oneshot::Sender<crate::proto::Take>>,
    /// How chunks are computed here.
    compute: Arc<dyn ComputeChunk>,
}

type Submitting = (
    std::sync::mpsc::Sender<JobEvent>,
    std::sync::mpsc::Sender<Result<JobId, PoolError>>,
);

impl Shell {
    pub fn new(
        settings: NodeSettings,
        secret: Secret,
        endpoint: quinn::Endpoint,
        tx: mpsc::UnboundedSender<Event>,
        shared: Arc<Mutex<PoolStats>>,
        compute: Arc<dyn ComputeChunk>,
    ) -> Self {
        let node = proto::Node::new(settings, Instant::now());
        let hello = node.hello();
        Self {
            node,
            endpoint,
            tx,
            secret,
            hello,
            shared,
            links: HashMap::new(),
            next_link: 1,
            owners: HashMap::new(),
            submitting: None,
            offering: None,
            compute,
        }
    }

    /// The Hello this node sends on every new link.
    pub fn hello(&self) -> Msg {
        self.hello.clone()
    }

    /// Runs until shutdown.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        while let Some(ev) = rx.recv().await {
            let input = match ev {
                Event::Shutdown => break,
                Event::Input(input) => {
                    if let Input::LinkDown { link, .. } = &input {
                        self.links.remove(link);
                    }
                    if let Input::Msg { link, .. } = &input
                        && let Some(l) = self.links.get(link)
                    {
                        l.unhandled.add_permits(1);
                    }
                    input
                }
                Event::LinkUp(nl) => self.link_up(*nl),
                Event::Submit {
                    ctx,
                    nonce,
                    events,
                    reply,
                } => {
                    self.submitting = Some((events, reply));
                    Input::Submit { ctx, nonce }
                }
                Event::BulkOffered {
                    link,
                    header,
                    reply,
                } => {
                    self.offering = Some(reply);
                    Input::BulkOffered { link, header }
                }
                Event::Tick => Input::Tick {
                    links: self.link_stats(),
                },
            };
            let actions = self.node.handle(Instant::now(), input);
            for a in actions {
                self.execute(a);
            }
            // An offer the protocol did not answer is declined.
            self.offering = None;
        }
        self.node.shutdown();
        self.endpoint.close(close::QUIT.into(), b"quit");
    }

    /// Names a new link and keeps its connection until the protocol accepts or refuses it.
    fn link_up(&mut self, nl: NewLink) -> Input {
        let link = self.next_link;
        self.next_link += 1;
        let address = nl.conn.remote_address().to_string();
        self.links.insert(
            link,
            Link {
                conn: nl.conn,
                ctrl: None,
                unhandled: Arc::new(tokio::sync::Semaphore::new(link::MAX_UNHANDLED)),
                streams: Some((nl.send, nl.recv)),
                name: nl.name.clone(),
            },
        );
        Input::LinkUp(LinkUp {
            link,
            peer: nl.peer,
            name: nl.name,
            workers: nl.workers,
            remote: nl.remote,
            address,
        })
    }

    /// What quinn measured of each link, for the statistics.
    fn link_stats(&self) -> Vec<LinkStats> {
        self.links
            .iter()
            .map(|(&link, l)| {
                let st = l.conn.stats();
                LinkStats {
                    link,
                    rtt_ms: l.conn.rtt().as_secs_f64() * 1e3,
                    bytes_in: st.udp_rx.bytes,
                    bytes_out: st.udp_tx.bytes,
                }
            })
            .collect()
    }

    /// Sends a payload on a bulk stream of `link`, off the loop: its `bytes` are made there,
    /// and its `header` for their size; `what` names it in the log if the transfer fails.
    fn send_bulk(
        &self,
        link: LinkId,
        what: &'static str,
        header: impl FnOnce(u64) -> wire::BulkHeader + Send + 'static,
        bytes: impl FnOnce() -> Vec<u8> + Send + 'static,
    ) {
        let Some(conn) = self.links.get(&link).map(|l| l.conn.clone()) else {
            return;
        };
        tokio::spawn(async move {
            let bytes = bytes();
            let header = header(bytes.len() as u64);
            if let Err(e) = link::send_bulk(&conn, &header, &bytes).await {
                debug!("{what} transfer failed: {e}");
            }
        });
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Open { link } => {
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                let Some((send, recv)) = l.streams.take() else {
                    return;
                };
                let (ctrl_tx, ctrl_rx) = mpsc::channel(crate::link::MAX_QUEUED_FRAMES);
                l.ctrl = Some(ctrl_tx);
                let (conn, tx) = (l.conn.clone(), self.tx.clone());
                let unhandled = l.unhandled.clone();
                spawn_link_tasks(link, conn, send, recv, ctrl_rx, tx, unhandled);
            }
            Action::Send { link, msg } => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                match wire::encode(&msg) {
                    Ok(frame) => {
                        if let Some(ctrl) = &l.ctrl
                            && let Err(mpsc::error::TrySendError::Full(_)) = ctrl.try_send(frame)
                        {
                            // The peer is not reading: its link goes, not this node's memory
                            // (the close watcher reports it down).
                            let reason = format!(
                                "{} control messages wait for the peer to read them",
                                crate::link::MAX_QUEUED_FRAMES
                            );
                            let addr = l.conn.remote_address();
                            warn!("closing link to {} ({addr}): stalled: {reason}", l.name);
                            l.conn.close(close::STALLED.into(), reason.as_bytes());
                        }
                    }
                    Err(e) => warn!("cannot encode a message for {}: {e}", l.name),
                }
            }
            Action::Close { link, code, reason } => {
                if let Some(l) = self.links.remove(&link) {
                    let addr = l.conn.remote_address();
                    if code == close::DUPLICATE {
                        debug!("refusing link to {} ({addr}): {reason}", l.name);
                    } else {
                        warn!("closing link to {} ({addr}): {reason}", l.name);
                    }
                    l.conn.close(code.into(), reason.as_bytes());
                }
            }
            Action::SendMesh { link, mesh } => {
                let hash = mesh.hash();
                let header = move |size| wire::BulkHeader::Mesh { hash, size };
                self.send_bulk(link, "mesh", header, move || mesh.canonical_bytes());
            }
            Action::SendProgram {
                link,
                hash,
                program,
            } => {
                let header = move |size| wire::BulkHeader::Program { hash, size };
                self.send_bulk(link, "program", header, move || program.canonical_bytes());
            }
            Action::SendResult { link, message } => {
                let Some(conn) = self.links.get(&link).map(|l| l.conn.clone()) else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = link::send_result(&conn, &message).await;
                });
            }
            Action::Compute { task, ctx, cancel } => {
                let tx = self.tx.clone();
                let compute = self.compute.clone();
                tokio::task::spawn_blocking(move || {
                    // Whatever happens in the computation, the protocol hears how it ended:
                    // a panic is caught, and a task ended without a word says so on drop.
                    let mut report = Reporter {
                        tx,
                        task,
                        start: Instant::now(),
                        sent: false,
                    };
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        compute.compute(&ctx, task.chunk, &cancel)
                    }));
                    let outcome = match run {
                        Ok(Ok(r)) => ChunkOutcome::Done(Box::new(r)),
                        Ok(Err(_)) => ChunkOutcome::Cancelled,
                        Err(panic) => ChunkOutcome::Failed(panic_words(&*panic)),
                    };
                    report.send(outcome);
                });
            }
            Action::IndexMesh { mesh } => {
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || {
                    let index = Arc::new(TriangleIndex::new(&mesh));
                    let hash = mesh.hash();
                    let mesh = Arc::from(mesh);
                    let _ = tx.send(Event::Input(Input::MeshReady { hash, mesh, index }));
                });
            }
            Action::BindSimulation(unbound) => {
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || {
                    let _ = tx.send(Event::Input(unbound.bind()));
                });
            }
            Action::Assemble { job, ctx, results } => {
                let Some(events) = self.owners.remove(&job) else {
                    return;
                };
                // Assembly links raster lines (clearance checks): off the loop. A panic in it
                // ends the job with its words, never silence.
                tokio::task::spawn_blocking(move || {
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        ctx.finish(results)
                    }));
                    let out: Result<JobOutput, PoolError> = match run {
                        Ok(r) => r.map_err(|e| PoolError::Job(e.to_string())),
                        Err(panic) => Err(PoolError::Job(format!(
                            "assembly failed: {}",
                            panic_words(&*panic)
                        ))),
                    };
                    let _ = events.send(JobEvent::Finished(out));
                });
            }
            Action::Report { job, event } => {
                let last = matches!(event, JobEvent::Finished(_));
                if let Some(events) = self.owners.get(&job) {
                    let _ = events.send(event);
                }
                if last {
                    self.owners.remove(&job);
                }
            }
            Action::Submitted(r) => {
                let Some((events, reply)) = self.submitting.take() else {
                    return;
                };
                if let Ok(id) = &r {
                    self.owners.insert(*id, events);
                }
                let _ = reply.send(r);
            }
            Action::TakeBulk(take) => {
                if let Some(reply) = self.offering.take() {
                    let _ = reply.send(take);
                }
            }
            Action::Dial { remote, address } => {
                debug!("dialling {address}");
                tokio::spawn(dial::dial(DialContext {
                    endpoint: self.endpoint.clone(),
                    tx: self.tx.clone(),
                    secret: self.secret.clone(),
                    hello: self.hello.clone(),
                    remote,
                    address,
                }));
            }
            Action::Publish(stats) => {
                if let Ok(mut s) = self.shared.lock() {
                    *s = *stats;
                }
            }
        }
    }
}

/// Tells the loop how a chunk's computation ended, once: by `send`, or on drop (the task
/// ended without a result: a failure).
struct Reporter {
    tx: mpsc::UnboundedSender<Event>,
    task: ChunkTask,
    start: Instant,
    sent: bool,
}

impl Reporter {
    fn send(&mut self, outcome: ChunkOutcome) {
        if std::mem::replace(&mut self.sent, true) {
            return;
        }
        let _ = self.tx.send(Event::Input(Input::Computed {
            task: self.task,
            seconds: self.start.elapsed().as_secs_f64(),
            outcome,
        }));
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.send(ChunkOutcome::Failed(
            "the computation ended without a result".into(),
        ));
    }
}

/// A caught panic's message, in words.
pub(crate) fn panic_words(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("panicked: {text}")
}

/// Fires `Tick` events until the loop is gone.
pub async fn ticker(tx: mpsc::UnboundedSender<Event>) {
    let mut iv = tokio::time::interval(proto::TICK);
    loop {
        iv.tick().await;
        if tx.send(Event::Tick).is_err() {
            break;
        }
    }
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("id", &self.node.id())
            .finish()
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Input(i) => write!(f, "Event::Input({i:?})"),
            _ => f.write_str("Event"),
        }
    }
}

impl std::fmt::Debug for NewLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewLink").field("peer", &self.peer).finish()
    }
}

//! What goes into the protocol ([`Input`]) and what comes out ([`Action`]): the whole
//! interface between the state machine and the async shell that does the I/O.

use super::LinkId;
use crate::JobEvent;
use crate::PoolError;
use crate::stats::{PoolStats, RemoteState};
use crate::wire::{BulkHeader, JobId, Msg, NodeId};
use millpond_core::job::{ChunkResult, JobContext, JobSpec, ResultForm};
use millpond_core::mesh::MeshHash;
use millpond_core::sim_job::{ProgramHash, ProgramMoves};
use millpond_core::{CancelToken, Mesh, TriangleIndex};
use std::net::SocketAddr;
use std::sync::Arc;

/// What happened, as the shell tells it.
pub enum Input {
    /// An authenticated link whose Hello was exchanged ([`LinkUp`]).
    LinkUp(LinkUp),
    LinkDown {
        link: LinkId,
        reason: String,
    },
    Msg {
        link: LinkId,
        msg: Msg,
    },
    /// The link's bytes broke the protocol (framing, hash, decoding).
    Violation {
        link: LinkId,
        reason: String,
    },
    /// A bulk stream's header arrived; its payload is not read yet. Answered by one
    /// [`Action::TakeBulk`]: only a mesh this node asked the link for and still waits for,
    /// or a result of a chunk granted down the link, is read (a late copy is declined; a
    /// mesh never asked of the link, or a result of a job or chunk never granted to it,
    /// closes the link as a violation), so what a peer makes this node buffer is what this
    /// node asked for.
    BulkOffered {
        link: LinkId,
        header: BulkHeader,
    },
    /// A result arrived on a bulk stream, hash-checked and decoded, `transfer_s` seconds
    /// after its header.
    Result {
        link: LinkId,
        message: ResultMessage,
        transfer_s: f64,
    },
    /// A mesh arrived on a bulk stream, hash-checked and rebuilt.
    MeshArrived {
        link: LinkId,
        mesh: Box<Mesh>,
    },
    /// A program (a simulation's moves) arrived on a bulk stream, hash-checked and read.
    ProgramArrived {
        link: LinkId,
        hash: ProgramHash,
        program: Arc<ProgramMoves>,
    },
    /// A mesh this node asked [`Action::IndexMesh`] for is indexed.
    MeshReady {
        hash: MeshHash,
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
    },
    /// An [`Action::BindSimulation`] is done: the job's context, or why its inputs do not
    /// make the job its spec names.
    SimulationBound {
        job: JobId,
        ctx: Result<Box<JobContext>, String>,
    },
    /// An [`Action::Compute`] is over, after `seconds`.
    Computed {
        task: ChunkTask,
        seconds: f64,
        outcome: ChunkOutcome,
    },
    /// An [`Action::Dial`] failed.
    RemoteFailed {
        remote: usize,
        state: RemoteState,
        error: String,
    },
    /// The app submits a job; answered by [`Action::Submitted`].
    /// The job comes bound to its mesh, with what only its owner needs to assemble it, and
    /// with the random half of its id ([`JobId::nonce`]): the core reads no random source,
    /// so the shell draws it from the system's and a simulator from its seed.
    Submit {
        ctx: Box<JobContext>,
        nonce: u128,
    },
    /// The owner's handle cancels the job.
    Cancel(JobId),
    /// The timer (every [`TICK`](super::TICK)), with what the transport measured of each link.
    Tick {
        links: Vec<LinkStats>,
    },
    /// LAN discovery heard a member of this pool (`peer`, its beacon's tag checked) announce
    /// itself at `address` ([`Dial`](super::discovery::Dial)): it is connected as a remote
    /// server added by hand (`Node::discovered`).
    Discovered {
        peer: NodeId,
        address: SocketAddr,
    },
}

/// An authenticated link whose Hello was exchanged; the shell named it `link`.
#[derive(Debug)]
pub struct LinkUp {
    pub link: LinkId,
    pub peer: NodeId,
    pub name: String,
    pub workers: u32,
    /// Which configured remote it was dialled for.
    pub remote: Option<usize>,
    /// The peer's address, for the statistics.
    pub address: String,
}

/// A chunk's result on its way up to its job's owner, with what the header of the bulk
/// stream that carries it says of it ([`header`](Self::header)): what [`Action::SendResult`]
/// sends and [`Input::Result`] brings.
#[derive(Clone, Debug)]
pub struct ResultMessage {
    pub job: JobId,
    pub chunk: u32,
    /// Seconds the chunk took to compute where it was computed.
    pub compute_s: f32,
    /// Who computed it (node, worker slot), as the header says; relays pass it on unchanged.
    pub by: (NodeId, u32),
    pub result: Box<ChunkResult>,
}

impl ResultMessage {
    /// The header of the bulk stream that carries it, whose payload (the result's postcard
    /// bytes) is `size` bytes long and hashes to `hash`.
    pub fn header(&self, size: u64, hash: [u8; 32]) -> BulkHeader {
        let (node, worker) = self.by;
        BulkHeader::Result {
            job: self.job,
            chunk: self.chunk,
            compute_s: self.compute_s,
            size,
            hash,
            node,
            worker,
        }
    }
}

/// A chunk to compute here: chunk `chunk` of job `job` on worker slot `worker`. Named by
/// [`Action::Compute`], given back by its [`Input::Computed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkTask {
    pub job: JobId,
    pub chunk: u32,
    pub worker: usize,
}

/// How a chunk's computation ended.
pub enum ChunkOutcome {
    Done(Box<ChunkResult>),
    /// The job's token was cancelled (the job is over here).
    Cancelled,
    /// The computation panicked (or its task ended without a word): the words of the panic.
    /// The chunk goes back to its owner's queue, never silently lost (ARCHITECTURE.md §4.6).
    Failed(String),
}

impl std::fmt::Debug for ChunkOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkOutcome::Done(r) => write!(f, "Done(chunk {})", r.chunk),
            ChunkOutcome::Cancelled => f.write_str("Cancelled"),
            ChunkOutcome::Failed(why) => write!(f, "Failed({why})"),
        }
    }
}

impl ChunkOutcome {
    /// The result, if there is one.
    pub fn result(self) -> Option<Box<ChunkResult>> {
        match self {
            ChunkOutcome::Done(r) => Some(r),
            _ => None,
        }
    }
}

/// What the transport knows of a link (`quinn::Connection::stats`), statistics only.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkStats {
    pub link: LinkId,
    pub rtt_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What the shell must do, in order.
pub enum Action {
    /// Start the link's I/O: it is accepted.
    Open { link: LinkId },
    /// A control message on a link.
    Send { link: LinkId, msg: Msg },
    /// Close the link's connection with this code; the node has already forgotten it.
    Close {
        link: LinkId,
        code: u32,
        reason: String,
    },
    /// Send a mesh on a bulk stream.
    SendMesh { link: LinkId, mesh: Arc<Mesh> },
    /// Send a program on a bulk stream.
    SendProgram {
        link: LinkId,
        hash: ProgramHash,
        program: Arc<ProgramMoves>,
    },
    /// Send a chunk's result up to the parent on a bulk stream.
    SendResult {
        link: LinkId,
        message: ResultMessage,
    },
    /// Compute a chunk off the loop, answer with [`Input::Computed`].
    Compute {
        task: ChunkTask,
        ctx: JobContext,
        cancel: CancelToken,
    },
    /// Index an arrived mesh off the loop, answer with [`Input::MeshReady`].
    IndexMesh { mesh: Box<Mesh> },
    /// Bind a simulation job to its inputs off the loop (`JobContext::simulation`, which
    /// plans the program's tiles again to check the spec: seconds for millions of moves),
    /// answer with [`Input::SimulationBound`].
    BindSimulation(Box<Unbound>),
    /// Assemble a finished job off the loop and report `JobEvent::Finished` to its owner.
    Assemble {
        job: JobId,
        ctx: JobContext,
        results: Vec<ChunkResult>,
    },
    /// Tell the handle of an owned job (a `Finished` is its last event).
    Report { job: JobId, event: JobEvent },
    /// The answer to [`Input::Submit`].
    Submitted(Result<JobId, PoolError>),
    /// The answer to [`Input::BulkOffered`]: read the stream's payload, or stop it unread.
    TakeBulk(Take),
    /// Dial remote `remote` (configured or discovered); answer with a link up or [`Input::RemoteFailed`].
    Dial { remote: usize, address: String },
    /// The new statistics snapshot.
    Publish(Box<PoolStats>),
}

/// The answer to a bulk stream's header ([`Action::TakeBulk`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Stop it unread.
    No,
    /// Read the mesh.
    Mesh,
    /// Read the program.
    Program,
    /// Read the result, and decode it only if its bytes have this form (the chunk's, from
    /// its job's spec: `result_shape`).
    Result(ResultForm),
}

impl Take {
    /// Whether the payload is read at all.
    pub fn taken(self) -> bool {
        self != Take::No
    }
}

/// A simulation job with its inputs, to be bound off the loop ([`Action::BindSimulation`]).
/// The protocol makes it; the shell only binds it.
pub struct Unbound {
    pub(super) job: JobId,
    pub(super) spec: JobSpec,
    pub(super) mesh: Arc<Mesh>,
    pub(super) index: Arc<TriangleIndex>,
    pub(super) program: Arc<ProgramMoves>,
}

/// Names the job; its inputs are left out.
impl std::fmt::Debug for Unbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unbound({})", self.job)
    }
}

impl Unbound {
    /// Binds the job (`JobContext::simulation`: its plan checked against its program): the
    /// answer for the protocol, [`Input::SimulationBound`].
    pub fn bind(self) -> Input {
        let ctx = JobContext::simulation(self.mesh, self.index, self.spec, self.program)
            .map(Box::new)
            .map_err(|e| e.to_string());
        Input::SimulationBound { job: self.job, ctx }
    }
}

/// Names the input and its link or job; the payloads (meshes, results) are left out.
impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::LinkUp(up) => write!(f, "LinkUp({}, {:?})", up.link, up.peer),
            Input::LinkDown { link, reason } => write!(f, "LinkDown({link}, {reason})"),
            Input::Msg { link, msg } => write!(f, "Msg({link}, {msg:?})"),
            Input::Violation { link, reason } => write!(f, "Violation({link}, {reason})"),
            Input::BulkOffered { link, header } => write!(f, "BulkOffered({link}, {header:?})"),
            Input::Result { link, message, .. } => {
                write!(
                    f,
                    "Result({link}, {}, chunk {})",
                    message.job, message.chunk
                )
            }
            Input::MeshArrived { link, mesh } => write!(f, "MeshArrived({link}, {})", mesh.hash()),
            Input::MeshReady { hash, .. } => write!(f, "MeshReady({hash})"),
            Input::ProgramArrived { link, hash, .. } => {
                write!(f, "ProgramArrived({link}, {hash})")
            }
            Input::SimulationBound { job, ctx } => {
                write!(f, "SimulationBound({job}, ok {})", ctx.is_ok())
            }
            Input::Computed { task, .. } => {
                write!(f, "Computed({}, chunk {})", task.job, task.chunk)
            }
            Input::RemoteFailed { remote, error, .. } => {
                write!(f, "RemoteFailed({remote}, {error})")
            }
            Input::Submit { ctx, nonce } => {
                write!(f, "Submit({}, nonce {nonce:032x})", ctx.spec().mesh)
            }
            Input::Cancel(job) => write!(f, "Cancel({job})"),
            Input::Tick { links } => write!(f, "Tick({} links)", links.len()),
            Input::Discovered { peer, address } => write!(f, "Discovered({peer:?}, {address})"),
        }
    }
}

/// Names the action and its link or job; meshes, contexts and results are left out.
impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Open { link } => write!(f, "Open({link})"),
            Action::Send { link, msg } => write!(f, "Send({link}, {msg:?})"),
            Action::Close { link, code, reason } => write!(f, "Close({link}, {code}, {reason})"),
            Action::SendMesh { link, mesh } => write!(f, "SendMesh({link}, {})", mesh.hash()),
            Action::SendProgram { link, hash, .. } => write!(f, "SendProgram({link}, {hash})"),
            Action::SendResult { link, message: m } => {
                let (job, chunk, by) = (m.job, m.chunk, m.by);
                write!(f, "SendResult({link}, {job}, chunk {chunk}, by {by:?})")
            }
            Action::Compute { task: t, .. } => {
                write!(
                    f,
                    "Compute({}, chunk {}, worker {})",
                    t.job, t.chunk, t.worker
                )
            }
            Action::IndexMesh { mesh } => write!(f, "IndexMesh({})", mesh.hash()),
            Action::BindSimulation(u) => write!(f, "BindSimulation({})", u.job),
            Action::Assemble { job, results, .. } => {
                write!(f, "Assemble({job}, {} results)", results.len())
            }
            Action::Report { job, event } => match event {
                JobEvent::Progress(p) => write!(f, "Report({job}, {p:?})"),
                JobEvent::Chunk(r) => write!(f, "Report({job}, chunk {})", r.chunk),
                JobEvent::Finished(r) => write!(f, "Report({job}, finished, ok {})", r.is_ok()),
            },
            Action::Submitted(r) => write!(f, "Submitted({r:?})"),
            Action::TakeBulk(take) => write!(f, "TakeBulk({take:?})"),
            Action::Dial { remote, address } => write!(f, "Dial({remote}, {address})"),
            Action::Publish(_) => f.write_str("Publish"),
        }
    }
}

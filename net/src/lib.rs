//! Millpond's compute pool (ARCHITECTURE.md §4): Millpond instances linked by QUIC over TLS 1.3,
//! authenticated with SPAKE2 bound to the TLS session, exchanging only typed postcard
//! messages. Every member offers its cores and can submit jobs; work flows down a tree that
//! follows the real links, pulled by idle workers, and results flow back up. A job gives the
//! same bits as a local run, whoever computed its chunks.
//!
//! The app uses [`Pool`]: start a member from a [`PoolConfig`], [`Pool::submit`] jobs and
//! watch their [`JobEvent`]s (or run them through the [`Executor`] interface the local
//! runner shares), read [`Pool::stats`], and [`Pool::shutdown`] at once on quit.

pub mod auth;
pub mod detached;
mod dial;
mod discovery;
mod link;
pub mod node;
pub mod proto;
pub mod result_shape;
pub mod secret;
#[cfg(test)]
pub(crate) mod sim;
pub mod splitmix;
pub mod stats;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod wire;

pub use discovery::{Ipv4Interface, beacon_targets};
pub use millpond_core as core;
pub use proto::discovery::{DISCOVERY_PORT, DiscoveryStats};
pub use secret::{SECRET_ENV, SECRET_FILE, Secret, SecretError};
pub use stats::{
    HostState, HostStats, JobStats, NewcomerStats, PoolNotice, PoolStats, RemoteState,
    RemoteStatus, WorkerStats,
};
pub use wire::{JobId, NodeId, PROTOCOL_VERSION};

use millpond_core::CancelToken;
use millpond_core::job::{COMPUTE_ABI, Cancelled, ChunkResult, JobContext, JobOutput};
use millpond_core::runner::{Executor, OnEvent, Progress, RunError, RunEvent, RunResult};
use millpond_core::{JobSpec, Mesh, TriangleIndex};
use node::{Event, Shell};
pub use proto::DEFAULT_VERIFY;
use proto::{Input, NodeSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where other machines can reach a member bound to `bound`, in words for its statistics
/// row: the address itself when it is a specific one, else (bound to 0.0.0.0 or [::], which
/// nobody can dial) `bound`'s port on each of the machine's addresses of that family —
/// loopback and IPv6 link-local ones left out unless nothing else is there.
pub fn reachable_at(bound: SocketAddr, interfaces: &[std::net::IpAddr]) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    // A socket on [::] takes IPv4 too (dual stack); one on 0.0.0.0 only IPv4.
    let family = |ip: &std::net::IpAddr| bound.is_ipv6() || ip.is_ipv4();
    let link_local = |ip: &std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6.is_unicast_link_local(),
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
    };
    let mut usable: Vec<&std::net::IpAddr> = interfaces
        .iter()
        .filter(|ip| family(ip) && !ip.is_loopback() && !link_local(ip))
        .collect();
    if usable.is_empty() {
        usable = interfaces.iter().filter(|ip| family(ip)).collect();
    }
    if usable.is_empty() {
        return bound.to_string();
    }
    usable
        .iter()
        .map(|ip| SocketAddr::new(**ip, bound.port()).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// This machine's interface addresses (none if the system will not say).
fn interface_addresses() -> Vec<std::net::IpAddr> {
    if_addrs::get_if_addrs()
        .map(|list| list.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// Default pool port (UDP).
pub const DEFAULT_PORT: u16 = 1250;

/// How a member's workers compute a chunk. The pool's own is [`RunChunk`]
/// (`JobContext::run_chunk`). Another one (a test's lying peer, an accelerator) must give
/// the same bits for the same job: owners recompute a sample of what peers send and cut off a
/// peer whose bits differ (ARCHITECTURE.md §4.6). A panic in it is caught: the chunk goes
/// back to its owner's queue.
pub trait ComputeChunk: std::fmt::Debug + Send + Sync {
    fn compute(&self, ctx: &JobContext, chunk: u32, cancel: &CancelToken) -> Computed;
}

/// What computing a chunk gives: its result, or [`Cancelled`] when the job's token was.
pub type Computed = Result<ChunkResult, Cancelled>;

/// Chunks computed as every Millpond computes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunChunk;

impl ComputeChunk for RunChunk {
    fn compute(&self, ctx: &JobContext, chunk: u32, cancel: &CancelToken) -> Computed {
        ctx.run_chunk(chunk, cancel)
    }
}

/// How to run a pool member.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Where to listen; `None` dials out only (a link works both ways whoever dialled).
    pub listen: Option<SocketAddr>,
    /// Servers to connect to, `HOST:PORT`.
    pub remotes: Vec<String>,
    pub secret: Secret,
    /// Local worker threads.
    pub workers: usize,
    /// Shown to the other members.
    pub name: String,
    /// Where the node certificate is kept (made at first start); `None`: a fresh one.
    pub config_dir: Option<PathBuf>,
    /// Bytes of meshes kept for reuse.
    pub mesh_cache_bytes: u64,
    /// Protocol version to announce (tests provoke mismatches with it).
    pub protocol: u32,
    /// Compute ABI to announce (tests provoke mismatches with it).
    pub compute_abi: u32,
    /// Share of the results peers send for this member's jobs that it recomputes and
    /// compares bit for bit, 0 to 1 (default [`DEFAULT_VERIFY`], 3%); above 0, also the first
    /// result of each peer in each job. 0 checks no sample; copies of a chunk are compared
    /// whatever this is. A peer caught with a wrong result is cut off and everything it
    /// delivered is recomputed.
    pub verify: f64,
    /// How this member's workers compute chunks ([`RunChunk`] unless a test or another
    /// implementation says otherwise).
    pub compute: Arc<dyn ComputeChunk>,
    /// LAN discovery (ARCHITECTURE.md §4.12): announce this member on its local networks with
    /// a beacon only members of the same pool recognise, and connect to the members heard
    /// there as to remote servers added by hand. Needs `listen` (an IPv4 or every address).
    /// Off (the default), no socket is opened and nothing is sent.
    pub discover: bool,
    /// The UDP port beacons are sent to and heard on ([`DISCOVERY_PORT`]).
    pub discovery_port: u16,
    /// How this member runs detached jobs submitted to it (ARCHITECTURE.md §4.13): `millpond
    /// serve` gives the app's runner. `None` (the window, `toolpath --pool`): it refuses them.
    pub detached: Option<Arc<dyn detached::RunDetached>>,
}

impl PoolConfig {
    pub fn new(secret: Secret) -> Self {
        Self {
            listen: None,
            remotes: Vec::new(),
            secret,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            name: default_name(),
            config_dir: None,
            mesh_cache_bytes: 2 << 30,
            protocol: PROTOCOL_VERSION,
            compute_abi: COMPUTE_ABI,
            verify: DEFAULT_VERIFY,
            compute: Arc::new(RunChunk),
            discover: false,
            discovery_port: DISCOVERY_PORT,
            detached: None,
        }
    }
}

/// Why a share of results to verify is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("the share of results to verify must be between 0 and 1 (0% and 100%), not {0}")]
pub struct VerifyShareError(pub String);

/// Reads a share of results to verify: a fraction (`0.03`) or a percentage (`3%`), 0 to 1.
pub fn parse_verify(text: &str) -> Result<f64, VerifyShareError> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    };
    match value {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(VerifyShareError(text.to_string())),
    }
}

/// This machine's host name, or "millpond".
pub fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "millpond".into())
        .chars()
        .take(wire::MAX_NAME)
        .collect()
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PoolError {
    #[error("cannot start the pool: {0}")]
    Start(String),
    #[error("the pool has stopped")]
    Stopped,
    #[error("job rejected: {0}")]
    Job(String),
    #[error("cancelled")]
    Cancelled,
}

/// What a submitted job reports.
#[derive(Debug)]
pub enum JobEvent {
    Progress(Progress),
    /// A chunk's result the owner accepted (validated, first of its chunk), once per chunk, in
    /// arrival order, so the job can be drawn while it is assembled. The owner keeps its own
    /// reference for assembly; the receiver may hold this one as long as it likes.
    Chunk(Arc<ChunkResult>),
    Finished(Result<JobOutput, PoolError>),
}

/// A submitted job.
#[derive(Debug)]
pub struct JobHandle {
    pub id: JobId,
    pub events: std::sync::mpsc::Receiver<JobEvent>,
    tx: mpsc::UnboundedSender<Event>,
}

impl JobHandle {
    pub fn cancel(&self) {
        let _ = self.tx.send(Event::Input(Input::Cancel(self.id)));
    }

    /// Blocks until the job is over, reporting its chunks and progress as [`RunEvent`]s, and
    /// cancels it at its owner within milliseconds of `cancel`. Needs no [`Pool`]: a handle
    /// outlives a pool that stops (its events end, and the run says the pool stopped).
    pub fn follow(self, cancel: &CancelToken, on_event: &OnEvent<'_>) -> RunResult {
        loop {
            if cancel.is_cancelled() {
                self.cancel();
                return Err(RunError::Cancelled);
            }
            // A short wait, so that a cancel is seen within milliseconds.
            match self.events.recv_timeout(Duration::from_millis(10)) {
                Ok(JobEvent::Progress(progress)) => on_event(RunEvent::Progress {
                    progress,
                    worker: None,
                }),
                Ok(JobEvent::Chunk(r)) => on_event(RunEvent::Chunk(&r)),
                Ok(JobEvent::Finished(r)) => return r.map_err(RunError::from),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(PoolError::Stopped.into());
                }
            }
        }
    }

    /// Blocks until the job is over, calling `on_progress` on the way (chunk results are
    /// skipped: the output has them all).
    pub fn wait(self, mut on_progress: impl FnMut(Progress)) -> Result<JobOutput, PoolError> {
        loop {
            match self.events.recv() {
                Ok(JobEvent::Progress(p)) => on_progress(p),
                Ok(JobEvent::Chunk(_)) => {}
                Ok(JobEvent::Finished(r)) => return r,
                Err(_) => return Err(PoolError::Stopped),
            }
        }
    }
}

/// `N` bytes from the system's random source (ring's `SystemRandom`).
fn system_random<const N: usize>() -> Result<[u8; N], String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "no system randomness".to_string())?;
    Ok(b)
}

/// Detached jobs a member runs at once: each computes on all of the pool's workers, so a
/// second would only share them; the rest wait in the queue.
const DETACHED_RUNNERS: usize = 1;

/// A running pool member.
#[derive(Debug)]
pub struct Pool {
    tx: mpsc::UnboundedSender<Event>,
    runtime: Option<tokio::runtime::Runtime>,
    endpoint: quinn::Endpoint,
    shared: Arc<Mutex<PoolStats>>,
    /// Newcomers before they authenticate, kept by the accept loop (`proto::admission`).
    admission: Arc<Mutex<proto::admission::Admission>>,
    /// LAN discovery's counts, kept by its task; `None` when it is off.
    discovery: Option<Arc<Mutex<DiscoveryStats>>>,
    /// Detached jobs submitted to this member (§4.13).
    detached: Arc<detached::server::Service>,
    id: NodeId,
    local_addr: Option<SocketAddr>,
}

impl Pool {
    /// Starts a member: binds the endpoint, starts accepting and dialling.
    pub fn start(config: PoolConfig) -> Result<Self, PoolError> {
        let err = |e: &dyn std::fmt::Display| PoolError::Start(e.to_string());
        if config.discover {
            discovery::check(&config)?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(config.workers.max(1) + 8)
            .thread_name("millpond-pool")
            .enable_all()
            .build()
            .map_err(|e| err(&e))?;
        let identity = tls::load_or_create_identity(config.config_dir.as_deref())
            .map_err(|e| PoolError::Start(format!("node certificate: {e}")))?;
        let client = tls::client_config().map_err(|e| err(&e))?;
        let bind = config
            .listen
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let endpoint = {
            let _guard = runtime.enter();
            let mut ep = if config.listen.is_some() {
                let server = tls::server_config(&identity).map_err(|e| err(&e))?;
                quinn::Endpoint::server(server, bind)
            } else {
                quinn::Endpoint::client(bind)
            }
            .map_err(|e| PoolError::Start(format!("cannot listen on {bind}: {e}")))?;
            ep.set_default_client_config(client);
            ep
        };
        let local_addr = endpoint.local_addr().ok();
        let random = || {
            system_random()
                .map(u64::from_le_bytes)
                .map_err(PoolError::Start)
        };
        let id = NodeId(random()?);
        if !(0.0..=1.0).contains(&config.verify) {
            return Err(PoolError::Start(
                VerifyShareError(config.verify.to_string()).to_string(),
            ));
        }
        // Checked, and its socket bound, before anything runs: a member asked to discover
        // that cannot says so rather than starting without it.
        let discovery = match (config.discover, local_addr) {
            (true, Some(bound)) => Some(discovery::open(&config, bound, id)?),
            (true, None) => return Err(PoolError::Start("LAN discovery: no address".into())),
            (false, _) => None,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(PoolStats::default()));
        let settings = NodeSettings {
            id,
            // Cleaned and cut as a peer's name is, so that every peer accepts it.
            name: wire::sanitize(&config.name, wire::MAX_NAME),
            workers: config.workers.max(1),
            remotes: config.remotes.clone(),
            protocol: config.protocol,
            compute_abi: config.compute_abi,
            mesh_cache_bytes: config.mesh_cache_bytes,
            address: config
                .listen
                .and(local_addr)
                .map(|a| reachable_at(a, &interface_addresses())),
            verify: config.verify,
            seed: random()?,
        };
        let shell = Shell::new(
            settings,
            config.secret.clone(),
            endpoint.clone(),
            tx.clone(),
            shared.clone(),
            config.compute.clone(),
        );
        let hello = shell.hello();
        runtime.spawn(shell.run(rx));
        runtime.spawn(node::ticker(tx.clone()));
        let admission = Arc::new(Mutex::new(proto::admission::Admission::default()));
        let detached =
            detached::server::Service::new(config.detached.clone(), detached::Limits::default());
        if config.listen.is_some() {
            let submitter = Arc::new(detached::server::Submitter { tx: tx.clone() });
            detached.start(submitter, DETACHED_RUNNERS);
            runtime.spawn(node::accept_loop(
                endpoint.clone(),
                tx.clone(),
                config.secret,
                hello,
                admission.clone(),
                detached.clone(),
            ));
            runtime.spawn(dial::report_newcomers(admission.clone()));
        }
        let discovery = match discovery {
            Some(opened) => Some(discovery::spawn(&runtime, opened, tx.clone())?),
            None => None,
        };
        Ok(Self {
            tx,
            runtime: Some(runtime),
            endpoint,
            shared,
            admission,
            discovery,
            detached,
            id,
            local_addr,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address the endpoint is bound to (the real port when asked for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Submits a job owned by this member; everyone in the pool helps compute it.
    pub fn submit(
        &self,
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
        spec: JobSpec,
    ) -> Result<JobHandle, PoolError> {
        let ctx = JobContext::new(mesh, index, spec).map_err(|e| PoolError::Job(e.to_string()))?;
        self.submit_job(ctx)
    }

    /// As [`submit`](Self::submit), for a job already bound to its mesh: what only the owner
    /// needs to assemble it (a rest roughing job's material) stays with it.
    pub fn submit_job(&self, ctx: JobContext) -> Result<JobHandle, PoolError> {
        detached::server::Submitter {
            tx: self.tx.clone(),
        }
        .submit_job(ctx)
    }

    /// The notices numbered after `seq` (a helper lost, its chunks re-queued), oldest first:
    /// cheap enough to ask every frame.
    pub fn notices_after(&self, seq: u64) -> Vec<stats::PoolNotice> {
        self.shared
            .lock()
            .map(|s| s.notices.iter().filter(|n| n.seq > seq).cloned().collect())
            .unwrap_or_default()
    }

    /// The latest statistics (refreshed every 50 ms; the newcomers' counts as they are now).
    pub fn stats(&self) -> PoolStats {
        let mut stats = self.shared.lock().map(|s| s.clone()).unwrap_or_default();
        if let Ok(a) = self.admission.lock() {
            stats.newcomers = a.stats();
        }
        stats.discovery = self
            .discovery
            .as_ref()
            .and_then(|d| d.lock().ok().map(|d| *d));
        stats
    }

    /// Leaves the pool now: the endpoint closes at once (peers see it immediately and
    /// re-queue), then waits at most 0.3 s for the close to be sent.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.detached.stop();
        let _ = self.tx.send(Event::Shutdown);
        self.endpoint.close(node::close::QUIT.into(), b"quit");
        if let Some(rt) = self.runtime.take() {
            let ep = self.endpoint.clone();
            rt.block_on(async move {
                let _ = tokio::time::timeout(Duration::from_millis(300), ep.wait_idle()).await;
            });
            rt.shutdown_background();
        }
    }
}

/// The pool as an executor: the job is submitted here (this member owns it; everyone helps)
/// and followed to its end, so the command line and the window run a job the same way
/// whether it is computed here or in the pool.
impl Executor for Pool {
    fn run(&self, job: &JobContext, cancel: &CancelToken, on_event: &OnEvent<'_>) -> RunResult {
        self.submit_job(job.clone())?.follow(cancel, on_event)
    }
}

impl From<PoolError> for RunError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Cancelled => RunError::Cancelled,
            e => RunError::Pool(e.to_string()),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::{interface_addresses, reachable_at};
    use std::net::{IpAddr, SocketAddr};

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_member_on_every_address_shows_where_it_can_be_reached() {
        let any4: SocketAddr = "0.0.0.0:1250".parse().unwrap();
        let any6: SocketAddr = "[::]:1250".parse().unwrap();
        let machine = ips(&[
            "127.0.0.1",
            "192.168.1.5",
            "::1",
            "fe80::1",
            "10.0.0.2",
            "2001:db8::7",
        ]);
        assert_eq!(
            reachable_at(any4, &machine),
            "192.168.1.5:1250, 10.0.0.2:1250"
        );
        assert_eq!(
            reachable_at(any6, &machine),
            "192.168.1.5:1250, 10.0.0.2:1250, [2001:db8::7]:1250"
        );
        // Only loopback: that is where it is reachable (from this machine).
        assert_eq!(
            reachable_at(any4, &ips(&["127.0.0.1", "::1"])),
            "127.0.0.1:1250"
        );
        // A specific address is shown as it is; nothing known keeps the bound address.
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(reachable_at(lo, &machine), "127.0.0.1:5000");
        assert_eq!(reachable_at(any4, &[]), "0.0.0.0:1250");
        // This machine has at least its loopback interface: never 0.0.0.0.
        let here = reachable_at(any4, &interface_addresses());
        assert!(
            !here.contains("0.0.0.0") && here.ends_with(":1250"),
            "{here}"
        );
    }
}

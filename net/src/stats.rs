//! The statistics snapshot the app's Process Statistics panel shows (ARCHITECTURE.md §4.8).

/// How a host looks from here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostState {
    Connecting,
    Authenticated,
    Busy,
    #[default]
    Idle,
    Lost,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Connecting => "connecting",
            HostState::Authenticated => "authenticated",
            HostState::Busy => "busy",
            HostState::Idle => "idle",
            HostState::Lost => "lost",
        }
    }
}

/// One host of the pool (this one first). The default is an idle host nothing is known
/// of yet, for filling in only what is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostStats {
    pub node: u64,
    pub name: String,
    pub address: Option<String>,
    /// 0 for this host, 1 for a direct link, more for hosts known by gossip.
    pub hops: u8,
    pub workers: u32,
    /// Busy workers.
    pub load: u32,
    pub state: HostState,
    /// Chunks this host's link delivered here; for this host (hops 0): chunks its own workers
    /// computed since the pool started, for every job (its own and its neighbours').
    pub chunks_done: u64,
    /// Worker time per chunk: measured around each chunk by whoever computed it (for other
    /// hosts it arrives with each result).
    pub avg_compute_s: f64,
    pub avg_transfer_s: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rtt_ms: f64,
    pub last_heard_s: f64,
    /// Meshes received over / sent down this link.
    pub meshes_in: u64,
    pub meshes_out: u64,
    /// Worker threads, entry `i` being worker slot `i`. For this host (hops 0): what each
    /// computed, every job. For other hosts: what each computed of the results received
    /// here (each result's header says which node and worker slot computed it; relays pass
    /// that on), listing as many entries as the host has workers or as slots were seen;
    /// empty if none of its results came here. A node whose results arrived but which is
    /// neither linked nor known by gossip gets a row of its own named by its id. `busy`
    /// comes from gossip for other hosts (each node says which of its workers are busy).
    pub worker_stats: Vec<WorkerStats>,
    /// Whether `worker_stats[..].busy` says something: false for a host known only from the
    /// results it computed (no gossip heard) and for a lost one.
    pub workers_busy_known: bool,
    /// Results of this host found wrong here (a recomputed sample or a copy differed): it was
    /// cut off and gets no more work from here.
    pub wrong_results: u64,
    /// Results it had delivered to jobs owned here that were taken out again for that and
    /// recomputed; none of them is in any output.
    pub discarded_results: u64,
}

/// One worker thread: what it has done since the pool started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerStats {
    /// Computing a chunk right now.
    pub busy: bool,
    pub chunks_done: u64,
    /// Seconds spent computing those chunks.
    pub compute_s: f64,
}

impl WorkerStats {
    /// Average seconds per chunk (0 before the first one).
    pub fn avg_compute_s(&self) -> f64 {
        if self.chunks_done == 0 {
            0.0
        } else {
            self.compute_s / self.chunks_done as f64
        }
    }
}

/// One job this host owns.
#[derive(Clone, Debug, PartialEq)]
pub struct JobStats {
    pub id: String,
    pub progress: millpond_core::runner::Progress,
}

/// Connection state of a configured remote server, in words a user understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteState {
    Connecting,
    Connected,
    Unreachable,
    AuthenticationFailed,
    VersionMismatch,
}

impl RemoteState {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteState::Connecting => "connecting",
            RemoteState::Connected => "connected",
            RemoteState::Unreachable => "unreachable",
            RemoteState::AuthenticationFailed => "authentication failed",
            RemoteState::VersionMismatch => "version mismatch",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RemoteStatus {
    pub address: String,
    pub state: RemoteState,
    pub last_error: Option<String>,
    /// Found by LAN discovery, not configured.
    pub discovered: bool,
}

/// Something the pool did that the user should hear of at once (the window's status bar
/// says it): a helper lost, its chunks re-queued. Numbered, so that a reader of successive
/// snapshots takes each one once.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolNotice {
    pub seq: u64,
    pub text: String,
}

/// How many notices a snapshot keeps (the newest).
pub const MAX_NOTICES: usize = 8;

/// Everything at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolStats {
    pub node: u64,
    pub name: String,
    pub hosts: Vec<HostStats>,
    pub jobs: Vec<JobStats>,
    pub remotes: Vec<RemoteStatus>,
    /// The latest notices, oldest first (at most [`MAX_NOTICES`]).
    pub notices: Vec<PoolNotice>,
    /// Connections to this member before they authenticated (a listening member's).
    pub newcomers: NewcomerStats,
    /// LAN discovery's counts; `None` when it is off.
    pub discovery: Option<crate::proto::discovery::DiscoveryStats>,
}

/// What became of the connections made to this member before they authenticated
/// (ARCHITECTURE.md §4.4): counts since start, and what is pending now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewcomerStats {
    /// In their handshake or authentication now.
    pub pending: u32,
    /// The most that ever were at once.
    pub peak_pending: u32,
    /// Taken (a slot held until authenticated or closed).
    pub admitted: u64,
    /// Proved they know the secret.
    pub authenticated: u64,
    /// Closed before authenticating: a wrong proof or none in time, no stream opened, a
    /// handshake that failed or never completed.
    pub unauthenticated: u64,
    /// Refused at once: too many pending, everywhere or from their host.
    pub refused_full: u64,
    /// Refused at once: their source or host failed lately and is backing off.
    pub refused_backing_off: u64,
    /// Asked to prove their address first (a QUIC retry), under load.
    pub retried: u64,
    /// Sources and hosts remembered for back-off now.
    pub remembered: usize,
}

impl PoolStats {
    /// The hosts that are part of the pool now (this one, linked ones, and ones gossip heard
    /// of lately), not those lost or gone silent: what "N hosts" counts.
    pub fn reachable_hosts(&self) -> impl Iterator<Item = &HostStats> {
        self.hosts.iter().filter(|h| h.state != HostState::Lost)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::ball_drop;
    use crate::{JobEvent, Pool, PoolConfig, Secret};
    use millpond_core::job::JobOutput;
    use millpond_core::{JobSpec, Mesh, Point3, Rect, TriangleIndex, models};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn this_host_reports_what_its_workers_computed_and_how_long_it_took() {
        let (mesh, index, spec) = sphere_job(0.025);
        let chunks = u64::from(spec.chunk_count());
        assert!(
            chunks > 4,
            "{chunks} chunks: too few to spread over two workers"
        );
        let mut cfg = PoolConfig::new(Secret::new("a test secret", "test").unwrap());
        cfg.workers = 2;
        cfg.name = "stats-test".into();
        let pool = Pool::start(cfg).unwrap();
        let t0 = Instant::now();
        pool.submit(Arc::new(mesh), Arc::new(index), spec)
            .unwrap()
            .wait(|_| {})
            .unwrap();
        let wall_s = t0.elapsed().as_secs_f64();
        // The snapshot is refreshed every 50 ms.
        let deadline = Instant::now() + Duration::from_secs(5);
        let me = loop {
            let stats = pool.stats();
            let me = stats.hosts.iter().find(|h| h.hops == 0).cloned();
            if let Some(me) = me.filter(|m| m.chunks_done >= chunks) {
                break me;
            }
            assert!(
                Instant::now() < deadline,
                "this host never counted the job: {stats:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        pool.shutdown();
        assert_eq!(me.name, "stats-test");
        assert_eq!(me.chunks_done, chunks, "every chunk computed here, once");
        assert_eq!(me.worker_stats.len(), 2, "one entry per worker");
        let per_worker: u64 = me.worker_stats.iter().map(|w| w.chunks_done).sum();
        assert_eq!(per_worker, chunks);
        assert!(me.worker_stats.iter().all(|w| !w.busy), "{me:?}");
        // Compute time is measured, not made up: positive, and no more than the two workers
        // could have spent while the job ran.
        assert!(me.avg_compute_s > 0.0, "{me:?}");
        let busy_s: f64 = me.worker_stats.iter().map(|w| w.compute_s).sum();
        assert!((busy_s / chunks as f64 - me.avg_compute_s).abs() < 1e-9);
        assert!(busy_s <= 2.0 * wall_s, "{busy_s} s of work in {wall_s} s");
        for w in &me.worker_stats {
            assert!(w.chunks_done == 0 || w.avg_compute_s() > 0.0, "{w:?}");
        }
    }

    /// A member names each job it submits with 128 bits from the system's random source: two
    /// jobs' ids share nothing a peer could count on (a counter would differ in its last bits).
    #[test]
    fn job_ids_are_drawn_at_random() {
        let (mesh, index, spec) = sphere_job(4.0);
        let (mesh, index) = (Arc::new(mesh), Arc::new(index));
        let pool = Pool::start(PoolConfig::new(
            Secret::new("a test secret", "test").unwrap(),
        ))
        .unwrap();
        let ids: Vec<crate::JobId> = (0..3)
            .map(|_| {
                let job = pool
                    .submit(mesh.clone(), index.clone(), spec.clone())
                    .unwrap();
                let id = job.id;
                job.wait(|_| {}).unwrap();
                id
            })
            .collect();
        pool.shutdown();
        for (k, a) in ids.iter().enumerate() {
            assert_eq!(a.owner, ids[0].owner);
            for b in &ids[k + 1..] {
                let (x, y) = (a.nonce, b.nonce);
                assert!(
                    x >> 64 != y >> 64 && x as u64 != y as u64,
                    "{a} and {b} look related"
                );
            }
        }
    }

    /// A drop job over a 10 mm sphere, `step` apart lines, enough chunks to share out.
    fn sphere_job(step: f64) -> (Mesh, TriangleIndex, JobSpec) {
        let sphere = models::geodesic_sphere(Point3::new(0.0, 0.0, 10.0), 10.0, 8);
        let mesh = Mesh::from_triangles(sphere, "sphere").unwrap();
        let index = TriangleIndex::new(&mesh);
        let spec = ball_drop(mesh.hash(), Rect::new(-12.0, 12.0, -12.0, 12.0), step, 0.05);
        (mesh, index, spec)
    }

    /// An owner listening on loopback with one worker, and a helper with two dialling it,
    /// linked (the owner lists the helper).
    fn owner_and_helper() -> (Pool, Pool) {
        let secret = Secret::new("a test secret", "test").unwrap();
        let mut cfg = PoolConfig::new(secret.clone());
        cfg.listen = Some("127.0.0.1:0".parse().unwrap());
        cfg.workers = 1;
        cfg.name = "owner".into();
        let owner = Pool::start(cfg).unwrap();
        let port = owner.local_addr().unwrap().port();
        let mut cfg = PoolConfig::new(secret);
        cfg.remotes = vec![format!("127.0.0.1:{port}")];
        cfg.workers = 2;
        cfg.name = "helper".into();
        let helper = Pool::start(cfg).unwrap();
        let helper_id = helper.id().0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !owner.stats().hosts.iter().any(|h| h.node == helper_id) {
            assert!(
                Instant::now() < deadline,
                "never linked: {:?}",
                owner.stats()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (owner, helper)
    }

    /// The owner hands every accepted chunk result to the job's receiver, once per chunk,
    /// before the job finishes, whether its own worker or the helper computed it.
    #[test]
    fn the_owner_reports_each_chunk_once_as_it_arrives() {
        let (mesh, index, spec) = sphere_job(0.01);
        let total = spec.chunk_count();
        let (owner, helper) = owner_and_helper();
        let handle = owner.submit(Arc::new(mesh), Arc::new(index), spec).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut chunks = Vec::new();
        let out = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match handle.events.recv_timeout(left) {
                Ok(JobEvent::Chunk(r)) => chunks.push(r.chunk),
                Ok(JobEvent::Progress(_)) => {}
                Ok(JobEvent::Finished(r)) => break r.expect("the job finishes"),
                Err(e) => panic!("no end of the job: {e}; {} chunks so far", chunks.len()),
            }
        };
        let stats = owner.stats();
        helper.shutdown();
        owner.shutdown();
        assert!(matches!(out, JobOutput::Heights(_)));
        assert_eq!(
            chunks.len() as u32,
            total,
            "one event per chunk: {chunks:?}"
        );
        chunks.sort_unstable();
        chunks.dedup();
        assert_eq!(chunks, (0..total).collect::<Vec<_>>(), "each chunk once");
        let helped = stats.hosts.iter().any(|h| h.hops == 1 && h.chunks_done > 0);
        eprintln!("{total} chunk events; the helper computed some: {helped}");
    }

    /// Polls `owner`'s statistics until the helper's workers are in the state `check` wants,
    /// for at most `timeout`; returns their busy flags.
    fn helper_workers(
        owner: &Pool,
        helper: u64,
        timeout: Duration,
        check: impl Fn(&[bool]) -> bool,
    ) -> Result<Vec<bool>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = owner.stats();
            let busy: Vec<bool> = stats
                .hosts
                .iter()
                .find(|h| h.node == helper)
                .filter(|h| h.workers_busy_known)
                .map(|h| h.worker_stats.iter().map(|w| w.busy).collect())
                .unwrap_or_default();
            if busy.len() == 2 && check(&busy) {
                return Ok(busy);
            }
            if Instant::now() >= deadline {
                return Err(format!("{busy:?} after {timeout:?}: {stats:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Gossip says which of the helper's workers are busy: the owner sees them busy while
    /// they compute its job, and idle within a second of it ending.
    #[test]
    fn the_owner_sees_which_helper_workers_are_busy() {
        // Minutes of work on one core: it is cancelled once the helper is seen busy.
        let (mesh, index, spec) = sphere_job(0.0005);
        let (owner, helper) = owner_and_helper();
        let helper_id = helper.id().0;
        let idle = helper_workers(&owner, helper_id, Duration::from_secs(5), |b| {
            b.iter().all(|&x| !x)
        });
        assert!(idle.is_ok(), "not idle before the job: {idle:?}");
        let handle = owner.submit(Arc::new(mesh), Arc::new(index), spec).unwrap();
        let busy = helper_workers(&owner, helper_id, Duration::from_secs(20), |b| {
            b.iter().any(|&x| x)
        });
        handle.cancel();
        let ended = handle.wait(|_| {});
        let t0 = Instant::now();
        let after = helper_workers(&owner, helper_id, Duration::from_secs(5), |b| {
            b.iter().all(|&x| !x)
        });
        let idle_after = t0.elapsed();
        helper.shutdown();
        owner.shutdown();
        let busy = busy.unwrap_or_else(|e| panic!("the helper's workers never showed busy: {e}"));
        assert_eq!(ended.unwrap_err(), crate::PoolError::Cancelled);
        after.unwrap_or_else(|e| panic!("still busy after the job: {e}"));
        eprintln!("helper workers busy {busy:?}; idle {idle_after:?} after the cancel");
        assert!(idle_after < Duration::from_secs(1), "{idle_after:?}");
    }

    #[test]
    fn the_owner_reports_a_helpers_chunks_per_helper_worker() {
        let (mesh, index, spec) = sphere_job(0.01);
        let chunks = u64::from(spec.chunk_count());
        let (owner, helper) = owner_and_helper();
        let helper_id = helper.id().0;
        let out = owner
            .submit(Arc::new(mesh), Arc::new(index), spec)
            .unwrap()
            .wait(|_| {})
            .unwrap();
        drop(out);
        // The helper's workers show idle once its busy gossip comes (sent at most every
        // 250 ms, so up to ~350 ms with the ticks: a fixed 200 ms wait failed one run in five).
        let idle = helper_workers(&owner, helper_id, Duration::from_secs(5), |b| {
            b.iter().all(|&x| !x)
        });
        assert!(idle.is_ok(), "still busy after the job: {idle:?}");
        let stats = owner.stats();
        helper.shutdown();
        owner.shutdown();
        let me = stats.hosts.iter().find(|h| h.hops == 0).unwrap();
        let h = stats
            .hosts
            .iter()
            .find(|h| h.node == helper_id)
            .unwrap_or_else(|| panic!("no helper row: {stats:?}"));
        eprintln!(
            "{chunks} chunks: owner {} here, helper {h:?}",
            me.chunks_done
        );
        assert_eq!((h.name.as_str(), h.hops, h.workers), ("helper", 1, 2));
        assert!(h.chunks_done > 0, "the helper computed nothing: {stats:?}");
        assert!(me.chunks_done + h.chunks_done >= chunks, "{stats:?}");
        // One entry per helper worker, adding up to what its link delivered, with the
        // compute time each result carried.
        assert_eq!(h.worker_stats.len(), 2, "{h:?}");
        let per_worker: u64 = h.worker_stats.iter().map(|w| w.chunks_done).sum();
        assert_eq!(per_worker, h.chunks_done, "{h:?}");
        let busy_s: f64 = h.worker_stats.iter().map(|w| w.compute_s).sum();
        assert!(busy_s > 0.0, "{h:?}");
        assert!(
            (busy_s / h.chunks_done as f64 - h.avg_compute_s).abs() < 1e-6,
            "{h:?}"
        );
        for w in &h.worker_stats {
            assert!(!w.busy);
            assert!(w.chunks_done == 0 || w.avg_compute_s() > 0.0, "{w:?}");
        }
        // This host's own workers are still its own.
        assert_eq!(me.worker_stats.len(), 1, "{me:?}");
        assert_eq!(me.worker_stats[0].chunks_done, me.chunks_done);
    }
}

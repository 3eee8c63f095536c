//! What the pool's end-to-end tests share (`tests/pool.rs`, `tests/hostile.rs`): the model and
//! its jobs with their local references, bitwise comparison, in-process members, child
//! processes (`millpond serve`, the rogue peer) in a temporary directory killed when the test
//! ends, and a raw authenticated peer.

use millpond_core::job::Grid;
use millpond_core::job::{COMPUTE_ABI, JobOutput, Operation};
use millpond_core::raster::{self, Direction, RasterSpec};
use millpond_core::runner::{Progress, run_local};
use millpond_core::{
    Axis, CancelToken, Cutter, JobContext, JobSpec, Mesh, Point3, TriangleIndex, models,
};
use millpond_net::wire::{self, Msg, NodeId, PROTOCOL_VERSION};
use millpond_net::{HostStats, JobEvent, Pool, PoolConfig, PoolStats, Secret};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const SECRET: &str = "millpond-pool-test-secret";
pub const WRONG_SECRET: &str = "not-the-pool-secret-at-all";
/// A dense raster of the default part: 161 chunks, about 2 s on one core.
pub const STEP: f64 = 0.05;
pub const SAMPLING: f64 = 0.02;
/// Longest any pooled job here may take (they take a few seconds at most).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(40);

// ----- the binary -----

pub use crate::millpond_bin;

/// The test-only hostile member (`src/bin/millpond-rogue-peer.rs`), which cargo builds next to
/// `millpond` for the package's integration tests.
pub fn rogue_bin() -> PathBuf {
    millpond_bin().with_file_name(format!(
        "millpond-rogue-peer{}",
        std::env::consts::EXE_SUFFIX
    ))
}

// ----- the model, jobs and local references -----

pub fn model() -> &'static (Arc<Mesh>, Arc<TriangleIndex>) {
    static MODEL: OnceLock<(Arc<Mesh>, Arc<TriangleIndex>)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mesh = Mesh::from_triangles(models::default_part(), "default-part").unwrap();
        let index = TriangleIndex::new(&mesh);
        (Arc::new(mesh), Arc::new(index))
    })
}

/// A raster finishing job over the default part, framed like `millpond toolpath` frames it.
pub fn raster_spec(step: f64, sampling: f64) -> JobSpec {
    raster_spec_of(&model().0, step, sampling)
}

/// The same over another mesh.
pub fn raster_spec_of(mesh: &Mesh, step: f64, sampling: f64) -> JobSpec {
    let b = mesh.bounds();
    JobSpec {
        mesh: mesh.hash(),
        cutter: Cutter::Ball { diameter: 3.0 },
        operation: Operation::Raster(RasterSpec {
            grid: Grid {
                axis: Axis::X,
                bounds: b.xy().grown(2.0),
                step,
                sampling,
            },
            floor: b.min.z,
            safe_z: b.max.z + 5.0,
            links: millpond_core::links::Links::new(b.max.z, b.max.z + 5.0, 3.0),
            direction: Direction::Zigzag,
            merge_tolerance: raster::DEFAULT_MERGE_TOLERANCE,
            allowance: 0.0,
        }),
    }
}

pub fn dense_spec() -> JobSpec {
    raster_spec(STEP, SAMPLING)
}

/// The job computed locally on one thread, and how long that took (cached: several tests
/// share a spec).
pub fn local_run(spec: &JobSpec) -> (Arc<JobOutput>, Duration) {
    type Entry = (JobSpec, Arc<JobOutput>, Duration);
    static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, out, t)) = cache.iter().find(|(s, ..)| s == spec) {
        return (out.clone(), *t);
    }
    let (mesh, index) = model();
    let t0 = Instant::now();
    let ctx = JobContext::new(mesh.clone(), index.clone(), spec.clone()).unwrap();
    let results = run_local(&ctx, 1, &CancelToken::new(), &|_| {}).unwrap();
    let out = Arc::new(ctx.finish(results).unwrap());
    let t = t0.elapsed();
    cache.push((spec.clone(), out.clone(), t));
    (out, t)
}

pub fn reference(spec: &JobSpec) -> Arc<JobOutput> {
    local_run(spec).0
}

/// A test's job and its local reference, the test's cluster (tagged `tag`), and the test's
/// clock, started once those are ready.
pub fn prepare(tag: &str, spec: JobSpec) -> (JobSpec, Arc<JobOutput>, Cluster, Instant) {
    let want = reference(&spec);
    let c = Cluster::new(tag);
    (spec, want, c, Instant::now())
}

/// Longest a job may take after one of its workers or relays died: the links' idle timeout
/// (a SIGKILLed peer sends no goodbye), plus the job's whole time on one core twice over
/// (the survivors may be just the owner's single worker, sharing the two cores with the
/// other tests), plus a margin.
pub fn after_kill_limit(spec: &JobSpec) -> Duration {
    const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
    IDLE_TIMEOUT + 2 * local_run(spec).1 + Duration::from_secs(5)
}

pub fn point_bits(p: Point3) -> [u64; 3] {
    [p.x.to_bits(), p.y.to_bits(), p.z.to_bits()]
}

/// Same output bit for bit: every move's kind and the bits of every coordinate.
pub fn assert_identical(got: &JobOutput, want: &JobOutput) {
    match (got, want) {
        (JobOutput::Toolpath(a), JobOutput::Toolpath(b)) => {
            assert_eq!(point_bits(a.start), point_bits(b.start), "start differs");
            assert_eq!(a.moves.len(), b.moves.len(), "number of moves differs");
            for (i, (m, n)) in a.moves.iter().zip(&b.moves).enumerate() {
                assert!(
                    m.kind == n.kind && point_bits(m.to) == point_bits(n.to),
                    "move {i} differs: pooled {m:?}, local {n:?}"
                );
            }
        }
        (JobOutput::Heights(a), JobOutput::Heights(b)) => {
            assert_eq!(a.len(), b.len());
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "height {i} differs");
            }
        }
        _ => panic!("outputs of different kinds"),
    }
}

// ----- in-process members -----

pub fn secret(s: &str) -> Secret {
    Secret::new(s.as_bytes(), "test").unwrap()
}

/// A member living in this test process, dialling `remotes`.
pub fn member(name: &str, remotes: &[SocketAddr], workers: usize, secret_text: &str) -> Pool {
    let mut cfg = PoolConfig::new(secret(secret_text));
    cfg.remotes = remotes.iter().map(|a| a.to_string()).collect();
    cfg.workers = workers;
    cfg.name = name.into();
    cfg.config_dir = None;
    cfg.mesh_cache_bytes = 256 << 20;
    Pool::start(cfg).expect("start an in-process member")
}

/// O: a member in this process with one worker, dialling `remotes`, once it sees each of
/// `direct` over a link and each of `gossiped` by gossip (see [`wait_for_hosts`]).
pub fn owner(remotes: &[SocketAddr], direct: &[&str], gossiped: &[&str]) -> Pool {
    let o = member("O", remotes, 1, SECRET);
    wait_for_hosts(&o, direct, gossiped);
    o
}

/// Polls `check` until it gives `Ok`, failing with its last complaint after `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let end = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= end => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

pub fn describe_hosts(s: &PoolStats) -> String {
    let hosts: Vec<String> = s
        .hosts
        .iter()
        .map(|h| format!("{} (hops {}, {})", h.name, h.hops, h.state.as_str()))
        .collect();
    format!("hosts [{}], remotes {:?}", hosts.join(", "), s.remotes)
}

/// Waits (at most `timeout`, for `what`) until `pool`'s host rows satisfy `ok`.
pub fn wait_for_rows(
    pool: &Pool,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&[HostStats]) -> bool,
) {
    wait_until(what, timeout, || {
        let s = pool.stats();
        if ok(&s.hosts) {
            Ok(())
        } else {
            Err(describe_hosts(&s))
        }
    })
}

/// Waits until `pool` sees each of `direct` over a link and each of `gossiped` by gossip
/// (two hops or more, not lost).
pub fn wait_for_hosts(pool: &Pool, direct: &[&str], gossiped: &[&str]) {
    wait_for_rows(pool, "the pool to form", Duration::from_secs(15), |hosts| {
        direct
            .iter()
            .all(|n| hosts.iter().any(|h| h.name == *n && h.hops == 1))
            && gossiped.iter().all(|n| {
                hosts
                    .iter()
                    .any(|h| h.name == *n && h.hops >= 2 && h.hops != u8::MAX)
            })
    })
}

#[derive(Debug)]
pub struct JobRun {
    pub output: JobOutput,
    pub last: Progress,
    pub elapsed: Duration,
}

impl JobRun {
    /// How long the job took and where its chunks were computed, for a test's report.
    pub fn summary(&self) -> String {
        format!(
            "{:.2} s, O {} local / {} remote",
            self.elapsed.as_secs_f64(),
            self.last.local_chunks,
            self.last.remote_chunks
        )
    }
}

/// Submits `spec` to `pool` and waits (at most `JOB_TIMEOUT`) for the result, calling
/// `on_progress` on the way.
pub fn run_job(pool: &Pool, spec: &JobSpec, on_progress: impl FnMut(&Progress)) -> JobRun {
    let (mesh, index) = model();
    run_job_of(pool, mesh, index, spec, on_progress)
}

/// Runs `spec` in `pool` (see [`run_job`]) and checks its output is `want`'s bits.
pub fn run_identical(pool: &Pool, spec: &JobSpec, want: &JobOutput) -> JobRun {
    let run = run_job(pool, spec, |_| {});
    assert_identical(&run.output, want);
    run
}

/// The same with another mesh.
pub fn run_job_of(
    pool: &Pool,
    mesh: &Arc<Mesh>,
    index: &Arc<TriangleIndex>,
    spec: &JobSpec,
    mut on_progress: impl FnMut(&Progress),
) -> JobRun {
    let t0 = Instant::now();
    let handle = pool
        .submit(mesh.clone(), index.clone(), spec.clone())
        .expect("submit");
    let mut last = Progress::default();
    loop {
        let left = JOB_TIMEOUT.saturating_sub(t0.elapsed());
        match handle.events.recv_timeout(left) {
            Ok(JobEvent::Progress(p)) => {
                on_progress(&p);
                last = p;
            }
            Ok(JobEvent::Chunk(_)) => {}
            Ok(JobEvent::Finished(r)) => {
                let output = r.unwrap_or_else(|e| panic!("job failed: {e}"));
                return JobRun {
                    output,
                    last,
                    elapsed: t0.elapsed(),
                };
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "job not finished within {JOB_TIMEOUT:?}: last progress {last:?}; {}",
                describe_hosts(&pool.stats())
            ),
            Err(RecvTimeoutError::Disconnected) => panic!("the pool stopped during the job"),
        }
    }
}

// ----- child processes -----

#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

/// The child processes of one test, in a temporary directory of their own; all are killed
/// (SIGKILL) when the test ends, and their logs are printed if it failed.
#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub procs: Vec<Proc>,
}

impl Cluster {
    pub fn new(tag: &str) -> Self {
        millpond_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("millpond-pool-{tag}-"))
            .tempdir()
            .unwrap();
        crate::write_secret_file(&dir.path().join("secret"), SECRET);
        crate::write_secret_file(&dir.path().join("wrong-secret"), WRONG_SECRET);
        Self {
            dir,
            procs: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn secret_file(&self) -> PathBuf {
        self.path("secret")
    }

    /// A `millpond` command with its own config directory (node certificate), run in the
    /// test's directory.
    pub fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(millpond_bin());
        self.configure(&mut cmd, name);
        cmd
    }

    pub fn configure(&self, cmd: &mut Command, name: &str) {
        cmd.current_dir(self.dir.path())
            .env("MILLPOND_CONFIG_DIR", self.path(&format!("{name}-config")))
            .env_remove("MILLPOND_POOL_SECRET")
            .env_remove("MILLPOND_TEST_PROTOCOL_VERSION")
            .env_remove("MILLPOND_TEST_COMPUTE_ABI")
            .env_remove("MILLPOND_LOG");
    }

    /// Starts `cmd` with its stderr going to `<name>.log`.
    pub fn spawn(&mut self, name: &str, mut cmd: Command) {
        let log = self.path(&format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.procs.push(Proc {
            name: name.into(),
            child,
            log,
        });
    }

    /// `millpond serve` on 127.0.0.1 (a free port), one worker, linked to `remotes`.
    pub fn serve(&mut self, name: &str, remotes: &[SocketAddr]) -> SocketAddr {
        self.serve_with(name, remotes, "secret", &[])
    }

    pub fn serve_with(
        &mut self,
        name: &str,
        remotes: &[SocketAddr],
        secret_file: &str,
        env: &[(&str, &str)],
    ) -> SocketAddr {
        let mut cmd = self.command(name);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--name",
            name,
        ])
        .arg("--secret-file")
        .arg(self.path(secret_file));
        for r in remotes {
            cmd.arg("--remote-server").arg(r.to_string());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.spawn(name, cmd);
        self.wait_listening(name)
    }

    /// A hostile member (`millpond-rogue-peer MODE`, a test-only binary: its workers poison,
    /// panic or hold what they are given) on 127.0.0.1, `workers` workers, dialling `remotes`.
    pub fn rogue(
        &mut self,
        name: &str,
        mode: &str,
        workers: usize,
        remotes: &[SocketAddr],
    ) -> SocketAddr {
        let mut cmd = Command::new(rogue_bin());
        self.configure(&mut cmd, name);
        cmd.args([mode, "--workers", &workers.to_string(), "--name", name])
            .arg("--secret-file")
            .arg(self.secret_file());
        for r in remotes {
            cmd.arg("--remote").arg(r.to_string());
        }
        self.spawn(name, cmd);
        self.wait_listening(name)
    }

    /// The address a serve process printed once it was listening.
    pub fn wait_listening(&mut self, name: &str) -> SocketAddr {
        wait_until(
            &format!("{name} to listen"),
            Duration::from_secs(10),
            || {
                let log = self.log(name);
                // Only a whole line: a half-written port would parse as another one.
                if let Some(rest) = log.split("serving on ").nth(1)
                    && let Some((line, _)) = rest.split_once('\n')
                {
                    let addr = line.split_whitespace().next().unwrap_or_default();
                    return addr
                        .parse::<SocketAddr>()
                        .map_err(|e| format!("bad address {addr:?}: {e}"));
                }
                if let Some(status) = self.proc(name).child.try_wait().unwrap() {
                    panic!("{name} exited ({status}) before listening:\n{log}");
                }
                Err("not yet".into())
            },
        )
    }

    pub fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    pub fn running(&mut self, name: &str) -> bool {
        self.proc(name).child.try_wait().unwrap().is_none()
    }

    /// Waits (at most `timeout`, for `what`) until `name` has exited; its exit status.
    pub fn wait_exit(&mut self, name: &str, what: &str, timeout: Duration) -> ExitStatus {
        wait_until(what, timeout, || {
            self.proc(name)
                .child
                .try_wait()
                .unwrap()
                .ok_or_else(|| "still running".to_string())
        })
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self, name: &str) {
        let p = self.proc(name);
        let _ = p.child.kill();
        let _ = p.child.wait();
    }

    pub fn pid(&mut self, name: &str) -> u32 {
        self.proc(name).child.id()
    }

    /// Waits until `name`'s log contains `needle`.
    pub fn wait_log(&self, name: &str, needle: &str, timeout: Duration) {
        wait_until(&format!("{needle:?} in {name}'s log"), timeout, || {
            if self.log(name).contains(needle) {
                Ok(())
            } else {
                Err(format!("log so far:\n{}", self.log(name)))
            }
        })
    }

    /// Chunks `name` computed for each job that ended there ("job … over here: computed N
    /// chunks"), in order.
    pub fn computed(&self, name: &str) -> Vec<u32> {
        over_here(&self.log(name))
    }

    /// Waits until `name` logged the end of `jobs` jobs; returns the chunks of each.
    pub fn wait_computed(&self, name: &str, jobs: usize) -> Vec<u32> {
        wait_until(
            &format!("{name} to end {jobs} job(s)"),
            Duration::from_secs(10),
            || {
                let c = self.computed(name);
                if c.len() >= jobs {
                    Ok(c)
                } else {
                    Err(format!("log so far:\n{}", self.log(name)))
                }
            },
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if std::thread::panicking() {
            for p in &self.procs {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(60)..];
                eprintln!(
                    "----- {} ({}) -----\n{}",
                    p.name,
                    p.log.display(),
                    tail.join("\n")
                );
            }
        }
    }
}

pub fn over_here(log: &str) -> Vec<u32> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split(" over here: computed ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

pub fn signal(pid: u32, sig: rustix::process::Signal) {
    let p = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("a process id");
    rustix::process::kill_process(p, sig)
        .unwrap_or_else(|e| panic!("signal {sig:?} to {pid}: {e}"));
}

/// Problems in a log that no test here should provoke among honest members.
pub fn assert_clean_log(name: &str, log: &str) {
    for bad in ["protocol violation", "panicked", "closing link"] {
        assert!(!log.contains(bad), "{name}'s log mentions {bad:?}:\n{log}");
    }
}

/// How a raw peer's misbehaviour ended (the fields are read through `Debug`, in messages).
#[derive(Debug)]
#[allow(dead_code)]
pub enum Outcome {
    /// The server closed the link with this application code and reason.
    Closed(u64, String),
    /// Closed some other way.
    Other(String),
    /// Still open after the wait.
    Open,
}

pub async fn closed_within(conn: &quinn::Connection, d: Duration) -> Outcome {
    match tokio::time::timeout(d, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(a)) => Outcome::Closed(
            a.error_code.into_inner(),
            String::from_utf8_lossy(&a.reason).into_owned(),
        ),
        Ok(e) => Outcome::Other(e.to_string()),
        Err(_) => Outcome::Open,
    }
}

/// Reads control frames until one matches, or the time is up.
pub async fn expect_msg(
    recv: &mut quinn::RecvStream,
    d: Duration,
    mut pred: impl FnMut(&Msg) -> bool,
) -> Result<Msg, String> {
    let end = tokio::time::Instant::now() + d;
    loop {
        let mut prefix = [0u8; 4];
        let read = async {
            recv.read_exact(&mut prefix)
                .await
                .map_err(|e| e.to_string())?;
            let n = wire::frame_len(prefix).map_err(|e| e.to_string())?;
            let mut body = vec![0u8; n];
            recv.read_exact(&mut body)
                .await
                .map_err(|e| e.to_string())?;
            wire::decode_msg(&body).map_err(|e| e.to_string())
        };
        let msg = tokio::time::timeout_at(end, read)
            .await
            .map_err(|_| "no such message in time".to_string())??;
        if pred(&msg) {
            return Ok(msg);
        }
    }
}

/// Connects to `addr` as an authenticated raw peer, misbehaves with `act`, and reports how
/// the server reacted.
pub async fn misbehave(
    addr: SocketAddr,
    case: u64,
    act: impl AsyncFnOnce(&quinn::Connection, &mut quinn::SendStream, &mut quinn::RecvStream, NodeId),
) -> Outcome {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(millpond_net::tls::client_config().unwrap());
    let me = NodeId(0x5EED_0000 + case);
    let hello = Msg::Hello {
        protocol: PROTOCOL_VERSION,
        compute_abi: COMPUTE_ABI,
        node: me,
        name: format!("raw-{case}"),
        workers: 1,
    };
    let (conn, mut send, mut recv, _, name, _) =
        millpond_net::node::connect_and_authenticate(&ep, addr, &secret(SECRET), &hello)
            .await
            .unwrap_or_else(|(s, e)| panic!("raw peer cannot join: {s:?}: {e}"));
    assert_eq!(name, "S");
    act(&conn, &mut send, &mut recv, me).await;
    let outcome = closed_within(&conn, Duration::from_secs(3)).await;
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    outcome
}

//! The serving member's side of detached jobs (ARCHITECTURE.md §4.13): a client connection's
//! requests answered from the job table (`proto::detached`), and the runner threads that take
//! jobs from it and run them through the app's [`RunDetached`] on this member's pool.

use super::RunDetached;
use super::wire::{self as dwire, DetachedId, Reply, Request};
use crate::link::{FrameError, read_frame};
use crate::node::Event;
use crate::proto::close;
use crate::proto::detached::{DetachedInput, DetachedJobs, Fetched, Limits, unknown};
use crate::wire;
use crate::{JobHandle, PoolError, system_random};
use millpond_core::runner::{Executor, OnEvent, RunResult};
use millpond_core::{CancelToken, JobContext, Mesh};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Submits jobs to a member's loop: what [`Pool::submit_job`](crate::Pool::submit_job) does, without the pool (a
/// detached job's runner holds one, §4.13).
#[derive(Debug, Clone)]
pub(crate) struct Submitter {
    pub tx: mpsc::UnboundedSender<Event>,
}

impl Submitter {
    pub fn submit_job(&self, ctx: JobContext) -> Result<JobHandle, PoolError> {
        // The job's id is unguessable, so that no peer can announce it first (`JobId`).
        let nonce = system_random()
            .map(u128::from_le_bytes)
            .map_err(PoolError::Job)?;
        let (events_tx, events) = std::sync::mpsc::channel();
        let (reply_tx, reply) = std::sync::mpsc::channel();
        self.tx
            .send(Event::Submit {
                ctx: Box::new(ctx),
                nonce,
                events: events_tx,
                reply: reply_tx,
            })
            .map_err(|_| PoolError::Stopped)?;
        let id = reply.recv().map_err(|_| PoolError::Stopped)??;
        Ok(JobHandle {
            id,
            events,
            tx: self.tx.clone(),
        })
    }
}

impl Executor for Submitter {
    fn run(&self, job: &JobContext, cancel: &CancelToken, on_event: &OnEvent<'_>) -> RunResult {
        self.submit_job(job.clone())?.follow(cancel, on_event)
    }
}

/// Client connections served at once; more are closed at once.
const MAX_CLIENTS: usize = 16;
/// A client that sends no request for this long is closed (a connection costs a task).
const IDLE: Duration = Duration::from_secs(60);
/// Longest any one read or write of a request, a reply or 1 MiB of bytes may take.
const PIECE_TIMEOUT: Duration = Duration::from_secs(10);
const PIECE: usize = 1 << 20;

/// Detached jobs at this member: the table, the runner threads' wake-up, and what runs them
/// (`None`: this member runs none, and says so).
#[derive(Debug)]
pub(crate) struct Service {
    jobs: Mutex<DetachedJobs>,
    wake: Condvar,
    runner: Option<Arc<dyn RunDetached>>,
    stopping: AtomicBool,
    clients: Arc<tokio::sync::Semaphore>,
}

impl Service {
    pub fn new(runner: Option<Arc<dyn RunDetached>>, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            jobs: Mutex::new(DetachedJobs::new(limits)),
            wake: Condvar::new(),
            runner,
            stopping: AtomicBool::new(false),
            clients: Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS)),
        })
    }

    /// Starts `count` runner threads computing through `executor` (this member's pool).
    pub fn start(self: &Arc<Self>, executor: Arc<dyn Executor + Send + Sync>, count: usize) {
        let Some(runner) = self.runner.clone() else {
            return;
        };
        for n in 0..count {
            let (service, runner, executor) = (self.clone(), runner.clone(), executor.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("millpond-detached-{n}"))
                .spawn(move || service.run_jobs(&*runner, &*executor));
            if let Err(e) = spawned {
                warn!("cannot start a detached-job runner: {e}");
            }
        }
    }

    /// Stops the runners: running jobs are cancelled, queued ones never start.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.cancel_all();
        }
        self.wake.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DetachedJobs> {
        // A runner that panicked holding the lock left the table consistent (every change
        // is one call): carry on with it.
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One runner thread: the oldest queued job, run to its end, then the next.
    fn run_jobs(&self, runner: &dyn RunDetached, executor: &dyn Executor) {
        loop {
            let (id, input, cancel) = {
                let mut jobs = self.lock();
                loop {
                    if self.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Some(next) = jobs.start_next(Instant::now()) {
                        break next;
                    }
                    jobs = match self.wake.wait_timeout(jobs, Duration::from_secs(1)) {
                        Ok((j, _)) => j,
                        Err(e) => e.into_inner().0,
                    };
                }
            };
            info!("detached job {id}: started");
            let progress = |done, total| self.lock().progress(id, done, total);
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runner.run(&input, executor, &progress, &cancel)
            }));
            drop(input);
            let result = match run {
                Ok(r) => r,
                Err(panic) => Err(crate::node::panic_words(&*panic)),
            };
            match &result {
                Ok(p) => info!("detached job {id}: complete, {} bytes", p.len()),
                Err(e) if cancel.is_cancelled() => info!("detached job {id}: cancelled ({e})"),
                Err(e) => warn!("detached job {id}: failed: {e}"),
            }
            self.lock().finish(Instant::now(), id, result);
        }
    }
}

/// Serves one authenticated client: requests in order until it leaves, goes quiet for
/// [`IDLE`], or breaks the protocol (closed with `PROTOCOL_VIOLATION`, naming what).
pub(crate) async fn serve_client(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    service: Arc<Service>,
) {
    let from = conn.remote_address();
    let Ok(_permit) = service.clients.clone().try_acquire_owned() else {
        conn.close(
            close::STALLED.into(),
            b"too many detached-job clients at once",
        );
        return;
    };
    debug!("detached-job client {from} connected");
    loop {
        let body = match tokio::time::timeout(IDLE, read_frame(&mut recv)).await {
            Ok(Ok(Some(body))) => body,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                debug!("detached-job client {from}: {}", String::from(e));
                break;
            }
            Err(_) => {
                conn.close(close::QUIT.into(), b"idle");
                break;
            }
        };
        let request = match dwire::decode_request(&body) {
            Ok(r) => r,
            Err(e) => return violation(&conn, from, &format!("request: {e}")),
        };
        match answer(&service, request, &mut send, &mut recv).await {
            Ok(()) => {}
            Err(Broken::Gone(why)) => {
                debug!("detached-job client {from}: {why}");
                break;
            }
            Err(Broken::Violation(why)) => return violation(&conn, from, &why),
        }
    }
}

fn violation(conn: &quinn::Connection, from: SocketAddr, why: &str) {
    warn!("detached-job client {from}: {why}");
    let reason = wire::sanitize(why, wire::MAX_REASON);
    conn.close(close::PROTOCOL_VIOLATION.into(), reason.as_bytes());
}

impl From<FrameError> for Broken {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Gone(why) => Broken::Gone(why),
            FrameError::Invalid(why) => Broken::Violation(why),
        }
    }
}

/// Why a client's exchange stopped.
enum Broken {
    /// The connection went, or a write took too long.
    Gone(String),
    /// The client sent what it may not.
    Violation(String),
}

async fn write(send: &mut quinn::SendStream, bytes: &[u8]) -> Result<(), Broken> {
    for piece in bytes.chunks(PIECE) {
        match tokio::time::timeout(PIECE_TIMEOUT, send.write_all(piece)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Broken::Gone(e.to_string())),
            Err(_) => return Err(Broken::Gone("a write took too long".into())),
        }
    }
    Ok(())
}

async fn reply(send: &mut quinn::SendStream, reply: &Reply) -> Result<(), Broken> {
    let frame = wire::encode(reply).map_err(|e| Broken::Gone(format!("cannot encode: {e}")))?;
    write(send, &frame).await
}

/// Reads exactly `size` bytes (already checked against their limit), allocating as they
/// arrive rather than what was announced, each piece within [`PIECE_TIMEOUT`]. A stream cut
/// short or reset is the peer's violation; a connection gone, or silent, is not.
pub(crate) async fn read_exactly(
    recv: &mut quinn::RecvStream,
    size: u64,
) -> Result<Vec<u8>, FrameError> {
    let mut data = Vec::with_capacity((size as usize).min(8 << 20));
    let mut buf = vec![0u8; 64 * 1024];
    while (data.len() as u64) < size {
        let want = ((size - data.len() as u64) as usize).min(buf.len());
        let n = match tokio::time::timeout(PIECE_TIMEOUT, recv.read(&mut buf[..want])).await {
            Ok(Ok(Some(n))) => n,
            Ok(Ok(None)) => {
                let short = size - data.len() as u64;
                return Err(FrameError::Invalid(format!(
                    "the stream ended {short} bytes short"
                )));
            }
            Ok(Err(e)) => return Err(FrameError::from_read(e)),
            Err(_) => return Err(FrameError::Gone("no bytes in time".into())),
        };
        data.extend_from_slice(&buf[..n]);
    }
    Ok(data)
}

async fn answer(
    service: &Arc<Service>,
    request: Request,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) -> Result<(), Broken> {
    let now = Instant::now;
    let answer = match request {
        Request::Submit {
            title,
            description,
            mesh,
        } => match submit(service, &title, description, mesh, send, recv).await? {
            Ok(id) => Reply::Submitted { id },
            Err(why) => Reply::Refused(why),
        },
        Request::List => Reply::Jobs(service.lock().list(now())),
        Request::Fetch { id } => {
            let fetched = service.lock().fetch(now(), id);
            match fetched {
                Fetched::Program(program) => {
                    let size = program.len() as u64;
                    reply(send, &Reply::Program { size }).await?;
                    return write(send, &program).await;
                }
                Fetched::NotReady(row) => Reply::NotReady(row),
                Fetched::Unknown => Reply::Refused(unknown(id)),
            }
        }
        Request::Cancel { id } => match service.lock().cancel(now(), id) {
            Some(row) => {
                info!("detached job {id}: cancel asked ({})", row.state);
                Reply::Cancelled(row)
            }
            None => Reply::Refused(unknown(id)),
        },
    };
    let answer = match answer {
        Reply::Refused(text) => Reply::Refused(wire::sanitize(&text, dwire::MAX_ERROR)),
        a => a,
    };
    reply(send, &answer).await
}

/// A submit: room checked before a byte is read, then the description (checked by the
/// runner) and the mesh (rebuilt and validated off the loop), queued under a random id.
async fn submit(
    service: &Arc<Service>,
    title: &str,
    description: u64,
    mesh: u64,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) -> Result<Result<DetachedId, String>, Broken> {
    let Some(runner) = service.runner.clone() else {
        return Ok(Err(
            "this member runs no detached jobs (a window in server mode): submit to a \
             `millpond serve` member"
                .into(),
        ));
    };
    if let Err(why) = service.lock().room_for(Instant::now(), description + mesh) {
        return Ok(Err(why));
    }
    reply(send, &Reply::Send).await?;
    let description = read_exactly(recv, description).await?;
    let bytes = read_exactly(recv, mesh).await?;
    let name = wire::sanitize(title, dwire::MAX_TITLE);
    let checked = tokio::task::spawn_blocking(move || {
        runner.check(&description)?;
        let mesh =
            Mesh::from_canonical_bytes(&bytes, &name).map_err(|e| format!("the model: {e}"))?;
        Ok::<_, String>(DetachedInput {
            description,
            mesh: Arc::new(mesh),
        })
    })
    .await
    .map_err(|e| Broken::Gone(e.to_string()))?;
    let input = match checked {
        Ok(input) => input,
        Err(why) => return Ok(Err(why)),
    };
    let id = DetachedId(
        system_random()
            .map(u128::from_le_bytes)
            .map_err(Broken::Gone)?,
    );
    let queued = service.lock().submit(Instant::now(), id, title, input);
    if queued.is_ok() {
        info!(
            "detached job {id}: queued ({})",
            wire::sanitize(title, dwire::MAX_TITLE)
        );
        service.wake.notify_one();
    }
    Ok(queued.map(|()| id))
}

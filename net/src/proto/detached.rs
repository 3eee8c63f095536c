//! Detached jobs at the member that runs them (ARCHITECTURE.md §4.13), without I/O: the
//! queue, which job runs next, progress, results kept, and what is given up to stay within
//! bounds. No clock reads (`now` comes in), no threads: the shell (`detached/server.rs`)
//! holds it behind a lock, its runner threads take jobs from it and hand results back, and
//! the client connections ask it.
//!
//! Bounded three ways, so that a pool secret's holder cannot fill a member's memory: jobs
//! waiting or running ([`Limits::waiting`], and the bytes of their inputs,
//! [`Limits::input_bytes`]), jobs kept at all ([`Limits::jobs`]), and programs kept
//! ([`Limits::program_bytes`], [`Limits::keep_for`]). A finished job makes room for a new
//! one, oldest finished first; one still waiting or running never does: the submit is
//! refused with the reason.

use crate::detached::wire::{DetachedId, JobRow, JobState, MAX_PROGRAM, MAX_TITLE};
use crate::wire::MAX_REASON;
use crate::wire::sanitize;
use millpond_core::{CancelToken, Mesh};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a detached job needs to run: the app's description (opaque here) and the placed mesh.
#[derive(Clone, Debug)]
pub struct DetachedInput {
    pub description: Vec<u8>,
    pub mesh: Arc<Mesh>,
}

impl DetachedInput {
    /// Bytes it holds (the mesh as it crossed the wire).
    pub fn bytes(&self) -> u64 {
        self.description.len() as u64
            + (self.mesh.len() * millpond_core::mesh::CANONICAL_TRIANGLE_BYTES) as u64
    }
}

/// The bounds (ARCHITECTURE.md §4.13 gives the defaults' reasons).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Jobs kept in any state (a listing's rows).
    pub jobs: usize,
    /// Jobs queued or running.
    pub waiting: usize,
    /// Bytes of the inputs of jobs queued or running (meshes up to `wire::MAX_MESH` each).
    pub input_bytes: u64,
    /// Bytes of G-code kept in all.
    pub program_bytes: u64,
    /// How long a finished job is kept.
    pub keep_for: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            jobs: crate::detached::wire::MAX_LISTED,
            waiting: 16,
            input_bytes: 2 << 30,
            program_bytes: MAX_PROGRAM,
            keep_for: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug)]
enum Stage {
    Queued(DetachedInput),
    Running { done: u64, total: u64 },
    Complete(Arc<Vec<u8>>),
    Failed(String),
    Cancelled,
}

#[derive(Debug)]
struct Entry {
    id: DetachedId,
    title: String,
    stage: Stage,
    cancel: CancelToken,
    submitted: Instant,
    started: Option<Instant>,
    finished: Option<Instant>,
}

impl Entry {
    fn is_finished(&self) -> bool {
        self.finished.is_some()
    }
}

/// What a fetch finds.
#[derive(Debug)]
pub enum Fetched {
    Program(Arc<Vec<u8>>),
    NotReady(JobRow),
    Unknown,
}

/// The detached jobs of one member.
#[derive(Debug, Default)]
pub struct DetachedJobs {
    limits: Limits,
    /// In submission order.
    entries: Vec<Entry>,
}

/// The words for an id this member does not keep.
pub fn unknown(id: DetachedId) -> String {
    format!(
        "no job {id} here: never submitted to this member, or finished long enough ago to have \
         been dropped (it keeps finished jobs for a bounded time and size)"
    )
}

impl DetachedJobs {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: Vec::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn waiting(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.is_finished())
    }

    fn input_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match &e.stage {
                Stage::Queued(input) => input.bytes(),
                _ => 0,
            })
            .sum()
    }

    fn program_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match &e.stage {
                Stage::Complete(p) => p.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Drops the oldest finished job; false if none is finished.
    fn evict_oldest_finished(&mut self) -> bool {
        let oldest = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.finished.map(|t| (t, i)))
            .min();
        match oldest {
            Some((_, i)) => {
                self.entries.remove(i);
                true
            }
            None => false,
        }
    }

    /// Drops finished jobs kept longer than `keep_for`.
    pub fn expire(&mut self, now: Instant) {
        let keep = self.limits.keep_for;
        self.entries.retain(|e| {
            e.finished
                .is_none_or(|t| now.saturating_duration_since(t) < keep)
        });
    }

    /// Whether a job of `bytes` of input would be taken now (asked before its bytes are
    /// read, so that a refused one costs nothing); the reason if not.
    pub fn room_for(&mut self, now: Instant, bytes: u64) -> Result<(), String> {
        self.expire(now);
        let waiting = self.waiting().count();
        if waiting >= self.limits.waiting {
            return Err(format!(
                "this member's queue is full: {waiting} detached jobs wait or run (at most {}); \
                 try again when one has finished, or cancel one",
                self.limits.waiting
            ));
        }
        let held = self.input_bytes();
        if held + bytes > self.limits.input_bytes {
            return Err(format!(
                "this member's queue is full: the jobs waiting hold {} MiB of models, and this \
                 one's {} MiB would pass the {} MiB it takes; try again when one has started",
                held >> 20,
                bytes.div_ceil(1 << 20),
                self.limits.input_bytes >> 20
            ));
        }
        if self.entries.len() >= self.limits.jobs && !self.entries.iter().any(Entry::is_finished) {
            return Err(format!(
                "this member keeps at most {} detached jobs, and none has finished",
                self.limits.jobs
            ));
        }
        Ok(())
    }

    /// Queues a job under `id` (drawn at random by the shell). Makes room by dropping the
    /// oldest finished job where the member keeps as many as it may.
    pub fn submit(
        &mut self,
        now: Instant,
        id: DetachedId,
        title: &str,
        input: DetachedInput,
    ) -> Result<(), String> {
        self.room_for(now, input.bytes())?;
        if self.entries.iter().any(|e| e.id == id) {
            return Err(format!("job id {id} is taken"));
        }
        while self.entries.len() >= self.limits.jobs && self.evict_oldest_finished() {}
        self.entries.push(Entry {
            id,
            title: sanitize(title, MAX_TITLE),
            stage: Stage::Queued(input),
            cancel: CancelToken::new(),
            submitted: now,
            started: None,
            finished: None,
        });
        Ok(())
    }

    /// The oldest queued job, now running: its id, input and cancel token.
    pub fn start_next(&mut self, now: Instant) -> Option<(DetachedId, DetachedInput, CancelToken)> {
        let e = self
            .entries
            .iter_mut()
            .find(|e| matches!(e.stage, Stage::Queued(_)))?;
        let Stage::Queued(input) =
            std::mem::replace(&mut e.stage, Stage::Running { done: 0, total: 0 })
        else {
            unreachable!("found queued")
        };
        e.started = Some(now);
        Some((e.id, input, e.cancel.clone()))
    }

    /// A running job's chunks done of its total (over all its operations).
    pub fn progress(&mut self, id: DetachedId, done: u64, total: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id)
            && let Stage::Running { .. } = e.stage
        {
            e.stage = Stage::Running {
                done: done.min(total),
                total,
            };
        }
    }

    /// A running job ended: its program, or why not. A job cancelled meanwhile stays
    /// cancelled. Programs beyond what the member keeps push out the oldest finished jobs;
    /// one larger than all of it fails.
    pub fn finish(&mut self, now: Instant, id: DetachedId, result: Result<Vec<u8>, String>) {
        let Some(e) = self.entries.iter_mut().find(|e| e.id == id) else {
            return;
        };
        if !matches!(e.stage, Stage::Running { .. }) {
            return;
        }
        e.finished = Some(now);
        let most = self.limits.program_bytes.min(MAX_PROGRAM);
        e.stage = match result {
            Ok(program) if program.len() as u64 > most => Stage::Failed(format!(
                "the program is {} MiB, more than the {} MiB this member keeps",
                program.len() >> 20,
                most >> 20
            )),
            Ok(program) => Stage::Complete(Arc::new(program)),
            Err(_) if e.cancel.is_cancelled() => Stage::Cancelled,
            Err(reason) => Stage::Failed(sanitize(&reason, MAX_REASON)),
        };
        // Room for the new program: the oldest finished others go first.
        while self.program_bytes() > self.limits.program_bytes {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.id != id)
                .filter_map(|(i, e)| e.finished.map(|t| (t, i)))
                .min();
            match oldest {
                Some((_, i)) => {
                    self.entries.remove(i);
                }
                None => break,
            }
        }
    }

    /// Cancels a queued job (its input dropped at once) or a running one (its token set: the
    /// runner stops within milliseconds); a finished one is left as it is. Where it stands
    /// after, or `None` for an unknown id.
    pub fn cancel(&mut self, now: Instant, id: DetachedId) -> Option<JobRow> {
        self.expire(now);
        let e = self.entries.iter_mut().find(|e| e.id == id)?;
        if !e.is_finished() {
            e.cancel.cancel();
            e.stage = Stage::Cancelled;
            e.finished = Some(now);
        }
        self.row(now, id)
    }

    /// Every job kept, oldest first.
    pub fn list(&mut self, now: Instant) -> Vec<JobRow> {
        self.expire(now);
        let ids: Vec<DetachedId> = self.entries.iter().map(|e| e.id).collect();
        ids.into_iter().filter_map(|id| self.row(now, id)).collect()
    }

    /// A complete job's program, or where the job stands.
    pub fn fetch(&mut self, now: Instant, id: DetachedId) -> Fetched {
        self.expire(now);
        match self.entries.iter().find(|e| e.id == id) {
            Some(Entry {
                stage: Stage::Complete(p),
                ..
            }) => Fetched::Program(p.clone()),
            Some(_) => self
                .row(now, id)
                .map_or(Fetched::Unknown, Fetched::NotReady),
            None => Fetched::Unknown,
        }
    }

    /// Cancels everything (the member is stopping).
    pub fn cancel_all(&mut self) {
        for e in &self.entries {
            e.cancel.cancel();
        }
    }

    fn row(&self, now: Instant, id: DetachedId) -> Option<JobRow> {
        let e = self.entries.iter().find(|e| e.id == id)?;
        let ahead = self
            .entries
            .iter()
            .take_while(|o| o.id != id)
            .filter(|o| !o.is_finished())
            .count() as u32;
        let run = match e.started {
            Some(t) => e.finished.unwrap_or(now).saturating_duration_since(t),
            None => Duration::ZERO,
        };
        let (state, eta_s) = match &e.stage {
            Stage::Queued(_) => (JobState::Queued { ahead }, None),
            Stage::Running { done, total } => {
                // The chunks left at the pace of those done.
                let eta = (*done > 0).then(|| {
                    let per = run.as_secs_f64() / *done as f64;
                    (per * total.saturating_sub(*done) as f64).ceil() as u64
                });
                (
                    JobState::Running {
                        done: *done,
                        total: *total,
                    },
                    eta,
                )
            }
            Stage::Complete(p) => (
                JobState::Complete {
                    bytes: p.len() as u64,
                },
                Some(0),
            ),
            Stage::Failed(reason) => (
                JobState::Failed {
                    reason: reason.clone(),
                },
                None,
            ),
            Stage::Cancelled => (JobState::Cancelled, None),
        };
        Some(JobRow {
            id,
            title: e.title.clone(),
            state,
            age_s: now.saturating_duration_since(e.submitted).as_secs(),
            run_s: run.as_secs(),
            eta_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millpond_core::{Mesh, Point3, models};
    use std::sync::OnceLock;

    fn mesh() -> Arc<Mesh> {
        static MESH: OnceLock<Arc<Mesh>> = OnceLock::new();
        MESH.get_or_init(|| {
            Arc::new(
                Mesh::from_triangles(
                    models::box_solid(Point3::new(0.0, 0.0, 0.0), Point3::new(1.0, 1.0, 1.0)),
                    "box",
                )
                .unwrap(),
            )
        })
        .clone()
    }

    fn input(description: usize) -> DetachedInput {
        DetachedInput {
            description: vec![0; description],
            mesh: mesh(),
        }
    }

    fn id(n: u128) -> DetachedId {
        DetachedId(n)
    }

    fn state(jobs: &mut DetachedJobs, now: Instant, n: u128) -> Option<JobState> {
        jobs.list(now)
            .into_iter()
            .find(|r| r.id == id(n))
            .map(|r| r.state)
    }

    /// Runs job `n` to a program of `bytes` bytes, `at` seconds after `t0`.
    fn complete(jobs: &mut DetachedJobs, t0: Instant, n: u128, at: u64, bytes: usize) {
        let now = t0 + Duration::from_secs(at);
        jobs.submit(now, id(n), "job", input(10)).unwrap();
        let (got, _, _) = jobs.start_next(now).unwrap();
        assert_eq!(got, id(n));
        jobs.finish(now, id(n), Ok(vec![b'G'; bytes]));
    }

    #[test]
    fn a_job_is_queued_runs_reports_progress_and_keeps_its_program() {
        let t0 = Instant::now();
        let mut jobs = DetachedJobs::new(Limits::default());
        jobs.submit(t0, id(1), "a\x1b[2Jb.stl", input(10)).unwrap();
        jobs.submit(t0, id(2), "second", input(10)).unwrap();
        assert_eq!(state(&mut jobs, t0, 2), Some(JobState::Queued { ahead: 1 }));
        let (first, _, cancel) = jobs.start_next(t0).unwrap();
        assert_eq!(first, id(1));
        assert!(!cancel.is_cancelled());
        let t = t0 + Duration::from_secs(10);
        jobs.progress(id(1), 25, 100);
        let row = &jobs.list(t)[0];
        assert_eq!(row.title, "a�[2Jb.stl", "the title is cleaned");
        assert_eq!(
            row.state,
            JobState::Running {
                done: 25,
                total: 100
            }
        );
        assert_eq!((row.run_s, row.eta_s), (10, Some(30)), "75 chunks at 0.4 s");
        assert!(matches!(jobs.fetch(t, id(1)), Fetched::NotReady(_)));
        jobs.finish(t, id(1), Ok(b"G0 X0\n".to_vec()));
        match jobs.fetch(t, id(1)) {
            Fetched::Program(p) => assert_eq!(&p[..], b"G0 X0\n"),
            f => panic!("{f:?}"),
        }
        assert_eq!(state(&mut jobs, t, 2), Some(JobState::Queued { ahead: 0 }));
        assert!(matches!(jobs.fetch(t, id(99)), Fetched::Unknown));
        // A failure keeps its reason, cleaned and cut.
        jobs.start_next(t).unwrap();
        jobs.finish(t, id(2), Err(format!("bad\n{}", "x".repeat(1000))));
        let Some(JobState::Failed { reason }) = state(&mut jobs, t, 2) else {
            panic!()
        };
        assert!(
            reason.starts_with("bad�x") && reason.len() <= MAX_REASON,
            "{reason}"
        );
    }

    #[test]
    fn cancel_stops_a_queued_or_running_job_and_leaves_a_finished_one() {
        let t0 = Instant::now();
        let mut jobs = DetachedJobs::new(Limits::default());
        for n in 1..=3 {
            jobs.submit(t0, id(n), "j", input(10)).unwrap();
        }
        let (_, _, token) = jobs.start_next(t0).unwrap();
        assert_eq!(jobs.cancel(t0, id(1)).unwrap().state, JobState::Cancelled);
        assert!(token.is_cancelled(), "the runner is told");
        // The runner's late word does not change it.
        jobs.finish(t0, id(1), Err("cancelled".into()));
        assert_eq!(state(&mut jobs, t0, 1), Some(JobState::Cancelled));
        jobs.finish(t0, id(1), Ok(vec![1]));
        assert_eq!(state(&mut jobs, t0, 1), Some(JobState::Cancelled));
        // A queued one never starts.
        assert_eq!(jobs.cancel(t0, id(2)).unwrap().state, JobState::Cancelled);
        assert_eq!(jobs.start_next(t0).unwrap().0, id(3));
        jobs.finish(t0, id(3), Ok(vec![1, 2]));
        assert_eq!(
            jobs.cancel(t0, id(3)).unwrap().state,
            JobState::Complete { bytes: 2 }
        );
        assert!(jobs.cancel(t0, id(4)).is_none());
    }

    #[test]
    fn finished_jobs_go_by_count_oldest_first_and_waiting_ones_are_never_pushed_out() {
        let t0 = Instant::now();
        let limits = Limits {
            jobs: 4,
            waiting: 3,
            ..Limits::default()
        };
        let mut jobs = DetachedJobs::new(limits);
        for n in 1..=4 {
            complete(&mut jobs, t0, n, n as u64, 10);
        }
        // A fifth pushes out the oldest finished.
        complete(&mut jobs, t0, 5, 5, 10);
        let ids: Vec<u128> = jobs.list(t0).iter().map(|r| r.id.0).collect();
        assert_eq!(ids, [2, 3, 4, 5]);
        // Waiting jobs: at most 3, and a full table of unfinished ones refuses.
        for n in 6..=8 {
            jobs.submit(t0, id(n), "w", input(10)).unwrap();
        }
        let full = jobs.submit(t0, id(9), "w", input(10)).unwrap_err();
        assert!(full.contains("queue is full"), "{full}");
        assert_eq!(jobs.list(t0).len(), 4, "3 waiting and 1 finished");
        let mut jobs = DetachedJobs::new(Limits {
            jobs: 2,
            waiting: 5,
            ..Limits::default()
        });
        jobs.submit(t0, id(1), "w", input(10)).unwrap();
        jobs.submit(t0, id(2), "w", input(10)).unwrap();
        let none = jobs.submit(t0, id(3), "w", input(10)).unwrap_err();
        assert!(none.contains("none has finished"), "{none}");
    }

    #[test]
    fn programs_are_kept_within_their_bytes_and_their_time() {
        let t0 = Instant::now();
        let mut jobs = DetachedJobs::new(Limits {
            program_bytes: 100,
            keep_for: Duration::from_secs(60),
            ..Limits::default()
        });
        complete(&mut jobs, t0, 1, 0, 40);
        complete(&mut jobs, t0, 2, 1, 40);
        // 40 + 40 + 30 > 100: the oldest goes.
        complete(&mut jobs, t0, 3, 2, 30);
        let ids: Vec<u128> = jobs.list(t0).iter().map(|r| r.id.0).collect();
        assert_eq!(ids, [2, 3]);
        // One larger than everything fails rather than pushing out the rest.
        complete(&mut jobs, t0, 4, 3, 101);
        assert!(matches!(
            state(&mut jobs, t0, 4),
            Some(JobState::Failed { reason }) if reason.contains("more than")
        ));
        assert_eq!(jobs.list(t0).len(), 3);
        // Time: 60 s after it finished, a job is gone; a waiting one stays however old.
        jobs.submit(t0, id(5), "w", input(10)).unwrap();
        let later = t0 + Duration::from_millis(61_500);
        let ids: Vec<u128> = jobs.list(later).iter().map(|r| r.id.0).collect();
        assert_eq!(ids, [3, 4, 5], "2 finished at 1 s; 3 and 4 at 2 and 3 s");
        let ids: Vec<u128> = jobs
            .list(later + Duration::from_secs(10))
            .iter()
            .map(|r| r.id.0)
            .collect();
        assert_eq!(ids, [5]);
        assert!(matches!(jobs.fetch(later, id(1)), Fetched::Unknown));
    }

    #[test]
    fn queued_inputs_are_bounded_in_bytes_before_they_are_read() {
        let t0 = Instant::now();
        let one = input(1000).bytes();
        let mut jobs = DetachedJobs::new(Limits {
            input_bytes: 2 * one,
            ..Limits::default()
        });
        jobs.submit(t0, id(1), "a", input(1000)).unwrap();
        jobs.submit(t0, id(2), "b", input(1000)).unwrap();
        let why = jobs.room_for(t0, one).unwrap_err();
        assert!(why.contains("MiB of models"), "{why}");
        // Running jobs' inputs are the runner's, no longer queued here.
        jobs.start_next(t0).unwrap();
        assert!(jobs.room_for(t0, one).is_ok());
        assert!(
            jobs.submit(t0, id(2), "dup", input(1))
                .unwrap_err()
                .contains("taken")
        );
    }
}

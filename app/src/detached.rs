//! Detached jobs from the app's side (ARCHITECTURE.md §4.13, §6.1): what a job *is* when it
//! crosses to the member that runs it ([`Description`]), and how that member runs it
//! ([`Runner`], the [`RunDetached`] `millpond serve` gives its pool): the same plan,
//! computation, stock check, arcs and writer as `millpond toolpath --job`, so that the
//! program fetched is the one a run here would have written, byte for byte.
//!
//! Everything that decides a byte of the program is resolved where the job is submitted and
//! sent: the job file's text, the post-processor (a built-in one by name, a user's post as
//! its text: the member's own posts folder is not the submitter's), the command line's
//! floor, safe Z and zero, and the machine the time estimate is for; the model goes as the
//! placed mesh. Only the computation happens at the member.

use crate::cli::compute_toolpaths;
use crate::run_job::{self, Departures, JobModel};
use anyhow::{Context, Result, anyhow, bail};
use millpond_core::Mesh;
use millpond_core::gcode;
use millpond_core::job_file::Job;
use millpond_core::post::{PostProcessor, PostSource};
use millpond_core::runner::{Executor, OnEvent, RunEvent, RunResult};
use millpond_core::{CancelToken, JobContext, MachineProfile, TriangleIndex};
use millpond_net::Secret;
use millpond_net::detached::{
    Client, DetachedId, DetachedInput, FetchOutcome, JobRow, RunDetached,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The post a job is written with, as the submitter found it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PostText {
    /// A built-in post by its key (compiled into every Millpond of this protocol).
    BuiltIn(String),
    /// A user's post file: its key (the file's stem), where it was, and its text.
    File {
        key: String,
        path: String,
        text: String,
    },
}

impl PostText {
    /// How `post` travels: a user's file is read again for its text.
    pub fn of(post: &PostProcessor) -> Result<Self> {
        Ok(match &post.source {
            PostSource::BuiltIn => PostText::BuiltIn(post.key.clone()),
            PostSource::File(path) => PostText::File {
                key: post.key.clone(),
                path: path.display().to_string(),
                text: std::fs::read_to_string(path)
                    .with_context(|| format!("{}: cannot read the post again", path.display()))?,
            },
        })
    }

    fn post(&self) -> Result<PostProcessor> {
        match self {
            PostText::BuiltIn(key) => PostProcessor::built_in_named(key)
                .ok_or_else(|| anyhow!("no built-in post {key:?} in this Millpond")),
            PostText::File { key, path, text } => {
                if text.len() as u64 > millpond_core::post::MAX_POST_FILE_BYTES {
                    bail!("the post {path} is larger than a post file may be");
                }
                Ok(PostProcessor::parse(
                    text,
                    path,
                    key,
                    PostSource::File(PathBuf::from(path)),
                )?)
            }
        }
    }
}

/// A detached job as it is sent (postcard): the job and everything a run here would have
/// taken from this machine's options and files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// The job file's text (format 1), as `--job` reads it.
    pub job: String,
    pub post: PostText,
    /// `--floor`, `--safe-z` and `--zero` of a flags run (a job file holds none of them).
    pub departures: Departures,
    /// The machine the program's time estimate (in its comments) is for.
    pub machine: MachineProfile,
}

/// Where the job text is said to come from in messages, and its model path's base.
const JOB_NAME: &str = "submitted.millpond";

impl Description {
    /// The description of a prepared job (`toolpath::prepare`).
    pub fn new(
        job: &Job,
        post: &PostProcessor,
        departures: Departures,
        machine: MachineProfile,
    ) -> Result<Self> {
        Ok(Self {
            // The model's path is kept as it is (absolute): only its name, the program's
            // title, matters at the member.
            job: job.to_toml(&Path::new("/").join(JOB_NAME))?,
            post: PostText::of(post)?,
            departures,
            machine,
        })
    }

    /// A job file's job as `millpond toolpath --job` runs it (its stock's zero, no
    /// `--floor` or `--safe-z`), planned here for its placed `mesh` first so that a mistake
    /// is said before anything is sent: the program's title and the description. What the
    /// window submits.
    pub fn of_job(
        job: &Job,
        mesh: &Mesh,
        post: &PostProcessor,
        machine: MachineProfile,
    ) -> Result<(String, Self)> {
        let departures = Departures::of_job(job);
        let setup = run_job::setup(job, mesh.hash(), mesh.bounds())?;
        let (setup, zero) = departures.apply(setup)?;
        let program = plan(job, setup, zero, post.clone())?;
        let d = Self::new(job, post, departures, machine)?;
        Ok((program.title, d))
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        Ok(postcard::to_stdvec(self)?)
    }

    /// Reads a description and every part of it: the job file as `--job` checks it, the
    /// post as a post file is checked, the machine's figures.
    pub fn decode(bytes: &[u8]) -> Result<(Self, Job, PostProcessor)> {
        let d: Description =
            postcard::from_bytes(bytes).map_err(|e| anyhow!("not a job description: {e}"))?;
        let job = Job::parse(&d.job, JOB_NAME, Path::new("/"))?;
        let post = d.post()?;
        post.check_units(job.output.units)?;
        d.machine
            .validate()
            .map_err(|e| anyhow!("the machine: {e}"))?;
        let Departures { floor, safe_z, .. } = d.departures;
        for (v, what) in [(floor, "floor"), (safe_z, "safe Z")] {
            if v.is_some_and(|v| !v.is_finite()) {
                bail!("the {what} is not a number");
            }
        }
        Ok((d, job, post))
    }

    fn post(&self) -> Result<PostProcessor> {
        self.post.post()
    }
}

/// Sends a job to the member at `address` (`millpond submit` and the window): its id once
/// the member queued it, and the member's name.
pub fn submit(
    address: &str,
    secret: &Secret,
    title: &str,
    description: &Description,
    mesh: &Mesh,
) -> Result<(DetachedId, String)> {
    let bytes = description.encode()?;
    let mut client = Client::connect(address, secret)?;
    let id = client.submit(title, &bytes, mesh)?;
    Ok((id, client.member.clone()))
}

/// What [`fetch_to`] did.
#[derive(Debug)]
pub enum Fetched {
    /// The program was written: its size in bytes.
    Written(u64),
    /// The job is not complete: where it stands.
    NotReady(JobRow),
}

/// A complete job's program written to `path` through a temporary file
/// (`job_file::write_atomically`: a failure leaves no half program), as `millpond fetch`
/// and the window's Fetch do.
pub fn fetch_to(client: &mut Client, id: DetachedId, path: &Path) -> Result<Fetched> {
    match client.fetch(id)? {
        FetchOutcome::Program(program) => {
            millpond_core::job_file::write_atomically(path, &program)
                .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
            Ok(Fetched::Written(program.len() as u64))
        }
        FetchOutcome::NotReady(row) => Ok(Fetched::NotReady(row)),
    }
}

/// Why a job's program cannot be fetched yet, or at all, in words.
pub fn not_ready(row: &JobRow) -> String {
    use millpond_net::detached::JobState;
    format!(
        "job {} ({}) is {}: there is no program to fetch{}",
        row.id,
        row.title,
        row.state,
        match row.state {
            JobState::Running { .. } | JobState::Queued { .. } => " yet",
            _ => "",
        }
    )
}

/// How `millpond serve` runs a detached job.
#[derive(Debug, Default)]
pub struct Runner;

impl RunDetached for Runner {
    fn check(&self, description: &[u8]) -> Result<(), String> {
        Description::decode(description)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }

    fn run(
        &self,
        input: &DetachedInput,
        executor: &dyn Executor,
        progress: &(dyn Fn(u64, u64) + Sync),
        cancel: &CancelToken,
    ) -> Result<Vec<u8>, String> {
        run(input, executor, progress, cancel).map_err(|e| format!("{e:#}"))
    }
}

/// The job to its program, as `toolpath_command` does it (plan, compute, stock check, arcs,
/// writer), into memory.
fn run(
    input: &DetachedInput,
    executor: &dyn Executor,
    progress: &(dyn Fn(u64, u64) + Sync),
    cancel: &CancelToken,
) -> Result<Vec<u8>> {
    let (d, job, post) = Description::decode(&input.description)?;
    let mesh = input.mesh.clone();
    let model = JobModel {
        index: Arc::new(TriangleIndex::new(&mesh)),
        read_hash: mesh.hash(),
        mesh,
        skipped_degenerate: 0,
        load_note: None,
        size_hint: None,
        changed: None,
    };
    let setup = run_job::setup(&job, model.mesh.hash(), model.mesh.bounds())?;
    let (setup, zero) = d.departures.apply(setup)?;
    let program = plan(&job, setup, zero, post)?;
    let origins: Vec<String> = job.operations.iter().map(|o| o.name.clone()).collect();
    let tracking = Tracking {
        inner: executor,
        cancel,
        progress,
        total: program
            .ops
            .iter()
            .map(|(_, op)| u64::from(op.spec.chunk_count()))
            .sum(),
        before: AtomicU64::new(0),
    };
    progress(0, tracking.total);
    let toolpaths = compute_toolpaths(&program, &model, &origins, &tracking, true)?;
    let stopped = || cancel.is_cancelled().then(|| anyhow!("cancelled"));
    if let Some(e) = stopped() {
        return Err(e);
    }
    let computed: Vec<&millpond_core::Toolpath> = toolpaths.iter().map(|(tp, _)| tp).collect();
    let (posted, times) = program
        .post_timed(&computed, &d.machine)
        .map_err(|e| anyhow!("cannot check the program against the stock: {e}"))?;
    drop(computed);
    drop(toolpaths);
    if let Some(e) = stopped() {
        return Err(e);
    }
    let arcs = program.arcs(&posted, &model.mesh, &model.index);
    let mut out = Vec::new();
    gcode::write_program_timed(
        &mut out,
        program.post_settings(),
        &program.title,
        program.zero.as_ref(),
        &d.machine,
        &program.gcode_operations(&posted, &arcs),
        &times,
    )
    .context("cannot write the program")?;
    Ok(out)
}

/// `job` planned in `setup` (the window's check before sending, and the member's run): a
/// plan error names its operation, and a job with no enabled operation is refused.
fn plan(
    job: &Job,
    setup: millpond_core::setup::Setup,
    zero: Option<millpond_core::gcode::WorkZero>,
    post: PostProcessor,
) -> Result<run_job::Program> {
    let program = run_job::plan_in(job, setup, zero, post).map_err(|e| {
        let name = job
            .operations
            .get(e.operation)
            .map_or("an operation", |o| o.name.as_str());
        anyhow!("{name}: {}", e.message)
    })?;
    if program.ops.is_empty() {
        bail!("the job has no enabled operation: there is no program to write");
    }
    Ok(program)
}

/// The member's executor, with the detached job's cancel token and its progress over all
/// its operations (chunks of the operations before this one, plus this one's).
struct Tracking<'a> {
    inner: &'a dyn Executor,
    cancel: &'a CancelToken,
    progress: &'a (dyn Fn(u64, u64) + Sync),
    total: u64,
    before: AtomicU64,
}

impl Executor for Tracking<'_> {
    fn run(&self, job: &JobContext, _cancel: &CancelToken, on_event: &OnEvent<'_>) -> RunResult {
        let before = self.before.load(Ordering::Relaxed);
        let out = self.inner.run(job, self.cancel, &|event| {
            if let RunEvent::Progress { progress, .. } = &event {
                (self.progress)(before + u64::from(progress.chunks_done), self.total);
            }
            on_event(event);
        });
        self.before
            .fetch_add(u64::from(job.spec().chunk_count()), Ordering::Relaxed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_reads_back_and_a_broken_one_is_refused_with_the_reason() {
        let job_text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../core/tests/data/format-1.millpond"
        ))
        .unwrap();
        let job = Job::parse(&job_text, "format-1.millpond", Path::new("/tmp")).unwrap();
        let post = PostProcessor::default_post();
        let departures = Departures {
            floor: None,
            safe_z: Some(30.0),
            zero: None,
        };
        let d = Description::new(&job, &post, departures, MachineProfile::stiff()).unwrap();
        let bytes = d.encode().unwrap();
        let (back, job_back, post_back) = Description::decode(&bytes).unwrap();
        assert_eq!(back, d);
        assert_eq!(job_back.operations, job.operations);
        assert_eq!(post_back, post);
        // Truncated, or random: an error, never a panic.
        for cut in 0..bytes.len() {
            let _ = Description::decode(&bytes[..cut]);
        }
        let mut bad = d.clone();
        bad.machine.acceleration[0] = f64::NAN;
        assert!(Description::decode(&bad.encode().unwrap()).is_err());
        let mut bad = d.clone();
        bad.job = bad.job.replace("format = 1", "format = 99");
        let e = Description::decode(&bad.encode().unwrap()).unwrap_err();
        assert!(format!("{e:#}").contains("submitted.millpond"), "{e:#}");
        let mut bad = d;
        bad.post = PostText::BuiltIn("nonesuch".into());
        assert!(Description::decode(&bad.encode().unwrap()).is_err());
    }

    /// A user's post travels as its text: the member, whose posts folder is not the
    /// submitter's, writes with the very post the submitter chose.
    #[test]
    fn a_user_s_post_travels_as_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.toml");
        let text = millpond_core::post::PostLibrary::load(None)
            .posts
            .iter()
            .find(|p| p.key == "grbl")
            .map(|_| include_str!("../../core/posts/grbl.toml"))
            .unwrap()
            .replace("name = \"GRBL\"", "name = \"Shop GRBL\"");
        std::fs::write(&path, &text).unwrap();
        let post = PostProcessor::load(&path).unwrap();
        assert_eq!(post.name, "Shop GRBL", "the copy is renamed");
        let sent = PostText::of(&post).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(&sent, PostText::File { key, .. } if key == "shop"));
        assert_eq!(sent.post().unwrap(), post, "read back without the file");
    }
}

//! Detached jobs from the window (ARCHITECTURE.md §4.13, §6.5): the document's job handed to a
//! serving member (`millpond serve`) that runs it on its pool, and the jobs this user handed
//! over listed, fetched, cancelled and forgotten — after a restart of the window too (the
//! ids are remembered: [`super::detached_list`]).
//!
//! [`DetachedJobs`] is a service like the exporter: every exchange with a member (submit,
//! list, fetch, cancel) runs on a thread of its own and reports over a channel that
//! [`DetachedJobs::poll`] drains each frame; the panel (`detached_panel.rs`) only draws and
//! sends [`DetachedAction`]s to [`MillpondApp::detached_action`]. What is sent is what
//! `millpond submit --job` sends for the same job ([`crate::detached::Description::of_job`]),
//! and a fetch writes through [`crate::detached::fetch_to`], as `millpond fetch` does.

use super::app::MillpondApp;
use super::detached_list::{Remembered, Submitted, now_s};
use super::dialogs::{self, SaveProgram};
use crate::detached::{Description, Fetched};
use millpond_core::Mesh;
use millpond_core::job_file::Job;
use millpond_core::post::PostProcessor;
use millpond_net::Secret;
use millpond_net::detached::{Client, DetachedId, JobRow};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

/// How often the open panel asks the members how their jobs stand.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// A job: the member it went to and its id there.
pub type Key = (String, DetachedId);

/// What the member last said of a job.
#[derive(Clone, Debug, PartialEq)]
pub enum Live {
    /// Where it stands (its row in the member's list).
    Row(JobRow),
    /// The member answered, but keeps no such job: it restarted (its results live in
    /// memory), or dropped the job 24 h after it finished, or to make room.
    NotKept,
    /// The member could not be asked: why, in words.
    Unreachable(String),
}

/// What the panel asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum DetachedAction {
    /// Show or hide the panel.
    Show(bool),
    /// The member the next job goes to (HOST:PORT).
    Choose(String),
    /// Submit the document's job to this member (HOST:PORT).
    Submit(String),
    /// Ask the members now.
    Refresh,
    /// Ask where to save the job's program, then fetch it there.
    Fetch(Key),
    /// Fetch the job's program to this file (no dialog).
    FetchTo(Key, PathBuf),
    Cancel(Key),
    /// Take the job off the list (the member keeps it until it drops it).
    Forget(Key),
}

/// What a thread reports.
enum Done {
    Submitted {
        member: String,
        result: Result<(DetachedId, String, String), String>,
    },
    /// Each member's answer, and when the listing was asked for.
    Listed(Instant, Vec<(String, Result<Vec<JobRow>, String>)>),
    Fetched {
        key: Key,
        path: PathBuf,
        result: Result<Fetched, String>,
    },
    Cancelled {
        key: Key,
        result: Result<JobRow, String>,
    },
}

/// The detached jobs service.
#[derive(Debug)]
pub struct DetachedJobs {
    /// The jobs submitted from this window (saved in the config folder).
    pub list: Remembered,
    /// Whether the panel is shown.
    pub open: bool,
    /// The member the next job goes to (HOST:PORT; one of Preferences' remote servers).
    pub member: String,
    /// What each member last said of each job.
    pub live: BTreeMap<Key, Live>,
    /// The last action's outcome, for the panel.
    pub message: Option<Result<String, String>>,
    /// The id of the last job submitted.
    pub last_submitted: Option<DetachedId>,
    /// A submit is on its way.
    pub submitting: bool,
    refreshing: bool,
    refreshed_at: Option<Instant>,
    /// Jobs with a fetch or cancel on its way.
    pending: BTreeSet<Key>,
    /// When a fetch or cancel last told a job's state: a listing asked before says less.
    told: BTreeMap<Key, Instant>,
    save: SaveProgram<Key>,
    tx: Sender<Done>,
    rx: Receiver<Done>,
    config_dir: PathBuf,
    repaint: egui::Context,
}

/// The member's answer, or why there is none, in words.
fn words(e: anyhow::Error) -> String {
    format!("{e:#}")
}

fn connect(member: &str, secret: &Secret) -> Result<Client, String> {
    Client::connect(member, secret).map_err(|e| e.to_string())
}

impl DetachedJobs {
    /// The service with the remembered jobs; a warning if their file could not be read.
    pub fn new(repaint: egui::Context, config_dir: PathBuf) -> (Self, Option<String>) {
        let (list, warning) = Remembered::load(&config_dir);
        let (tx, rx) = channel();
        let member = list
            .jobs
            .last()
            .map(|j| j.member.clone())
            .unwrap_or_default();
        let service = Self {
            list,
            open: false,
            member,
            live: BTreeMap::new(),
            message: None,
            last_submitted: None,
            submitting: false,
            refreshing: false,
            refreshed_at: None,
            pending: BTreeSet::new(),
            told: BTreeMap::new(),
            save: SaveProgram::default(),
            tx,
            rx,
            config_dir,
            repaint,
        };
        (service, warning)
    }

    /// A fetch or cancel of `key` is on its way.
    pub fn busy(&self, key: &Key) -> bool {
        self.pending.contains(key) || self.save.asking() == Some(key)
    }

    fn spawn(&self, work: impl FnOnce() -> Done + Send + 'static) {
        let tx = self.tx.clone();
        let repaint = self.repaint.clone();
        std::thread::spawn(move || {
            let _ = tx.send(work());
            repaint.request_repaint();
        });
    }

    fn save(&mut self) {
        if let Err(e) = self.list.save(&self.config_dir) {
            self.message = Some(Err(e));
        }
    }

    /// Sends a job (planned on the thread first: a mistake is said before anything is sent).
    pub fn submit(
        &mut self,
        member: String,
        secret: Secret,
        job: Job,
        mesh: Arc<Mesh>,
        post: PostProcessor,
        machine: millpond_core::MachineProfile,
    ) {
        self.submitting = true;
        self.message = Some(Ok(format!("Sending the job to {member}…")));
        self.member = member.clone();
        self.spawn(move || {
            let result = Description::of_job(&job, &mesh, &post, machine)
                .and_then(|(title, d)| {
                    let (id, name) = crate::detached::submit(&member, &secret, &title, &d, &mesh)?;
                    Ok((id, name, title))
                })
                .map_err(words);
            Done::Submitted { member, result }
        });
    }

    /// Asks every member of the list how its jobs stand (one exchange at a time).
    pub fn refresh(&mut self, secret: &Secret) {
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        self.refreshed_at = Some(Instant::now());
        let members = self.list.members();
        let secret = secret.clone();
        let asked = Instant::now();
        self.spawn(move || {
            let answers = members
                .into_iter()
                .map(|m| {
                    let rows =
                        connect(&m, &secret).and_then(|mut c| c.list().map_err(|e| e.to_string()));
                    (m, rows)
                })
                .collect();
            Done::Listed(asked, answers)
        });
    }

    /// Refreshes while the panel is open, every [`REFRESH_EVERY`].
    pub fn refresh_if_due(&mut self, secret: Option<&Secret>) {
        let due = self
            .refreshed_at
            .is_none_or(|t| t.elapsed() >= REFRESH_EVERY);
        if !self.open || self.list.jobs.is_empty() {
            return;
        }
        match secret {
            Some(s) if due => self.refresh(s),
            Some(_) => {}
            None => {
                for j in &self.list.jobs {
                    self.live.insert(
                        j.key(),
                        Live::Unreachable(
                            "no pool secret: set the pool's secret in Preferences".into(),
                        ),
                    );
                }
            }
        }
        self.repaint.request_repaint_after(REFRESH_EVERY);
    }

    /// Asks where to save the job's program.
    pub fn fetch_dialog(&mut self, key: Key, browser: dialogs::FileBrowser) {
        if self.save.asking().is_some() {
            return;
        }
        let stem = self
            .list
            .get(&key.0, key.1)
            .map(|j| j.title.as_str())
            .and_then(|t| Path::new(t).file_stem())
            .map_or_else(|| "detached".into(), |s| s.to_string_lossy().into_owned());
        let name = format!("{stem}.ngc");
        self.save.ask(&self.repaint, browser, name, key);
    }

    /// Draws the built-in file browser if that is the dialog; once a file is chosen, fetches
    /// to it. Returns why the built-in browser took over, once.
    pub fn show_dialog(&mut self, ctx: &egui::Context, secret: Option<&Secret>) -> Option<String> {
        let cancelled = "fetch cancelled: no file chosen";
        let (chosen, notice) = self.save.show(ctx, &mut self.message, cancelled);
        if let Some((path, key)) = chosen {
            self.fetch_to(key, path, secret);
        }
        notice
    }

    /// Fetches the job's program to `path` (through a temporary file).
    pub fn fetch_to(&mut self, key: Key, path: PathBuf, secret: Option<&Secret>) {
        let Some(secret) = self.secret_or_say(secret) else {
            return;
        };
        self.pending.insert(key.clone());
        self.spawn(move || {
            let result = connect(&key.0, &secret)
                .and_then(|mut c| crate::detached::fetch_to(&mut c, key.1, &path).map_err(words));
            Done::Fetched { key, path, result }
        });
    }

    pub fn cancel(&mut self, key: Key, secret: Option<&Secret>) {
        let Some(secret) = self.secret_or_say(secret) else {
            return;
        };
        self.pending.insert(key.clone());
        self.spawn(move || {
            let result = connect(&key.0, &secret)
                .and_then(|mut c| c.cancel(key.1).map_err(|e| e.to_string()));
            Done::Cancelled { key, result }
        });
    }

    pub fn forget(&mut self, key: &Key) {
        if self.list.forget(&key.0, key.1) {
            self.live.remove(key);
            self.told.remove(key);
            self.save();
            self.message = Some(Ok(format!("Job {} taken off the list.", key.1)));
        }
    }

    fn secret_or_say(&mut self, secret: Option<&Secret>) -> Option<Secret> {
        if secret.is_none() {
            self.message = Some(Err(
                "no pool secret: set the pool's secret in Preferences".into()
            ));
        }
        secret.cloned()
    }

    /// Takes in what the threads reported.
    pub fn poll(&mut self) {
        while let Ok(done) = self.rx.try_recv() {
            match done {
                Done::Submitted { member, result } => {
                    self.submitting = false;
                    match result {
                        Ok((id, name, title)) => {
                            self.list.add(Submitted {
                                member: member.clone(),
                                id,
                                title: title.clone(),
                                submitted: now_s(),
                            });
                            self.save();
                            self.last_submitted = Some(id);
                            self.message = Some(Ok(format!(
                                "Job {id} ({title}) queued at {name} ({member})."
                            )));
                            // Listed at once.
                            self.refreshed_at = None;
                        }
                        Err(e) => self.message = Some(Err(format!("Not submitted: {e}"))),
                    }
                }
                Done::Listed(asked, answers) => {
                    self.refreshing = false;
                    for (member, rows) in answers {
                        for job in self.list.jobs.iter().filter(|j| j.member == member) {
                            // A cancel answered meanwhile is newer than this listing.
                            if self.told.get(&job.key()).is_some_and(|t| *t > asked) {
                                continue;
                            }
                            let live = match &rows {
                                Err(e) => Live::Unreachable(e.clone()),
                                Ok(rows) => rows
                                    .iter()
                                    .find(|r| r.id == job.id)
                                    .map_or(Live::NotKept, |r| Live::Row(r.clone())),
                            };
                            self.live.insert(job.key(), live);
                        }
                    }
                }
                Done::Fetched { key, path, result } => {
                    self.pending.remove(&key);
                    self.message = Some(match result {
                        Ok(Fetched::Written(bytes)) => {
                            self.save.saved(&path);
                            Ok(format!("Saved {} ({bytes} bytes).", path.display()))
                        }
                        Ok(Fetched::NotReady(row)) => {
                            let text = crate::detached::not_ready(&row);
                            self.told.insert(key.clone(), Instant::now());
                            self.live.insert(key, Live::Row(row));
                            Err(text)
                        }
                        Err(e) => Err(format!("Cannot fetch job {}: {e}", key.1)),
                    });
                }
                Done::Cancelled { key, result } => {
                    self.pending.remove(&key);
                    self.message = Some(match result {
                        Ok(row) => {
                            let text = match &row.state {
                                millpond_net::detached::JobState::Cancelled => {
                                    format!("Job {} cancelled.", row.id)
                                }
                                s => format!("Job {} was already over ({s}).", row.id),
                            };
                            self.told.insert(key.clone(), Instant::now());
                            self.live.insert(key, Live::Row(row));
                            Ok(text)
                        }
                        Err(e) => Err(format!("Cannot cancel job {}: {e}", key.1)),
                    });
                }
            }
        }
    }
}

impl MillpondApp {
    /// What the detached jobs panel asked for.
    pub fn detached_action(&mut self, action: DetachedAction) {
        let secret = self.secret.clone();
        let d = &mut self.detached;
        match action {
            DetachedAction::Show(open) => {
                d.open = open;
                if open && d.member.is_empty() {
                    d.member = self
                        .prefs
                        .remote_servers
                        .first()
                        .cloned()
                        .unwrap_or_default();
                }
            }
            DetachedAction::Choose(member) => d.member = member,
            DetachedAction::Submit(member) => self.submit_detached(member),
            DetachedAction::Refresh => match &secret {
                Some(s) => d.refresh(s),
                None => {
                    d.secret_or_say(None);
                }
            },
            DetachedAction::Fetch(key) => d.fetch_dialog(key, self.prefs.file_browser),
            DetachedAction::FetchTo(key, path) => d.fetch_to(key, path, secret.as_ref()),
            DetachedAction::Cancel(key) => d.cancel(key, secret.as_ref()),
            DetachedAction::Forget(key) => d.forget(&key),
        }
    }

    /// Sends the document's job — the placed model, the job, its post and Preferences'
    /// machine, as `millpond submit --job` would send the saved job — to `member`.
    fn submit_detached(&mut self, member: String) {
        if self.detached.submitting {
            return;
        }
        match self.detached_input(&member) {
            Ok((secret, job, mesh, post)) => {
                let machine = self.prefs.machine();
                self.detached
                    .submit(member, secret, job, mesh, post, machine);
            }
            Err(why) => self.detached.message = Some(Err(format!("Not submitted: {why}"))),
        }
    }

    /// What a submit to `member` sends, or why nothing can be sent.
    fn detached_input(
        &self,
        member: &str,
    ) -> Result<(Secret, Job, Arc<Mesh>, PostProcessor), String> {
        super::preferences::check_remote(member).map_err(|e| format!("the member {e}"))?;
        let secret = self
            .secret
            .clone()
            .ok_or("no pool secret (set the pool's secret in Preferences)")?;
        let (Some(job), Some(model)) = (self.doc().to_job(), self.doc().model.as_ref()) else {
            return Err("open a model first".into());
        };
        Ok((secret, job, model.mesh.clone(), self.post()?))
    }
}

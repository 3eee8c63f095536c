//! Detached jobs from the window (issue 17 point 7, ARCHITECTURE.md §4.13, §6.5): a real
//! `millpond serve` on 127.0.0.1, the window's job submitted to it with the panel's buttons,
//! the window closed while the job runs and started again on the same config folder, the job
//! listed again and fetched: the G-code must be what `millpond toolpath --job` writes for the
//! saved job, byte for byte. Then the member restarts (the job is not kept any more), is
//! asked with a wrong secret and is gone: each said in the panel in words.
//!
//! The member is killed when the test ends; every wait has a deadline.

mod gui_support;

use egui_kittest::kittest::Queryable;
use gui_support::{TestApp, app_in_path, cli_program};
use millpond::gui::detached::{DetachedAction, Live};
use millpond::gui::preferences::{self, Preferences};
use millpond_net::Secret;
use millpond_net::detached::JobState;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "millpond-gui-detached-secret";
/// Longest a job here may take (it takes seconds).
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// A `millpond serve` on a loopback port chosen once, so that it can restart there.
struct Member {
    dir: tempfile::TempDir,
    serve: Option<Child>,
    address: String,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- serve log ---\n{}", self.log());
        }
    }
}

impl Member {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Secret::new(SECRET, "test")
            .unwrap()
            .save(&dir.path().join("secret"))
            .unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut m = Self {
            dir,
            serve: None,
            address: format!("127.0.0.1:{port}"),
        };
        m.start();
        m
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// `millpond serve` with two workers; returns once it listens.
    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        let serve = Command::new(env!("CARGO_BIN_EXE_millpond"))
            .args(["serve", "--listen", &self.address, "--workers", "2"])
            .args(["--name", "gui-member", "--secret-file", "secret"])
            .current_dir(self.dir.path())
            .env("MILLPOND_CONFIG_DIR", self.dir.path().join("serve-config"))
            .env_remove("MILLPOND_POOL_SECRET")
            .env_remove("MILLPOND_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.serve = Some(serve);
        let end = Instant::now() + Duration::from_secs(10);
        while !self.log().contains("serving on ") {
            let status = self.serve.as_mut().unwrap().try_wait().unwrap();
            assert!(status.is_none(), "serve exited: {}", self.log());
            assert!(Instant::now() < end, "serve did not listen: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.serve.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A config folder whose Preferences name the member and whose secret is the pool's.
fn config_for(member: &Member, dir: &Path) {
    let prefs = Preferences {
        remote_servers: vec![member.address.clone()],
        local_workers: 2,
        ..Preferences::default()
    };
    prefs.save(dir).unwrap();
    preferences::save_secret(dir, &Secret::new(SECRET, "test").unwrap()).unwrap();
}

fn wait(t: &mut TestApp, what: &str, done: impl FnMut(&millpond::gui::MillpondApp) -> bool) {
    if !t.run_until(JOB_TIMEOUT, done) {
        panic!(
            "{what}: not within {JOB_TIMEOUT:?}; panel: {:?}; live: {:?}",
            t.app().detached.message,
            t.app().detached.live
        );
    }
}

/// What the panel says of the only job, once the member answered.
fn live(t: &TestApp) -> Option<Live> {
    let d = &t.app().detached;
    d.live.get(&d.list.jobs.first()?.key()).cloned()
}

/// Refreshes now and waits for the member's answer to differ from what it was.
fn refreshed(t: &mut TestApp, what: &str, pred: impl Fn(&Live) -> bool) -> Live {
    let end = Instant::now() + JOB_TIMEOUT;
    loop {
        t.app_mut().detached_action(DetachedAction::Refresh);
        let asked = Instant::now();
        t.run_until(Duration::from_secs(3), |_| false);
        if let Some(l) = live(t).filter(|l| pred(l)) {
            return l;
        }
        assert!(
            Instant::now() < end,
            "{what}: {:?} (asked {:?} ago)",
            live(t),
            asked.elapsed()
        );
    }
}

#[test]
fn a_job_submitted_from_the_window_is_fetched_after_a_restart_byte_for_byte() {
    let mut member = Member::new();
    let work = tempfile::tempdir().unwrap();
    let config: PathBuf = work.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    config_for(&member, &config);

    // The window: the sample part, its default roughing and a coarser raster finishing.
    let mut t = app_in_path(&config);
    t.set_raster(|p| {
        p.stepover = 1.0;
        p.sampling = 0.5;
    });
    t.harness
        .get_by_label("Run on pool member (detached)…")
        .click();
    t.harness.run_ok();
    assert!(t.app().detached.open, "the panel opens");
    assert_eq!(
        t.app().detached.member,
        member.address,
        "the member preselected"
    );
    t.harness.get_by_label("Submit job").click();
    t.harness.run_ok();
    wait(&mut t, "submitted", |a| a.detached.last_submitted.is_some());
    let d = &t.app().detached;
    let id = d.last_submitted.unwrap();
    assert_eq!(d.list.jobs.len(), 1);
    let job = d.list.jobs[0].clone();
    assert_eq!((job.member.as_str(), job.id), (member.address.as_str(), id));
    assert_eq!(job.title, "default-part.stl");
    assert!(
        matches!(&d.message, Some(Ok(m)) if m.contains(&id.to_string())),
        "{:?}",
        d.message
    );
    let file = std::fs::read_to_string(config.join("detached-jobs.toml")).unwrap();
    assert!(file.contains(&id.to_string()), "{file}");
    // The job as the window held it, for the command line to run here.
    let job_file = work.path().join("sent.millpond");
    assert!(t.app_mut().save_job_to(&job_file));
    // The panel shows it with where it stands.
    wait(&mut t, "listed", |a| {
        a.detached.live.values().any(|l| matches!(l, Live::Row(_)))
    });
    t.harness.run_ok();
    assert!(t.has_text(&id.to_string()[..8]), "{}", t.texts());
    // The window closes; the member keeps computing.
    drop(t);

    // Started again on the same folder: the job is listed and fetched.
    let mut u = app_in_path(&config);
    assert_eq!(u.app().detached.list.jobs, vec![job.clone()]);
    u.app_mut().detached_action(DetachedAction::Show(true));
    wait(&mut u, "complete", |a| {
        a.detached.live.get(&job.key()).is_some_and(
            |l| matches!(l, Live::Row(r) if matches!(r.state, JobState::Complete { .. })),
        )
    });
    u.harness.run_ok();
    assert!(u.has_text("complete ("), "{}", u.texts());
    assert!(u.has_text("default-part.stl"), "{}", u.texts());
    let fetched = work.path().join("fetched.ngc");
    u.app_mut()
        .detached_action(DetachedAction::FetchTo(job.key(), fetched.clone()));
    wait(&mut u, "fetched", |a| !a.detached.busy(&job.key()));
    let message = u.app().detached.message.clone();
    assert!(
        matches!(&message, Some(Ok(m)) if m.starts_with("Saved")),
        "{message:?}"
    );
    let got = std::fs::read(&fetched).unwrap();
    let cli = cli_program(&job_file, &work.path().join("cli.ngc"), |cmd| {
        cmd.env("MILLPOND_CONFIG_DIR", &config)
            .env_remove("MILLPOND_POOL_SECRET");
    });
    assert!(got.len() > 1000);
    if got != cli {
        let (a, b) = (String::from_utf8_lossy(&got), String::from_utf8_lossy(&cli));
        let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        panic!("the fetched program is not `millpond toolpath --job`'s (first at line {first:?})");
    }

    // A long job submitted from the panel and cancelled there: the member stops it.
    u.set_raster(|p| {
        p.stepover = 0.05;
        p.sampling = 0.05;
    });
    u.harness.run_ok();
    u.harness.get_by_label("Submit job").click();
    wait(&mut u, "second submit", |a| {
        a.detached.last_submitted.is_some_and(|i| i != id)
    });
    let long = u.app().detached.list.jobs.last().unwrap().key();
    u.app_mut()
        .detached_action(DetachedAction::Cancel(long.clone()));
    wait(&mut u, "cancelled", |a| !a.detached.busy(&long));
    let message = u.app().detached.message.clone();
    assert!(
        matches!(&message, Some(Ok(m)) if m.ends_with("cancelled.")),
        "{message:?}"
    );
    assert!(matches!(
        u.app().detached.live.get(&long),
        Some(Live::Row(r)) if r.state == JobState::Cancelled
    ));
    u.app_mut().detached_action(DetachedAction::Forget(long));
    assert_eq!(u.app().detached.list.jobs, vec![job.clone()]);

    // The member restarts: it keeps results in memory only, so the job is not kept, and a
    // fetch is refused with the member's words.
    member.stop();
    member.start();
    refreshed(&mut u, "not kept", |l| *l == Live::NotKept);
    u.harness.run_ok();
    assert!(u.has_text("not kept by the member"), "{}", u.texts());
    u.app_mut().detached_action(DetachedAction::FetchTo(
        job.key(),
        work.path().join("no.ngc"),
    ));
    wait(&mut u, "refused", |a| !a.detached.busy(&job.key()));
    let message = u.app().detached.message.clone();
    assert!(
        matches!(&message, Some(Err(e)) if e.contains(&id.to_string())),
        "{message:?}"
    );
    assert!(!work.path().join("no.ngc").exists());

    // A wrong secret: said, not a panic.
    u.app_mut().secret = Some(Secret::new("not the pool's secret", "test").unwrap());
    let l = refreshed(&mut u, "wrong secret", |l| {
        matches!(l, Live::Unreachable(_))
    });
    eprintln!("wrong secret: {l:?}");
    u.harness.run_ok();
    assert!(u.has_text("cannot reach the member"), "{}", u.texts());

    // The member gone: said too.
    member.stop();
    u.app_mut().secret = Some(Secret::new(SECRET, "test").unwrap());
    let l = refreshed(
        &mut u,
        "gone",
        |l| matches!(l, Live::Unreachable(e) if !e.contains("auth")),
    );
    eprintln!("member gone: {l:?}");

    // Forget takes it off the list, and off the file.
    u.app_mut()
        .detached_action(DetachedAction::Forget(job.key()));
    assert!(u.app().detached.list.jobs.is_empty());
    let file = std::fs::read_to_string(config.join("detached-jobs.toml")).unwrap();
    assert!(!file.contains(&id.to_string()), "{file}");
}

//! Detached jobs end to end (issue 17 point 7, ARCHITECTURE.md §4.13): a real `millpond
//! serve` on 127.0.0.1 (a free port), jobs handed to it with `millpond submit`, watched with
//! `millpond jobs`, fetched with `millpond fetch` and cancelled with `millpond cancel`, each a
//! process of its own that only talks to the member. The program fetched must be the bytes
//! `millpond toolpath --job` writes here; a cancelled job must stop and free the member for the
//! next one; an unknown id, a malformed one and a wrong secret must fail with words that say so.
//!
//! Every child is killed when its test ends, and every wait has a deadline.

use millpond_tests::pool::Cluster;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Longest a job here may take (they take seconds).
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// A serving member and the commands that talk to it, in a temporary directory (the pool
/// tests' [`Cluster`], whose `secret` and `wrong-secret` files the commands name).
struct Member {
    c: Cluster,
    address: String,
}

impl Member {
    /// `millpond serve` with one worker, listening on a free loopback port.
    fn start(tag: &str) -> Self {
        let mut c = Cluster::new(&format!("detached-{tag}"));
        let address = c.serve("member", &[]).to_string();
        Self { c, address }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.c.path(name)
    }

    fn log(&self) -> String {
        self.c.log("member")
    }

    /// `millpond ARGS` in the test's directory, with a config folder of its own (no saved
    /// secret, no user posts).
    fn millpond(&self, args: &[&str]) -> Output {
        self.c
            .command("client")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `millpond ARGS --pool ADDRESS --secret-file SECRET`. A wrong secret makes the member
    /// refuse this host's next connections for a moment (§4.4, at most 2 s): those are tried
    /// again, so each call here is one answer from the member.
    fn ask(&self, args: &[&str], secret: &str) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--pool", &self.address, "--secret-file", secret]);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.millpond(&all);
            let backing_off = text(&out.stderr).contains("refused to accept a new connection");
            if !backing_off || Instant::now() > end {
                return out;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Writes a job file for the bundled part with these `--op`s (through `toolpath
    /// --save-job`) and returns its name.
    fn job(&self, name: &str, ops: &[&str]) -> String {
        let file = format!("{name}.millpond");
        let mut args = vec![
            "toolpath",
            "default-part.stl",
            "--stock-margin",
            "2,1",
            "-q",
        ];
        for op in ops {
            args.extend(["--op", op]);
        }
        args.extend(["--save-job", &file, "-o", "scratch.ngc"]);
        let out = self.millpond(&args);
        assert!(out.status.success(), "saving {file}: {}", text(&out.stderr));
        file
    }

    /// A raster job of about 90 s on one worker (93 s for `millpond toolpath --threads 1`,
    /// release build): the small one's file with a fine grid (saving it through `toolpath`
    /// would compute it here first).
    fn big_job(&self) -> String {
        let small = self.job("for-big", &["raster,tool=ball:3,stepover=0.5"]);
        let text = std::fs::read_to_string(self.path(&small)).unwrap();
        let fine = text.replace(
            "stepover = 0.5\nsampling = 0.1\n",
            "stepover = 0.005\nsampling = 0.01\n",
        );
        assert_ne!(fine, text, "the saved job's grid is where it was:\n{text}");
        std::fs::write(self.path("big.millpond"), fine).unwrap();
        "big.millpond".into()
    }

    fn submit(&self, job: &str) -> String {
        let out = self.ask(&["submit", "--job", job], "secret");
        assert!(out.status.success(), "submit: {}", text(&out.stderr));
        let id = text(&out.stdout).trim().to_string();
        assert_eq!(id.len(), 32, "an id of 128 bits in hex: {id:?}");
        id
    }

    /// The state column of job `id` in `millpond jobs`.
    fn state(&self, id: &str) -> String {
        let out = self.ask(&["jobs"], "secret");
        assert!(out.status.success(), "jobs: {}", text(&out.stderr));
        let listing = text(&out.stdout);
        let line = listing
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("job {id} not listed:\n{listing}"));
        // Columns are two spaces apart; a state has single spaces ("running 3/10").
        let rest = line[32..].trim_start();
        rest.split("  ").next().unwrap_or(rest).to_string()
    }

    /// Polls `jobs` until `id`'s state starts with `want`; every state seen on the way.
    fn wait_for(&self, id: &str, want: &str) -> Vec<String> {
        let end = Instant::now() + JOB_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let state = self.state(id);
            let done = state.starts_with(want);
            seen.push(state);
            if done {
                return seen;
            }
            assert!(
                Instant::now() < end,
                "job {id} not {want} within {JOB_TIMEOUT:?}: {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// "running 12/161 ..." → (12, 161).
fn chunks(state: &str) -> Option<(u64, u64)> {
    let rest = state.strip_prefix("running ")?;
    let (done, total) = rest.split_whitespace().next()?.split_once('/')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

#[test]
fn a_detached_job_runs_at_the_member_and_fetches_the_bytes_a_local_run_writes() {
    let m = Member::start("fetch");
    let job = m.job(
        "part",
        &[
            "raster,tool=ball:3,stepover=0.15",
            "rough,tool=flat:6,stepdown=2",
        ],
    );
    let t0 = Instant::now();
    let id = m.submit(&job);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "submit returns once the job is queued, not when it is done"
    );
    let seen = m.wait_for(&id, "complete");
    eprintln!("states seen: {seen:?}");
    // Progress only goes forward, in chunks of the whole job.
    let running: Vec<(u64, u64)> = seen.iter().filter_map(|s| chunks(s)).collect();
    assert!(!running.is_empty(), "never seen running: {seen:?}");
    assert!(
        running
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 == w[1].1),
        "{seen:?}"
    );
    assert!(running.iter().all(|(d, t)| d <= t && *t > 0), "{seen:?}");
    for s in &seen {
        assert!(
            s.starts_with("queued") || s.starts_with("running") || s.starts_with("complete"),
            "{s}"
        );
    }

    let out = m.ask(&["fetch", &id, "-o", "fetched.ngc"], "secret");
    assert!(out.status.success(), "fetch: {}", text(&out.stderr));
    let local = m.millpond(&["toolpath", "--job", &job, "-o", "local.ngc", "-q"]);
    assert!(
        local.status.success(),
        "toolpath --job: {}",
        text(&local.stderr)
    );
    let fetched = std::fs::read(m.path("fetched.ngc")).unwrap();
    let written = std::fs::read(m.path("local.ngc")).unwrap();
    assert!(
        written.len() > 100_000,
        "a real program: {} bytes",
        written.len()
    );
    assert!(
        fetched == written,
        "the fetched program ({} bytes) differs from toolpath --job's ({} bytes)",
        fetched.len(),
        written.len()
    );
    // No temporary file is left beside it.
    let leftovers: Vec<String> = std::fs::read_dir(m.c.dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Fetched again: the member keeps it.
    let again = m.ask(&["fetch", &id, "-o", "again.ngc"], "secret");
    assert!(again.status.success());
    assert_eq!(std::fs::read(m.path("again.ngc")).unwrap(), written);
}

#[test]
fn a_cancelled_job_stops_and_the_member_runs_the_next() {
    let m = Member::start("cancel");
    // About 90 s of raster on the member's one worker (release build, idle machine): it is
    // running when it is cancelled, and it is long beside the 20 s the next job may take
    // below, so that a slow or busy machine does not fail the test but a cancel that left it
    // running does.
    let big = m.big_job();
    let small = m.job("small", &["raster,tool=ball:3,stepover=0.5"]);
    let running = m.submit(&big);
    let queued = m.submit(&small);
    let seen = m.wait_for(&running, "running");
    let (_, total) = chunks(seen.last().unwrap()).unwrap();
    assert!(total > 100, "a large job: {total} chunks");
    assert!(
        m.state(&queued).starts_with("queued"),
        "{}",
        m.state(&queued)
    );

    // Queued: cancelled before it starts.
    let out = m.ask(&["cancel", &queued], "secret");
    assert!(out.status.success(), "cancel: {}", text(&out.stderr));
    assert_eq!(m.state(&queued), "cancelled");
    // Running: cancelled, and the member's worker is freed within a second or so.
    let t = Instant::now();
    let out = m.ask(&["cancel", &running], "secret");
    assert!(out.status.success(), "cancel: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("cancelled"));
    assert_eq!(m.state(&running), "cancelled");
    let fetch = m.ask(&["fetch", &running, "-o", "never.ngc"], "secret");
    assert!(!fetch.status.success());
    assert!(
        text(&fetch.stderr).contains("cancelled"),
        "{}",
        text(&fetch.stderr)
    );
    assert!(!m.path("never.ngc").exists());
    // Cancelling it again is no error; a finished job cannot be.
    assert!(m.ask(&["cancel", &running], "secret").status.success());

    // The runner is free: a new job completes quickly (not after the rest of the big one's
    // 90 s).
    let next = m.submit(&small);
    m.wait_for(&next, "complete");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the next job waited {:?}: the cancelled one kept running",
        t.elapsed()
    );
    let over = m.ask(&["cancel", &next], "secret");
    assert!(!over.status.success());
    assert!(
        text(&over.stderr).contains("already over"),
        "{}",
        text(&over.stderr)
    );
    assert!(
        m.log()
            .contains(&format!("detached job {running}: cancelled")),
        "{}",
        m.log()
    );
}

#[test]
fn unknown_ids_wrong_secrets_and_unfinished_jobs_are_refused_in_words() {
    let mut m = Member::start("refuse");
    let unknown = "0123456789abcdef0123456789abcdef";
    let out = m.ask(&["fetch", unknown, "-o", "x.ngc"], "secret");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("no job {unknown} here")), "{err}");
    assert!(!m.path("x.ngc").exists());
    let out = m.ask(&["cancel", unknown], "secret");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no job"),
        "{}",
        text(&out.stderr)
    );
    // Not an id at all: refused before anything is sent.
    let out = m.ask(&["fetch", "12345", "-o", "x.ngc"], "secret");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a job id"),
        "{}",
        text(&out.stderr)
    );

    // A wrong secret gets nothing: not a listing, not a submit.
    for args in [&["jobs"][..], &["fetch", unknown, "-o", "x.ngc"][..]] {
        let out = m.ask(args, "wrong-secret");
        assert!(
            !out.status.success(),
            "{args:?} with a wrong secret succeeded"
        );
        let err = text(&out.stderr);
        assert!(err.contains("different pool secret"), "{args:?}: {err}");
    }
    let small = m.job("small", &["raster,tool=ball:3,stepover=0.5"]);
    let out = m.ask(&["submit", "--job", &small], "wrong-secret");
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).trim().is_empty(),
        "no id for a wrong secret"
    );
    let listing = text(&m.ask(&["jobs"], "secret").stderr);
    assert!(listing.contains("no detached jobs"), "{listing}");

    // submit takes no -o (fetch writes the program), and needs --pool.
    let out = m.ask(&["submit", "--job", &small, "-o", "x.ngc"], "secret");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("millpond fetch"),
        "{}",
        text(&out.stderr)
    );
    let out = m.millpond(&["submit", "--job", &small]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--pool"),
        "{}",
        text(&out.stderr)
    );

    // A job not yet complete: fetch says where it stands and fails.
    let big = m.big_job();
    let id = m.submit(&big);
    let out = m.ask(&["fetch", &id, "-o", "early.ngc"], "secret");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("is queued") || err.contains("is running"),
        "{err}"
    );
    assert!(err.contains("no program to fetch yet"), "{err}");
    assert!(!m.path("early.ngc").exists());
    assert!(m.ask(&["cancel", &id], "secret").status.success());
    // The member served all of this and still runs.
    assert!(m.c.running("member"), "{}", m.log());
}

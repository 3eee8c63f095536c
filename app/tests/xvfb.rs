//! The real `millpond` window under Xvfb: it opens, draws (screenshots under
//! target/xvfb-screenshots/), and Ctrl-Q ends the process within 0.5 s — idle, while
//! computing, and in server mode with a connected peer and a job in flight, where the peer
//! must see the close at once — and so does the close button (the window manager's close
//! request) while computing.
//!
//! Needs `Xvfb`, `xdotool` and ImageMagick's `import` (CI installs them); without them each
//! test says it was skipped and passes. Every child process is killed on every exit path.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests share the machine's two cores and a software renderer: one at a time, so one
/// test's busy workers do not slow another's quit.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Quitting must take no longer than this, in every state.
const QUIT_LIMIT: Duration = Duration::from_millis(500);

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// ImageMagick's `import` (not a stand-in of the same name elsewhere on PATH).
fn import_tool() -> Option<PathBuf> {
    ["/usr/bin/import", "/usr/local/bin/import"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn missing_tools() -> Vec<&'static str> {
    let mut missing: Vec<&str> = ["Xvfb", "xdotool"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    if import_tool().is_none() {
        missing.push("import (ImageMagick)");
    }
    missing
}

/// Children killed (and reaped) when the test ends, however it ends.
#[derive(Default)]
struct Children(Vec<(&'static str, Child)>);

impl Children {
    fn add(&mut self, name: &'static str, child: Child) -> usize {
        self.0.push((name, child));
        self.0.len() - 1
    }

    fn get(&mut self, i: usize) -> &mut Child {
        &mut self.0[i].1
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        // The app and the peer first, the X server last. SIGTERM first, so that Xvfb removes
        // its lock file and socket (a SIGKILLed one leaves them behind).
        for (_, c) in self.0.iter_mut().rev() {
            if let Ok(None) = c.try_wait() {
                if let Some(pid) = i32::try_from(c.id())
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_secs(2) {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `Xvfb` on a free display number; returns the number. Xvfb picks the number
/// itself and reports it on `-displayfd` once it accepts connections: choosing a number here
/// by looking for lock files raced with other tests (and other test runs) doing the same.
///
/// `-noreset`: an X server resets itself when its last client disconnects, and a client that
/// connects during the reset is refused ("Failed to open connection to X server"); the probe
/// below, xdotool and `import` are all clients that come and go. Before returning, a test
/// client connects, so the server is known to accept connections. Xvfb's own messages go to
/// `xvfb.log` beside the app's logs, and a failure to reach it says so (see
/// [`xvfb_state`]).
fn start_xvfb(children: &mut Children) -> u32 {
    use std::io::BufRead;
    let log = xvfb_log();
    let mut child = Command::new("Xvfb")
        .args(["-displayfd", "1", "-noreset"])
        .args(["-screen", "0", "1600x1000x24", "-nolisten", "tcp"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("create xvfb.log"))
        .spawn()
        .expect("start Xvfb");
    let stdout = child.stdout.take().expect("Xvfb stdout");
    children.add("Xvfb", child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep the pipe open until Xvfb exits: a closed pipe would kill it with SIGPIPE the
        // next time it writes there.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| {
            panic!(
                "Xvfb reported no display number within 10 s\n{}",
                read(&log)
            )
        });
    let display: u32 = line.trim().parse().unwrap_or_else(|_| {
        panic!(
            "Xvfb reported {line:?}, not a display number\n{}",
            read(&log)
        )
    });
    let t0 = Instant::now();
    while let Err(e) = x11rb::connect(Some(&format!(":{display}"))) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "Xvfb on :{display} refuses connections: {e}\n{}",
            xvfb_state(children)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    display
}

/// Where this test binary's Xvfb writes its messages (one at a time, see [`ONE_AT_A_TIME`]).
fn xvfb_log() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xvfb");
    std::fs::create_dir_all(&dir).expect("create the Xvfb log folder");
    dir.join("xvfb.log")
}

/// Whether the X server is still running, and what it said: for the message of a test that
/// could not reach it.
fn xvfb_state(children: &mut Children) -> String {
    let state = match children.0.iter_mut().find(|(name, _)| *name == "Xvfb") {
        Some((_, c)) => match c.try_wait() {
            Ok(None) => "Xvfb is running".to_string(),
            Ok(Some(status)) => format!("Xvfb has exited: {status}"),
            Err(e) => format!("Xvfb: {e}"),
        },
        None => "no Xvfb was started".to_string(),
    };
    format!("{state}; its log:\n{}", read(&xvfb_log()))
}

fn xdotool(display: u32, args: &[&str]) -> std::process::Output {
    Command::new("xdotool")
        .args(args)
        .env("DISPLAY", format!(":{display}"))
        .output()
        .expect("run xdotool")
}

/// The id of the Millpond window, once it is mapped (bounded wait).
fn wait_for_window(
    display: u32,
    children: &mut Children,
    app: usize,
    log: &Path,
    timeout: Duration,
) -> String {
    let t0 = Instant::now();
    loop {
        let out = xdotool(display, &["search", "--onlyvisible", "--name", "^Millpond"]);
        if let Some(id) = String::from_utf8_lossy(&out.stdout).lines().next() {
            return id.trim().to_string();
        }
        if let Ok(Some(status)) = children.get(app).try_wait() {
            panic!(
                "millpond exited before its window appeared: {status}\n{}\n{}",
                read(log),
                xvfb_state(children)
            );
        }
        assert!(
            t0.elapsed() < timeout,
            "no Millpond window after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `check` every `every` until it gives a value, failing with `why` after `timeout`.
fn poll<T>(
    timeout: Duration,
    every: Duration,
    why: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(t0.elapsed() < timeout, "{}", why());
        std::thread::sleep(every);
    }
}

/// Saves the whole screen (`window` = "root") or one window under
/// target/xvfb-screenshots/NAME.png.
fn screenshot(display: u32, name: &str) -> PathBuf {
    screenshot_of(display, "root", name)
}

fn screenshot_of(display: u32, window: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("xvfb-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    let status = Command::new(import_tool().expect("import"))
        .args(["-window", window])
        .arg(&path)
        .env("DISPLAY", format!(":{display}"))
        .status()
        .expect("run import");
    assert!(status.success(), "import failed: {status}");
    eprintln!("screenshot: {}", path.display());
    path
}

/// How the test asks the app to quit.
#[derive(Clone, Copy, Debug)]
enum Quit {
    /// Ctrl-Q, typed into the focused window (XTEST key events).
    CtrlQ,
    /// The window manager's close request (WM_DELETE_WINDOW), as the title bar's close button
    /// sends it.
    CloseButton,
}

fn send_close_request(display: u32, window: &str) {
    use x11rb::protocol::xproto::{ClientMessageEvent, ConnectionExt as _, EventMask};
    let (conn, _) = x11rb::connect(Some(&format!(":{display}"))).expect("connect to Xvfb");
    let id: u32 = window.parse().expect("a window id");
    let atom = |name: &[u8]| {
        conn.intern_atom(false, name)
            .expect("intern_atom")
            .reply()
            .expect("intern_atom reply")
            .atom
    };
    let (protocols, delete) = (atom(b"WM_PROTOCOLS"), atom(b"WM_DELETE_WINDOW"));
    let event = ClientMessageEvent::new(32, id, protocols, [delete, x11rb::CURRENT_TIME, 0, 0, 0]);
    // Checked: waits until the server has handled it, before the connection closes.
    conn.send_event(false, id, EventMask::NO_EVENT, event)
        .expect("send the close request")
        .check()
        .expect("the close request was delivered");
}

/// Asks the app to quit and returns how long the process took to end.
fn quit(display: u32, window: &str, app: &mut Child, how: Quit) -> Duration {
    let t0;
    match how {
        Quit::CtrlQ => {
            let _ = xdotool(display, &["windowfocus", "--sync", window]);
            t0 = Instant::now();
            let out = xdotool(display, &["key", "--clearmodifiers", "ctrl+q"]);
            assert!(out.status.success(), "xdotool key failed");
        }
        Quit::CloseButton => {
            t0 = Instant::now();
            send_close_request(display, window);
        }
    }
    loop {
        if let Some(status) = app.try_wait().expect("wait for millpond") {
            let took = t0.elapsed();
            assert!(status.success(), "millpond exited with {status}");
            return took;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            panic!("millpond still running 10 s after {how:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Run {
    config: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    /// Variables the app must not inherit.
    unset: Vec<&'static str>,
    args: Vec<PathBuf>,
}

impl Run {
    fn new() -> Self {
        Self {
            config: tempfile::tempdir().unwrap(),
            env: Vec::new(),
            unset: Vec::new(),
            args: Vec::new(),
        }
    }

    fn spawn(&self, display: u32, log: &Path) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_millpond"));
        cmd.env("DISPLAY", format!(":{display}"))
            .env_remove("WAYLAND_DISPLAY")
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .env("MILLPOND_CONFIG_DIR", self.config.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for k in &self.unset {
            cmd.env_remove(k);
        }
        cmd.args(&self.args);
        cmd.spawn().expect("start millpond")
    }
}

fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Runs the app in one state and checks the quit; returns the quit time.
fn open_and_quit(
    name: &str,
    run: &Run,
    children: &mut Children,
    display: u32,
    settle: Duration,
    how: Quit,
) -> Duration {
    let log = run.config.path().join("millpond.log");
    let app = run.spawn(display, &log);
    let i = children.add("millpond", app);
    let window = wait_for_window(display, children, i, &log, Duration::from_secs(60));
    std::thread::sleep(settle);
    screenshot(display, name);
    // The window alone: docs/screenshot.png is taken from the idle one.
    screenshot_of(display, &window, &format!("{name}-window"));
    assert!(
        children.get(i).try_wait().unwrap().is_none(),
        "millpond exited early:\n{}",
        read(&log)
    );
    let took = quit(display, &window, children.get(i), how);
    eprintln!(
        "{name}: {how:?} to exit in {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    assert!(
        took < QUIT_LIMIT,
        "{name}: quitting took {took:?}\n{}",
        read(&log)
    );
    took
}

/// One window test at a time. A machine without the X tools fails here, naming the packages
/// to install (.ci/run installs them): a window test that skips itself tests nothing.
fn guard() -> Option<std::sync::MutexGuard<'static, ()>> {
    let missing = missing_tools();
    assert!(
        missing.is_empty(),
        "the Xvfb window tests need {}: apt-get install xvfb xdotool imagemagick",
        missing.join(", ")
    );
    Some(ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Starts the app in a window on a fresh Xvfb with `MILLPOND_AUTOSTART=autostart`, waits
/// `settle`, quits it with `quit` and checks it is gone within half a second.
fn quits_within_half_a_second(name: &str, autostart: &str, settle: Duration, quit: Quit) {
    let Some(_one) = guard() else { return };
    let mut children = Children::default();
    let display = start_xvfb(&mut children);
    let mut run = Run::new();
    run.env.push(("MILLPOND_AUTOSTART", autostart.into()));
    open_and_quit(name, &run, &mut children, display, settle, quit);
}

#[test]
fn idle_window_quits_on_ctrl_q_within_half_a_second() {
    // The default operation computed, as after one click on Generate: the docs screenshot.
    quits_within_half_a_second("idle", "default", Duration::from_secs(4), Quit::CtrlQ);
}

/// `millpond part.stl`, as a file manager's "Open with" runs it: the window opens with that
/// part (its name in the title once loaded), not the bundled one.
#[test]
fn a_model_on_the_command_line_opens_in_the_window() {
    let Some(_one) = guard() else { return };
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("lever-arm.stl");
    let tris =
        millpond_core::models::geodesic_sphere(millpond_core::Point3::new(0.0, 0.0, 0.0), 15.0, 3);
    millpond_core::stl::write_binary(std::fs::File::create(&part).unwrap(), "lever", &tris)
        .unwrap();
    let mut children = Children::default();
    let display = start_xvfb(&mut children);
    let mut run = Run::new();
    run.args.push(part);
    let log = dir.path().join("log.txt");
    let i = children.add("millpond", run.spawn(display, &log));
    wait_for_window(display, &mut children, i, &log, Duration::from_secs(60));
    let window = poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || format!("the window never showed lever-arm.stl:\n{}", read(&log)),
        || {
            let out = xdotool(
                display,
                &["search", "--onlyvisible", "--name", "lever-arm.stl"],
            );
            let id = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()?
                .trim()
                .to_string();
            Some(id)
        },
    );
    screenshot_of(display, &window, "model-argument-window");
    let took = quit(display, &window, children.get(i), Quit::CtrlQ);
    assert!(took < QUIT_LIMIT, "quitting took {took:?}");
}

/// On a desktop with no session bus, and so no portal, Ctrl-O opens Millpond's own file
/// browser (the desktop's dialog would answer nothing, as if cancelled) and says why.
#[test]
fn without_a_desktop_portal_open_uses_the_built_in_browser() {
    let Some(_one) = guard() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut children = Children::default();
    let display = start_xvfb(&mut children);
    let mut run = Run::new();
    run.unset.push("DBUS_SESSION_BUS_ADDRESS");
    run.env
        .push(("XDG_RUNTIME_DIR", dir.path().display().to_string()));
    let log = dir.path().join("log.txt");
    let i = children.add("millpond", run.spawn(display, &log));
    let window = wait_for_window(display, &mut children, i, &log, Duration::from_secs(60));
    let _ = xdotool(display, &["windowfocus", "--sync", &window]);
    let out = xdotool(display, &["key", "--clearmodifiers", "ctrl+o"]);
    assert!(out.status.success());
    poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || format!("no fallback to the built-in browser:\n{}", read(&log)),
        || {
            read(&log)
                .contains("using Millpond's own file browser")
                .then_some(())
        },
    );
    assert!(
        read(&log).contains("no D-Bus session bus"),
        "{}",
        read(&log)
    );
    std::thread::sleep(Duration::from_millis(500));
    screenshot_of(display, &window, "built-in-file-browser");
    let took = quit(display, &window, children.get(i), Quit::CtrlQ);
    assert!(took < QUIT_LIMIT, "quitting took {took:?}");
}

#[test]
fn computing_window_quits_on_ctrl_q_within_half_a_second() {
    quits_within_half_a_second("computing", "1", Duration::from_secs(2), Quit::CtrlQ);
}

#[test]
fn closing_the_window_while_computing_quits_within_half_a_second() {
    quits_within_half_a_second("closed", "1", Duration::from_secs(2), Quit::CloseButton);
}

/// A free UDP port on loopback (bound and released: another process may take it, but the
/// window is short).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

#[test]
fn server_mode_with_a_peer_and_a_job_in_flight_quits_and_the_peer_sees_it() {
    let Some(_one) = guard() else { return };
    let mut children = Children::default();
    let display = start_xvfb(&mut children);
    let run = Run::new();
    let secret = millpond_net::Secret::generate();
    // The app's secret, where Preferences keep it; the peer reads a copy.
    millpond::gui::preferences::save_secret(run.config.path(), &secret).unwrap();
    let peer_dir = tempfile::tempdir().unwrap();
    let secret_file = peer_dir.path().join("secret");
    secret.save(&secret_file).unwrap();

    let port = free_udp_port();
    let peer_log = peer_dir.path().join("peer.log");
    let peer = Command::new(env!("CARGO_BIN_EXE_millpond"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "1",
            "--name",
            "peer",
        ])
        .arg("--secret-file")
        .arg(&secret_file)
        .env("MILLPOND_CONFIG_DIR", peer_dir.path())
        .env("MILLPOND_LOG", "info,millpond_net=debug")
        .env_remove("MILLPOND_POOL_SECRET")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&peer_log).unwrap())
        .spawn()
        .expect("start millpond serve");
    let p = children.add("millpond serve", peer);
    let t0 = Instant::now();
    while !read(&peer_log).contains("serving on") {
        assert!(
            children.get(p).try_wait().unwrap().is_none(),
            "millpond serve exited:\n{}",
            read(&peer_log)
        );
        assert!(t0.elapsed() < Duration::from_secs(20), "peer never started");
        std::thread::sleep(Duration::from_millis(20));
    }

    let prefs = millpond::gui::preferences::Preferences {
        server_mode: true,
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        remote_servers: vec![format!("127.0.0.1:{port}")],
        local_workers: 1,
        node_name: "xvfb-app".into(),
        ..Default::default()
    };
    prefs.save(run.config.path()).unwrap();
    // With the Process Statistics panel open, for the screenshot.
    std::fs::write(
        run.config.path().join("session.json"),
        r#"{"show_stats": true}"#,
    )
    .unwrap();
    let mut run = run;
    run.env.push(("MILLPOND_AUTOSTART", "1".into()));
    run.env.push(("MILLPOND_LOG", "info".into()));
    let log = run.config.path().join("millpond.log");
    let app = run.spawn(display, &log);
    let a = children.add("millpond", app);
    let window = wait_for_window(display, &mut children, a, &log, Duration::from_secs(60));
    // The peer is linked and has taken part of the job.
    let t0 = Instant::now();
    loop {
        let l = read(&peer_log);
        if l.contains("linked to xvfb-app") && l.contains("announced") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the peer never joined the job.\npeer:\n{l}\napp:\n{}",
            read(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    screenshot(display, "server-mode");
    let took = quit(display, &window, children.get(a), Quit::CtrlQ);
    let quit_at = Instant::now();
    eprintln!(
        "server mode: Ctrl-Q to exit in {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    assert!(took < QUIT_LIMIT, "quitting took {took:?}\n{}", read(&log));
    // The peer sees the close at once (not after an idle timeout) and drops the job.
    loop {
        let l = read(&peer_log);
        if l.contains("peer quit") && l.contains("over here: computed") {
            eprintln!(
                "peer noticed the close within {:.0} ms",
                quit_at.elapsed().as_secs_f64() * 1e3
            );
            break;
        }
        assert!(
            quit_at.elapsed() < Duration::from_secs(2),
            "the peer did not see the close:\n{l}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        children.get(p).try_wait().unwrap().is_none(),
        "the peer must keep serving"
    );
}

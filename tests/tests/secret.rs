//! The pool secret's hygiene across real processes (issue 17, point 5): a secret file other
//! users can open is refused with the command that fixes it; the environment variable is
//! gone from the process once read, so a child process does not inherit it, while the app
//! still uses the secret it gave; `millpond serve` leaves the pool cleanly on SIGHUP as on
//! SIGTERM, and says nothing of the secret.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "millpond-secret-test-secret";
const ENV: &str = millpond_net::SECRET_ENV;

/// A child killed when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `millpond ARGS` in `dir`, its own config folder, nothing of the test's environment that
/// would change it.
fn millpond(dir: &Path) -> Command {
    let mut cmd = Command::new(millpond_tests::millpond_bin());
    cmd.current_dir(dir)
        .env("MILLPOND_CONFIG_DIR", dir.join("config"))
        .env_remove(ENV)
        .env_remove("MILLPOND_LOG")
        .env_remove("MILLPOND_TEST_PROTOCOL_VERSION")
        .env_remove("MILLPOND_TEST_COMPUTE_ABI");
    cmd
}

/// Runs the program that starts as `millpond` does and then starts a child process, with the
/// secret in the environment: it reads the secret, and neither it nor its child has the
/// variable any more.
#[test]
fn a_child_process_does_not_inherit_the_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_millpond-secret-env"))
        .env(ENV, format!("  {SECRET}\n"))
        .output()
        .expect("run millpond-secret-env");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "taken: Ok(())",
            &format!("secret: {} bytes", SECRET.len()),
            "parent: absent",
            "child: absent",
        ],
        "{text}"
    );
    // Without the variable: nothing taken, nothing to read, nothing inherited.
    let out = Command::new(env!("CARGO_BIN_EXE_millpond-secret-env"))
        .env_remove(ENV)
        .output()
        .expect("run millpond-secret-env");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("secret: none") && text.contains("child: absent"),
        "{text}"
    );
}

#[cfg(unix)]
#[test]
fn serve_refuses_a_secret_file_others_can_read_and_says_how_to_fix_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, SECRET).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = millpond(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
        .arg("--secret-file")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("run millpond serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let name = file.display().to_string();
    assert!(
        err.contains(&format!(
            "the pool secret file {name} can be used by other users"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("chmod 600 {name}")), "{err}");
    assert!(!err.contains(SECRET), "the secret is in the error:\n{err}");
}

/// `millpond serve`, given its secret in the environment (which it takes out of it), leaves
/// the pool within 0.5 s of SIGHUP and of SIGTERM, with its goodbye, and exits 0; its log
/// never shows the secret.
#[test]
fn serve_leaves_the_pool_cleanly_on_sighup_as_on_sigterm() {
    use rustix::process::Signal;
    let dir = tempfile::tempdir().unwrap();
    for (sig, name) in [(Signal::HUP, "hup"), (Signal::TERM, "term")] {
        let log = dir.path().join(format!("{name}.log"));
        let mut serve = Killed(
            millpond(dir.path())
                .env(ENV, SECRET)
                .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start millpond serve"),
        );
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !read().contains("serving on ") {
            if let Some(status) = serve.0.try_wait().unwrap() {
                panic!("serve exited ({status}) before serving:\n{}", read());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start:\n{}",
                read()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = rustix::process::Pid::from_raw(serve.0.id() as i32).expect("a process id");
        let t = Instant::now();
        rustix::process::kill_process(pid, sig).expect("signal serve");
        let status = loop {
            if let Some(status) = serve.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "serve still running 5 s after {sig:?}:\n{}",
                read()
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = t.elapsed();
        let text = read();
        assert!(
            status.success(),
            "{sig:?}: serve exited with {status}:\n{text}"
        );
        assert!(
            text.contains("left the pool in"),
            "{sig:?}: no goodbye:\n{text}"
        );
        assert!(took < Duration::from_millis(500), "{sig:?}: took {took:?}");
        assert!(!text.contains(SECRET), "the secret is in the log:\n{text}");
    }
}

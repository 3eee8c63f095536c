//! A test-only program for `tests/secret.rs` (never shipped): it starts as `millpond`'s
//! `main` does — `take_env_secret` before anything else — reads the secret as the app does
//! (`Secret::from_env`), then starts a child process (itself, with `--child`), which says
//! whether the environment it inherited holds `MILLPOND_POOL_SECRET`. `millpond` itself
//! starts no child process to look at, so this one shows what any child of it would inherit.

use millpond_net::secret::{SECRET_ENV, Secret, take_env_secret};
use std::process::{Command, ExitCode};

fn state(present: bool) -> &'static str {
    if present { "present" } else { "absent" }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--child") {
        println!("child: {}", state(std::env::var_os(SECRET_ENV).is_some()));
        return ExitCode::SUCCESS;
    }
    let taken = take_env_secret();
    println!("taken: {taken:?}");
    match Secret::from_env() {
        Some(Ok(s)) => println!("secret: {} bytes", s.as_bytes().len()),
        Some(Err(e)) => println!("secret: {e}"),
        None => println!("secret: none"),
    }
    println!("parent: {}", state(std::env::var_os(SECRET_ENV).is_some()));
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("millpond-secret-env: {e}");
            return ExitCode::FAILURE;
        }
    };
    match Command::new(exe).arg("--child").output() {
        Ok(out) => {
            print!("{}", String::from_utf8_lossy(&out.stdout));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("millpond-secret-env: cannot start the child: {e}");
            ExitCode::FAILURE
        }
    }
}

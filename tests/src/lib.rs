//! Shared helpers for Millpond's end-to-end tests and benchmark.

pub mod oracle;
pub mod pool;

use millpond_core::{DropCutter, Point3};
use millpond_net::splitmix::SplitMix64;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The `millpond` binary next to the running test executable, built first with the same
/// profile: when it is up to date that is a no-op, and it keeps tests from silently running a
/// stale binary after `app/` changed.
pub fn millpond_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of the test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable is in target/<profile>/deps");
        let bin = profile_dir.join(format!("millpond{}", std::env::consts::EXE_SUFFIX));
        let release = profile_dir.file_name() == Some(OsStr::new("release"));
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "-p", "millpond"]);
        // Cargo runs tests with variables describing the test's package; some build scripts
        // (ring's) track CARGO_MANIFEST_DIR, so passing them on would make this build and the
        // next `cargo test` rebuild ring, rustls, quinn and everything above, each time.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                ]
                .contains(&key.as_ref())
            {
                build.env_remove(key.as_ref());
            }
        }
        if release {
            build.arg("--release");
        }
        match build.current_dir(WORKSPACE).status() {
            Ok(status) => assert!(status.success(), "building millpond failed: {status}"),
            // No cargo at run time (the test executable was copied elsewhere): use what is there.
            Err(e) => assert!(bin.exists(), "cannot run cargo to build millpond: {e}"),
        }
        assert!(bin.exists(), "{} does not exist", bin.display());
        bin
    })
}

/// A command's output as text (it must be UTF-8).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

/// Asserts that a `millpond` run succeeded, showing its status and both streams if not.
pub fn assert_succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "millpond failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Writes a pool secret file readable only by its owner (mode 0600), as `millpond` requires
/// of one (a file others can open is refused).
pub fn write_secret_file(path: &Path, secret: &str) {
    std::fs::write(path, secret).expect("write the secret file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("make the secret file private");
    }
}

/// The worst the dropped cutter rises above a straight move from `a` to `b`, sampled every
/// `every` mm (or finer): an independent check of the exact swept tests.
pub fn sampled_rise(dc: &DropCutter<'_>, a: Point3, b: Point3, every: f64) -> f64 {
    let n = ((a.distance_xy(b) / every).ceil() as usize).max(1);
    (0..=n)
        .map(|k| {
            let p = a + (b - a) * (k as f64 / n as f64);
            dc.at(p.x, p.y) - p.z
        })
        .fold(f64::NEG_INFINITY, f64::max)
}

/// A small deterministic PRNG (the pool's SplitMix64), so generated test meshes are the same
/// on every run without pulling a random-number crate into the build.
#[derive(Debug, Clone)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.0.next_f64()
    }
}

//! The pool secret: from Preferences (a file readable only by the user), a file named on the
//! command line, or an environment variable — never a plain command-line value, which every
//! user of the machine can read in the process list.
//!
//! Hygiene (ARCHITECTURE.md §4.2): a secret file that other users can open is refused (with
//! the `chmod` that fixes it); the environment variable is taken out of the environment at
//! start ([`take_env_secret`]), so no child process inherits it; every copy of the secret's
//! bytes is zeroed when dropped; files are written through a temporary file created new,
//! never through a link, readable only by the user ([`write_private`]).

use std::path::Path;
use std::sync::OnceLock;
use zeroize::{Zeroize, Zeroizing};

/// Environment variable holding the pool secret.
pub const SECRET_ENV: &str = "MILLPOND_POOL_SECRET";

/// The saved secret's file name in Millpond's config folder. Preferences writes it; `millpond
/// serve` and `millpond toolpath --pool` read it when no other secret is given, so a machine
/// set up in the window serves headless with the same secret.
pub const SECRET_FILE: &str = "pool-secret";

/// A pool secret. Its `Debug` never shows the value, and its bytes are zeroed when it is
/// dropped (each clone's too).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the pool secret from {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the pool secret in {0} is empty")]
    Empty(String),
    #[error("the pool secret must be at least 8 characters ({0} has {1})")]
    TooShort(String, usize),
    #[error("{0} is too large to be a pool secret (more than {MAX_SECRET_FILE} bytes)")]
    TooLarge(String),
    /// The file's mode lets other users read, write or run it.
    #[error(
        "the pool secret file {path} can be used by other users (mode {mode:03o}); \
         make it private with: chmod 600 {quoted}",
        quoted = shell_quoted(path)
    )]
    Exposed { path: String, mode: u32 },
}

/// Longest secret file read, bytes: a secret is a line of text.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The secret [`take_env_secret`] took out of the environment, if it was called.
static TAKEN_FROM_ENV: OnceLock<Option<Zeroizing<Vec<u8>>>> = OnceLock::new();

/// Takes the pool secret out of this process's environment ([`SECRET_ENV`]) and keeps it
/// here, for [`Secret::from_env`]: child processes (anything the app or a library it uses
/// starts) no longer inherit it. Call it first thing in `main`, before any thread starts.
///
/// Removing an environment variable is only sound while no other thread can read or change
/// the environment (the C library's `getenv` and `setenv` take no lock), which is why
/// `std::env::remove_var` is `unsafe`. This function checks it rather than asking the caller
/// to promise it: it removes the variable only when the process has exactly one thread (on
/// Linux, one entry in `/proc/self/task`; the thread running this cannot start another
/// meanwhile), and otherwise leaves it where it is and says why. Elsewhere the thread count
/// cannot be read, and the variable stays. The value read is kept either way.
///
/// What this cannot do: the process's original environment block (which `/proc/PID/environ`
/// shows to the same user) is not rewritten.
pub fn take_env_secret() -> Result<(), String> {
    let value = std::env::var_os(SECRET_ENV);
    let present = value.is_some();
    let value = value.map(|v| Zeroizing::new(v.into_encoded_bytes()));
    if TAKEN_FROM_ENV.set(value).is_err() {
        return Err("the pool secret was already taken from the environment".into());
    }
    if !present {
        return Ok(());
    }
    let threads = thread_count()
        .map_err(|e| format!("{SECRET_ENV} left in the environment: cannot count threads: {e}"))?;
    if threads != 1 {
        return Err(format!(
            "{SECRET_ENV} left in the environment: {threads} threads are running"
        ));
    }
    // SAFETY: this process has exactly one thread (checked just above), the one running
    // this function, so nothing else can read or write the environment while the variable
    // is removed, and nothing can start another thread before `remove_var` returns.
    #[allow(unsafe_code)]
    unsafe {
        std::env::remove_var(SECRET_ENV);
    }
    Ok(())
}

/// Threads of this process.
fn thread_count() -> std::io::Result<usize> {
    if cfg!(target_os = "linux") {
        Ok(std::fs::read_dir("/proc/self/task")?.count())
    } else {
        Err(std::io::Error::other("threads are counted on Linux only"))
    }
}

impl Secret {
    /// The secret in `bytes` (surrounding whitespace ignored); `source` names where it came
    /// from, for errors. The bytes given are zeroed once copied.
    pub fn new(bytes: impl Into<Vec<u8>>, source: &str) -> Result<Self, SecretError> {
        let given = Zeroizing::new(bytes.into());
        let trimmed = given.trim_ascii();
        if trimmed.is_empty() {
            return Err(SecretError::Empty(source.into()));
        }
        if trimmed.len() < 8 {
            return Err(SecretError::TooShort(source.into(), trimmed.len()));
        }
        Ok(Self(Zeroizing::new(trimmed.to_vec())))
    }

    /// Reads a secret file (surrounding whitespace ignored). A file other users may read,
    /// write or run (any group or other bit of its mode) is refused, with the command that
    /// makes it private.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        use std::io::Read;
        let name = path.display().to_string();
        let read_error = |error| SecretError::Read {
            path: name.clone(),
            error,
        };
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        // The mode of the file opened, not of whatever the path names a moment later.
        let meta = file.metadata().map_err(read_error)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SecretError::Exposed { path: name, mode });
            }
        }
        // Room for it all at once: no reallocation leaves a copy behind.
        let room = meta.len().min(MAX_SECRET_FILE) as usize + 1;
        let mut bytes = Zeroizing::new(Vec::with_capacity(room));
        (&mut file)
            .take(MAX_SECRET_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_SECRET_FILE {
            return Err(SecretError::TooLarge(name));
        }
        Self::new(std::mem::take(&mut *bytes), &name)
    }

    /// The secret from `MILLPOND_POOL_SECRET`, if set: as it was when [`take_env_secret`]
    /// took it out of the environment, or (if nothing took it) as the environment has it.
    pub fn from_env() -> Option<Result<Self, SecretError>> {
        match TAKEN_FROM_ENV.get() {
            Some(taken) => taken.as_ref().map(|v| Self::new(v.to_vec(), SECRET_ENV)),
            None => {
                std::env::var_os(SECRET_ENV).map(|v| Self::new(v.into_encoded_bytes(), SECRET_ENV))
            }
        }
    }

    /// A new random secret: 20 random bytes as 32 base32 characters, easy to read out.
    pub fn generate() -> Self {
        use ring::rand::SecureRandom;
        let mut raw = Zeroizing::new([0u8; 20]);
        ring::rand::SystemRandom::new()
            .fill(&mut *raw)
            .expect("the system random generator works");
        const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
        let mut bits = 0u32;
        let mut nbits = 0;
        let mut out = Zeroizing::new(Vec::with_capacity(32));
        for &b in raw.iter() {
            bits = (bits << 8) | u32::from(b);
            nbits += 8;
            while nbits >= 5 {
                nbits -= 5;
                out.push(ALPHABET[((bits >> nbits) & 31) as usize]);
            }
        }
        bits.zeroize();
        Self(out)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, for showing it on request (Preferences' "Show"); zeroed when
    /// dropped, like the secret.
    pub fn reveal(&self) -> Zeroizing<String> {
        Zeroizing::new(String::from_utf8_lossy(&self.0).into_owned())
    }

    /// Saves the secret to a file readable only by the user.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_private(path, &self.0)
    }

    /// The secret saved in the config folder `config_dir` ([`SECRET_FILE`]), if one was.
    pub fn load_saved(config_dir: &Path) -> Result<Option<Self>, SecretError> {
        let path = config_dir.join(SECRET_FILE);
        if !path.exists() {
            return Ok(None);
        }
        Self::from_file(&path).map(Some)
    }

    /// Saves the secret in the config folder `config_dir` ([`SECRET_FILE`]), readable only
    /// by the user. Returns the file written.
    pub fn save_in(&self, config_dir: &Path) -> std::io::Result<std::path::PathBuf> {
        let path = config_dir.join(SECRET_FILE);
        self.save(&path)?;
        Ok(path)
    }
}

/// `path` as one word for a POSIX shell (single-quoted unless it is plain).
fn shell_quoted(path: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c);
    if !path.is_empty() && path.chars().all(plain) {
        path.to_string()
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}

/// Writes a file that only its owner can read (mode 0600 on Unix), replacing it atomically:
/// through a temporary file beside it, created new ([`create_private`]) under a random name,
/// synced, then renamed over `path` (a rename replaces a link at `path`, never its target).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or("secret".into(), |n| n.to_string_lossy());
    let mut attempt = 0u64;
    let (tmp, mut f) = loop {
        // Unique per process and write: two members starting at once must not share one,
        // and nobody can guess the name to put something there first.
        let tag = random_u64().unwrap_or(attempt);
        let tmp = dir.join(format!(".{name}.{}.{tag:016x}.tmp", std::process::id()));
        match create_private(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates a new file readable and writable only by its owner: it fails if anything —
/// a file, or a link to a file that exists or not — is at `path` already (`O_EXCL`,
/// `O_NOFOLLOW`), so whoever planted it gains nothing, and the file starts with mode 0600
/// (never wider for a moment).
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    opts.open(path)
}

fn random_u64() -> Option<u64> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new().fill(&mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let (a, b) = (Secret::generate(), Secret::generate());
        assert_eq!(a.as_bytes().len(), 32);
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Secret(…)");
    }

    #[test]
    fn saved_secret_is_private_and_reads_back() {
        let dir = tempdir("saved");
        assert_eq!(Secret::load_saved(&dir).unwrap(), None, "nothing saved yet");
        let s = Secret::generate();
        let path = s.save_in(&dir).unwrap();
        assert_eq!(path, dir.join(SECRET_FILE));
        assert_eq!(Secret::from_file(&path).unwrap(), s);
        assert_eq!(Secret::load_saved(&dir).unwrap(), Some(s));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "secret readable by others: {mode:o}");
        }
        // No temporary file is left beside it.
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(Secret::new("  ", "x"), Err(SecretError::Empty(_))));
        assert!(matches!(
            Secret::new("short", "x"),
            Err(SecretError::TooShort(..))
        ));
    }

    /// A fresh directory under the system's temporary one.
    fn tempdir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "millpond-secret-{tag}-{}-{:x}",
            std::process::id(),
            random_u64().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A secret file that group or others can read or write is refused, naming the file and
    /// the command that fixes it (quoted for the shell); once fixed, it is read.
    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_can_open_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir("exposed");
        let path = dir.join("my secret");
        std::fs::write(&path, "correct horse battery\n").unwrap();
        let chmod =
            |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666, 0o610] {
            chmod(mode);
            let e = Secret::from_file(&path).expect_err("an exposed file");
            let text = e.to_string();
            assert!(
                matches!(e, SecretError::Exposed { mode: m, .. } if m == mode),
                "{mode:o}: {e:?}"
            );
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(
                text.ends_with(&format!("chmod 600 '{}'", path.display())),
                "{text}"
            );
        }
        for mode in [0o600, 0o400] {
            chmod(mode);
            let s = Secret::from_file(&path).expect("a private file");
            assert_eq!(s.as_bytes(), b"correct horse battery");
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(shell_quoted("/home/a/pool-secret"), "/home/a/pool-secret");
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
    }

    /// The temporary file is created new: a file or a link already at its path (even one
    /// to nowhere, which a plain create would follow and make) fails the write, and the
    /// link's target is not created. Writing over a link at the final path replaces the
    /// link, never the file it points to.
    #[cfg(unix)]
    #[test]
    fn private_files_are_created_new_and_never_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir("links");
        let target = dir.join("target");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_private(&link).is_err(), "created through a link");
        assert!(!target.exists(), "the link's target was created");
        std::fs::write(&target, "theirs").unwrap();
        assert!(create_private(&link).is_err());
        assert!(
            create_private(&target).is_err(),
            "an existing file reopened"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "theirs");
        let fresh = dir.join("fresh");
        drop(create_private(&fresh).unwrap());
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        write_private(&link, b"ours").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "theirs");
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "ours");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The pool secret: from Preferences (a file readable only by the user), a file named on the
//! command line, or an environment variable — never a plain command-line value, which every
//! user of the machine can read in the process list.

use std::path::Path;

/// Environment variable holding the pool secret.
pub const SECRET_ENV: &str = "MILLPOND_POOL_SECRET";

/// The saved secret's file name in Millpond's config folder. Preferences writes it; `millpond
/// serve` and `millpond toolpath --pool` read it when no other secret is given, so a machine
/// set up in the window serves headless with the same secret.
pub const SECRET_FILE: &str = "pool-secret";

/// A pool secret. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

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
}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>, source: &str) -> Result<Self, SecretError> {
        let s: Vec<u8> = bytes.into();
        let trimmed = s.trim_ascii().to_vec();
        if trimmed.is_empty() {
            return Err(SecretError::Empty(source.into()));
        }
        if trimmed.len() < 8 {
            return Err(SecretError::TooShort(source.into(), trimmed.len()));
        }
        Ok(Self(trimmed))
    }

    /// Reads a secret file (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let bytes = std::fs::read(path).map_err(|error| SecretError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Self::new(bytes, &path.display().to_string())
    }

    /// The secret from `MILLPOND_POOL_SECRET`, if set.
    pub fn from_env() -> Option<Result<Self, SecretError>> {
        std::env::var_os(SECRET_ENV)
            .map(|v| Self::new(v.to_string_lossy().as_bytes().to_vec(), SECRET_ENV))
    }

    /// A new random secret: 20 random bytes as 32 base32 characters, easy to read out.
    pub fn generate() -> Self {
        use ring::rand::SecureRandom;
        let mut raw = [0u8; 20];
        ring::rand::SystemRandom::new()
            .fill(&mut raw)
            .expect("the system random generator works");
        const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
        let mut bits = 0u32;
        let mut nbits = 0;
        let mut out = Vec::with_capacity(32);
        for b in raw {
            bits = (bits << 8) | u32::from(b);
            nbits += 8;
            while nbits >= 5 {
                nbits -= 5;
                out.push(ALPHABET[((bits >> nbits) & 31) as usize]);
            }
        }
        Self(out)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, for showing it on request (Preferences' "Show").
    pub fn reveal(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
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

/// Writes a file that only its owner can read (mode 0600 on Unix), replacing it atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Unique per process: two members starting at once must not share a temporary file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map_or("secret".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
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
        let dir = std::env::temp_dir().join(format!("millpond-secret-{}", std::process::id()));
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
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(Secret::new("  ", "x"), Err(SecretError::Empty(_))));
        assert!(matches!(
            Secret::new("short", "x"),
            Err(SecretError::TooShort(..))
        ));
    }
}

//! Small JSON files under the config folder: preferences, the tool library, recent files.
//!
//! Settings are the user's work, so a damaged file must never stop the app from starting:
//! [`load_json`] reports what was wrong and the caller falls back to defaults, and
//! [`save_json`] writes through a temporary file so a crash mid-write leaves the old file.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads `path` as JSON. A missing file gives `Ok(None)`; an unreadable or malformed one an
/// error naming the file.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{} is damaged ({e}); using defaults", path.display()))
}

/// Writes `value` as pretty JSON, replacing `path` atomically.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    millpond_core::job_file::write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.json");
        assert_eq!(load_json::<Vec<u32>>(&path), Ok(None));
        save_json(&path, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(load_json::<Vec<u32>>(&path), Ok(Some(vec![1, 2, 3])));
        std::fs::write(&path, b"{not json").unwrap();
        let err = load_json::<Vec<u32>>(&path).unwrap_err();
        assert!(err.contains("x.json") && err.contains("damaged"), "{err}");
    }
}

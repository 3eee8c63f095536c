//! The detached jobs this user submitted from the window, remembered across restarts
//! (ARCHITECTURE.md §6.5): `detached-jobs.toml` in the config folder, one `[[job]]` per job
//! (the member's address, the id, the program's title, when it was submitted), the last
//! [`MAX_REMEMBERED`] kept. Written through a temporary file; a damaged file is said in a
//! banner, kept beside as `detached-jobs.toml.damaged` and replaced by an empty list — the
//! window always starts.

use millpond_net::detached::DetachedId;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DETACHED_FILE: &str = "detached-jobs.toml";
/// The most jobs remembered: as many as a member keeps (§4.13), the oldest forgotten first.
pub const MAX_REMEMBERED: usize = 64;

/// One job submitted from the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The member it was sent to, HOST:PORT as Preferences lists it.
    pub member: String,
    pub id: DetachedId,
    /// The program's title (the model's name).
    pub title: String,
    /// When it was submitted, seconds since 1970 (this computer's clock).
    pub submitted: u64,
}

impl Submitted {
    /// Which job this is: its member and its id.
    pub fn key(&self) -> (String, DetachedId) {
        (self.member.clone(), self.id)
    }
}

/// How a job is written in the file (the id as `millpond submit` prints it).
#[derive(Serialize, Deserialize)]
struct Row {
    member: String,
    id: String,
    title: String,
    submitted: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct FileForm {
    #[serde(default)]
    job: Vec<Row>,
}

/// The remembered jobs, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remembered {
    pub jobs: Vec<Submitted>,
}

/// Seconds since 1970 now (0 if the clock is before it).
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Remembered {
    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join(DETACHED_FILE)
    }

    /// Reads the list (empty if there is none). A damaged file gives an empty list and
    /// says so; the file is moved aside (`….damaged`) so the next save does not lose it
    /// silently. Rows that cannot be read are left out, and said.
    pub fn load(config_dir: &Path) -> (Self, Option<String>) {
        let path = Self::path(config_dir);
        let text = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Self::default(), None),
            Err(e) => {
                return (
                    Self::default(),
                    Some(format!(
                        "cannot read {}: {e}; the detached jobs are not listed",
                        path.display()
                    )),
                );
            }
        };
        let parsed = std::str::from_utf8(&text)
            .map_err(|e| e.to_string())
            .and_then(|t| toml::from_str::<FileForm>(t).map_err(|e| e.to_string()));
        let form = match parsed {
            Ok(f) => f,
            Err(e) => {
                let aside = path.with_extension("toml.damaged");
                let moved = std::fs::rename(&path, &aside).is_ok();
                let e = e.lines().next().unwrap_or_default().to_string();
                return (
                    Self::default(),
                    Some(format!(
                        "{} is damaged ({e}); the list of detached jobs starts again{}",
                        path.display(),
                        if moved {
                            format!(" (the damaged file is kept as {})", aside.display())
                        } else {
                            String::new()
                        }
                    )),
                );
            }
        };
        let mut bad = Vec::new();
        let mut list = Self::default();
        for row in form.job {
            match row.id.parse::<DetachedId>() {
                Ok(id) if !row.member.trim().is_empty() => list.add(Submitted {
                    member: row.member,
                    id,
                    title: row.title,
                    submitted: row.submitted,
                }),
                Ok(_) => bad.push(format!("job {} names no member", row.id)),
                Err(e) => bad.push(e),
            }
        }
        let warning = (!bad.is_empty()).then(|| {
            format!(
                "{}: {} left out ({})",
                path.display(),
                if bad.len() == 1 {
                    "one job".to_string()
                } else {
                    format!("{} jobs", bad.len())
                },
                bad.join("; ")
            )
        });
        (list, warning)
    }

    /// Writes the list through a temporary file.
    pub fn save(&self, config_dir: &Path) -> Result<(), String> {
        let path = Self::path(config_dir);
        let form = FileForm {
            job: self
                .jobs
                .iter()
                .map(|j| Row {
                    member: j.member.clone(),
                    id: j.id.to_string(),
                    title: j.title.clone(),
                    submitted: j.submitted,
                })
                .collect(),
        };
        let text = toml::to_string(&form).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(config_dir)
            .and_then(|()| millpond_core::job_file::write_atomically(&path, text.as_bytes()))
            .map_err(|e| format!("cannot save {}: {e}", path.display()))
    }

    /// Remembers a job (last), forgetting the oldest beyond [`MAX_REMEMBERED`].
    pub fn add(&mut self, job: Submitted) {
        self.jobs.retain(|j| j.key() != job.key());
        self.jobs.push(job);
        let over = self.jobs.len().saturating_sub(MAX_REMEMBERED);
        self.jobs.drain(..over);
    }

    /// Forgets a job; whether it was there.
    pub fn forget(&mut self, member: &str, id: DetachedId) -> bool {
        let before = self.jobs.len();
        self.jobs.retain(|j| !(j.member == member && j.id == id));
        self.jobs.len() != before
    }

    pub fn get(&self, member: &str, id: DetachedId) -> Option<&Submitted> {
        self.jobs.iter().find(|j| j.member == member && j.id == id)
    }

    /// The members the jobs were sent to, each once, in the order first used.
    pub fn members(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for j in &self.jobs {
            if !out.contains(&j.member) {
                out.push(j.member.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u128) -> Submitted {
        Submitted {
            member: format!("member-{}:1250", n % 3),
            id: DetachedId(n << 64 | 0xabc),
            title: format!("part \"{n}\" ünïcode.stl"),
            submitted: 1_700_000_000 + n as u64,
        }
    }

    #[test]
    fn the_list_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Remembered::load(dir.path()), (Remembered::default(), None));
        let mut list = Remembered::default();
        for n in 0..5 {
            list.add(job(n));
        }
        list.save(dir.path()).unwrap();
        let (back, warning) = Remembered::load(dir.path());
        assert_eq!(warning, None);
        assert_eq!(back, list);
        assert_eq!(back.members().len(), 3);
        // The id is written as `millpond submit` prints it, for a reader of the file.
        let text = std::fs::read_to_string(Remembered::path(dir.path())).unwrap();
        assert!(text.contains(&job(1).id.to_string()), "{text}");
        // Forget one, and the file says so after a save.
        assert!(list.forget(&job(2).member, job(2).id));
        assert!(!list.forget(&job(2).member, job(2).id));
        list.save(dir.path()).unwrap();
        assert_eq!(Remembered::load(dir.path()).0.jobs.len(), 4);
        // No temporary file left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(DETACHED_FILE)]);
    }

    #[test]
    fn the_list_keeps_the_last_64_and_each_job_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = Remembered::default();
        for n in 0..100 {
            list.add(job(n));
        }
        list.add(job(99)); // again: still once
        assert_eq!(list.jobs.len(), MAX_REMEMBERED);
        assert_eq!(list.jobs[0], job(36), "the oldest forgotten first");
        assert_eq!(list.jobs.last(), Some(&job(99)));
        list.save(dir.path()).unwrap();
        // A hand-edited file with more rows is bounded as it is read.
        let mut text = std::fs::read_to_string(Remembered::path(dir.path())).unwrap();
        for n in 200..220 {
            let j = job(n);
            text.push_str(&format!(
                "\n[[job]]\nmember = \"{}\"\nid = \"{}\"\ntitle = \"x\"\nsubmitted = 1\n",
                j.member, j.id
            ));
        }
        std::fs::write(Remembered::path(dir.path()), text).unwrap();
        let (back, warning) = Remembered::load(dir.path());
        assert_eq!(warning, None);
        assert_eq!(back.jobs.len(), MAX_REMEMBERED);
        assert_eq!(back.jobs.last().unwrap().id, job(219).id);
    }

    #[test]
    fn a_damaged_file_is_reported_kept_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = Remembered::path(dir.path());
        for damaged in [
            &b"[[job]\nmember = 1"[..],
            b"\xff\xfe not text",
            b"job = 7",
            b"[[job]]\nmember = \"a:1\"\n",
        ] {
            std::fs::write(&path, damaged).unwrap();
            let (list, warning) = Remembered::load(dir.path());
            assert!(list.jobs.is_empty());
            let w = warning.expect("said");
            assert!(w.contains(DETACHED_FILE) && w.contains("damaged"), "{w}");
            let aside = dir.path().join(format!("{DETACHED_FILE}.damaged"));
            assert_eq!(std::fs::read(&aside).unwrap(), damaged, "kept aside");
            assert!(!path.exists());
            // The next save replaces it with a good one.
            let mut list = list;
            list.add(job(1));
            list.save(dir.path()).unwrap();
            assert_eq!(Remembered::load(dir.path()).0.jobs, vec![job(1)]);
        }
        // A row with a bad id is left out and said; the others stay.
        let good = job(4);
        std::fs::write(
            &path,
            format!(
                "[[job]]\nmember = \"a:1\"\nid = \"not-an-id\"\ntitle = \"t\"\nsubmitted = 0\n\
                 [[job]]\nmember = \"{}\"\nid = \"{}\"\ntitle = \"{}\"\nsubmitted = {}\n",
                good.member, good.id, "part \\\"4\\\" ünïcode.stl", good.submitted
            ),
        )
        .unwrap();
        let (list, warning) = Remembered::load(dir.path());
        assert_eq!(list.jobs, vec![good]);
        let w = warning.unwrap();
        assert!(
            w.contains("one job left out") && w.contains("not-an-id"),
            "{w}"
        );
    }
}

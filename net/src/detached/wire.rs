//! What a detached-jobs client and the member serving it say (ARCHITECTURE.md §4.13): one
//! [`Request`] at a time on the authenticated connection's first stream, each answered by one
//! [`Reply`]. Both are control frames as the pool's (`u32` length + postcard, at most
//! [`MAX_FRAME`](crate::wire::MAX_FRAME), the length checked before allocating, every field
//! validated after decoding); a submit's job description and mesh, and a fetched program,
//! follow their frame as exactly the announced number of bytes, each size checked against
//! its limit before anything is read or allocated.

use crate::wire::{MAX_MESH, MAX_REASON, WireError};
use millpond_core::mesh::CANONICAL_TRIANGLE_BYTES;
use serde::{Deserialize, Serialize};

/// Longest job description (the app's encoding of a job file, post and overrides), bytes.
pub const MAX_DESCRIPTION: u64 = 1 << 20;
/// Longest title a detached job may carry, bytes.
pub const MAX_TITLE: usize = 128;
/// Longest program a member keeps for one job, and so the most a fetch may carry, bytes.
pub const MAX_PROGRAM: u64 = 512 << 20;
/// Most jobs a listing holds (the most a member keeps, `proto::detached::Limits`).
pub const MAX_LISTED: usize = 64;
/// Longest refusal text, bytes (a job file's error names file, line and field).
pub const MAX_ERROR: usize = 1024;

/// A detached job's name at the member that runs it: 128 bits from the system's random
/// source. Not a password — the pool secret is the boundary, and every holder of it may list,
/// fetch and cancel every job (`jobs` shows the ids) — but never reused: a counter would start
/// again at a member's restart, and an id saved before it (a script's, a window's) would fetch
/// another job's program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DetachedId(pub u128);

impl std::fmt::Display for DetachedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::str::FromStr for DetachedId {
    type Err = String;

    /// 32 hexadecimal digits, as `submit` printed them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{s:?} is not a job id (32 hexadecimal digits, as `millpond submit` prints)"
            ));
        }
        u128::from_str_radix(t, 16)
            .map(DetachedId)
            .map_err(|e| e.to_string())
    }
}

/// Client → member. A submit is two steps: its sizes first, which the member may refuse
/// before a byte of the model is sent ([`Reply::Send`] or [`Reply::Refused`]), then the bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Run this job detached. Followed by `description` bytes (the app's, opaque here), then
    /// `mesh` bytes: the placed model as `Mesh::canonical_bytes`.
    Submit {
        title: String,
        description: u64,
        mesh: u64,
    },
    /// Every job the member keeps.
    List,
    /// The program of a complete job.
    Fetch { id: DetachedId },
    /// Cancel a queued or running job.
    Cancel { id: DetachedId },
}

/// Where a detached job stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for a runner; `ahead` jobs run or wait before it.
    Queued {
        ahead: u32,
    },
    /// Computing: `done` of `total` chunks over all its operations.
    Running {
        done: u64,
        total: u64,
    },
    /// The program is kept: `bytes` of G-code.
    Complete {
        bytes: u64,
    },
    Failed {
        reason: String,
    },
    Cancelled,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobState::Queued { ahead: 0 } => f.write_str("queued"),
            JobState::Queued { ahead } => write!(f, "queued ({ahead} ahead)"),
            JobState::Running { done, total } => write!(f, "running {done}/{total}"),
            JobState::Complete { bytes } => write!(f, "complete ({bytes} bytes)"),
            JobState::Failed { reason } => write!(f, "failed: {reason}"),
            JobState::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// One job in a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    pub id: DetachedId,
    pub title: String,
    pub state: JobState,
    /// Seconds since it was submitted (the member's clock: no clocks to agree on).
    pub age_s: u64,
    /// Seconds it has run (or ran), 0 while queued.
    pub run_s: u64,
    /// Seconds left, from the chunks done and the time they took; `None` until one is done.
    pub eta_s: Option<u64>,
}

/// Member → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to a submit whose sizes the member has room for: send the bytes.
    Send,
    /// The job is queued under this id.
    Submitted { id: DetachedId },
    /// The jobs kept, oldest first.
    Jobs(Vec<JobRow>),
    /// The program follows: exactly `size` bytes.
    Program { size: u64 },
    /// The job is not complete: where it stands.
    NotReady(JobRow),
    /// The job was cancelled (or was already over: where it stands).
    Cancelled(JobRow),
    /// The request cannot be met, in these words (an unknown id, a full queue, a bad job).
    Refused(String),
}

fn invalid(m: String) -> Result<(), WireError> {
    Err(WireError::Invalid(m))
}

/// Decodes and validates a request body.
pub fn decode_request(body: &[u8]) -> Result<Request, WireError> {
    let r: Request = crate::wire::decode_whole(body)?;
    if let Request::Submit {
        title,
        description,
        mesh,
    } = &r
    {
        if title.len() > MAX_TITLE {
            invalid(format!("title of {} bytes", title.len()))?;
        }
        if *description > MAX_DESCRIPTION {
            invalid(format!(
                "job description of {description} bytes (at most {MAX_DESCRIPTION})"
            ))?;
        }
        if *mesh == 0 || *mesh > MAX_MESH || !mesh.is_multiple_of(CANONICAL_TRIANGLE_BYTES as u64) {
            invalid(format!("mesh of {mesh} bytes is not acceptable"))?;
        }
    }
    Ok(r)
}

fn check_row(row: &JobRow) -> Result<(), WireError> {
    if row.title.len() > MAX_TITLE {
        invalid(format!("title of {} bytes", row.title.len()))?;
    }
    match &row.state {
        JobState::Running { done, total } if done > total => {
            invalid(format!("{done} of {total} chunks done"))?
        }
        JobState::Complete { bytes } if *bytes > MAX_PROGRAM => {
            invalid(format!("program of {bytes} bytes"))?
        }
        JobState::Failed { reason } if reason.len() > MAX_REASON => {
            invalid(format!("failure reason of {} bytes", reason.len()))?
        }
        _ => {}
    }
    Ok(())
}

/// Decodes and validates a reply body.
pub fn decode_reply(body: &[u8]) -> Result<Reply, WireError> {
    let r: Reply = crate::wire::decode_whole(body)?;
    match &r {
        Reply::Jobs(rows) => {
            if rows.len() > MAX_LISTED {
                invalid(format!("{} jobs listed", rows.len()))?;
            }
            rows.iter().try_for_each(check_row)?;
        }
        Reply::Program { size } if *size > MAX_PROGRAM => {
            invalid(format!("program of {size} bytes"))?
        }
        Reply::NotReady(row) | Reply::Cancelled(row) => check_row(row)?,
        Reply::Refused(text) if text.len() > MAX_ERROR => {
            invalid(format!("refusal of {} bytes", text.len()))?
        }
        _ => {}
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode;

    fn row(state: JobState) -> JobRow {
        JobRow {
            id: DetachedId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            title: "part.stl".into(),
            state,
            age_s: 12,
            run_s: 10,
            eta_s: Some(5),
        }
    }

    fn every_reply() -> Vec<Reply> {
        vec![
            Reply::Send,
            Reply::Submitted { id: DetachedId(7) },
            Reply::Jobs(vec![
                row(JobState::Queued { ahead: 2 }),
                row(JobState::Running { done: 3, total: 10 }),
                row(JobState::Complete { bytes: 1000 }),
                row(JobState::Failed {
                    reason: "x".repeat(MAX_REASON),
                }),
                row(JobState::Cancelled),
            ]),
            Reply::Program { size: MAX_PROGRAM },
            Reply::NotReady(row(JobState::Queued { ahead: 0 })),
            Reply::Cancelled(row(JobState::Cancelled)),
            Reply::Refused("no such job".into()),
        ]
    }

    fn every_request() -> Vec<Request> {
        vec![
            Request::Submit {
                title: "t".repeat(MAX_TITLE),
                description: MAX_DESCRIPTION,
                mesh: 72 * 1000,
            },
            Request::List,
            Request::Fetch { id: DetachedId(1) },
            Request::Cancel {
                id: DetachedId(u128::MAX),
            },
        ]
    }

    #[test]
    fn requests_and_replies_round_trip_and_a_full_listing_fits_a_frame() {
        for r in every_request() {
            assert_eq!(decode_request(&encode(&r).unwrap()[4..]).unwrap(), r);
        }
        for r in every_reply() {
            assert_eq!(decode_reply(&encode(&r).unwrap()[4..]).unwrap(), r);
        }
        // The largest listing: every row at its longest.
        let mut long = row(JobState::Failed {
            reason: "é".repeat(MAX_REASON / 2),
        });
        long.title = "t".repeat(MAX_TITLE);
        long.eta_s = Some(u64::MAX);
        let full = Reply::Jobs(vec![long; MAX_LISTED]);
        assert!(encode(&full).is_ok(), "a full listing exceeds a frame");
        assert!(
            decode_reply(&encode(&Reply::Refused("e".repeat(MAX_ERROR))).unwrap()[4..]).is_ok()
        );
    }

    #[test]
    fn every_size_and_count_is_checked() {
        let submit = |title: usize, description: u64, mesh: u64| Request::Submit {
            title: "t".repeat(title),
            description,
            mesh,
        };
        for bad in [
            submit(MAX_TITLE + 1, 10, 72),
            submit(1, MAX_DESCRIPTION + 1, 72),
            submit(1, 10, 0),
            submit(1, 10, 71),
            submit(1, 10, MAX_MESH + 72),
            submit(1, 10, u64::MAX),
        ] {
            assert!(
                matches!(
                    decode_request(&encode(&bad).unwrap()[4..]),
                    Err(WireError::Invalid(_))
                ),
                "{bad:?} accepted"
            );
        }
        let mut titled = row(JobState::Cancelled);
        titled.title = "t".repeat(MAX_TITLE + 1);
        for bad in [
            Reply::Jobs(vec![row(JobState::Cancelled); MAX_LISTED + 1]),
            Reply::Jobs(vec![titled.clone()]),
            Reply::NotReady(titled),
            Reply::NotReady(row(JobState::Running { done: 4, total: 3 })),
            Reply::Cancelled(row(JobState::Complete {
                bytes: MAX_PROGRAM + 1,
            })),
            Reply::Jobs(vec![row(JobState::Failed {
                reason: "x".repeat(MAX_REASON + 1),
            })]),
            Reply::Program {
                size: MAX_PROGRAM + 1,
            },
            Reply::Refused("e".repeat(MAX_ERROR + 1)),
        ] {
            let Ok(frame) = encode(&bad) else {
                continue; // larger than a frame: refused before it is sent
            };
            assert!(
                matches!(decode_reply(&frame[4..]), Err(WireError::Invalid(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn ids_read_back_as_printed_and_nothing_else_reads_as_one() {
        let id = DetachedId(0x00ab_0000_0000_0000_0000_0000_0000_00cd);
        assert_eq!(id.to_string().parse::<DetachedId>().unwrap(), id);
        assert_eq!(id.to_string().len(), 32);
        for bad in [
            "",
            "xyz",
            "+0000000000000000000000000000001",
            &"0".repeat(33),
            &"g".repeat(32),
        ] {
            assert!(bad.parse::<DetachedId>().is_err(), "{bad:?}");
        }
    }

    /// Random bytes, truncated frames and mutated ones: an error or a valid message, never a
    /// panic.
    #[test]
    fn random_and_truncated_bytes_never_panic_the_decoders() {
        // The simulator's splitmix64: deterministic.
        let mut rng = crate::sim::rng::Rng::new(0x5eed_u64);
        let mut next = || rng.next();
        let valid: Vec<Vec<u8>> = every_request()
            .iter()
            .map(|r| encode(r).unwrap()[4..].to_vec())
            .chain(
                every_reply()
                    .iter()
                    .map(|r| encode(r).unwrap()[4..].to_vec()),
            )
            .collect();
        for v in &valid {
            for cut in 0..v.len() {
                let _ = decode_request(&v[..cut]);
                let _ = decode_reply(&v[..cut]);
            }
        }
        for round in 0..100_000 {
            let buf: Vec<u8> = if round % 2 == 0 {
                let mut b = valid[(next() as usize) % valid.len()].clone();
                for _ in 0..1 + next() % 3 {
                    let i = (next() as usize) % b.len();
                    b[i] = next() as u8;
                }
                b
            } else {
                (0..next() % 128).map(|_| next() as u8).collect()
            };
            let _ = decode_request(&buf);
            let _ = decode_reply(&buf);
        }
    }
}

//! What crosses the wire: typed postcard messages, never code (ARCHITECTURE.md §4.3).
//!
//! Control frames are a `u32` little-endian length followed by a postcard [`Msg`], at most
//! [`MAX_FRAME`] bytes; the length is checked before anything is allocated. Bulk data (chunk
//! results, meshes) travels on unidirectional streams of its own: a framed [`BulkHeader`]
//! then exactly `size` bytes, hashed with BLAKE3 while they arrive.

use millpond_core::JobSpec;
use millpond_core::mesh::{CANONICAL_TRIANGLE_BYTES, MeshHash};
use millpond_core::sim_job::ProgramHash;

/// The fewest bytes a program can be: its magic and its count of passes.
const PROGRAM_LEAST: u64 = 12;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of this protocol. Peers must match exactly. 7: job ids are 128 random bits
/// ([`JobId`]), and a spec's grid lines are bounded (`millpond_core::job::MAX_POINTS_PER_LINE`).
/// 8: [`Msg::Client`], a detached-jobs client's greeting (`detached`, ARCHITECTURE.md §4.13).
pub const PROTOCOL_VERSION: u32 = 9;
/// Largest control frame, bytes.
pub const MAX_FRAME: usize = 64 * 1024;
/// Largest chunk result payload, bytes (a 32k-point chunk is under 1 MB).
pub const MAX_RESULT: u64 = 64 * 1024 * 1024;
/// Largest mesh payload, bytes (about 15M triangles).
pub const MAX_MESH: u64 = 1 << 30;
/// Largest program accepted (a simulation's moves, canonical bytes): 40 million moves, more
/// than any program a simulation takes in the memory a member has.
pub const MAX_PROGRAM: u64 = 1 << 30;
/// Largest name a peer may give itself.
pub const MAX_NAME: usize = 64;
/// Most members one gossip message may list.
pub const MAX_MEMBERS: usize = 256;
/// Most chunks one grant may carry.
pub const MAX_GRANT: usize = 1024;
/// How far a job announcement travels.
pub const MAX_HOPS: u8 = 8;
/// Longest reason a `Failed` message may give, bytes.
pub const MAX_REASON: usize = 256;
/// Most worker threads a node may have (and so the bound on a worker slot index).
pub const MAX_WORKERS: u32 = 4096;
/// Words of the largest busy-worker bitmap ([`MemberInfo::busy`]).
pub const MAX_BUSY_WORDS: usize = MAX_WORKERS.div_ceil(64) as usize;

/// Peer-provided text (a name, a failure's words, a close reason) made safe to log and show:
/// every control character — newlines, the escape that starts a terminal sequence
/// (`\x1b[31m`), C1 codes — and every mark that reorders text on screen (bidirectional
/// overrides and isolates) is replaced by `�`, and the whole is cut to at most `max_bytes`
/// bytes, on a character boundary, ending in `…` where cut. A peer could otherwise forge log
/// lines, recolour or clear a terminal, or make a name read as another.
///
/// The one place such text is cleaned, where it enters: a Hello's name
/// (`handshake::check_hello`), gossip's names, a `Failed` message's words, the reason a peer
/// gave for closing a link (`link::describe_close`, `dial.rs`), and a failed dial's or
/// newcomer's error, which may quote it (`dial.rs`). Cut to the wire's own
/// limit ([`MAX_NAME`], [`MAX_REASON`]), what this node passes on stays valid.
pub fn sanitize(text: &str, max_bytes: usize) -> String {
    const CUT: char = '…';
    let reorders = |c: char| matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for c in text.chars() {
        let c = if c.is_control() || reorders(c) {
            char::REPLACEMENT_CHARACTER
        } else {
            c
        };
        if out.len() + c.len_utf8() > max_bytes {
            if max_bytes >= CUT.len_utf8() {
                while out.len() + CUT.len_utf8() > max_bytes {
                    out.pop();
                }
                out.push(CUT);
            }
            break;
        }
        out.push(c);
    }
    out
}

/// The busy-worker bitmap of `flags` (worker slot `i` is bit `i % 64` of word `i / 64`).
pub fn busy_bitmap(flags: impl IntoIterator<Item = bool>) -> Vec<u64> {
    let mut words = Vec::new();
    for (i, busy) in flags.into_iter().enumerate() {
        if i % 64 == 0 {
            words.push(0);
        }
        if busy && let Some(w) = words.last_mut() {
            *w |= 1 << (i % 64);
        }
    }
    words
}

/// Whether worker slot `i` is busy in `bitmap` (slots beyond it are idle).
pub fn is_busy(bitmap: &[u64], i: usize) -> bool {
    bitmap.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// Why a busy bitmap does not fit a member of `workers` workers, if it does not: exactly
/// one bit per worker, rounded up to whole words, and no bit set beyond the last worker.
fn check_busy(busy: &[u64], workers: u32) -> Result<(), String> {
    let words = workers.div_ceil(64) as usize;
    if busy.len() != words || busy.len() > MAX_BUSY_WORDS {
        return Err(format!(
            "busy bitmap of {} words for {workers} workers",
            busy.len()
        ));
    }
    let tail = workers % 64;
    if tail != 0 && busy.last().is_some_and(|w| w >> tail != 0) {
        return Err(format!("busy bit beyond worker {workers}"));
    }
    Ok(())
}

/// A node's identity for this run (random at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// A job: the node that owns it and a number its owner drew at random for it.
///
/// Random, not counted: a node takes up the first announcement of a job id and ignores later
/// ones as copies (ARCHITECTURE.md §4.5), so a peer that could tell the id of another node's
/// next job could announce it first, with any spec, and every node that heard its copy first
/// would ignore the real job. 128 bits drawn from the system's random source for each job
/// (the simulator draws them from its seed) leave nothing to guess. Owner-bound: a node drops
/// an announcement of a job it is named the owner of and never submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId {
    pub owner: NodeId,
    pub nonce: u128,
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}/{:032x}", self.owner.0, self.nonce)
    }
}

/// What a node knows of another (gossip; statistics only, never correctness).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub node: NodeId,
    pub name: String,
    pub hops: u8,
    pub workers: u32,
    /// Busy workers.
    pub load: u32,
    /// Which workers are busy: worker slot `i` is bit `i % 64` of word `i / 64`, exactly
    /// `ceil(workers / 64)` words (see [`busy_bitmap`]). For the statistics panel's per-worker
    /// state; a relay passes on what it last heard, like `load`.
    pub busy: Vec<u64>,
    /// Milliseconds since the sender last heard of this member.
    pub age_ms: u32,
}

/// Control-stream messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// First message each way after authentication.
    Hello {
        protocol: u32,
        compute_abi: u32,
        node: NodeId,
        name: String,
        workers: u32,
    },
    /// Membership gossip.
    Members(Vec<MemberInfo>),
    /// A job exists; flooded with a hop limit, de-duplicated by id.
    Announce {
        job: JobId,
        spec: Box<JobSpec>,
        hops_left: u8,
    },
    /// Child → parent: I can take `want` more chunks of `job`.
    Steal { job: JobId, want: u32 },
    /// Parent → child: these chunks are yours.
    Grant { job: JobId, chunks: Vec<u32> },
    /// Parent → child: nothing to hand out right now.
    NoWork { job: JobId },
    /// Child → parent: send me this mesh (on a bulk stream).
    FetchMesh { hash: MeshHash },
    /// Parent → child: the job is over (finished or cancelled); drop it.
    Cancel { job: JobId },
    /// Child → parent: computing this granted chunk failed here (a panic, in these words);
    /// the chunk goes back to the owner's queue, where it counts a death.
    Failed {
        job: JobId,
        chunk: u32,
        reason: String,
    },
    /// Answer to `FetchMesh`: I cannot send this mesh (unknown here, or I am fetching it from
    /// you); ask another neighbour.
    NoMesh { hash: MeshHash },
    /// In place of a Hello, first message after authentication: I am a client, not a member
    /// (no workers, no jobs, no gossip): answer my detached-job requests on this stream
    /// (`detached::wire`). Anywhere else it is a violation.
    Client { protocol: u32 },
    /// Child → parent: send me this program (a simulation's moves) on a bulk stream.
    FetchProgram { hash: ProgramHash },
    /// Answer to `FetchProgram`: I cannot send this program; ask another neighbour.
    NoProgram { hash: ProgramHash },
}

/// Header of a bulk stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BulkHeader {
    /// A postcard `ChunkResult` for `job`, with who computed it: the computing node and its
    /// worker slot (`0..MAX_WORKERS`). Relays forward these two fields as they came, so the
    /// owner can count per node and per worker (statistics only).
    Result {
        job: JobId,
        chunk: u32,
        /// Seconds the chunk took to compute where it was computed.
        compute_s: f32,
        size: u64,
        hash: [u8; 32],
        /// The node whose worker computed the chunk.
        node: NodeId,
        /// Which of that node's worker slots computed it.
        worker: u32,
    },
    /// A mesh in canonical bytes (`Mesh::canonical_bytes`), addressed by its hash.
    Mesh { hash: MeshHash, size: u64 },
    /// A simulation's moves in canonical bytes (`ProgramMoves::canonical_bytes`), addressed
    /// by their hash.
    Program { hash: ProgramHash, size: u64 },
}

/// A message that must not be accepted.
#[derive(Debug, Error, PartialEq)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    FrameTooLarge(u64),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("invalid message: {0}")]
    Invalid(String),
}

/// Encodes a message as a frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let body = postcard::to_stdvec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(WireError::FrameTooLarge(body.len() as u64));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks a frame's length prefix before its body is read.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let n = u32::from_le_bytes(prefix) as u64;
    if n > MAX_FRAME as u64 {
        return Err(WireError::FrameTooLarge(n));
    }
    Ok(n as usize)
}

/// Decodes a whole body: a value and nothing after it.
pub fn decode_whole<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let (v, rest): (T, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(v)
}

/// Decodes and validates a control message body.
pub fn decode_msg(body: &[u8]) -> Result<Msg, WireError> {
    let msg: Msg = decode_whole(body)?;
    validate_msg(&msg)?;
    Ok(msg)
}

/// Decodes and validates a bulk header body.
pub fn decode_bulk_header(body: &[u8]) -> Result<BulkHeader, WireError> {
    let h: BulkHeader = decode_whole(body)?;
    match &h {
        BulkHeader::Result {
            size,
            compute_s,
            worker,
            ..
        } => {
            if *size > MAX_RESULT {
                return Err(WireError::Invalid(format!(
                    "result of {size} bytes is too large"
                )));
            }
            if !(compute_s.is_finite() && *compute_s >= 0.0) {
                return Err(WireError::Invalid("non-finite compute time".into()));
            }
            if *worker >= MAX_WORKERS {
                return Err(WireError::Invalid(format!("worker slot {worker}")));
            }
        }
        BulkHeader::Mesh { size, .. } => {
            let whole = size.is_multiple_of(CANONICAL_TRIANGLE_BYTES as u64);
            if *size > MAX_MESH || !whole || *size == 0 {
                return Err(WireError::Invalid(format!(
                    "mesh of {size} bytes is not acceptable"
                )));
            }
        }
        BulkHeader::Program { size, .. } => {
            if *size > MAX_PROGRAM || *size < PROGRAM_LEAST {
                return Err(WireError::Invalid(format!(
                    "program of {size} bytes is not acceptable"
                )));
            }
        }
    }
    Ok(h)
}

fn validate_msg(msg: &Msg) -> Result<(), WireError> {
    let bad = |m: String| Err(WireError::Invalid(m));
    match msg {
        Msg::Hello { name, workers, .. } => {
            if name.len() > MAX_NAME {
                return bad(format!("name of {} bytes", name.len()));
            }
            if *workers > MAX_WORKERS {
                return bad(format!("{workers} workers"));
            }
        }
        Msg::Members(m) => {
            if m.len() > MAX_MEMBERS {
                return bad(format!("{} members", m.len()));
            }
            if m.iter()
                .any(|i| i.name.len() > MAX_NAME || i.workers > MAX_WORKERS)
            {
                return bad("member entry out of range".into());
            }
            for i in m {
                check_busy(&i.busy, i.workers).map_err(WireError::Invalid)?;
            }
        }
        Msg::Announce {
            spec, hops_left, ..
        } => {
            if *hops_left > MAX_HOPS {
                return bad(format!("hop limit {hops_left}"));
            }
            spec.validate()
                .map_err(|e| WireError::Invalid(format!("job spec: {e}")))?;
        }
        Msg::Steal { want, .. } => {
            if *want == 0 || *want as usize > MAX_GRANT {
                return bad(format!("steal of {want} chunks"));
            }
        }
        Msg::Grant { chunks, .. } => {
            if chunks.is_empty() || chunks.len() > MAX_GRANT {
                return bad(format!("grant of {} chunks", chunks.len()));
            }
        }
        Msg::Failed { reason, .. } => {
            if reason.len() > MAX_REASON {
                return bad(format!("failure reason of {} bytes", reason.len()));
            }
        }
        Msg::NoWork { .. }
        | Msg::FetchMesh { .. }
        | Msg::Cancel { .. }
        | Msg::NoMesh { .. }
        | Msg::FetchProgram { .. }
        | Msg::NoProgram { .. }
        | Msg::Client { .. } => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_limits_hold() {
        let m = Msg::Steal {
            job: JobId {
                owner: NodeId(7),
                nonce: 3,
            },
            want: 4,
        };
        let f = encode(&m).unwrap();
        let n = frame_len([f[0], f[1], f[2], f[3]]).unwrap();
        assert_eq!(decode_msg(&f[4..4 + n]).unwrap(), m);
        assert!(frame_len((MAX_FRAME as u32 + 1).to_le_bytes()).is_err());
        assert!(frame_len(u32::MAX.to_le_bytes()).is_err());
    }

    #[test]
    fn result_headers_say_who_computed_and_bound_the_worker_slot() {
        let header = |worker: u32| BulkHeader::Result {
            job: JobId {
                owner: NodeId(1),
                nonce: 2,
            },
            chunk: 3,
            compute_s: 0.25,
            size: 100,
            hash: [7; 32],
            node: NodeId(0xfeed),
            worker,
        };
        for ok in [0, 1, MAX_WORKERS - 1] {
            let f = encode(&header(ok)).unwrap();
            assert_eq!(decode_bulk_header(&f[4..]).unwrap(), header(ok));
        }
        for bad in [MAX_WORKERS, MAX_WORKERS + 1, u32::MAX] {
            let f = encode(&header(bad)).unwrap();
            assert!(
                matches!(decode_bulk_header(&f[4..]), Err(WireError::Invalid(_))),
                "worker slot {bad} accepted"
            );
        }
        // The size and compute-time checks still hold.
        let mut h = header(0);
        if let BulkHeader::Result { compute_s, .. } = &mut h {
            *compute_s = f32::NAN;
        }
        assert!(decode_bulk_header(&encode(&h).unwrap()[4..]).is_err());
        let mut h = header(0);
        if let BulkHeader::Result { size, .. } = &mut h {
            *size = MAX_RESULT + 1;
        }
        assert!(decode_bulk_header(&encode(&h).unwrap()[4..]).is_err());
    }

    /// The bound on a grid line (`MAX_POINTS_PER_LINE`) keeps every chunk's points within
    /// what a result may carry: heights at 8 bytes a point, a raster's polylines at one
    /// 24-byte point a sample, whatever the line length the grid has.
    #[test]
    fn the_longest_line_s_chunk_fits_in_a_result() {
        use crate::testing::ball_drop;
        use millpond_core::Rect;
        use millpond_core::job::MAX_POINTS_PER_LINE;
        let most = MAX_POINTS_PER_LINE as f64;
        let mut biggest = 0;
        for per_line in [
            1.0,
            2.0,
            1000.0,
            32_767.0,
            32_769.0,
            65_537.0,
            most - 1.0,
            most,
        ] {
            let bounds = Rect::new(0.0, per_line - 1.0, 0.0, 100.0);
            let spec = ball_drop(MeshHash([0; 32]), bounds, 0.5, 1.0);
            spec.validate().expect("a valid spec");
            biggest = biggest.max(spec.chunk_points(0));
        }
        assert_eq!(biggest, MAX_POINTS_PER_LINE);
        assert!(8 * biggest + 1024 < MAX_RESULT / 4, "heights");
        assert!(24 * biggest + 1024 < MAX_RESULT / 2, "polylines");
    }

    /// Escapes, newlines and reordering marks are replaced, the length capped in bytes on a
    /// character boundary, and plain text (accents, CJK) left as it is.
    #[test]
    fn peer_text_is_sanitized_before_it_is_shown() {
        let evil = "B\x1b[31mred\x1b[0m\nmillpond: error: fake\r\u{9b}2J\u{202e}gnp.exe\u{7f}";
        let clean = sanitize(evil, MAX_NAME);
        assert_eq!(clean, "B�[31mred�[0m�millpond: error: fake��2J�gnp.exe�");
        assert!(!clean.chars().any(char::is_control), "{clean:?}");
        assert_eq!(sanitize("Café 工房-2", MAX_NAME), "Café 工房-2");
        // Capped in bytes, ending in an ellipsis; never split inside a character.
        let long = "é".repeat(100);
        let cut = sanitize(&long, MAX_NAME);
        assert!(cut.len() <= MAX_NAME && cut.ends_with('…'), "{cut:?}");
        assert_eq!(cut.len(), 2 * 30 + 3);
        let nl = "\n".repeat(MAX_NAME);
        assert!(sanitize(&nl, MAX_NAME).len() <= MAX_NAME);
        assert_eq!(sanitize("abcdef", 2), "ab");
        assert_eq!(sanitize("abcdef", 4), "a…");
        assert_eq!(sanitize("abcd", 4), "abcd");
        // What a node passes on after cleaning is still a valid message.
        let m = member(1, vec![0]);
        let Msg::Members(mut list) = m else {
            unreachable!()
        };
        list[0].name = sanitize(&"\u{1b}".repeat(60), MAX_NAME);
        let m = Msg::Members(list);
        assert_eq!(decodes(&m).unwrap(), m);
    }

    #[test]
    fn a_failure_s_reason_is_bounded() {
        let job = JobId {
            owner: NodeId(1),
            nonce: 1,
        };
        let failed = |n: usize| Msg::Failed {
            job,
            chunk: 3,
            reason: "x".repeat(n),
        };
        assert_eq!(decodes(&failed(MAX_REASON)).unwrap(), failed(MAX_REASON));
        assert!(matches!(
            decodes(&failed(MAX_REASON + 1)),
            Err(WireError::Invalid(_))
        ));
        let no_mesh = Msg::NoMesh {
            hash: millpond_core::mesh::MeshHash([3; 32]),
        };
        assert_eq!(decodes(&no_mesh).unwrap(), no_mesh);
    }

    fn member(workers: u32, busy: Vec<u64>) -> Msg {
        Msg::Members(vec![MemberInfo {
            node: NodeId(9),
            name: "helper".into(),
            hops: 1,
            workers,
            load: busy.iter().map(|w| w.count_ones()).sum(),
            busy,
            age_ms: 0,
        }])
    }

    fn decodes(m: &Msg) -> Result<Msg, WireError> {
        decode_msg(&encode(m).unwrap()[4..])
    }

    #[test]
    fn busy_bitmaps_round_trip_and_must_fit_the_workers() {
        let flags = [true, false, false, true, true];
        let bitmap = busy_bitmap(flags);
        assert_eq!(bitmap, [0b11001]);
        assert_eq!(
            (0..6).map(|i| is_busy(&bitmap, i)).collect::<Vec<_>>(),
            [true, false, false, true, true, false]
        );
        let m = member(5, bitmap);
        assert_eq!(decodes(&m).unwrap(), m);
        let most = busy_bitmap((0..MAX_WORKERS).map(|i| i % 3 == 0));
        assert_eq!(most.len(), MAX_BUSY_WORDS);
        let m = member(MAX_WORKERS, most.clone());
        assert_eq!(decodes(&m).unwrap(), m);
        assert_eq!(decodes(&member(0, vec![])).unwrap(), member(0, vec![]));
        assert_eq!(
            decodes(&member(64, vec![u64::MAX])).unwrap(),
            member(64, vec![u64::MAX])
        );
        // Over-long, short, or with a bit for a worker the member does not have.
        let mut longer = most;
        longer.push(0);
        for (workers, busy) in [
            (MAX_WORKERS, longer),
            (5, vec![0, 0]),
            (65, vec![0]),
            (5, vec![]),
            (0, vec![0]),
            (5, vec![1 << 5]),
            (63, vec![1 << 63]),
        ] {
            let got = decodes(&member(workers, busy.clone()));
            assert!(
                matches!(got, Err(WireError::Invalid(_))),
                "{workers} workers, bitmap {busy:?} accepted: {got:?}"
            );
        }
    }

    #[test]
    fn random_bytes_never_panic_the_decoders() {
        // The simulator's splitmix64: deterministic.
        let mut rng = crate::sim::rng::Rng::new(0x1234_5678u64);
        let mut next = || rng.next();
        let valid = encode(&Msg::Grant {
            job: JobId {
                owner: NodeId(1),
                nonce: 1,
            },
            chunks: vec![1, 2, 3],
        })
        .unwrap();
        for round in 0..200_000 {
            let len = (next() % 96) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && !buf.is_empty() {
                // Mutations of a valid frame reach deeper into the decoder.
                buf = valid[4..].to_vec();
                let i = (next() as usize) % buf.len();
                buf[i] = next() as u8;
            }
            let _ = decode_msg(&buf);
            let _ = decode_bulk_header(&buf);
            // Bulk payloads: a chunk result and a mesh in canonical bytes.
            for form in [
                millpond_core::job::ResultForm::Heights(3),
                millpond_core::job::ResultForm::Polylines { lines: 2, most: 4 },
                millpond_core::job::ResultForm::Chains { levels: 2 },
            ] {
                let _ = crate::result_shape::decode(&buf, form);
            }
            let _ = millpond_core::Mesh::from_canonical_bytes(&buf, "fuzz");
        }
    }
}

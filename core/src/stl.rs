//! STL reading and writing.
//!
//! Why not `stl_io`: its 0.11 reader decides ASCII vs binary by a leading `"solid "`, which
//! real binary files from several exporters also start with; it rejects the common bare
//! `solid` header line, reports no line numbers and allocates a `String` per token. The rules
//! Millpond needs (binary recognised by a consistent length, typed errors naming the file and
//! line, never a panic on any input) are shorter to write as a strict zero-copy reader than to
//! wrap around it.

use crate::geom::{Point3, Triangle};
use rayon::prelude::*;
use std::io::Write;
use thiserror::Error;

/// Bytes in a binary STL header (80 bytes of text + u32 triangle count).
const BINARY_HEADER: usize = 84;
/// Bytes per binary STL record: normal, 3 vertices (12 × f32) and a u16 attribute.
const BINARY_RECORD: usize = 50;

/// Why a file could not be read as an STL model. Every variant names the file.
#[derive(Debug, Error)]
pub enum StlError {
    #[error("{file}: cannot read: {error}")]
    Io { file: String, error: std::io::Error },
    #[error("{file}: not an STL file: {reason}")]
    NotStl { file: String, reason: String },
    #[error("{file}: truncated STL: {reason}")]
    Truncated { file: String, reason: String },
    #[error(
        "{file}: binary STL header declares {declared} triangles ({expected} bytes) but the file is {actual} bytes long"
    )]
    CountMismatch {
        file: String,
        declared: u32,
        expected: u64,
        actual: u64,
    },
    #[error("{file}: line {line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: triangle {triangle} has a non-finite coordinate (NaN or infinity)")]
    NonFinite { file: String, triangle: usize },
    #[error("{file}: contains no usable triangles ({skipped_degenerate} degenerate skipped)")]
    NoTriangles {
        file: String,
        skipped_degenerate: usize,
    },
}

/// Which encoding a file turned out to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StlEncoding {
    Binary,
    Ascii,
    /// ASCII written with decimal commas (`-0,774597`): a locale slip of some exporters.
    /// Read as decimal points, and said so.
    AsciiDecimalCommas,
}

/// Triangles as read, before degenerate ones are dropped.
#[derive(Debug)]
pub struct RawStl {
    pub triangles: Vec<Triangle>,
    pub encoding: StlEncoding,
}

/// Parses STL bytes. `file` is only used to name the source in errors. Values are read, not
/// checked: [`Mesh`](crate::Mesh) refuses non-finite ones and drops degenerate triangles.
pub fn parse(bytes: &[u8], file: &str) -> Result<RawStl, StlError> {
    if bytes.is_empty() {
        return Err(StlError::NotStl {
            file: file.into(),
            reason: "the file is empty".into(),
        });
    }
    let declared = (bytes.len() >= BINARY_HEADER)
        .then(|| u32::from_le_bytes([bytes[80], bytes[81], bytes[82], bytes[83]]));
    if let Some(n) = declared
        && binary_len(n) == bytes.len() as u64
    {
        return Ok(parse_binary(bytes, n as usize));
    }
    if starts_with_solid(bytes) {
        let ascii = parse_ascii(bytes, file);
        // A binary file whose 80-byte header happens to start with "solid" and whose length
        // is wrong: the binary diagnosis below is the useful one.
        if ascii.is_ok() || looks_like_text(bytes) || declared.is_none() {
            return ascii;
        }
    } else if looks_like_text(bytes) {
        return Err(StlError::NotStl {
            file: file.into(),
            reason: "a text file that does not start with \"solid\"".into(),
        });
    }
    // Only now, once the file has failed to be a consistent binary STL (whose free-form header
    // may start with anything): a file of another format loaded by mistake is not "truncated".
    if let Some((_, kind)) = OTHER_FORMATS
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
    {
        return Err(StlError::NotStl {
            file: file.into(),
            reason: format!("it looks like {kind}"),
        });
    }
    match declared {
        None => Err(StlError::Truncated {
            file: file.into(),
            reason: format!(
                "{} bytes is shorter than the {BINARY_HEADER}-byte binary header",
                bytes.len()
            ),
        }),
        Some(n) => {
            let expected = binary_len(n);
            let actual = bytes.len() as u64;
            if actual < expected {
                Err(StlError::Truncated {
                    file: file.into(),
                    reason: format!(
                        "header declares {n} triangles ({expected} bytes) but the file ends after {actual} bytes"
                    ),
                })
            } else {
                Err(StlError::CountMismatch {
                    file: file.into(),
                    declared: n,
                    expected,
                    actual,
                })
            }
        }
    }
}

/// Signatures of binary formats that are loaded instead of an STL by mistake.
const OTHER_FORMATS: [(&[u8], &str); 6] = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (a 3MF model is one)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"%PDF-", "a PDF document"),
];

fn binary_len(triangles: u32) -> u64 {
    BINARY_HEADER as u64 + BINARY_RECORD as u64 * u64::from(triangles)
}

fn starts_with_solid(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let rest = &bytes[start..];
    rest.len() >= 5
        && rest[..5].eq_ignore_ascii_case(b"solid")
        && rest.get(5).is_none_or(|b| b.is_ascii_whitespace())
}

/// Text means: no control bytes other than whitespace in the first 4 KiB.
fn looks_like_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .take(4096)
        .all(|&b| b.is_ascii_whitespace() || (0x20..0x7f).contains(&b) || b >= 0x80)
}

fn parse_binary(bytes: &[u8], count: usize) -> RawStl {
    // Records are independent: read on all cores, in order.
    let records = bytes[BINARY_HEADER..].par_chunks_exact(BINARY_RECORD);
    let triangles: Vec<Triangle> = records
        .map(|rec| {
            let f = |k: usize| {
                let o = 12 + 4 * k;
                f64::from(f32::from_le_bytes([
                    rec[o],
                    rec[o + 1],
                    rec[o + 2],
                    rec[o + 3],
                ]))
            };
            let p = |k: usize| Point3::new(f(3 * k), f(3 * k + 1), f(3 * k + 2));
            Triangle::new(p(0), p(1), p(2))
        })
        .collect();
    debug_assert_eq!(triangles.len(), count);
    // Non-finite values are refused, with the record named, by `Mesh` (one pass over the
    // triangles for every check).
    RawStl {
        triangles,
        encoding: StlEncoding::Binary,
    }
}

/// Whitespace tokenizer over raw bytes that tracks line numbers for error messages.
struct Tokens<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Tokens<'a> {
    fn next(&mut self) -> Option<&'a [u8]> {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            if self.bytes[self.pos] == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
        if self.pos == self.bytes.len() {
            return None;
        }
        let start = self.pos;
        while self.pos < self.bytes.len() && !self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        Some(&self.bytes[start..self.pos])
    }

    fn skip_line(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
            self.pos += 1;
        }
    }
}

fn parse_ascii(bytes: &[u8], file: &str) -> Result<RawStl, StlError> {
    let mut tok = Tokens {
        bytes,
        pos: 0,
        line: 1,
    };
    let syntax = |line: usize, message: String| StlError::Syntax {
        file: file.into(),
        line,
        message,
    };
    let show = |t: &[u8]| String::from_utf8_lossy(&t[..t.len().min(40)]).into_owned();
    let mut triangles = Vec::new();
    let decimal_commas = std::cell::Cell::new(false);
    // `solid` and its optional name, which runs to the end of the line.
    tok.next();
    tok.skip_line();
    loop {
        let Some(word) = tok.next() else {
            return Err(StlError::Truncated {
                file: file.into(),
                reason: format!("ASCII STL ends at line {} without \"endsolid\"", tok.line),
            });
        };
        if word.eq_ignore_ascii_case(b"endsolid") {
            tok.skip_line();
            // Several solids may follow each other in one file.
            match tok.next() {
                None => break,
                Some(w) if w.eq_ignore_ascii_case(b"solid") => {
                    tok.skip_line();
                    continue;
                }
                Some(w) => {
                    return Err(syntax(
                        tok.line,
                        format!("expected \"solid\" or end of file, found \"{}\"", show(w)),
                    ));
                }
            }
        }
        if !word.eq_ignore_ascii_case(b"facet") {
            return Err(syntax(
                tok.line,
                format!(
                    "expected \"facet\" or \"endsolid\", found \"{}\"",
                    show(word)
                ),
            ));
        }
        let expect = |tok: &mut Tokens, want: &str| -> Result<(), StlError> {
            match tok.next() {
                Some(w) if w.eq_ignore_ascii_case(want.as_bytes()) => Ok(()),
                Some(w) => Err(syntax(
                    tok.line,
                    format!("expected \"{want}\", found \"{}\"", show(w)),
                )),
                None => Err(StlError::Truncated {
                    file: file.into(),
                    reason: format!("ASCII STL ends at line {} inside a facet", tok.line),
                }),
            }
        };
        let number = |tok: &mut Tokens, what: &str| -> Result<f32, StlError> {
            let Some(w) = tok.next() else {
                return Err(StlError::Truncated {
                    file: file.into(),
                    reason: format!("ASCII STL ends at line {} inside a facet", tok.line),
                });
            };
            let text = std::str::from_utf8(w).ok();
            text.and_then(|s| s.parse::<f32>().ok())
                .or_else(|| {
                    // One comma and no point: a decimal comma. ("1,5,2" stays an error.)
                    let s = text?;
                    if s.matches(',').count() != 1 || s.contains('.') {
                        return None;
                    }
                    let v = s.replace(',', ".").parse::<f32>().ok()?;
                    decimal_commas.set(true);
                    Some(v)
                })
                .ok_or_else(|| {
                    syntax(
                        tok.line,
                        format!("expected a number for {what}, found \"{}\"", show(w)),
                    )
                })
        };
        expect(&mut tok, "normal")?;
        for _ in 0..3 {
            // The stored normal is parsed for syntax only; normals come from vertex order.
            number(&mut tok, "the facet normal")?;
        }
        expect(&mut tok, "outer")?;
        expect(&mut tok, "loop")?;
        let mut v = [Point3::default(); 3];
        for p in &mut v {
            expect(&mut tok, "vertex")?;
            let x = number(&mut tok, "vertex x")?;
            let y = number(&mut tok, "vertex y")?;
            let z = number(&mut tok, "vertex z")?;
            *p = Point3::new(f64::from(x), f64::from(y), f64::from(z));
        }
        expect(&mut tok, "endloop")?;
        expect(&mut tok, "endfacet")?;
        if !v.iter().all(|p| p.is_finite()) {
            return Err(StlError::NonFinite {
                file: file.into(),
                triangle: triangles.len(),
            });
        }
        triangles.push(Triangle { v });
    }
    Ok(RawStl {
        triangles,
        encoding: if decimal_commas.get() {
            StlEncoding::AsciiDecimalCommas
        } else {
            StlEncoding::Ascii
        },
    })
}

/// Writes triangles as binary STL. Coordinates are narrowed to f32, as the format requires;
/// the stored normal is computed from the vertex order.
pub fn write_binary<W: Write>(
    mut out: W,
    header: &str,
    triangles: &[Triangle],
) -> std::io::Result<()> {
    let count = u32::try_from(triangles.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "more than 4,294,967,295 triangles do not fit a binary STL",
        )
    })?;
    let mut head = [b' '; 80];
    let text = header.as_bytes();
    let n = text.len().min(80);
    head[..n].copy_from_slice(&text[..n]);
    // Binary files that start with "solid" confuse other readers; never write one.
    if head.starts_with(b"solid") {
        head[..5].copy_from_slice(b"SOLID");
    }
    out.write_all(&head)?;
    out.write_all(&count.to_le_bytes())?;
    let mut rec = [0u8; BINARY_RECORD];
    for t in triangles {
        let n = t.normal().unwrap_or_default();
        let vals = [n, t.v[0], t.v[1], t.v[2]];
        for (k, p) in vals.iter().enumerate() {
            for (j, c) in [p.x, p.y, p.z].iter().enumerate() {
                let o = 12 * k + 4 * j;
                rec[o..o + 4].copy_from_slice(&(*c as f32).to_le_bytes());
            }
        }
        out.write_all(&rec)?;
    }
    out.flush()
}

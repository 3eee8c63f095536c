//! STL loading: both encodings, the binary-vs-ASCII decision, ASCII dialects, degenerate
//! triangles, typed errors that name the file, a round trip through `write_binary`, and a
//! deterministic fuzz run showing that no input makes the loader panic.
//!
//! Every file is generated here and written to a temporary directory; the repository holds no
//! binary fixtures.

use millpond_core::models::geodesic_sphere;
use millpond_core::stl::{self, StlEncoding, StlError};
use millpond_core::{Mesh, Point3, Triangle};
use millpond_tests::Rng;
use std::path::{Path, PathBuf};

type V = [f32; 3];

/// One facet as written to a file: the stored normal, then three vertices.
#[derive(Clone, Copy, Debug)]
struct Facet {
    normal: V,
    v: [V; 3],
}

fn facet(a: V, b: V, c: V) -> Facet {
    Facet {
        normal: [0.0, 0.0, 1.0],
        v: [a, b, c],
    }
}

/// Three well-formed facets with coordinates that are not exactly representable in binary
/// (0.1, 0.2, …), so that any f64 parsing or rounding shows.
fn sample_facets() -> Vec<Facet> {
    vec![
        facet([0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
        facet([0.1, 0.2, 0.3], [10.7, -0.2, 0.3], [0.1, 5.9, -2.6]),
        facet([-3.3, 1e-7, 7.77], [2.5, 1.25, -0.1], [1.0, 8.125, 0.33]),
    ]
}

/// Widens what the file holds exactly as the loader must: f32 to f64.
fn widen(f: &Facet) -> Triangle {
    let p = |v: V| Point3::new(f64::from(v[0]), f64::from(v[1]), f64::from(v[2]));
    Triangle::new(p(f.v[0]), p(f.v[1]), p(f.v[2]))
}

/// A binary STL written by hand (not with `write_binary`, which refuses `solid` headers and
/// computes its own normals). `header` is padded with zero bytes to 80.
fn binary(header: &[u8], facets: &[Facet]) -> Vec<u8> {
    assert!(header.len() <= 80);
    let mut out = header.to_vec();
    out.resize(80, 0);
    out.extend_from_slice(&(facets.len() as u32).to_le_bytes());
    for f in facets {
        for v in [f.normal, f.v[0], f.v[1], f.v[2]] {
            for c in v {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        out.extend_from_slice(&0u16.to_le_bytes());
    }
    assert_eq!(out.len(), 84 + 50 * facets.len());
    out
}

/// An ASCII STL. f32 `Display` prints the shortest text that reads back to the same f32.
fn ascii(name: &str, facets: &[Facet]) -> String {
    let mut s = format!("solid {name}\n");
    s.push_str(&ascii_body(facets, "\n"));
    s.push_str(&format!("endsolid {name}\n"));
    s
}

fn ascii_body(facets: &[Facet], nl: &str) -> String {
    let mut s = String::new();
    for f in facets {
        let [nx, ny, nz] = f.normal;
        s.push_str(&format!(
            "  facet normal {nx} {ny} {nz}{nl}    outer loop{nl}"
        ));
        for [x, y, z] in f.v {
            s.push_str(&format!("      vertex {x} {y} {z}{nl}"));
        }
        s.push_str(&format!("    endloop{nl}  endfacet{nl}"));
    }
    s
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn load(bytes: impl AsRef<[u8]>, name: &str) -> Result<Mesh, StlError> {
    Mesh::from_stl_bytes(bytes.as_ref(), name)
}

fn ok(bytes: impl AsRef<[u8]>, name: &str) -> Mesh {
    load(bytes, name).unwrap_or_else(|e| panic!("{name} should load: {e}"))
}

fn err(bytes: impl AsRef<[u8]>, name: &str) -> StlError {
    match load(bytes, name) {
        Ok(m) => panic!("{name} should not load, but gave {} triangles", m.len()),
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains(name), "error does not name {name}: {shown}");
            e
        }
    }
}

/// Writes `bytes` as `name` in a temporary folder and loads it from there, which must fail
/// with an error that names the file.
fn path_err(name: &str, bytes: impl AsRef<[u8]>) -> StlError {
    let dir = tempdir();
    let path = write(dir.path(), name, bytes);
    let e = Mesh::from_stl_path(&path).unwrap_err();
    assert!(e.to_string().contains(name), "{e}");
    e
}

/// The normal of each triangle, from its vertices.
fn normals(mesh: &Mesh) -> Vec<Point3> {
    mesh.triangles()
        .iter()
        .map(|t| t.normal().unwrap())
        .collect()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Both encodings, from a path and from bytes; exact f32 → f64 widening.

#[test]
fn binary_loads_from_path_and_bytes_with_exact_f32_widening() {
    let dir = tempdir();
    let facets = sample_facets();
    let bytes = binary(b"exported by a test", &facets);
    let path = write(dir.path(), "part.stl", &bytes);
    let want: Vec<Triangle> = facets.iter().map(widen).collect();

    for mesh in [Mesh::from_stl_path(&path).unwrap(), ok(&bytes, "part.stl")] {
        assert_eq!(mesh.encoding(), Some(StlEncoding::Binary));
        assert_eq!(mesh.triangles(), &want[..]);
        assert_eq!(mesh.skipped_degenerate(), 0);
        let t = mesh.triangles()[1];
        assert_eq!(t.v[0].x, f64::from(0.1f32));
        assert_ne!(
            t.v[0].x, 0.1f64,
            "0.1 must come back as the f32 the file holds"
        );
        assert_eq!(t.v[0].z, f64::from(0.3f32));
        assert_eq!(mesh.triangles()[2].v[0].y, f64::from(1e-7f32));
    }
    assert!(
        Mesh::from_stl_path(&path)
            .unwrap()
            .name()
            .contains("part.stl")
    );
}

#[test]
fn ascii_loads_from_path_and_bytes_with_exact_f32_widening() {
    let dir = tempdir();
    let facets = sample_facets();
    let text = ascii("part", &facets);
    let path = write(dir.path(), "part.stl", &text);
    let want: Vec<Triangle> = facets.iter().map(widen).collect();

    for mesh in [Mesh::from_stl_path(&path).unwrap(), ok(&text, "part.stl")] {
        assert_eq!(mesh.encoding(), Some(StlEncoding::Ascii));
        assert_eq!(mesh.triangles(), &want[..]);
        let t = mesh.triangles()[1];
        assert_eq!(t.v[0].x, f64::from(0.1f32));
        assert_ne!(t.v[0].x, 0.1f64, "\"0.1\" must be read as f32, not f64");
    }

    // A decimal that f32 cannot hold: read as f32 it rounds to 2^24; as f64 it would not.
    let text = "solid big\nfacet normal 0 0 1\nouter loop\nvertex 16777217 0 0.1\n\
                vertex 0 1 0\nvertex 0 0 1\nendloop\nendfacet\nendsolid big\n";
    let m = ok(text, "big.stl");
    assert_eq!(m.triangles()[0].v[0].x, 16_777_216.0);
    assert_eq!(m.triangles()[0].v[0].z, f64::from(0.1f32));
}

#[test]
fn binary_values_widen_bit_exactly_including_tiny_and_huge() {
    let vals: [f32; 6] = [
        f32::MIN_POSITIVE,
        1e-40, // subnormal
        -0.0,
        3.0e38,
        -123_456.79,
        std::f32::consts::PI,
    ];
    let f = facet(
        [vals[0], vals[1], vals[2]],
        [vals[3], vals[4], vals[5]],
        [1.0, 2.0, 3.0],
    );
    // 3e38 overflows the degeneracy test, so `Mesh` would drop this triangle; the raw parse
    // keeps every triangle, so check the values through `stl::parse`.
    let raw = stl::parse(&binary(b"", &[f]), "tiny.stl").unwrap();
    assert_eq!(raw.encoding, StlEncoding::Binary);
    let t = raw.triangles[0];
    let got = [t.v[0].x, t.v[0].y, t.v[0].z, t.v[1].x, t.v[1].y, t.v[1].z];
    for (g, v) in got.iter().zip(vals) {
        assert_eq!(g.to_bits(), f64::from(v).to_bits(), "{v:e}");
    }
}

// ---------------------------------------------------------------------------------------------
// The stored normal is ignored; the vertex order is the only truth.

#[test]
fn stored_normal_is_ignored_binary() {
    let up = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    let down = [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]];
    let facets = [
        Facet {
            normal: [f32::NAN; 3],
            v: up,
        },
        Facet {
            normal: [0.0, 0.0, 1.0], // says up, vertex order says down
            v: down,
        },
        Facet {
            normal: [f32::INFINITY, -1e30, 0.0],
            v: up,
        },
        Facet {
            normal: [0.0, 0.0, 0.0],
            v: down,
        },
    ];
    let dir = tempdir();
    let path = write(dir.path(), "normals.stl", binary(b"", &facets));
    let mesh = Mesh::from_stl_path(&path).unwrap();
    assert_eq!(mesh.len(), 4);
    let (z, mz) = (Point3::new(0.0, 0.0, 1.0), Point3::new(0.0, 0.0, -1.0));
    assert_eq!(normals(&mesh), vec![z, mz, z, mz]);
}

#[test]
fn stored_normal_is_ignored_ascii() {
    let text = "solid n\n\
        facet normal nan nan nan\n outer loop\n vertex 0 0 0\n vertex 1 0 0\n vertex 0 1 0\n endloop\n endfacet\n\
        facet normal 0 0 1\n outer loop\n vertex 0 0 0\n vertex 0 1 0\n vertex 1 0 0\n endloop\n endfacet\n\
        facet normal 1e30 -inf 7\n outer loop\n vertex 0 0 5\n vertex 2 0 5\n vertex 0 2 5\n endloop\n endfacet\n\
        endsolid n\n";
    let mesh = ok(text, "normals.stl");
    let (z, mz) = (Point3::new(0.0, 0.0, 1.0), Point3::new(0.0, 0.0, -1.0));
    assert_eq!(normals(&mesh), vec![z, mz, z]);
}

// ---------------------------------------------------------------------------------------------
// Binary vs ASCII is decided by a consistent binary length, not by the first bytes.

#[test]
fn binary_with_solid_header_loads_as_binary() {
    let dir = tempdir();
    let facets = sample_facets();
    let want: Vec<Triangle> = facets.iter().map(widen).collect();
    let headers: [&[u8]; 5] = [
        b"solid ",
        b"solid part exported by SomeCAD 2024",
        b"solid\n",
        b"SOLID PART",
        b"   solid x\nfacet normal 0 0 1\nouter loop\n",
    ];
    for header in headers {
        let bytes = binary(header, &facets);
        let path = write(dir.path(), "solid-header.stl", &bytes);
        for mesh in [Mesh::from_stl_path(&path), load(&bytes, "solid-header.stl")] {
            let mesh = mesh
                .unwrap_or_else(|e| panic!("header {:?}: {e}", String::from_utf8_lossy(header)));
            assert_eq!(mesh.encoding(), Some(StlEncoding::Binary));
            assert_eq!(mesh.triangles(), &want[..]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ASCII dialects.

fn one_facet_body(nl: &str) -> String {
    ascii_body(
        &[facet([0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])],
        nl,
    )
}

#[test]
fn ascii_bare_solid_header_without_name() {
    for text in [
        format!("solid\n{}endsolid\n", one_facet_body("\n")),
        format!("solid\n{}endsolid", one_facet_body("\n")),
        format!("solid \n{}endsolid \n", one_facet_body("\n")),
        format!("\n  solid\n{}endsolid\n\n\n", one_facet_body("\n")),
    ] {
        let m = ok(&text, "bare.stl");
        assert_eq!(m.encoding(), Some(StlEncoding::Ascii));
        assert_eq!(m.len(), 1);
    }
}

#[test]
fn ascii_crlf_line_endings() {
    let facets = sample_facets();
    let text = format!(
        "solid crlf\r\n{}endsolid crlf\r\n",
        ascii_body(&facets, "\r\n")
    );
    let m = ok(&text, "crlf.stl");
    let want: Vec<Triangle> = facets.iter().map(widen).collect();
    assert_eq!(m.triangles(), &want[..]);
}

#[test]
fn ascii_upper_and_mixed_case_keywords() {
    let facets = sample_facets();
    let lower = ascii("part", &facets);
    let want: Vec<Triangle> = facets.iter().map(widen).collect();
    let upper = lower.to_uppercase();
    assert!(upper.starts_with("SOLID PART") && upper.contains("ENDFACET"));
    assert_eq!(ok(&upper, "upper.stl").triangles(), &want[..]);
    let mixed = lower
        .replace("facet normal", "Facet Normal")
        .replace("outer loop", "OUTER Loop")
        .replace("vertex", "VerTex")
        .replace("endloop", "EndLoop")
        .replace("endsolid", "EndSolid");
    assert_eq!(ok(&mixed, "mixed.stl").triangles(), &want[..]);
}

#[test]
fn ascii_multiple_solids_in_one_file() {
    let facets = sample_facets();
    let text = format!(
        "{}{}solid\n{}endsolid\n",
        ascii("first", &facets[..1]),
        ascii("second part", &facets[1..]),
        one_facet_body("\n"),
    );
    let m = ok(&text, "multi.stl");
    assert_eq!(m.len(), 4);
    let mut want: Vec<Triangle> = facets.iter().map(widen).collect();
    want.push(Triangle::new(
        Point3::new(0.0, 0.0, 0.0),
        Point3::new(1.0, 0.0, 0.0),
        Point3::new(0.0, 1.0, 0.0),
    ));
    assert_eq!(m.triangles(), &want[..]);
}

#[test]
fn ascii_scientific_notation() {
    let text = "solid sci\nfacet normal 0.0E+00 0.0e0 1.0E0\nouter loop\n\
                vertex 1.5e+01 -2.5E-3 1e2\n\
                vertex 2.000000e+00 3.1415927E0 -7.5e-1\n\
                vertex +1E1 0.5e1 1e-45\n\
                endloop\nendfacet\nendsolid sci\n";
    let m = ok(text, "sci.stl");
    let t = m.triangles()[0];
    let f = |s: &str| f64::from(s.parse::<f32>().unwrap());
    assert_eq!(t.v[0], Point3::new(15.0, f("-2.5e-3"), 100.0));
    assert_eq!(t.v[1], Point3::new(2.0, f("3.1415927"), -0.75));
    assert_eq!(t.v[2], Point3::new(10.0, 5.0, f("1e-45")));
    assert!(
        t.v[2].z > 0.0,
        "1e-45 is the smallest f32 subnormal, not zero"
    );
}

/// Replaces line `line` (1-based) of `text`.
fn with_line(text: &str, line: usize, new: &str) -> String {
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines[line - 1] = new;
    lines.join("\n")
}

#[test]
fn ascii_syntax_errors_give_the_line_number() {
    let good = ascii("part", &sample_facets());
    // Lines: 1 solid; 2 facet, 3 outer loop, 4-6 vertex, 7 endloop, 8 endfacet; the second
    // facet on 9-15, the third on 16-22; 23 endsolid.
    assert_eq!(good.lines().nth(22), Some("endsolid part"));
    let cases: Vec<(String, usize)> = vec![
        (with_line(&good, 2, "  facet normall 0 0 1"), 2),
        (with_line(&good, 3, "    outer lop"), 3),
        (with_line(&good, 5, "      vertex 1 x 0"), 5),
        (with_line(&good, 12, "      vertex 1.0.0 2 3"), 12),
        (with_line(&good, 13, "      vertx 1 2 3"), 13),
        (with_line(&good, 14, "      vertex 1 2 3"), 14), // a fourth vertex where endloop belongs
        (with_line(&good, 16, "  banana"), 16),
        (with_line(&good, 9, "  facet normal 0 0 1 0"), 9), // "0" where "outer" belongs
        (with_line(&good, 19, "      vertex 1 2 3 4"), 19),
        (with_line(&good, 21, "    endloop endloop"), 21),
        (format!("{good}trailing junk\n"), 24),
        (format!("{good}\n\n\nsolid again\n  facet\n  facet\n"), 29),
    ];
    for (text, line) in cases {
        let e = err(&text, "bad.stl");
        match &e {
            StlError::Syntax { line: l, .. } => assert_eq!(*l, line, "{e}"),
            other => panic!("expected a syntax error on line {line}, got {other:?}"),
        }
        assert!(e.to_string().contains(&format!("line {line}")), "{e}");
    }
    // The same with CRLF line endings and a bare `solid` header.
    let crlf = format!(
        "solid\r\n{}endsolid\r\n",
        ascii_body(&sample_facets(), "\r\n")
    );
    let bad = crlf
        .replacen("outer loop", "outer hoop", 2)
        .replacen("outer hoop", "outer loop", 1);
    match err(&bad, "crlf.stl") {
        StlError::Syntax { line, .. } => assert_eq!(line, 10),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Degenerate triangles.

fn with_degenerates() -> (Vec<Facet>, Vec<Triangle>) {
    let good = sample_facets();
    let facets = vec![
        facet([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]), // repeated vertex
        good[0],
        facet([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.5, 2.5, 2.5]), // collinear
        good[1],
        facet([7.0, 7.0, 7.0], [7.0, 7.0, 7.0], [7.0, 7.0, 7.0]), // a point
        facet([0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [-5.0, 0.0, 0.0]), // collinear, c outside
        good[2],
    ];
    (facets, good.iter().map(widen).collect())
}

#[test]
fn degenerate_triangles_are_skipped_and_counted() {
    let (facets, want) = with_degenerates();
    for (bytes, enc) in [
        (binary(b"", &facets), StlEncoding::Binary),
        (ascii("d", &facets).into_bytes(), StlEncoding::Ascii),
    ] {
        let m = ok(&bytes, "degenerate.stl");
        assert_eq!(m.encoding(), Some(enc));
        assert_eq!(m.skipped_degenerate(), 4);
        assert_eq!(m.triangles(), &want[..], "the good ones are kept, in order");
        // The raw parse keeps them all.
        assert_eq!(
            stl::parse(&bytes, "degenerate.stl")
                .unwrap()
                .triangles
                .len(),
            7
        );
    }
}

#[test]
fn only_degenerate_or_zero_triangles_is_no_triangles() {
    let (facets, _) = with_degenerates();
    let degenerate: Vec<Facet> = [0, 2, 4, 5].iter().map(|&i| facets[i]).collect();
    let cases: Vec<(Vec<u8>, usize)> = vec![
        (binary(b"", &degenerate), 4),
        (ascii("d", &degenerate).into_bytes(), 4),
        (binary(b"", &[]), 0),
        (binary(b"solid empty", &[]), 0),
        (b"solid empty\nendsolid empty\n".to_vec(), 0),
        (b"solid\nendsolid\nsolid\nendsolid".to_vec(), 0),
    ];
    let dir = tempdir();
    for (bytes, skipped) in cases {
        let path = write(dir.path(), "nothing.stl", &bytes);
        for e in [
            Mesh::from_stl_path(&path).unwrap_err(),
            err(&bytes, "nothing.stl"),
        ] {
            assert!(e.to_string().contains("nothing.stl"), "{e}");
            match e {
                StlError::NoTriangles {
                    skipped_degenerate, ..
                } => assert_eq!(skipped_degenerate, skipped),
                other => panic!("expected NoTriangles, got {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Typed errors that name the file.

#[test]
fn empty_file_is_not_stl() {
    let e = path_err("empty.stl", b"");
    assert!(matches!(e, StlError::NotStl { .. }), "{e:?}");
    assert!(matches!(err(b"", "empty.stl"), StlError::NotStl { .. }));
}

#[test]
fn text_that_is_not_stl_is_not_stl() {
    let mut rng = Rng::new(11);
    let random_text: String = (0..600)
        .map(|_| {
            let c = b" abcdefghijklmnopqrstuvwxyz0123456789.,;-\n"[(rng.next_u64() % 42) as usize];
            c as char
        })
        .collect();
    let random_text = format!("x{random_text}");
    let obj = "# Wavefront OBJ\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n".repeat(10);
    let texts = [
        random_text.as_str(),
        obj.as_str(),
        "hello",
        "solidity is not a keyword\n",
        "{\"json\": true}\n",
    ];
    for text in texts {
        let e = path_err("notes.txt", text);
        assert!(matches!(e, StlError::NotStl { .. }), "{text:?}: {e:?}");
    }
}

/// The start of a PNG file: signature, IHDR chunk, then pseudo-random "compressed" bytes.
fn png_like(len: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x01\x00\x00\x00\x00\xc0\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x20\x00IDAT"
        .to_vec();
    let mut rng = Rng::new(3);
    while b.len() < len {
        b.push(rng.next_u64() as u8);
    }
    b.truncate(len);
    b
}

#[test]
fn binary_blob_of_another_format_is_not_stl() {
    for len in [8, 45, 84, 100, 134, 1000, 5000] {
        let e = path_err("photo.png", png_like(len));
        assert!(matches!(e, StlError::NotStl { .. }), "{len} bytes: {e:?}");
    }
    // A 3MF model (a ZIP archive) loaded by mistake.
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.extend(png_like(400)[10..].iter());
    let e = err(&zip, "part.3mf");
    assert!(matches!(e, StlError::NotStl { .. }), "{e:?}");
}

#[test]
fn truncated_binary_is_truncated() {
    let facets = sample_facets();
    // Cut anywhere: inside the header, inside the count, mid-record, at a record boundary.
    let plain = binary(b"", &facets);
    // A header starting with "solid" must not turn a truncated binary file into an ASCII error.
    let solid = binary(b"solid part", &facets);
    for (bytes, shortest) in [(&plain, 1), (&solid, 84)] {
        for len in shortest..bytes.len() {
            let e = err(&bytes[..len], "cut.stl");
            assert!(
                matches!(e, StlError::Truncated { .. }),
                "cut at {len}: {e:?}"
            );
        }
    }
    let e = path_err("cut.stl", &plain[..84 + 50 + 17]);
    assert!(matches!(e, StlError::Truncated { .. }), "{e:?}");
}

#[test]
fn ascii_cut_inside_a_facet_is_truncated() {
    let text = ascii("part", &sample_facets());
    let bytes = text.as_bytes();
    // The second facet: from the end of its "facet" keyword to the end of its "endfacet".
    let start = text.match_indices("facet normal").nth(1).unwrap().0 + "facet".len();
    let end = text.match_indices("endfacet").nth(1).unwrap().0 + "endfacet".len();
    let mut cuts = 0;
    for len in start..end {
        // Cutting mid-keyword gives a syntax error ("vert" is not "vertex"); cut where a token
        // has just ended.
        if !bytes[len].is_ascii_whitespace() {
            continue;
        }
        cuts += 1;
        let e = err(&bytes[..len], "cut.stl");
        assert!(
            matches!(e, StlError::Truncated { .. }),
            "cut after {:?}: {e:?}",
            &text[len.saturating_sub(20)..len]
        );
    }
    assert!(cuts > 20);
    // Mid-number cuts still give valid numbers, so they are truncations too.
    let mid = text.find("10.7").unwrap() + 2;
    assert!(matches!(
        err(&bytes[..mid], "cut.stl"),
        StlError::Truncated { .. }
    ));
    // After a complete facet but before "endsolid".
    let after = text.rfind("endfacet").unwrap() + "endfacet\n".len();
    assert!(matches!(
        err(&bytes[..after], "cut.stl"),
        StlError::Truncated { .. }
    ));
    // Just the header line.
    assert!(matches!(
        err("solid part\n", "cut.stl"),
        StlError::Truncated { .. }
    ));

    let e = path_err(
        "cut-ascii.stl",
        &bytes[..text[..end].rfind("endloop").unwrap()],
    );
    assert!(matches!(e, StlError::Truncated { .. }), "{e:?}");
}

#[test]
fn binary_with_trailing_bytes_is_count_mismatch() {
    let facets = sample_facets();
    for header in [&b""[..], b"solid part"] {
        let good = binary(header, &facets);
        for extra in [1usize, 2, 49, 50, 51, 100, 1000] {
            let mut bytes = good.clone();
            bytes.extend(std::iter::repeat_n(0u8, extra));
            match err(&bytes, "long.stl") {
                StlError::CountMismatch {
                    declared,
                    expected,
                    actual,
                    ..
                } => {
                    assert_eq!(declared, 3);
                    assert_eq!(expected, 234);
                    assert_eq!(actual, 234 + extra as u64);
                }
                other => panic!("{extra} extra bytes: {other:?}"),
            }
        }
    }
    // A count too small for the records that follow.
    let mut bytes = binary(b"", &facets);
    bytes[80..84].copy_from_slice(&2u32.to_le_bytes());
    let e = path_err("miscounted.stl", &bytes);
    assert!(matches!(e, StlError::CountMismatch { .. }), "{e:?}");
}

#[test]
fn non_finite_binary_coordinate_is_rejected() {
    let base = sample_facets();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for (vertex, axis) in [(0, 0), (1, 1), (2, 2)] {
            let mut facets = base.clone();
            facets[1].v[vertex][axis] = bad;
            match path_err("nan.stl", binary(b"", &facets)) {
                StlError::NonFinite { triangle, .. } => assert_eq!(triangle, 1),
                other => panic!("{bad} at v{vertex}[{axis}]: {other:?}"),
            }
        }
    }
    // In a degenerate triangle too: non-finite input is an error, not a skipped triangle.
    let mut facets = base;
    facets[2] = facet([f32::NAN; 3], [f32::NAN; 3], [f32::NAN; 3]);
    match err(binary(b"", &facets), "nan.stl") {
        StlError::NonFinite { triangle, .. } => assert_eq!(triangle, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_finite_ascii_coordinate_is_rejected() {
    let good = ascii("part", &sample_facets());
    // Line 5 holds a vertex of the first facet (triangle 0), line 19 one of the third.
    for (line, triangle) in [(5, 0), (19, 2)] {
        for word in ["nan", "NaN", "inf", "-inf", "infinity", "1e39", "-3.5e38"] {
            let text = with_line(&good, line, &format!("      vertex 0 {word} 0"));
            match err(&text, "nan.stl") {
                StlError::NonFinite { triangle: t, .. } => assert_eq!(t, triangle, "{word}"),
                other => panic!("{word} on line {line}: {other:?}"),
            }
        }
    }
}

#[test]
fn missing_path_is_io_error() {
    let dir = tempdir();
    let path = dir.path().join("no-such-model.stl");
    let e = Mesh::from_stl_path(&path).unwrap_err();
    match &e {
        StlError::Io { error, .. } => assert_eq!(error.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("no-such-model.stl"), "{e}");
    // A directory cannot be read as a file either.
    let e = Mesh::from_stl_path(dir.path()).unwrap_err();
    assert!(matches!(e, StlError::Io { .. }), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Round trip.

#[test]
fn write_binary_round_trips() {
    let to_f32 = |p: Point3| {
        Point3::new(
            f64::from(p.x as f32),
            f64::from(p.y as f32),
            f64::from(p.z as f32),
        )
    };
    let sphere: Vec<Triangle> = geodesic_sphere(Point3::new(1.5, -2.25, 3.1), 7.3, 5)
        .into_iter()
        .map(|t| Triangle { v: t.v.map(to_f32) })
        .collect();
    assert_eq!(sphere.len(), 500);

    let dir = tempdir();
    let path = dir.path().join("sphere.stl");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    // A header starting with "solid" must not make the file read as ASCII.
    stl::write_binary(file, "solid sphere from the round-trip test", &sphere).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 84 + 50 * sphere.len());
    assert!(
        !bytes.starts_with(b"solid"),
        "write_binary never writes a `solid` header"
    );

    for mesh in [
        Mesh::from_stl_path(&path).unwrap(),
        ok(&bytes, "sphere.stl"),
    ] {
        assert_eq!(mesh.encoding(), Some(StlEncoding::Binary));
        assert_eq!(mesh.skipped_degenerate(), 0);
        assert_eq!(mesh.triangles(), &sphere[..]);
    }

    // The stored normal write_binary computes matches the vertex order.
    let rec = &bytes[84..134];
    let n: Vec<f32> = (0..3)
        .map(|k| f32::from_le_bytes(rec[4 * k..4 * k + 4].try_into().unwrap()))
        .collect();
    let want = sphere[0].normal().unwrap();
    assert!((f64::from(n[0]) - want.x).abs() < 1e-6);
    assert!((f64::from(n[1]) - want.y).abs() < 1e-6);
    assert!((f64::from(n[2]) - want.z).abs() < 1e-6);

    // Writing what was read gives the same bytes.
    let mesh = Mesh::from_stl_path(&path).unwrap();
    let mut again = Vec::new();
    stl::write_binary(
        &mut again,
        "solid sphere from the round-trip test",
        mesh.triangles(),
    )
    .unwrap();
    assert_eq!(again, bytes);
}

// ---------------------------------------------------------------------------------------------
// No input makes the loader panic.

const TOKENS: [&[u8]; 22] = [
    b"solid",
    b"endsolid",
    b"facet",
    b"normal",
    b"outer",
    b"loop",
    b"vertex",
    b"endloop",
    b"endfacet",
    b"nan",
    b"-inf",
    b"1e999",
    b"-",
    b"+.",
    b"0x10",
    b"\n",
    b"\r\n",
    b" ",
    b"\0",
    "é€𝄞".as_bytes(),
    // A long multi-byte token: error messages shorten tokens, which must not split a character.
    "ééééééééééééééééééééééééééééééééééééééééééé".as_bytes(),
    b"\xff\xfe\xc3",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    let below = |rng: &mut Rng, n: usize| (rng.next_u64() % (n as u64).max(1)) as usize;
    let steps = 1 + below(rng, 3);
    for _ in 0..steps {
        match below(rng, 10) {
            // Overwrite a few bytes.
            0 => {
                for _ in 0..=below(rng, 8) {
                    if !b.is_empty() {
                        let i = below(rng, b.len());
                        b[i] = rng.next_u64() as u8;
                    }
                }
            }
            // Flip one bit.
            1 => {
                if !b.is_empty() {
                    let i = below(rng, b.len());
                    b[i] ^= 1 << below(rng, 8);
                }
            }
            // Truncate.
            2 => {
                let n = below(rng, b.len() + 1);
                b.truncate(n);
            }
            // Insert random bytes.
            3 => {
                let at = below(rng, b.len() + 1);
                let n = 1 + below(rng, 16);
                let ins: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(at..at, ins);
            }
            // Insert an STL token.
            4 => {
                let at = below(rng, b.len() + 1);
                let t = TOKENS[below(rng, TOKENS.len())];
                b.splice(at..at, t.iter().copied());
            }
            // Delete a range.
            5 => {
                if !b.is_empty() {
                    let at = below(rng, b.len());
                    let n = 1 + below(rng, 40.min(b.len() - at));
                    b.drain(at..at + n);
                }
            }
            // Change the binary count field.
            6 => {
                if b.len() < 84 {
                    b.resize(84, 0);
                }
                let count = u32::from_le_bytes(b[80..84].try_into().unwrap());
                let new = match below(rng, 6) {
                    0 => 0,
                    1 => u32::MAX,
                    2 => count.wrapping_add(1),
                    3 => count.wrapping_sub(1),
                    4 => rng.next_u64() as u32,
                    // Consistent with the length, so that whatever follows parses as records.
                    _ => {
                        let n = (b.len() - 84) / 50;
                        b.truncate(84 + 50 * n);
                        n as u32
                    }
                };
                b[80..84].copy_from_slice(&new.to_le_bytes());
            }
            // Duplicate a range somewhere else.
            7 => {
                if !b.is_empty() {
                    let from = below(rng, b.len());
                    let n = 1 + below(rng, 60.min(b.len() - from));
                    let piece = b[from..from + n].to_vec();
                    let at = below(rng, b.len() + 1);
                    b.splice(at..at, piece);
                }
            }
            // Put "solid" in front.
            8 => {
                let heads: [&[u8]; 4] = [b"solid ", b"SOLID\n", b"solid", b"  solid\t"];
                let head = heads[below(rng, 4)];
                let n = head.len().min(b.len());
                b[..n].copy_from_slice(&head[..n]);
            }
            // Replace a number-like byte with a character that breaks numbers.
            _ => {
                if !b.is_empty() {
                    let i = below(rng, b.len());
                    b[i] = b"-+.eE0x \n"[below(rng, 9)];
                }
            }
        }
    }
    b
}

/// Loads `bytes`; fails the test if the loader panics, and checks what an `Ok` promises.
/// Returns whether the bytes loaded.
fn must_return(bytes: &[u8], what: &dyn Fn() -> String) -> bool {
    let result = std::panic::catch_unwind(|| Mesh::from_stl_bytes(bytes, "fuzz.stl"));
    match result {
        Err(_) => panic!(
            "the loader panicked on {} ({} bytes): {:02x?}",
            what(),
            bytes.len(),
            &bytes[..bytes.len().min(400)]
        ),
        Ok(Ok(mesh)) => {
            assert!(!mesh.is_empty(), "{}", what());
            for t in mesh.triangles() {
                assert!(t.v.iter().all(|p| p.is_finite()), "{}", what());
                assert!(!t.is_degenerate(), "{}", what());
            }
            true
        }
        Ok(Err(e)) => {
            assert!(e.to_string().contains("fuzz.stl"), "{}: {e}", what());
            false
        }
    }
}

#[test]
fn no_input_makes_the_loader_panic() {
    let small = sample_facets();
    let more: Vec<Facet> = small
        .iter()
        .chain(with_degenerates().0.iter())
        .copied()
        .collect();
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("binary", binary(b"", &small)),
        ("binary, solid header", binary(b"solid fuzz\n", &more)),
        ("ascii", ascii("fuzz", &small).into_bytes()),
        (
            "ascii, CRLF upper case",
            format!("SOLID\r\n{}ENDSOLID\r\n", ascii_body(&more, "\r\n")).into_bytes(),
        ),
    ];
    // Every truncation of every seed.
    for (name, seed) in &seeds {
        for len in 0..=seed.len() {
            must_return(&seed[..len], &|| format!("{name} cut to {len} bytes"));
        }
    }
    // Random mutations.
    let mut rng = Rng::new(0x5EED);
    let mut loaded = 0;
    for round in 0..5000 {
        for (name, seed) in &seeds {
            let m = mutate(&mut rng, seed);
            let ok = must_return(&m, &|| format!("{name}, mutation round {round}"));
            loaded += usize::from(ok);
        }
    }
    // Random bytes with a consistent count: parsed as binary records all the way.
    for round in 0..500 {
        let n = (rng.next_u64() % 8) as usize;
        let mut b: Vec<u8> = (0..84 + 50 * n).map(|_| rng.next_u64() as u8).collect();
        b[80..84].copy_from_slice(&(n as u32).to_le_bytes());
        must_return(&b, &|| format!("random binary round {round}"));
    }
    // The mutations must not all be rejected outright: some keep a loadable file.
    assert!(loaded > 100, "only {loaded} mutated files loaded");
}

/// An ASCII STL written under a locale with decimal commas (as one exporter wrote PyCAM's
/// sample `Sphere_cut.stl`: `facet normal -0,774597 -0,447213 …`) loads, read as decimal
/// points, with a note saying so; the same numbers with points give the same triangles. A
/// token with two commas is still an error naming the line.
#[test]
fn decimal_commas_load_with_a_note() {
    let text = "solid cut\n  facet normal -0,774597 -0,447213 0,447214\n    outer loop\n      \
                vertex 0 0 0\n      vertex 1,5 0 0\n      vertex 0 2,25 -0,5\n    endloop\n  \
                endfacet\nendsolid cut\n";
    let mesh = ok(text, "cut.stl");
    assert_eq!(mesh.encoding(), Some(StlEncoding::AsciiDecimalCommas));
    let note = mesh.load_note().expect("a note");
    assert!(note.contains("decimal commas"), "{note}");
    let points = ok(text.replace(',', "."), "cut-points.stl");
    assert_eq!(points.encoding(), Some(StlEncoding::Ascii));
    assert_eq!(points.load_note(), None);
    assert_eq!(mesh.triangles(), points.triangles());
    let bad = text.replace("1,5 0 0", "1,5,0 0 0");
    match load(&bad, "bad.stl") {
        Err(StlError::Syntax { line, .. }) => assert_eq!(line, 5),
        other => panic!("expected a syntax error on line 5, got {other:?}"),
    }
}

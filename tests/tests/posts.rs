//! Post-processors as data, end to end: a user's post in the config folder's `posts/` is
//! listed and used by `millpond toolpath --post`, its program read back by `millpond
//! simulate`; a post with a mistake, an unknown post and a post that cannot write what the
//! program needs are refused with a message that names the file, line and key, and no
//! program is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bundled_part() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/default-part.stl")
}

/// `millpond` with its config folder at `config`.
fn millpond(config: &Path, args: &[&str]) -> Output {
    Command::new(millpond_tests::millpond_bin())
        .env("MILLPOND_CONFIG_DIR", config)
        .args(args)
        .output()
        .expect("run millpond")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The built-in LinuxCNC post's text with `edits` (old, new) applied.
fn linuxcnc_with(edits: &[(&str, &str)]) -> String {
    let mut s = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/posts/linuxcnc.toml"),
    )
    .unwrap();
    for (old, new) in edits {
        assert!(s.contains(old), "{old} not in linuxcnc.toml");
        s = s.replacen(old, new, 1);
    }
    s
}

/// Two tools, so the program has a tool change.
fn toolpath_args<'a>(part: &'a str, out: &'a str, post: &'a str) -> Vec<&'a str> {
    vec![
        "toolpath",
        part,
        "-q",
        "-o",
        out,
        "--post",
        post,
        "--stock-margin",
        "2,1",
        "--save-job",
        "",
        "--op",
        "rough,tool=flat:6,stepdown=4,sampling=0.5,t=1",
        "--op",
        "raster,tool=ball:3,stepover=2,sampling=0.5,t=2",
    ]
}

#[test]
fn a_users_post_is_listed_used_and_read_back() {
    let config = tempfile::tempdir().unwrap();
    let posts = config.path().join("posts");
    std::fs::create_dir_all(&posts).unwrap();
    let shop = linuxcnc_with(&[
        ("name = \"LinuxCNC\"", "name = \"Shop mill\""),
        ("comments = \"parentheses\"", "comments = \"semicolon\""),
        ("mode = \"off\"", "mode = \"flood\""),
        (
            "[decimals]",
            "[line_numbers]\nstart = 100\nstep = 5\n\n[decimals]",
        ),
    ]);
    std::fs::write(posts.join("shop.toml"), &shop).unwrap();
    let listed = millpond(config.path(), &["posts"]);
    assert!(listed.status.success());
    let list = text(&listed.stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("shop") && l.contains("Shop mill")),
        "{list}"
    );
    assert!(list.lines().any(|l| l.starts_with("fanuc")), "{list}");

    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("part.ngc");
    let job = work.path().join("part.millpond");
    let (part, out_s, job_s) = (
        bundled_part().display().to_string(),
        out.display().to_string(),
        job.display().to_string(),
    );
    let mut args = toolpath_args(&part, &out_s, "shop");
    let k = args.iter().position(|a| a.is_empty()).unwrap();
    args[k] = &job_s;
    let run = millpond(config.path(), &args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let g = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = g.lines().collect();
    // Semicolon comments, numbered lines from 100 by 5, flood coolant on with the spindle
    // and off before it stops.
    assert!(
        lines.iter().any(|l| l.starts_with("; Operation: Roughing")),
        "{g}"
    );
    assert!(!g.contains('('), "no parenthesis comments");
    let numbered: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix('N'))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbered[0], 100);
    assert!(numbered.windows(2).all(|w| w[1] == w[0] + 5));
    let code = |l: &str| l.split_once(' ').map_or("", |(_, rest)| rest).to_string();
    let codes: Vec<String> = lines.iter().map(|l| code(l)).collect();
    let spindle: Vec<usize> = (0..codes.len())
        .filter(|&i| codes[i].ends_with("M3"))
        .collect();
    assert_eq!(spindle.len(), 2, "two tools, two spindle starts");
    for i in spindle {
        assert_eq!(codes[i + 1], "M8", "coolant on after the spindle start");
    }
    let end = codes.iter().rposition(|c| c == "M5").unwrap();
    assert_eq!(codes[end - 1], "M9", "coolant off before the spindle stops");
    // The job remembers the post, and simulate reads its program.
    assert!(
        std::fs::read_to_string(&job)
            .unwrap()
            .contains("post = \"shop\"")
    );
    let sim = millpond(
        config.path(),
        &[
            "simulate",
            "--quiet",
            "--tolerance",
            "0.01",
            &job_s,
            "--gcode",
            &out_s,
        ],
    );
    assert!(
        sim.status.success(),
        "{}{}",
        text(&sim.stdout),
        text(&sim.stderr)
    );

    // A post file given by path works without being in the folder.
    let elsewhere = work.path().join("bench-mill.toml");
    std::fs::write(&elsewhere, &shop).unwrap();
    let by_path = elsewhere.display().to_string();
    let out2 = work.path().join("two.ngc").display().to_string();
    let job2 = work.path().join("two.millpond").display().to_string();
    let mut args = toolpath_args(&part, &out2, &by_path);
    let k = args.iter().position(|a| a.is_empty()).unwrap();
    args[k] = &job2;
    let run = millpond(config.path(), &args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        std::fs::read_to_string(&out2).unwrap() == g,
        "the same post by path writes another program"
    );
}

/// Runs `toolpath` with `post` (after writing `files` into the config folder's posts/) and
/// expects it to fail without writing a program; returns the message.
fn refused(files: &[(&str, String)], post: &str, extra: &[&str]) -> String {
    let config = tempfile::tempdir().unwrap();
    let posts = config.path().join("posts");
    std::fs::create_dir_all(&posts).unwrap();
    for (name, body) in files {
        std::fs::write(posts.join(name), body).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("p.ngc");
    let (part, out_s) = (
        bundled_part().display().to_string(),
        out.display().to_string(),
    );
    let mut args = toolpath_args(&part, &out_s, post);
    args.retain(|a| !a.is_empty() && *a != "--save-job");
    args.extend_from_slice(extra);
    let run = millpond(config.path(), &args);
    let stderr = text(&run.stderr);
    assert!(!run.status.success(), "{post} should be refused");
    assert_eq!(
        run.status.code(),
        Some(1),
        "a clean error, not a crash: {stderr}"
    );
    assert!(!out.exists(), "no program written for {post}");
    assert!(
        std::fs::read_dir(work.path()).unwrap().next().is_none(),
        "no temporary file left"
    );
    stderr
}

#[test]
fn bad_posts_are_refused_with_file_line_and_key() {
    // A placeholder with no value where it is used.
    let body = linuxcnc_with(&[("dwell = \"G4 P{seconds}\"", "dwell = \"G4 P{rpm}\"")]);
    let line = body.lines().position(|l| l.starts_with("dwell")).unwrap() + 1;
    let e = refused(&[("broken.toml", body)], "broken", &[]);
    assert!(
        e.contains(&format!(
            "broken.toml, line {line}, dwell: {{rpm}} has no value here"
        )),
        "{e}"
    );
    // A misspelt key.
    let body = linuxcnc_with(&[("arcs = \"ijk\"", "arc = \"ijk\"")]);
    let line = body.lines().position(|l| l.starts_with("arc =")).unwrap() + 1;
    let e = refused(&[("typo.toml", body)], "typo", &[]);
    assert!(
        e.contains(&format!("typo.toml, line {line}, arc:")) && e.contains("unknown field"),
        "{e}"
    );
    // An unknown post.
    let e = refused(&[], "haas", &[]);
    assert!(
        e.contains("unknown post \"haas\"") && e.contains("linuxcnc, grbl, mach3"),
        "{e}"
    );
    // A post that cannot write the program's units.
    let e = refused(&[], "marlin", &["--program-units", "inch"]);
    assert!(
        e.contains("the Marlin post cannot write inch programs: it writes mm only"),
        "{e}"
    );
    // Lines longer than the post allows: refused, never cut.
    let body = linuxcnc_with(&[
        ("max_line_length = 255", "max_line_length = 40"),
        (
            "inch = { axes = 5, feed = 5 }",
            "inch = { axes = 6, feed = 6 }",
        ),
    ]);
    let e = refused(
        &[("short.toml", body)],
        "short",
        &["--program-units", "inch"],
    );
    assert!(
        e.contains("the LinuxCNC post takes lines of at most 40 characters; this one has"),
        "{e}"
    );
}

/// Arcs on the bundled part: roughing rings and waterline loops written as G2/G3 where the
/// moves lie on a circle, a third fewer lines than the same post without arcs, and the
/// program read back and machined into the stock gouges nothing (each arc was checked
/// against the model: without that check, this program gouged 3 µm on a steep wall).
#[test]
fn arcs_shrink_the_program_and_never_gouge() {
    let config = tempfile::tempdir().unwrap();
    let posts = config.path().join("posts");
    std::fs::create_dir_all(&posts).unwrap();
    std::fs::write(
        posts.join("straight.toml"),
        linuxcnc_with(&[("arcs = \"ijk\"", "arcs = \"none\"")]),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let part = bundled_part().display().to_string();
    let mut programs = Vec::new();
    for post in ["linuxcnc", "straight"] {
        let out = work
            .path()
            .join(format!("{post}.ngc"))
            .display()
            .to_string();
        let job = work
            .path()
            .join(format!("{post}.millpond"))
            .display()
            .to_string();
        let run = millpond(
            config.path(),
            &[
                "toolpath",
                &part,
                "-q",
                "-o",
                &out,
                "--post",
                post,
                "--stock-margin",
                "2,1",
                "--save-job",
                &job,
                "--op",
                "rough,tool=flat:6,stepdown=2,stepover=40%,t=1",
                "--op",
                "waterline,tool=ball:3,stepdown=1,t=2",
            ],
        );
        assert!(run.status.success(), "{}", text(&run.stderr));
        let sim = millpond(
            config.path(),
            &["simulate", "--quiet", &job, "--gcode", &out],
        );
        assert!(
            sim.status.success(),
            "{post}: {}",
            text(&sim.stderr).lines().last().unwrap_or_default()
        );
        programs.push(std::fs::read_to_string(&out).unwrap());
    }
    let count = |g: &str, arcs: bool| {
        g.lines()
            .filter(|l| !l.starts_with('('))
            .filter(|l| !arcs || l.contains(" I"))
            .count()
    };
    let (with, without) = (&programs[0], &programs[1]);
    assert_eq!(count(without, true), 0);
    assert!(count(with, true) > 500, "{} arcs", count(with, true));
    let (a, b) = (count(with, false), count(without, false));
    assert!(a * 4 < b * 3, "{a} lines with arcs, {b} without");
    eprintln!(
        "{a} lines, {} bytes with arcs; {b} lines, {} bytes without",
        with.len(),
        without.len()
    );
}

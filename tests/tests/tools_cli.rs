//! `millpond tools export|import`: the window's tool library (tools.json in the config folder)
//! to and from a library file; an import whose tool number is taken by a different tool
//! fails naming both tools and changes nothing.

use millpond_core::job_file;
use millpond_core::tools::ToolLibrary;
use std::path::Path;
use std::process::{Command, Output};

fn tools(config: &Path, args: &[&std::ffi::OsStr]) -> Output {
    Command::new(millpond_tests::millpond_bin())
        .arg("tools")
        .args(args)
        .env("MILLPOND_CONFIG_DIR", config)
        .output()
        .expect("run millpond tools")
}

fn library(config: &Path) -> ToolLibrary {
    serde_json::from_slice(&std::fs::read(config.join("tools.json")).unwrap()).unwrap()
}

#[test]
fn export_then_import_elsewhere_and_a_taken_number_is_refused_naming_both_tools() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    let file = dir.path().join("shop.toml");
    // Export from a computer with no library yet: the starter set.
    let out = tools(&ours, &["export".as_ref(), file.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = job_file::load_tool_library(&file).unwrap();
    assert_eq!(exported.len(), ToolLibrary::default().tools.len());

    // Another library gains a tool of a new number: imported, the others already there.
    let mut more = exported.clone();
    let mut engraver = more[0].clone();
    engraver.number = 40;
    engraver.name = "Engraver".into();
    more.push(engraver);
    job_file::save_tool_library(&file, &more).unwrap();
    let out = tools(&theirs, &["import".as_ref(), file.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = library(&theirs);
    assert_eq!(lib.tools.len(), more.len());
    assert!(
        lib.tools
            .iter()
            .any(|t| t.number == 40 && t.name == "Engraver")
    );

    // A file whose T2 is another tool: refused, naming both, and the library unchanged.
    let mut clash = more.clone();
    clash[1].name = "Their 1/4 in end mill".into();
    clash[1].diameter = 6.35;
    job_file::save_tool_library(&file, &clash).unwrap();
    let before = std::fs::read(theirs.join("tools.json")).unwrap();
    let out = tools(&theirs, &["import".as_ref(), file.as_os_str()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shop.toml")
            && err.contains(&format!("T{}", clash[1].number))
            && err.contains("Their 1/4 in end mill")
            && err.contains(&more[1].name),
        "{err}"
    );
    assert_eq!(std::fs::read(theirs.join("tools.json")).unwrap(), before);

    // Not a library: named.
    std::fs::write(&file, "[millpond]\nformat = 1\n").unwrap();
    let out = tools(&theirs, &["import".as_ref(), file.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a Millpond tool library"),
        "{err}"
    );
}

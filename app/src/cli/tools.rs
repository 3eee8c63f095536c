//! `millpond tools export FILE` / `millpond tools import FILE`: the window's tool library
//! (`tools.json` in the config folder, the one new jobs start with) to and from a tool
//! library file, for scripts and for moving a library between computers. An import never
//! guesses: a tool whose number a different tool already has stops it, naming both.

use crate::common::TOOLS_FILE;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use millpond_core::job_file;
use millpond_core::tools::ToolLibrary;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ToolsArgs {
    #[command(subcommand)]
    pub action: ToolsAction,
}

#[derive(Debug, Subcommand)]
pub enum ToolsAction {
    /// Write the tool library to FILE (TOML, as the window's Tool library > Export writes).
    Export { file: PathBuf },
    /// Add FILE's tools to the library; a tool number already used by a different tool is
    /// an error naming both (the window asks instead).
    Import { file: PathBuf },
}

pub fn tools_command(args: &ToolsArgs) -> Result<()> {
    let dir = crate::pool::config_dir();
    let library_path = dir.join(TOOLS_FILE);
    let mut library = read_library(&library_path)?;
    match &args.action {
        ToolsAction::Export { file } => {
            job_file::save_tool_library(file, &library.tools)?;
            println!(
                "{} tools written to {}",
                library.tools.len(),
                file.display()
            );
        }
        ToolsAction::Import { file } => {
            let plan = library.plan_import(job_file::load_tool_library(file)?);
            if let Some(c) = plan.conflicts.first() {
                bail!(
                    "{}: {c}; give one of them another number (the window can also replace \
                     the tool or add it under a new number){}",
                    file.display(),
                    if plan.conflicts.len() > 1 {
                        format!(" ({} such tools in all)", plan.conflicts.len())
                    } else {
                        String::new()
                    }
                );
            }
            let added = plan.new.len();
            library.import(&plan, &[]);
            let json = serde_json::to_vec_pretty(&library)?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            job_file::write_atomically(&library_path, &json)
                .with_context(|| format!("cannot write {}", library_path.display()))?;
            println!(
                "{added} tools added to {}, {} already there",
                library_path.display(),
                plan.already_here
            );
        }
    }
    Ok(())
}

/// The library the window keeps, or its starter set when there is none yet.
fn read_library(path: &Path) -> Result<ToolLibrary> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ToolLibrary::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

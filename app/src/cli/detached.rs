//! `millpond submit`, `jobs`, `fetch` and `cancel` (ARCHITECTURE.md §4.13, §6.1): a job
//! handed to a serving member, which runs it on its pool while this computer goes away; its
//! program fetched later by its id. This side only talks to the member: it never joins the
//! pool, so a laptop can submit, close its lid and fetch the program tomorrow.

use super::format_duration;
use super::toolpath::{Prepared, ToolpathArgs, prepare};
use crate::detached::{Description, Fetched};
use crate::pool::SecretArgs;
use anyhow::{Result, bail};
use clap::Args;
use millpond_net::detached::{Client, DetachedId, JobRow, JobState};
use std::path::PathBuf;

/// The member that keeps the jobs, and the secret to reach it.
#[derive(Debug, Args)]
pub struct MemberArgs {
    /// The pool member the job was submitted to, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub pool: String,
    #[command(flatten)]
    pub secret: SecretArgs,
}

impl MemberArgs {
    fn connect(&self) -> Result<Client> {
        Ok(Client::connect(&self.pool, &self.secret.load()?)?)
    }
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The job's id, as `millpond submit` printed it.
    #[arg(value_parser = parse_id)]
    pub id: DetachedId,
    /// Where to write its G-code.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub member: MemberArgs,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The job's id, as `millpond submit` printed it.
    #[arg(value_parser = parse_id)]
    pub id: DetachedId,
    #[command(flatten)]
    pub member: MemberArgs,
}

fn parse_id(s: &str) -> Result<DetachedId, String> {
    s.parse()
}

/// `millpond submit`: the job `millpond toolpath` would run with the same options, read and
/// planned here (a mistake is said before anything is sent), then sent with its model to the
/// member; prints the job's id on stdout and returns.
pub fn submit_command(args: &ToolpathArgs) -> Result<()> {
    if let Some(output) = &args.output {
        bail!(
            "submit writes no program: once the job is complete, `millpond fetch ID -o {}` does",
            output.display()
        );
    }
    let Some(address) = &args.pool else {
        bail!("give the member that runs the job with --pool HOST:PORT");
    };
    let posts = crate::run_job::post_library(&crate::pool::config_dir());
    let Prepared {
        job,
        model,
        departures,
        post,
        program,
        ..
    } = prepare(args, &posts)?;
    let description = Description::new(&job, &post, departures, args.machine())?;
    let secret = args.secret.load()?;
    let (id, member) =
        crate::detached::submit(address, &secret, &program.title, &description, &model.mesh)?;
    println!("{id}");
    if !args.quiet {
        eprintln!(
            "millpond: job {id} ({}) queued at {} ({address}). `millpond jobs --pool {address}` \
             shows how far it is; `millpond fetch {id} -o FILE --pool {address}` writes its \
             program once it is complete",
            program.title, member
        );
    }
    Ok(())
}

/// `millpond jobs`: every job the member keeps, oldest first.
pub fn jobs_command(args: &MemberArgs) -> Result<()> {
    let rows = args.connect()?.list()?;
    if rows.is_empty() {
        eprintln!("millpond: no detached jobs at {}", args.pool);
        return Ok(());
    }
    println!(
        "{:<32}  {:<20}  {:>10}  {:>8}  title",
        "id", "state", "submitted", "eta"
    );
    for row in &rows {
        println!("{}", describe(row));
    }
    Ok(())
}

/// One job in the listing's columns; a failure's reason after its title.
fn describe(row: &JobRow) -> String {
    let state = match &row.state {
        JobState::Failed { .. } => "failed".to_string(),
        JobState::Complete { .. } => "complete".to_string(),
        s => s.to_string(),
    };
    let eta = match (&row.state, row.eta_s) {
        (JobState::Running { .. } | JobState::Queued { .. }, Some(s)) => format_duration(s as f64),
        _ => "-".into(),
    };
    let ago = format!("{} ago", format_duration(row.age_s as f64));
    let mut line = format!(
        "{:<32}  {state:<20}  {ago:>10}  {eta:>8}  {}",
        row.id, row.title
    );
    if let JobState::Failed { reason } = &row.state {
        line.push_str(&format!(": {reason}"));
    }
    line
}

/// `millpond fetch`: a complete job's program written (through a temporary file); a job
/// not complete says where it stands and fails.
pub fn fetch_command(args: &FetchArgs) -> Result<()> {
    let mut client = args.member.connect()?;
    match crate::detached::fetch_to(&mut client, args.id, &args.output)? {
        Fetched::Written(bytes) => {
            println!("{}: {bytes} bytes, job {}", args.output.display(), args.id);
            Ok(())
        }
        Fetched::NotReady(row) => bail!("{}", crate::detached::not_ready(&row)),
    }
}

/// `millpond cancel`: a queued or running job cancelled; one already over is left as it is,
/// and said (a non-zero exit).
pub fn cancel_command(args: &CancelArgs) -> Result<()> {
    let row = args.member.connect()?.cancel(args.id)?;
    match row.state {
        JobState::Cancelled => {
            println!("job {}: cancelled", row.id);
            Ok(())
        }
        state => bail!(
            "job {} was already over ({state}): nothing to cancel",
            row.id
        ),
    }
}

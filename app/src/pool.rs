//! `millpond serve` and pooled jobs from the command line.

use anyhow::{Result, bail};
use clap::Args;
use millpond_core::runner::{Executor, Local};
use millpond_net::{Pool, PoolConfig, RemoteState, SECRET_ENV, Secret};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options that give the pool secret.
#[derive(Debug, Args, Clone)]
pub struct SecretArgs {
    /// File holding the pool secret (or set MILLPOND_POOL_SECRET).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Refused: a secret on the command line is visible to every user in the process list.
    #[arg(long, hide = true)]
    pub secret: Option<String>,
}

impl SecretArgs {
    pub fn load(&self) -> Result<Secret> {
        if self.secret.is_some() {
            bail!(
                "refusing --secret: a secret given on the command line can be read by every user \
                 of this machine in the process list. Put it in a file readable only by you and \
                 pass --secret-file FILE, or set the {SECRET_ENV} environment variable"
            );
        }
        if let Some(path) = &self.secret_file {
            return Ok(Secret::from_file(path)?);
        }
        if let Some(s) = Secret::from_env() {
            return Ok(s?);
        }
        if let Some(saved) = Secret::load_saved(&config_dir())? {
            return Ok(saved);
        }
        bail!(
            "no pool secret: pass --secret-file FILE, set {SECRET_ENV}, or set one in the app's \
             Preferences"
        )
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and UDP port to listen on.
    #[arg(long, default_value = "0.0.0.0:1250")]
    pub listen: SocketAddr,
    /// A pool member to connect to, HOST:PORT (repeat for several).
    #[arg(long = "remote-server")]
    pub remote_servers: Vec<String>,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Worker threads offered to the pool (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Name shown to the other members (default: host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Find the other members on the local network: announce this one with a UDP broadcast
    /// beacon that only members with the same secret recognise, and connect to those heard.
    /// Off by default: without it nothing is broadcast.
    #[arg(long)]
    pub discover: bool,
    /// UDP port the discovery beacons go to (the same on every member).
    #[arg(long, default_value_t = millpond_net::DISCOVERY_PORT, requires = "discover")]
    pub discovery_port: u16,
}

/// Where Millpond keeps its settings (overridable with MILLPOND_CONFIG_DIR, for tests).
pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MILLPOND_CONFIG_DIR") {
        return PathBuf::from(d);
    }
    directories::ProjectDirs::from("org", "Millpond", "Millpond")
        .map(|d| d.config_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".millpond"))
}

fn workers(arg: Option<usize>) -> Result<usize> {
    match arg {
        Some(0) => bail!("--workers must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Versions to announce: the real ones, unless a test asks for others to provoke a mismatch.
fn versions(cfg: &mut PoolConfig) {
    if let Some(v) = std::env::var("MILLPOND_TEST_PROTOCOL_VERSION")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.protocol = v;
    }
    if let Some(v) = std::env::var("MILLPOND_TEST_COMPUTE_ABI")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.compute_abi = v;
    }
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MILLPOND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

pub fn serve_command(args: &ServeArgs) -> Result<()> {
    init_logging();
    let mut cfg = PoolConfig::new(args.secret.load()?);
    cfg.listen = Some(args.listen);
    cfg.remotes = args.remote_servers.clone();
    cfg.workers = workers(args.workers)?;
    if let Some(n) = &args.name {
        cfg.name = n.clone();
    }
    cfg.discover = args.discover;
    cfg.discovery_port = args.discovery_port;
    cfg.config_dir = Some(config_dir());
    // Jobs submitted to this member run here, detached (`millpond submit`, §4.13).
    cfg.detached = Some(std::sync::Arc::new(crate::detached::Runner));
    versions(&mut cfg);
    let pool = Pool::start(cfg)?;
    eprintln!(
        "millpond: serving on {} ({} workers); Ctrl-C to leave the pool",
        pool.local_addr()
            .map_or_else(|| args.listen.to_string(), |a| a.to_string()),
        workers(args.workers)?
    );
    wait_for_signal()?;
    let t = Instant::now();
    pool.shutdown();
    eprintln!(
        "millpond: left the pool in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Blocks until SIGINT, SIGTERM or SIGHUP. SIGHUP (the terminal closed, or a service
/// manager's stop) leaves the pool cleanly like the others, where its default would kill the
/// process without a word to the peers.
fn wait_for_signal() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
        }
        Ok::<_, std::io::Error>(())
    })?;
    Ok(())
}

/// Reads `--verify`: a share of the results peers send that this member recomputes, as a
/// fraction (0.03) or a percentage (3%).
pub fn parse_verify(s: &str) -> Result<f64, String> {
    millpond_net::parse_verify(s).map_err(|e| e.to_string())
}

/// Says on stderr which pool members were caught returning wrong results (named, with what
/// was thrown out), so that a run of the command line names them as the window's statistics
/// do.
pub fn report_culprits(pool: &Pool) {
    for h in pool.stats().hosts.iter().filter(|h| h.wrong_results > 0) {
        let at = h
            .address
            .as_deref()
            .map_or_else(String::new, |a| format!(" ({a})"));
        eprintln!(
            "warning: pool member {}{at} returned {} wrong result(s) (a recomputed sample or a \
             copy differed): it was cut off, and the {} result(s) it had delivered were \
             discarded and computed again",
            h.name, h.wrong_results, h.discarded_results
        );
    }
}

/// Where a command computes: in the pool when `--pool` names a member (joined for the
/// command's length), else on this computer's `threads` cores. Either way one executor.
#[allow(missing_debug_implementations)] // Pool has no Debug: a handle to threads and sockets.
pub enum Computer {
    Here(Local),
    Pool(Box<Pool>),
}

impl Computer {
    pub fn new(
        pool: Option<&str>,
        secret: &SecretArgs,
        threads: usize,
        verify: f64,
    ) -> Result<Self> {
        Ok(match pool {
            Some(address) => Computer::Pool(Box::new(join(address, secret, threads, verify)?)),
            None => Computer::Here(Local { threads }),
        })
    }

    pub fn executor(&self) -> &dyn Executor {
        match self {
            Computer::Here(local) => local,
            Computer::Pool(pool) => &**pool,
        }
    }

    /// Names the members caught returning wrong results, and leaves the pool.
    pub fn finish(self) {
        if let Computer::Pool(pool) = self {
            report_culprits(&pool);
            pool.shutdown();
        }
    }
}

/// Joins the pool at `address` as a member (offering `threads` workers, recomputing `verify`
/// of the results peers send for its jobs), waiting until the link is up.
pub fn join(address: &str, secret: &SecretArgs, threads: usize, verify: f64) -> Result<Pool> {
    init_logging();
    let mut cfg = PoolConfig::new(secret.load()?);
    cfg.remotes = vec![address.to_string()];
    cfg.workers = threads;
    cfg.verify = verify;
    cfg.name = format!("{} (cli)", cfg.name);
    cfg.config_dir = Some(config_dir());
    versions(&mut cfg);
    let pool = Pool::start(cfg)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = pool.stats();
        if let Some(r) = stats.remotes.first() {
            match r.state {
                RemoteState::Connected => return Ok(pool),
                RemoteState::AuthenticationFailed | RemoteState::VersionMismatch => {
                    bail!(
                        "cannot join the pool at {address}: {}",
                        r.last_error
                            .clone()
                            .unwrap_or_else(|| r.state.as_str().into())
                    )
                }
                _ => {}
            }
            if Instant::now() > deadline {
                bail!(
                    "cannot reach the pool at {address}: {}",
                    r.last_error.clone().unwrap_or_else(|| "no answer".into())
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

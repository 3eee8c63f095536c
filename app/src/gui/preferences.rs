//! Preferences (server mode, pool membership, machine) and the pool they start.
//!
//! Saved as `preferences.json` in the config folder (`crate::pool::config_dir`); the pool
//! secret lives in its own file, [`SECRET_FILE`], readable only by the user (mode 0600, written
//! by [`millpond_net::secret::write_private`]) — the same file `millpond serve` and
//! `millpond toolpath --pool` read when no other secret is given (see `crate::pool`).
//!
//! Server mode starts and stops the [`Pool`] on a background thread: binding, making the node
//! certificate on first start and closing the old endpoint (up to 0.3 s) must never freeze
//! the window.

use super::settings::{load_json, save_json};
use millpond_core::MachineProfile;
use millpond_net::{DEFAULT_PORT, Pool, PoolConfig, Secret};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

/// Name of the secret file in the config folder: the one name Preferences, `millpond serve`
/// and the pool share, defined where the file is read and written.
pub use millpond_net::SECRET_FILE;
pub const PREFERENCES_FILE: &str = "preferences.json";

fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What the Preferences window edits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preferences {
    /// Join the pool: listen for other members and connect to the remote servers.
    pub server_mode: bool,
    /// Address to listen on: 0.0.0.0 for every network, 127.0.0.1 for this computer only.
    pub listen_address: String,
    /// UDP port; 0 picks a free one.
    pub listen_port: u16,
    /// Members to connect to, HOST:PORT.
    pub remote_servers: Vec<String>,
    /// LAN discovery (`PoolConfig::discover`): announce this computer on the local network
    /// with a beacon only members with the same secret recognise, and connect to the members
    /// heard. Off unless chosen: off, nothing is broadcast.
    pub discover: bool,
    /// Worker threads for computing here.
    pub local_workers: usize,
    /// Percent of the results other members send for this computer's jobs that it computes
    /// again and compares (`PoolConfig::verify`).
    pub verify_percent: f64,
    /// Shown to the other members.
    pub node_name: String,
    /// The machine's X and Y rapid rate (also their fastest feed), mm/min: only for
    /// machining time estimates, as all the machine's figures here.
    pub rapid_rate: f64,
    /// Z rapid rate (and fastest feed), mm/min.
    pub rapid_rate_z: f64,
    /// X and Y acceleration, mm/s².
    pub acceleration: f64,
    /// Z acceleration, mm/s².
    pub acceleration_z: f64,
    /// Junction deviation, mm (`millpond_core::MachineProfile`).
    pub junction_deviation: f64,
    /// Seconds the spindle needs to reach its speed: the program waits this long (`G4`) after
    /// starting it, before the first move. 0 for none.
    pub spindle_dwell_s: f64,
    /// Which file dialog Open and Export use.
    pub file_browser: super::dialogs::FileBrowser,
}

impl Default for Preferences {
    fn default() -> Self {
        let hobby = MachineProfile::hobby();
        Self {
            server_mode: false,
            listen_address: "0.0.0.0".into(),
            listen_port: DEFAULT_PORT,
            remote_servers: Vec::new(),
            discover: false,
            local_workers: all_cores(),
            verify_percent: millpond_net::DEFAULT_VERIFY * 100.0,
            node_name: millpond_net::default_name(),
            rapid_rate: hobby.rapid_rate[0],
            rapid_rate_z: hobby.rapid_rate[2],
            acceleration: hobby.acceleration[0],
            acceleration_z: hobby.acceleration[2],
            junction_deviation: hobby.junction_deviation,
            spindle_dwell_s: 0.0,
            file_browser: super::dialogs::FileBrowser::Desktop,
        }
    }
}

impl Preferences {
    /// Reads the preferences (defaults if there are none); a damaged file is reported and
    /// replaced by defaults rather than stopping the app.
    pub fn load(config_dir: &Path) -> (Self, Option<String>) {
        let path = config_dir.join(PREFERENCES_FILE);
        match load_json::<Self>(&path) {
            Ok(p) => {
                let (prefs, fixed) = p.unwrap_or_default().sanitized();
                let warning = (!fixed.is_empty()).then(|| {
                    format!(
                        "{}: {}; the defaults are used instead (change them in Preferences)",
                        path.display(),
                        fixed.join("; ")
                    )
                });
                (prefs, warning)
            }
            Err(e) => (Self::default(), Some(e)),
        }
    }

    pub fn save(&self, config_dir: &Path) -> Result<(), String> {
        let path = config_dir.join(PREFERENCES_FILE);
        save_json(&path, self).map_err(|e| format!("cannot save {}: {e}", path.display()))
    }

    /// The preferences with every impossible figure (a machine with no acceleration, a
    /// negative rapid rate) replaced by its default, and what was replaced, in words: the
    /// time estimates must never be made for a machine that cannot exist, nor quietly for
    /// another one.
    fn sanitized(mut self) -> (Self, Vec<String>) {
        let mut fixed = Vec::new();
        if self.local_workers == 0 {
            self.local_workers = all_cores();
        }
        let d = Self::default();
        for (what, v, default) in [
            ("X/Y rapid rate", &mut self.rapid_rate, d.rapid_rate),
            ("Z rapid rate", &mut self.rapid_rate_z, d.rapid_rate_z),
            ("X/Y acceleration", &mut self.acceleration, d.acceleration),
            ("Z acceleration", &mut self.acceleration_z, d.acceleration_z),
            (
                "junction deviation",
                &mut self.junction_deviation,
                d.junction_deviation,
            ),
        ] {
            if !(v.is_finite() && *v > 0.0) {
                fixed.push(format!("{what} {v} is not a positive number"));
                *v = default;
            }
        }
        if !(self.spindle_dwell_s.is_finite() && (0.0..=600.0).contains(&self.spindle_dwell_s)) {
            fixed.push(format!(
                "spindle spin-up {} s is not 0 to 600 s",
                self.spindle_dwell_s
            ));
            self.spindle_dwell_s = 0.0;
        }
        (self, fixed)
    }

    /// The machine the time estimates are for.
    pub fn machine(&self) -> MachineProfile {
        let (xy, z) = (self.rapid_rate, self.rapid_rate_z);
        MachineProfile {
            max_feed: [xy, xy, z],
            rapid_rate: [xy, xy, z],
            acceleration: [self.acceleration, self.acceleration, self.acceleration_z],
            junction_deviation: self.junction_deviation,
        }
    }

    pub fn listen(&self) -> Result<SocketAddr, String> {
        let ip: IpAddr = self.listen_address.trim().parse().map_err(|_| {
            format!(
                "listen address \"{}\" is not an IP address (0.0.0.0 listens on every network)",
                self.listen_address
            )
        })?;
        Ok(SocketAddr::new(ip, self.listen_port))
    }

    /// What the pool is started with: everything but the secret.
    fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            listen: self.listen(),
            remotes: self.remote_servers.clone(),
            discover: self.discover,
            workers: self.local_workers.max(1),
            name: self.node_name.clone(),
            verify: (self.verify_percent / 100.0).clamp(0.0, 1.0),
        }
    }
}

/// Checks a remote server entry: HOST:PORT with a port number.
pub fn check_remote(s: &str) -> Result<String, String> {
    let s = s.trim();
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "\"{s}\": give HOST:PORT, for example workshop-pc:{DEFAULT_PORT}"
        ));
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!(
            "\"{s}\": give HOST:PORT with a port from 1 to 65535"
        ));
    }
    Ok(s.to_string())
}

/// The pool secret in the config folder, if one was saved there.
pub fn load_secret(config_dir: &Path) -> Result<Option<Secret>, String> {
    Secret::load_saved(config_dir).map_err(|e| e.to_string())
}

/// Saves the secret, readable only by the user.
pub fn save_secret(config_dir: &Path, secret: &Secret) -> Result<(), String> {
    secret.save_in(config_dir).map(|_| ()).map_err(|e| {
        format!(
            "cannot save the pool secret to {}: {e}",
            config_dir.join(SECRET_FILE).display()
        )
    })
}

#[derive(Clone, Debug, PartialEq)]
struct PoolSettings {
    listen: Result<SocketAddr, String>,
    remotes: Vec<String>,
    discover: bool,
    workers: usize,
    name: String,
    verify: f64,
}

/// Where server mode is.
#[derive(Debug, Clone)]
pub enum PoolState {
    Off,
    Starting,
    Running(Arc<Pool>),
    Stopping,
    Failed(String),
}

impl PoolState {
    pub fn describe(&self) -> String {
        match self {
            PoolState::Off => "off (computing on this computer only)".into(),
            PoolState::Starting => "starting…".into(),
            PoolState::Running(p) => match p.local_addr() {
                Some(a) => format!("on, listening on UDP {a}"),
                None => "on".into(),
            },
            PoolState::Stopping => "stopping…".into(),
            PoolState::Failed(e) => format!("failed: {e}"),
        }
    }
}

/// Starts, restarts and stops the pool off the UI thread.
#[derive(Debug)]
pub struct PoolControl {
    state: PoolState,
    /// The settings the running (or starting) pool was started with.
    running_with: Option<(PoolSettings, Secret)>,
    generation: u64,
    tx: Sender<(u64, Result<Pool, String>)>,
    rx: Receiver<(u64, Result<Pool, String>)>,
    repaint: egui::Context,
    config_dir: PathBuf,
}

impl PoolControl {
    /// Runs `work` off the UI thread (stopping or starting a pool can take a while) and hands
    /// its outcome back tagged with the current generation; the window repaints to take it.
    fn in_background(&self, work: impl FnOnce() -> Result<Pool, String> + Send + 'static) {
        let tx = self.tx.clone();
        let generation = self.generation;
        let repaint = self.repaint.clone();
        std::thread::spawn(move || {
            let _ = tx.send((generation, work()));
            repaint.request_repaint();
        });
    }

    pub fn new(repaint: egui::Context, config_dir: PathBuf) -> Self {
        let (tx, rx) = channel();
        Self {
            state: PoolState::Off,
            running_with: None,
            generation: 0,
            tx,
            rx,
            repaint,
            config_dir,
        }
    }

    pub fn state(&self) -> &PoolState {
        &self.state
    }

    pub fn pool(&self) -> Option<&Arc<Pool>> {
        match &self.state {
            PoolState::Running(p) => Some(p),
            _ => None,
        }
    }

    /// Brings the pool in line with `prefs`: starts it, stops it, or restarts it when
    /// anything it was started with changed. Returns at once.
    pub fn apply(&mut self, prefs: &Preferences, secret: Option<&Secret>) {
        let wanted = match (prefs.server_mode, secret) {
            (false, _) => None,
            (true, None) => {
                self.stop();
                self.state = PoolState::Failed(
                    "no pool secret: generate one or enter the secret of the pool to join".into(),
                );
                return;
            }
            (true, Some(s)) => Some((prefs.pool_settings(), s.clone())),
        };
        if wanted == self.running_with
            && matches!(self.state, PoolState::Running(_) | PoolState::Starting)
        {
            return;
        }
        let old = self.take_pool();
        self.generation += 1;
        let Some((settings, secret)) = wanted else {
            self.running_with = None;
            self.state = PoolState::Off;
            if let Some(old) = old {
                self.state = PoolState::Stopping;
                self.in_background(move || {
                    drop(old);
                    Err(String::new())
                });
            }
            return;
        };
        let listen = match &settings.listen {
            Ok(l) => *l,
            Err(e) => {
                let e = e.clone();
                self.running_with = None;
                self.state = PoolState::Failed(e);
                if let Some(old) = old {
                    std::thread::spawn(move || drop(old));
                }
                return;
            }
        };
        let mut cfg = PoolConfig::new(secret.clone());
        cfg.listen = Some(listen);
        cfg.remotes = settings.remotes.clone();
        cfg.discover = settings.discover;
        cfg.workers = settings.workers;
        cfg.verify = settings.verify;
        if !settings.name.trim().is_empty() {
            cfg.name = settings.name.trim().to_string();
        }
        cfg.config_dir = Some(self.config_dir.clone());
        self.running_with = Some((settings, secret));
        self.state = PoolState::Starting;
        self.in_background(move || {
            // The old endpoint must be closed before the new one binds the same port.
            drop(old);
            Pool::start(cfg).map_err(|e| e.to_string())
        });
    }

    fn take_pool(&mut self) -> Option<Arc<Pool>> {
        match std::mem::replace(&mut self.state, PoolState::Off) {
            PoolState::Running(p) => Some(p),
            other => {
                self.state = other;
                None
            }
        }
    }

    fn stop(&mut self) {
        let old = self.take_pool();
        self.generation += 1;
        self.running_with = None;
        self.state = PoolState::Off;
        if let Some(old) = old {
            std::thread::spawn(move || drop(old));
        }
    }

    /// Picks up a pool that finished starting (or stopping).
    pub fn poll(&mut self) {
        while let Ok((generation, result)) = self.rx.try_recv() {
            if generation != self.generation {
                // Superseded while starting: leave it again, off the UI thread.
                if let Ok(pool) = result {
                    std::thread::spawn(move || pool.shutdown());
                }
                continue;
            }
            self.state = match result {
                Ok(pool) => PoolState::Running(Arc::new(pool)),
                Err(e) if e.is_empty() => PoolState::Off,
                Err(e) => {
                    self.running_with = None;
                    PoolState::Failed(e)
                }
            };
        }
    }

    /// Leaves the pool for good, waiting at most until `deadline`: peers see the close at
    /// once (the endpoint closes with the QUIT code first thing), and the app exits even if
    /// the close is not confirmed in time.
    pub fn shutdown_by(&mut self, deadline: Instant) {
        self.generation += 1;
        let Some(pool) = self.take_pool() else {
            return;
        };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            match Arc::try_unwrap(pool) {
                Ok(pool) => pool.shutdown(),
                Err(shared) => drop(shared),
            }
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        self.state = PoolState::Off;
    }
}

/// How long quitting may wait for the pool's close to go out.
pub const QUIT_POOL_WAIT: Duration = Duration::from_millis(350);

#[cfg(test)]
mod tests {
    use super::*;

    /// The Preferences window's state can be logged without the secret typed in it.
    #[test]
    fn the_secret_field_is_hidden_from_debug() {
        let mut ui = crate::gui::app::PrefsUi::default();
        assert!(format!("{ui:?}").contains(r#"secret_text: "(empty)""#));
        ui.secret_text = zeroize::Zeroizing::new("correct horse battery".into());
        let shown = format!("{ui:?}");
        assert!(!shown.contains("correct horse"), "{shown}");
        assert!(shown.contains(r#"secret_text: "(hidden)""#), "{shown}");
    }

    #[test]
    fn remote_entries_need_host_and_port() {
        assert_eq!(check_remote(" pc:1250 ").unwrap(), "pc:1250");
        assert!(check_remote("[::1]:1250").is_ok());
        assert!(check_remote("pc").is_err());
        assert!(check_remote(":1250").is_err());
        assert!(check_remote("pc:0").is_err());
        assert!(check_remote("pc:99999").is_err());
    }

    #[test]
    fn preferences_round_trip_and_fill_missing_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Preferences {
            server_mode: true,
            ..Preferences::default()
        };
        p.remote_servers.push("a:1".into());
        p.save(dir.path()).unwrap();
        assert_eq!(Preferences::load(dir.path()), (p, None));
        std::fs::write(dir.path().join(PREFERENCES_FILE), br#"{"listen_port": 7}"#).unwrap();
        let (q, warning) = Preferences::load(dir.path());
        assert_eq!(q.listen_port, 7);
        assert_eq!(q.listen_address, "0.0.0.0");
        assert!(warning.is_none());
    }

    /// A hand-edited machine that cannot exist is replaced by the default one, and the user
    /// is told which figure and why: estimates are never made for it, nor quietly for
    /// another machine.
    #[test]
    fn an_impossible_machine_is_named_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(PREFERENCES_FILE),
            br#"{"acceleration": 0.0, "rapid_rate_z": -1500.0, "spindle_dwell_s": 2.0}"#,
        )
        .unwrap();
        let (p, warning) = Preferences::load(dir.path());
        let d = Preferences::default();
        assert_eq!(
            (p.acceleration, p.rapid_rate_z),
            (d.acceleration, d.rapid_rate_z)
        );
        assert_eq!(p.spindle_dwell_s, 2.0);
        assert!(p.machine().validate().is_ok());
        let w = warning.unwrap();
        assert!(
            w.contains(PREFERENCES_FILE)
                && w.contains("X/Y acceleration 0 is not a positive number")
                && w.contains("Z rapid rate -1500 is not a positive number"),
            "{w}"
        );
    }

    #[test]
    fn secret_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_secret(dir.path()).unwrap().is_none());
        let s = Secret::generate();
        save_secret(dir.path(), &s).unwrap();
        assert_eq!(load_secret(dir.path()).unwrap(), Some(s));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }
}

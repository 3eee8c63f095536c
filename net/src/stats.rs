//! The statistics snapshot the app's Process Statistics panel shows (design.md §4).

/// How a host looks from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostState {
    Connecting,
    Authenticated,
    Busy,
    Idle,
    Lost,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Connecting => "connecting",
            HostState::Authenticated => "authenticated",
            HostState::Busy => "busy",
            HostState::Idle => "idle",
            HostState::Lost => "lost",
        }
    }
}

/// One host of the pool (this one first).
#[derive(Clone, Debug, PartialEq)]
pub struct HostStats {
    pub node: u64,
    pub name: String,
    pub address: Option<String>,
    /// 0 for this host, 1 for a direct link, more for hosts known by gossip.
    pub hops: u8,
    pub workers: u32,
    /// Busy workers.
    pub load: u32,
    pub state: HostState,
    /// Chunks this host's link delivered here (for this host: computed here).
    pub chunks_done: u64,
    pub avg_compute_s: f64,
    pub avg_transfer_s: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rtt_ms: f64,
    pub last_heard_s: f64,
    /// Meshes received over / sent down this link.
    pub meshes_in: u64,
    pub meshes_out: u64,
}

/// One job this host owns.
#[derive(Clone, Debug, PartialEq)]
pub struct JobStats {
    pub id: String,
    pub chunks_done: u32,
    pub chunks_total: u32,
    pub local_chunks: u32,
    pub remote_chunks: u32,
    pub points_per_s: f64,
    pub eta_s: f64,
}

/// Connection state of a configured remote server, in words a user understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteState {
    Connecting,
    Connected,
    Unreachable,
    AuthenticationFailed,
    VersionMismatch,
}

impl RemoteState {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteState::Connecting => "connecting",
            RemoteState::Connected => "connected",
            RemoteState::Unreachable => "unreachable",
            RemoteState::AuthenticationFailed => "authentication failed",
            RemoteState::VersionMismatch => "version mismatch",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RemoteStatus {
    pub address: String,
    pub state: RemoteState,
    pub last_error: Option<String>,
}

/// Everything at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolStats {
    pub node: u64,
    pub name: String,
    pub hosts: Vec<HostStats>,
    pub jobs: Vec<JobStats>,
    pub remotes: Vec<RemoteStatus>,
}

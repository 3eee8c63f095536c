//! Remote servers (ARCHITECTURE.md §4.4), configured or found by LAN discovery (§4.12): when
//! to dial, and the back-off after a failed dial or a lost link.

use super::{Action, LinkId, Node};
use crate::stats::RemoteState;
use crate::wire::NodeId;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// A server this node keeps linked to.
pub(super) struct Remote {
    pub address: String,
    pub state: RemoteState,
    pub last_error: Option<String>,
    failures: u32,
    next_try: Instant,
    dialing: bool,
    link: Option<LinkId>,
    /// When its link came up: one lost soon after counts as a failed dial.
    linked_at: Option<Instant>,
    /// For a member found by LAN discovery: who announced itself at the address, and when it
    /// was last heard of; `None` for one the user configured.
    pub found: Option<Found>,
}

/// A discovered member's remote.
#[derive(Clone, Copy, Debug)]
pub(super) struct Found {
    pub peer: NodeId,
    pub heard: Instant,
    /// Forgotten (its slot free for the next member found): it stopped announcing itself
    /// and no link or dial holds it. Never dialled, not in the statistics.
    pub retired: bool,
}

impl Remote {
    pub fn new(address: &str, now: Instant) -> Self {
        Self {
            address: address.into(),
            state: RemoteState::Connecting,
            last_error: None,
            failures: 0,
            next_try: now,
            dialing: false,
            link: None,
            linked_at: None,
            found: None,
        }
    }

    /// A member found by LAN discovery at `address`, first dialled at `first_try`.
    pub fn discovered(address: &str, peer: NodeId, now: Instant, first_try: Instant) -> Self {
        Self {
            next_try: first_try,
            found: Some(Found {
                peer,
                heard: now,
                retired: false,
            }),
            ..Self::new(address, now)
        }
    }

    /// A live discovered member's (not retired).
    pub fn discovered_peer(&self) -> Option<NodeId> {
        self.found.filter(|f| !f.retired).map(|f| f.peer)
    }

    pub fn retired(&self) -> bool {
        self.found.is_some_and(|f| f.retired)
    }

    /// The link it is connected by, if any.
    pub fn link(&self) -> Option<LinkId> {
        self.link
    }

    /// Neither linked nor dialling: nothing will come back for it.
    pub fn idle(&self) -> bool {
        self.link.is_none() && !self.dialing
    }

    /// A discovered member announced itself again, at `address`: dialled at once if it moved.
    pub fn heard(&mut self, now: Instant, address: &str) {
        if let Some(f) = &mut self.found {
            f.heard = now;
        }
        if self.address != address && self.idle() {
            self.address = address.into();
            self.failures = 0;
            self.next_try = now;
        }
    }

    /// Forgets a discovered member (see [`Found::retired`]).
    pub fn retire(&mut self) {
        if let Some(f) = &mut self.found {
            f.retired = true;
        }
    }

    /// Whether to dial now; if so it counts as dialling until it links or fails.
    pub fn due(&mut self, now: Instant) -> bool {
        if self.link.is_some() || self.dialing || now < self.next_try || self.retired() {
            return false;
        }
        self.dialing = true;
        // A refusal stays on show while redialling: it needs the user, not patience.
        if self.state != RemoteState::AuthenticationFailed
            && self.state != RemoteState::VersionMismatch
        {
            self.state = RemoteState::Connecting;
        }
        true
    }

    /// A dial failed: growing back-off, longer for a wrong secret (0.5 s or 2 s doubling,
    /// at most 30 s).
    pub fn failed(&mut self, now: Instant, state: RemoteState, error: String) {
        self.dialing = false;
        self.failures += 1;
        let base = if state == RemoteState::AuthenticationFailed {
            2.0
        } else {
            0.5
        };
        let delay = (base * 2f64.powi(self.failures.min(6) as i32 - 1)).min(30.0);
        self.next_try = now + Duration::from_secs_f64(delay);
        info!("remote {}: {error}; retrying in {delay:.1} s", self.address);
        self.state = state;
        self.last_error = Some(error);
    }

    /// The address leads back to this node: try again only much later.
    pub fn is_self(&mut self, now: Instant) {
        self.dialing = false;
        self.state = RemoteState::Unreachable;
        self.last_error = Some("that address is this node itself".into());
        self.next_try = now + Duration::from_secs(30);
    }

    /// Linked by `link`. Its failures are forgotten only once the link has lasted
    /// ([`SHORT_LINK`]): a member that takes the link and closes it at once (one with all
    /// the links it takes, say) is not dialled again twice a second.
    pub fn connected(&mut self, now: Instant, link: LinkId) {
        self.dialing = false;
        self.state = RemoteState::Connected;
        self.last_error = None;
        self.link = Some(link);
        self.linked_at = Some(now);
    }

    /// Its link dropped: redial after 0.5 s, or after the growing back-off of a failed dial
    /// where the link lasted less than [`SHORT_LINK`].
    pub fn lost(&mut self, now: Instant, reason: &str) {
        self.link = None;
        self.state = RemoteState::Connecting;
        self.last_error = Some(format!("link lost: {reason}"));
        let lasted = self
            .linked_at
            .take()
            .is_some_and(|t| now.saturating_duration_since(t) >= SHORT_LINK);
        if lasted {
            self.failures = 0;
            self.next_try = now + Duration::from_millis(500);
        } else {
            self.failures += 1;
            let delay = (0.5 * 2f64.powi(self.failures.min(6) as i32 - 1)).min(30.0);
            self.next_try = now + Duration::from_secs_f64(delay);
        }
    }
}

/// A link that lasts less than this before it is lost counts as a failed dial (`Remote::lost`).
pub const SHORT_LINK: Duration = Duration::from_secs(2);

/// Discovered members connected at most at once (besides those the user configured): a LAN
/// with more members reaches them through the ones it links to (gossip, relays).
pub const MAX_DISCOVERED: usize = 64;
/// Of two members that discover each other, the one with the larger node id dials this much
/// later, so that both rarely dial at the same instant (a second link between them is refused
/// as a duplicate, `links.rs`); it still dials if the other could not reach it.
pub const DISCOVERED_DEFER: Duration = Duration::from_secs(2);
/// A discovered member not announced again for this long, neither linked nor being dialled,
/// is forgotten. Discovery hands on a member it keeps hearing every
/// [`REDIAL_AFTER`](super::discovery::REDIAL_AFTER).
pub const FORGET_DISCOVERED: Duration = Duration::from_secs(120);

impl Node {
    /// LAN discovery heard `peer` announce itself at `address` (its tag checked): connect to
    /// it as to a remote server added by hand, unless it is linked or known already.
    pub(super) fn discovered(&mut self, now: Instant, peer: NodeId, address: SocketAddr) {
        if peer == self.s.id {
            return;
        }
        let text = address.to_string();
        if let Some(r) = self
            .remotes
            .iter_mut()
            .find(|r| r.discovered_peer() == Some(peer))
        {
            return r.heard(now, &text);
        }
        // Linked already (it dialled here first, or a configured remote reaches it), or
        // configured at this very address: nothing to add.
        if self.links.values().any(|l| l.peer == peer)
            || self
                .remotes
                .iter()
                .any(|r| !r.retired() && r.address == text)
        {
            return;
        }
        let live = self
            .remotes
            .iter()
            .filter(|r| r.discovered_peer().is_some())
            .count();
        if live >= MAX_DISCOVERED {
            debug!("discovered member at {text} left out: {MAX_DISCOVERED} are connected");
            return;
        }
        let first_try = if self.s.id < peer {
            now
        } else {
            now + DISCOVERED_DEFER
        };
        info!("found a pool member at {text} on the local network");
        let remote = Remote::discovered(&text, peer, now, first_try);
        match self.remotes.iter().position(Remote::retired) {
            Some(slot) => self.remotes[slot] = remote,
            None => self.remotes.push(remote),
        }
    }

    /// Dials the remotes that are due; a discovered member already linked (it dialled here)
    /// takes that link instead, and one silent for [`FORGET_DISCOVERED`] is forgotten.
    pub(super) fn dial_remotes(&mut self, now: Instant) {
        for i in 0..self.remotes.len() {
            let r = &mut self.remotes[i];
            if let Some(peer) = r.discovered_peer().filter(|_| r.idle()) {
                if let Some((&link, _)) = self.links.iter().find(|(_, l)| l.peer == peer) {
                    r.connected(now, link);
                    continue;
                }
                if r.found
                    .is_some_and(|f| now.saturating_duration_since(f.heard) >= FORGET_DISCOVERED)
                {
                    info!(
                        "forgetting {}: no longer announced on the local network",
                        r.address
                    );
                    r.retire();
                    continue;
                }
            }
            if r.due(now) {
                let address = r.address.clone();
                self.out.push(Action::Dial { remote: i, address });
            }
        }
    }
}

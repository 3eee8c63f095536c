//! Configured remote servers (ARCHITECTURE.md §4.4): when to dial, and the back-off after a
//! failed dial or a lost link.

use super::LinkId;
use crate::stats::RemoteState;
use std::time::{Duration, Instant};
use tracing::info;

/// A server this node keeps linked to.
pub(super) struct Remote {
    pub address: String,
    pub state: RemoteState,
    pub last_error: Option<String>,
    failures: u32,
    next_try: Instant,
    dialing: bool,
    link: Option<LinkId>,
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
        }
    }

    /// Whether to dial now; if so it counts as dialling until it links or fails.
    pub fn due(&mut self, now: Instant) -> bool {
        if self.link.is_some() || self.dialing || now < self.next_try {
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

    pub fn connected(&mut self, link: LinkId) {
        self.dialing = false;
        self.state = RemoteState::Connected;
        self.last_error = None;
        self.failures = 0;
        self.link = Some(link);
    }

    /// Its link dropped: redial after 0.5 s.
    pub fn lost(&mut self, now: Instant, reason: &str) {
        self.link = None;
        self.state = RemoteState::Connecting;
        self.last_error = Some(format!("link lost: {reason}"));
        self.next_try = now + Duration::from_millis(500);
    }
}

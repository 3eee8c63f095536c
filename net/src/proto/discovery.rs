//! LAN discovery without I/O (ARCHITECTURE.md §4.12; issue 17, point 6): the beacon a member
//! broadcasts on its local network, and what a member makes of the beacons it hears.
//!
//! A beacon says "a member of *some* pool listens on UDP port P of the machine this datagram
//! came from" in a way only members of the same pool can read. It carries a fresh random
//! nonce, the sender's node id, a sequence number and its pool port, and a tag: HMAC-SHA256
//! over all of them under a key derived from the pool secret ([`DiscoveryKey`]), never the
//! secret itself. Someone without the secret sees random-looking bytes that change with every
//! beacon (the nonce), cannot make a beacon a member accepts, and cannot tell two pools apart.
//! What it can do is what it could do with any captured bytes: test guesses of the secret
//! against a tag offline. The key is therefore derived slowly (PBKDF2, [`KEY_ITERATIONS`]),
//! and a generated secret (160 random bits, `Secret::generate`) is beyond guessing; a short
//! typed one is not, which the Preferences tooltip says.
//!
//! [`Discovery::receive`] checks each datagram's size before reading it, then its magic and
//! version, its tag (in constant time, `ring::hmac::verify`), that it is not this member's
//! own, not a nonce heard lately ([`MAX_NONCES`] remembered) and not older than the last
//! sequence number heard from its sender. What passes names a member; a member heard of for
//! the first time, at a new address, or not dialled for [`REDIAL_AFTER`] yields a [`Dial`]
//! (the datagram's source address with the announced port), at most [`DIAL_BURST`] at once
//! and [`DIALS_PER_SECOND`] after that. The shell hands a dial to the protocol, which
//! connects it as a remote server added by hand (`Node::discovered`). Members are remembered
//! for [`FORGET_AFTER`] after their last beacon, at most [`MAX_MEMBERS`] of them.
//! Everything else is counted in [`DiscoveryStats`] and otherwise ignored: a beacon from
//! another pool is no error, only a neighbour.

use crate::secret::Secret;
use crate::wire::NodeId;
use ring::hmac;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// The UDP port beacons are sent to and heard on, unless configured otherwise.
pub const DISCOVERY_PORT: u16 = 47_474;
/// First bytes of every beacon: "Millpond discovery".
pub const MAGIC: [u8; 4] = *b"MPDS";
/// Beacon format version: a beacon of another version is ignored as foreign.
pub const VERSION: u8 = 1;
/// Bytes of a beacon's random nonce.
pub const NONCE_LEN: usize = 16;
/// Bytes of a beacon's tag (HMAC-SHA256).
pub const TAG_LEN: usize = 32;
/// What the tag covers: magic, version, nonce, node id, sequence number, port.
const SIGNED_LEN: usize = MAGIC.len() + 1 + NONCE_LEN + 8 + 8 + 2;
/// A beacon's exact size; a datagram of any other size is not one.
pub const BEACON_LEN: usize = SIGNED_LEN + TAG_LEN;
/// PBKDF2-HMAC-SHA256 iterations deriving the beacon key: a tenth of a second or so once at
/// start, the same for every guess someone makes at the secret from a captured beacon.
pub const KEY_ITERATIONS: u32 = 200_000;
/// PBKDF2's salt: fixed (the pool has nothing else both sides know), it separates this key
/// from every other use of the secret.
const KEY_SALT: &[u8] = b"millpond lan discovery v1";
/// Time between two beacons, before jitter ([`beacon_delay`]).
pub const BEACON_EVERY: Duration = Duration::from_secs(4);
/// Nonces remembered against replays, the oldest forgotten first: at one beacon every few
/// seconds per member, several minutes of a large LAN's beacons.
pub const MAX_NONCES: usize = 1024;
/// Members remembered at most; past it the one heard from longest ago is forgotten.
pub const MAX_MEMBERS: usize = 256;
/// A member not heard from for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(180);
/// A member already dialled is dialled again (handed to the protocol again, which drops it if
/// linked) only after this long: the protocol redials a known member by itself.
pub const REDIAL_AFTER: Duration = Duration::from_secs(30);
/// Dials that may be made at once.
pub const DIAL_BURST: u32 = 16;
/// Dials per second after a burst.
pub const DIALS_PER_SECOND: u32 = 2;

/// The key beacons are tagged with, derived from the pool secret. The secret itself is never
/// used on the network.
#[derive(Clone)]
pub struct DiscoveryKey(hmac::Key);

impl DiscoveryKey {
    /// The key of `secret`'s pool: PBKDF2-HMAC-SHA256 with [`KEY_ITERATIONS`] and a fixed
    /// label as salt.
    pub fn new(secret: &Secret) -> Self {
        Self::with_iterations(secret, KEY_ITERATIONS)
    }

    fn with_iterations(secret: &Secret, iterations: u32) -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN),
            KEY_SALT,
            secret.as_bytes(),
            &mut bytes[..],
        );
        Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes[..]))
    }
}

impl std::fmt::Debug for DiscoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscoveryKey(…)")
    }
}

/// What a beacon says, once its tag is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beacon {
    pub nonce: [u8; NONCE_LEN],
    pub node: NodeId,
    /// Counts up with each beacon of its sender (a new node id at each start).
    pub seq: u64,
    /// The sender's pool port (UDP, QUIC).
    pub port: u16,
}

/// Lays a beacon out and tags it.
pub fn encode(key: &DiscoveryKey, beacon: &Beacon) -> [u8; BEACON_LEN] {
    let mut out = [0u8; BEACON_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&MAGIC);
    put(&[VERSION]);
    put(&beacon.nonce);
    put(&beacon.node.0.to_le_bytes());
    put(&beacon.seq.to_le_bytes());
    put(&beacon.port.to_le_bytes());
    let tag = hmac::sign(&key.0, &out[..SIGNED_LEN]);
    out[SIGNED_LEN..].copy_from_slice(tag.as_ref());
    out
}

/// Why a datagram was not taken as a beacon of this pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Not [`BEACON_LEN`] bytes.
    Size,
    /// Another magic or version: not a beacon, or one of another version.
    Foreign,
    /// The tag does not match: another pool's beacon, or a damaged or forged one.
    Tag,
    /// This member's own beacon, heard back.
    Own,
    /// A nonce heard lately, or a sequence number not above the last one heard from its
    /// sender: a copy.
    Replayed,
    /// Port 0, or a source address nobody can dial (unspecified, broadcast, multicast).
    Unusable,
}

/// Reads a beacon: size, magic and version, then the tag in constant time; nothing is read
/// from the bytes before their size is checked, and nothing but the header before the tag is.
pub fn decode(key: &DiscoveryKey, bytes: &[u8]) -> Result<Beacon, Ignored> {
    let bytes: &[u8; BEACON_LEN] = bytes.try_into().map_err(|_| Ignored::Size)?;
    if bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(Ignored::Foreign);
    }
    let (signed, tag) = bytes.split_at(SIGNED_LEN);
    hmac::verify(&key.0, signed, tag).map_err(|_| Ignored::Tag)?;
    let field = |at: usize| -> [u8; 8] {
        let mut b = [0u8; 8];
        b.copy_from_slice(&signed[at..at + 8]);
        b
    };
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&signed[5..5 + NONCE_LEN]);
    let at = 5 + NONCE_LEN;
    Ok(Beacon {
        nonce,
        node: NodeId(u64::from_le_bytes(field(at))),
        seq: u64::from_le_bytes(field(at + 8)),
        port: u16::from_le_bytes([signed[at + 16], signed[at + 17]]),
    })
}

/// Time until the next beacon: [`BEACON_EVERY`] ± a quarter, drawn from `random`, so that
/// members started together do not keep sending at the same instant.
pub fn beacon_delay(random: u64) -> Duration {
    let quarter = BEACON_EVERY.as_millis() as u64 / 4;
    let ms = BEACON_EVERY.as_millis() as u64 - quarter + random % (2 * quarter + 1);
    Duration::from_millis(ms)
}

/// Connect to the member that announced itself at `address`: what [`Discovery::receive`]
/// asks of the shell, which hands it to the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dial {
    pub peer: NodeId,
    pub address: SocketAddr,
}

/// Counts of what discovery sent and heard, for the statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    pub sent: u64,
    /// Beacons of this pool taken (each member's, not this one's own).
    pub accepted: u64,
    /// Dials asked for.
    pub dials: u64,
    /// Datagrams of the wrong size or not beacons of this version.
    pub malformed: u64,
    /// Beacons whose tag did not match: other pools', damaged or forged.
    pub foreign: u64,
    pub replayed: u64,
    /// This member's own beacons heard back.
    pub own: u64,
    pub unusable: u64,
    /// Members remembered now.
    pub members: u32,
}

/// A member heard of.
#[derive(Clone, Copy, Debug)]
struct Member {
    address: SocketAddr,
    last_seen: Instant,
    last_seq: u64,
    /// When it was last dialled; `None`: not yet (the dial rate held it back).
    dialled: Option<Instant>,
}

/// One member's discovery state: its key, its own beacons, and the members it heard.
#[derive(Debug)]
pub struct Discovery {
    key: DiscoveryKey,
    own: NodeId,
    port: u16,
    seq: u64,
    nonces: HashSet<[u8; NONCE_LEN]>,
    nonce_order: VecDeque<[u8; NONCE_LEN]>,
    members: HashMap<NodeId, Member>,
    /// Dials that may be made now (a token bucket: [`DIAL_BURST`], [`DIALS_PER_SECOND`]).
    tokens: f64,
    refilled: Instant,
    stats: DiscoveryStats,
}

impl Discovery {
    /// Discovery for the member `own`, whose pool listens on `port`.
    pub fn new(key: DiscoveryKey, own: NodeId, port: u16, now: Instant) -> Self {
        Self {
            key,
            own,
            port,
            seq: 0,
            nonces: HashSet::new(),
            nonce_order: VecDeque::new(),
            members: HashMap::new(),
            tokens: f64::from(DIAL_BURST),
            refilled: now,
            stats: DiscoveryStats::default(),
        }
    }

    /// This member's next beacon, with `nonce` (fresh from the system's random source).
    pub fn beacon(&mut self, nonce: [u8; NONCE_LEN]) -> [u8; BEACON_LEN] {
        self.seq += 1;
        self.stats.sent += 1;
        let beacon = Beacon {
            nonce,
            node: self.own,
            seq: self.seq,
            port: self.port,
        };
        encode(&self.key, &beacon)
    }

    /// A datagram `from` the network: the member to dial, if it is a beacon of this pool that
    /// asks for one. Anything else is counted and otherwise ignored.
    pub fn receive(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Option<Dial> {
        self.forget(now);
        match self.check(now, from, bytes) {
            Ok(dial) => dial,
            Err(why) => {
                let count = match why {
                    Ignored::Size | Ignored::Foreign => &mut self.stats.malformed,
                    Ignored::Tag => &mut self.stats.foreign,
                    Ignored::Own => &mut self.stats.own,
                    Ignored::Replayed => &mut self.stats.replayed,
                    Ignored::Unusable => &mut self.stats.unusable,
                };
                *count += 1;
                None
            }
        }
    }

    fn check(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<Option<Dial>, Ignored> {
        let b = decode(&self.key, bytes)?;
        if b.node == self.own {
            return Err(Ignored::Own);
        }
        let ip = from.ip();
        let unusable = match ip {
            IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified(),
            IpAddr::V6(v6) => v6.is_multicast() || v6.is_unspecified(),
        };
        if b.port == 0 || unusable {
            return Err(Ignored::Unusable);
        }
        if self.nonces.contains(&b.nonce)
            || self
                .members
                .get(&b.node)
                .is_some_and(|m| b.seq <= m.last_seq)
        {
            return Err(Ignored::Replayed);
        }
        self.remember_nonce(b.nonce);
        self.stats.accepted += 1;
        let address = SocketAddr::new(ip, b.port);
        if !self.members.contains_key(&b.node) && self.members.len() >= MAX_MEMBERS {
            self.forget_oldest();
        }
        let m = self.members.entry(b.node).or_insert(Member {
            address,
            last_seen: now,
            last_seq: b.seq,
            dialled: None,
        });
        let moved = m.address != address;
        m.address = address;
        m.last_seen = now;
        m.last_seq = b.seq;
        let due = moved
            || m.dialled
                .is_none_or(|t| now.saturating_duration_since(t) >= REDIAL_AFTER);
        self.stats.members = self.members.len() as u32;
        if !due || !self.take_token(now) {
            return Ok(None);
        }
        if let Some(m) = self.members.get_mut(&b.node) {
            m.dialled = Some(now);
        }
        self.stats.dials += 1;
        Ok(Some(Dial {
            peer: b.node,
            address,
        }))
    }

    fn remember_nonce(&mut self, nonce: [u8; NONCE_LEN]) {
        if self.nonce_order.len() >= MAX_NONCES
            && let Some(old) = self.nonce_order.pop_front()
        {
            self.nonces.remove(&old);
        }
        self.nonces.insert(nonce);
        self.nonce_order.push_back(nonce);
    }

    fn forget_oldest(&mut self) {
        let oldest = self
            .members
            .iter()
            .min_by_key(|(id, m)| (m.last_seen, **id))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.members.remove(&id);
        }
    }

    /// Forgets members not heard from for [`FORGET_AFTER`].
    pub fn forget(&mut self, now: Instant) {
        self.members
            .retain(|_, m| now.saturating_duration_since(m.last_seen) < FORGET_AFTER);
        self.stats.members = self.members.len() as u32;
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens =
            (self.tokens + elapsed * f64::from(DIALS_PER_SECOND)).min(f64::from(DIAL_BURST));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn stats(&self) -> DiscoveryStats {
        self.stats
    }

    /// Nonces remembered now (tests check the bound).
    pub fn nonces_remembered(&self) -> usize {
        self.nonce_order.len()
    }
}

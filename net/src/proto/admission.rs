//! Newcomers before they authenticate (ARCHITECTURE.md §4.4; issue 17, point 3), without
//! I/O: how many connections may be in their handshake or authentication at once, from
//! everywhere and from one host; when a newcomer must first prove its address (a QUIC retry);
//! and for how long a source that failed, timed out or never spoke is refused. The shell's
//! accept loop (`dial.rs`) asks [`Admission::admit`] for each incoming connection before it
//! spends anything on it, and reports how each admitted one ended ([`Admission::end`]).
//!
//! Back-off is kept twice, for two reasons. Per **source** (address and port): one program
//! dials from one UDP port (a Millpond member's endpoint keeps its port for every dial), so
//! a machine with the wrong secret, or a guesser that keeps its socket, is refused for a
//! growing time, up to a minute. Per **host** (the IP address; for IPv6 its /64, which one
//! machine usually has whole) only briefly, at most [`HOST_BACKOFF_MAX`]: machines behind
//! one NAT share that address, and a neighbour's wrong secret must not lock out an honest
//! machine for longer than a few seconds. A guesser that cycles ports to escape its source's
//! back-off is what the host's share is for: once failures come from more than
//! [`HOST_SOURCES`] sources of one host, the host gets the long curve too (locking out its
//! neighbours as well: an attack and a misconfigured neighbour look alike only up to there).
//! Only a failure from an address known to be real (a completed handshake, or a retry
//! token) counts against its host: a handshake that merely timed out may have come from a
//! forged address, and must not let a forger lock a host out.

use crate::stats::NewcomerStats;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Connections in their handshake or authentication at once, from everywhere. An honest pool
/// has a handful of newcomers at a time (a workshop's machines starting together); a pending
/// connection costs a task and at most [`crate::tls::PREAUTH_WINDOW`] of buffered data plus
/// quinn's and TLS's state (tens of kB), so 64 of them stay within a few MB. It matches
/// quinn's own backlog of incoming connections not yet looked at (`tls::server_config`).
pub const MAX_PENDING: u32 = 64;
/// The same from one host: a machine dials each server once at a time, and a few machines
/// behind one NAT fit; one address alone cannot take more than an eighth of the slots.
pub const MAX_PENDING_PER_HOST: u32 = 8;
/// Above this many pending, a newcomer whose address is not yet proven is asked to retry
/// with a token (one round trip): a flood from forged addresses then holds no slot at all.
/// Below it, honest newcomers pay nothing.
pub const RETRY_ABOVE: u32 = 16;
/// A source's first back-off; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest a source (or a host cycling sources) is refused after a failure.
pub const SOURCE_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The longest a host is refused after a failure from one of a few of its sources.
pub const HOST_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Sources of one host that may fail before the host gets the long curve.
pub const HOST_SOURCES: usize = 4;
/// A back-off entry this long after its last failure is forgotten (its count starts again).
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Sources, and hosts, remembered for back-off at most; past it the entries that would
/// refuse for the shortest time go first.
pub const MAX_REMEMBERED: usize = 4096;

/// What to do with an incoming connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Take it: a slot is held until [`Admission::end`].
    Admit,
    /// Ask it to prove its address first (QUIC retry); it comes back with a token.
    Retry,
    /// Refuse it at once, spending nothing on it.
    Refuse(Refusal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The source, or its host, failed lately and is backing off.
    BackingOff,
    /// [`MAX_PENDING`] are pending.
    Full,
    /// [`MAX_PENDING_PER_HOST`] are pending from its host.
    HostFull,
}

/// How an admitted connection's time before authentication ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It proved it knows the secret: its source is forgiven.
    Authenticated,
    /// A wrong proof, none in time, no stream opened, or a handshake that failed or never
    /// completed. `proven`: its address is known to be real (the handshake completed, or it
    /// came with a retry token), so its host shares the blame.
    Failed { proven: bool },
    /// Neither: this node stopped (no one is blamed).
    Dropped,
}

#[derive(Clone, Copy, Debug)]
struct Penalty {
    failures: u32,
    until: Instant,
    last: Instant,
}

impl Penalty {
    /// One more failure at `now`, refused for `FIRST_BACKOFF` doubling, at most `max`; a
    /// count last touched `FORGET_AFTER` ago starts again.
    fn fail(entry: Option<&Penalty>, now: Instant, max: Duration) -> Penalty {
        let failures = match entry {
            Some(p) if now.saturating_duration_since(p.last) < FORGET_AFTER => p.failures + 1,
            _ => 1,
        };
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << (failures - 1).min(16))
            .min(max);
        Penalty {
            failures,
            until: now + wait,
            last: now,
        }
    }
}

#[derive(Clone, Debug)]
struct HostPenalty {
    penalty: Penalty,
    /// The distinct sources that failed, up to one more than `HOST_SOURCES`.
    sources: Vec<SocketAddr>,
}

/// The admission table: slots held by pending newcomers, back-off by source and by host,
/// and counts for the statistics.
#[derive(Debug, Default)]
pub struct Admission {
    total: u32,
    pending: HashMap<IpAddr, u32>,
    sources: HashMap<SocketAddr, Penalty>,
    hosts: HashMap<IpAddr, HostPenalty>,
    counts: NewcomerStats,
}

/// The address that stands for one machine: an IPv4 address itself (an IPv4-mapped IPv6 one
/// as IPv4), an IPv6 address's /64.
pub fn host_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
    }
}

impl Admission {
    /// Whether to take an incoming connection from `from` (`validated`: it came with a retry
    /// token); an admitted one holds a slot until [`end`](Self::end) is called for it.
    pub fn admit(&mut self, from: SocketAddr, validated: bool, now: Instant) -> Verdict {
        let host = host_of(from.ip());
        let source_waits = self.sources.get(&from).is_some_and(|p| now < p.until);
        let host_waits = self.hosts.get(&host).is_some_and(|h| now < h.penalty.until);
        let verdict = if source_waits || host_waits {
            Verdict::Refuse(Refusal::BackingOff)
        } else if self.total >= MAX_PENDING {
            Verdict::Refuse(Refusal::Full)
        } else if self.pending.get(&host).copied().unwrap_or(0) >= MAX_PENDING_PER_HOST {
            Verdict::Refuse(Refusal::HostFull)
        } else if self.total >= RETRY_ABOVE && !validated {
            Verdict::Retry
        } else {
            Verdict::Admit
        };
        let c = &mut self.counts;
        match verdict {
            Verdict::Admit => {
                self.total += 1;
                *self.pending.entry(host).or_insert(0) += 1;
                c.admitted += 1;
                c.peak_pending = c.peak_pending.max(self.total);
            }
            Verdict::Retry => c.retried += 1,
            Verdict::Refuse(Refusal::BackingOff) => c.refused_backing_off += 1,
            Verdict::Refuse(_) => c.refused_full += 1,
        }
        verdict
    }

    /// An admitted connection from `from` is authenticated, or gave up: its slot is free, and
    /// a failure is remembered against its source (and its host if `proven`).
    pub fn end(&mut self, from: SocketAddr, ending: Ending, now: Instant) {
        let host = host_of(from.ip());
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.pending.get_mut(&host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pending.remove(&host);
            }
        }
        match ending {
            Ending::Authenticated => {
                self.counts.authenticated += 1;
                self.sources.remove(&from);
            }
            Ending::Failed { proven } => {
                self.counts.unauthenticated += 1;
                self.failed_source(from, now);
                if proven {
                    self.failed_host(host, from, now);
                }
            }
            Ending::Dropped => {}
        }
    }

    fn failed_source(&mut self, from: SocketAddr, now: Instant) {
        if !self.sources.contains_key(&from) {
            make_room(&mut self.sources, now, |p| p);
        }
        let p = Penalty::fail(self.sources.get(&from), now, SOURCE_BACKOFF_MAX);
        self.sources.insert(from, p);
    }

    fn failed_host(&mut self, host: IpAddr, from: SocketAddr, now: Instant) {
        if !self.hosts.contains_key(&host) {
            make_room(&mut self.hosts, now, |h| &h.penalty);
        }
        let entry = self.hosts.get(&host);
        let mut sources = match &entry {
            Some(h) if now.saturating_duration_since(h.penalty.last) < FORGET_AFTER => {
                h.sources.clone()
            }
            _ => Vec::new(),
        };
        if !sources.contains(&from) && sources.len() <= HOST_SOURCES {
            sources.push(from);
        }
        let max = if sources.len() > HOST_SOURCES {
            SOURCE_BACKOFF_MAX
        } else {
            HOST_BACKOFF_MAX
        };
        let penalty = Penalty::fail(entry.map(|h| &h.penalty), now, max);
        self.hosts.insert(host, HostPenalty { penalty, sources });
    }

    /// How long a newcomer from `from` would still be refused for backing off (zero if not).
    pub fn refused_for(&self, from: SocketAddr, now: Instant) -> Duration {
        let source = self.sources.get(&from).map(|p| p.until);
        let host = self.hosts.get(&host_of(from.ip())).map(|h| h.penalty.until);
        [source, host]
            .into_iter()
            .flatten()
            .map(|t| t.saturating_duration_since(now))
            .max()
            .unwrap_or_default()
    }

    /// The counts so far, and what is pending and remembered now.
    pub fn stats(&self) -> NewcomerStats {
        NewcomerStats {
            pending: self.total,
            remembered: self.sources.len() + self.hosts.len(),
            ..self.counts
        }
    }
}

/// Before a new key goes into `map`, full at [`MAX_REMEMBERED`]: entries forgotten by now
/// (refusing nothing, last failure `FORGET_AFTER` ago) go, and if none did, the one whose
/// refusal ends first (the least use to keep).
fn make_room<K: Copy + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    now: Instant,
    penalty: impl Fn(&V) -> &Penalty,
) {
    if map.len() < MAX_REMEMBERED {
        return;
    }
    map.retain(|_, v| {
        let p = penalty(v);
        now < p.until || now.saturating_duration_since(p.last) < FORGET_AFTER
    });
    if map.len() < MAX_REMEMBERED {
        return;
    }
    let first = map
        .iter()
        .min_by_key(|(_, v)| {
            let p = penalty(v);
            (p.until, p.last)
        })
        .map(|(k, _)| *k);
    if let Some(k) = first {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    const MS: Duration = Duration::from_millis(1);
    const FAILED: Ending = Ending::Failed { proven: true };

    /// Admits a newcomer from `from` and ends it with `ending` at `now`.
    fn attempt(a: &mut Admission, from: SocketAddr, ending: Ending, now: Instant) -> Verdict {
        let v = a.admit(from, true, now);
        if v == Verdict::Admit {
            a.end(from, ending, now);
        }
        v
    }

    #[test]
    fn pending_newcomers_are_capped_everywhere_and_per_host_and_retried_under_load() {
        let t0 = Instant::now();
        let mut a = Admission::default();
        // One host: 8 at once, then refused; others still come.
        let one = [192, 0, 2, 1];
        for port in 0..MAX_PENDING_PER_HOST as u16 {
            assert_eq!(a.admit(at(one, 1000 + port), false, t0), Verdict::Admit);
        }
        assert_eq!(
            a.admit(at(one, 2000), true, t0),
            Verdict::Refuse(Refusal::HostFull)
        );
        // Past 16 pending, a newcomer without a token is asked to retry; with one it comes in.
        for h in 2..=9u8 {
            assert_eq!(a.admit(at([192, 0, 2, h], 1), false, t0), Verdict::Admit);
        }
        assert_eq!(a.stats().pending, RETRY_ABOVE);
        assert_eq!(a.admit(at([198, 51, 100, 1], 1), false, t0), Verdict::Retry);
        assert_eq!(a.stats().pending, RETRY_ABOVE, "a retry holds no slot");
        // Validated newcomers fill the rest, up to 64 everywhere.
        let mut h = 0u32;
        while a.stats().pending < MAX_PENDING {
            h += 1;
            let ip = [198, 51, 101, h as u8];
            assert_eq!(a.admit(at(ip, 1), true, t0), Verdict::Admit);
        }
        assert_eq!(
            a.admit(at([203, 0, 113, 1], 1), true, t0),
            Verdict::Refuse(Refusal::Full)
        );
        // Ending frees the slot (a node that stops blames no one).
        a.end(at(one, 1000), Ending::Dropped, t0);
        assert_eq!(a.stats().pending, MAX_PENDING - 1);
        assert_eq!(a.admit(at(one, 2000), true, t0), Verdict::Admit);
        let s = a.stats();
        assert_eq!(
            (s.retried, s.refused_full, s.peak_pending, s.remembered),
            (1, 2, MAX_PENDING, 0)
        );
    }

    #[test]
    fn a_failing_source_is_refused_for_a_growing_time_up_to_a_minute() {
        let t0 = Instant::now();
        let mut a = Admission::default();
        let from = at([192, 0, 2, 1], 40000);
        assert_eq!(attempt(&mut a, from, FAILED, t0), Verdict::Admit);
        assert_eq!(
            a.admit(from, true, t0 + 200 * MS),
            Verdict::Refuse(Refusal::BackingOff)
        );
        assert_eq!(a.refused_for(from, t0), 250 * MS);
        let mut now = t0 + 260 * MS;
        assert_eq!(attempt(&mut a, from, FAILED, now), Verdict::Admit);
        assert_eq!(a.refused_for(from, now), 500 * MS);
        for _ in 0..20 {
            now += a.refused_for(from, now);
            assert_eq!(attempt(&mut a, from, FAILED, now), Verdict::Admit);
        }
        assert_eq!(a.refused_for(from, now), SOURCE_BACKOFF_MAX);
        // Connections that time out or never speak count as failures too, even unproven (at
        // their source only); a success forgets the source.
        now += SOURCE_BACKOFF_MAX;
        assert_eq!(
            attempt(&mut a, from, Ending::Authenticated, now),
            Verdict::Admit
        );
        assert_eq!(a.refused_for(from, now), Duration::ZERO);
        let staller = at([192, 0, 2, 7], 1);
        let v = attempt(&mut a, staller, Ending::Failed { proven: false }, now);
        assert_eq!(v, Verdict::Admit);
        assert_eq!(a.refused_for(staller, now), 250 * MS);
        assert_eq!(
            a.refused_for(at([192, 0, 2, 7], 2), now),
            Duration::ZERO,
            "an unproven failure does not count against its host"
        );
        // A source last seen failing ten minutes ago starts again.
        let later = now + FORGET_AFTER + MS;
        assert_eq!(attempt(&mut a, from, FAILED, later), Verdict::Admit);
        assert_eq!(a.refused_for(from, later), 250 * MS);
    }

    /// A NAT: a neighbour with the wrong secret keeps failing from its port; an honest
    /// machine behind the same address, on another port, waits at most 2 s after the
    /// neighbour's latest failure, however many there were. One that cycles ports to dodge
    /// its source's back-off gets the long curve for the whole host.
    #[test]
    fn a_nat_neighbour_s_wrong_secret_locks_an_honest_machine_out_for_two_seconds_at_most() {
        let t0 = Instant::now();
        let mut a = Admission::default();
        let (neighbour, honest) = (at([192, 0, 2, 1], 40000), at([192, 0, 2, 1], 40001));
        let mut now = t0;
        let mut longest = Duration::ZERO;
        for _ in 0..30 {
            now += a.refused_for(neighbour, now);
            assert_eq!(attempt(&mut a, neighbour, FAILED, now), Verdict::Admit);
            longest = longest.max(a.refused_for(honest, now));
        }
        assert_eq!(longest, HOST_BACKOFF_MAX);
        assert_eq!(a.refused_for(neighbour, now), SOURCE_BACKOFF_MAX);
        assert_eq!(
            a.admit(honest, false, now + HOST_BACKOFF_MAX),
            Verdict::Admit
        );
        // Port cycling: five sources of one host failing.
        let mut a = Admission::default();
        let mut now = t0;
        for port in 0..(HOST_SOURCES as u16 + 4) {
            let from = at([192, 0, 2, 9], 50000 + port);
            now += a.refused_for(from, now);
            assert_eq!(attempt(&mut a, from, FAILED, now), Verdict::Admit);
        }
        let other = at([192, 0, 2, 9], 1);
        assert!(a.refused_for(other, now) > HOST_BACKOFF_MAX);
    }

    #[test]
    fn the_back_off_table_stays_within_its_bound_and_keeps_the_longest_refusals() {
        let t0 = Instant::now();
        let mut a = Admission::default();
        // One source failed many times: refused for a minute.
        let persistent = at([10, 0, 0, 1], 1);
        let mut now = t0;
        for _ in 0..10 {
            now += a.refused_for(persistent, now);
            attempt(&mut a, persistent, FAILED, now);
        }
        // Then 10,000 sources fail once each (refused for 0.25 s).
        for i in 0..10_000u32 {
            let ip = [172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
            attempt(&mut a, at(ip, 2), FAILED, now);
        }
        assert!(a.sources.len() <= MAX_REMEMBERED && a.hosts.len() <= MAX_REMEMBERED);
        assert!(a.stats().remembered <= 2 * MAX_REMEMBERED);
        assert_eq!(
            a.admit(persistent, true, now),
            Verdict::Refuse(Refusal::BackingOff),
            "the source refused longest is kept"
        );
        // Forgotten ones make room first.
        let much_later = now + FORGET_AFTER + Duration::from_secs(61);
        attempt(&mut a, at([203, 0, 113, 1], 1), FAILED, much_later);
        assert_eq!(a.sources.len(), 1);
    }

    #[test]
    fn an_ipv6_machine_is_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(host_of(a), host_of(b));
        assert_ne!(host_of(a), host_of(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(host_of(mapped), IpAddr::from([192, 0, 2, 1]));
        // Eight pending from one /64 fill it, whatever their addresses.
        let t0 = Instant::now();
        let mut adm = Admission::default();
        for i in 0..MAX_PENDING_PER_HOST {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            assert_eq!(adm.admit(SocketAddr::new(ip, 1), true, t0), Verdict::Admit);
        }
        assert_eq!(
            adm.admit(SocketAddr::new(b, 1), true, t0),
            Verdict::Refuse(Refusal::HostFull)
        );
    }
}

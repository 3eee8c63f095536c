//! LAN discovery without sockets: beacons made and heard (`discovery.rs`), and the members
//! found connected as remote servers added by hand (`remotes.rs`).

use super::discovery::*;
use super::remotes::{DISCOVERED_DEFER, FORGET_DISCOVERED, MAX_DISCOVERED};
use super::tests::{link_down, link_up, node};
use super::*;
use crate::secret::Secret;
use crate::sim::rng::Rng;
use crate::stats::RemoteState;
use std::net::SocketAddr;

fn secret(text: &str) -> Secret {
    Secret::new(text.as_bytes(), "a test").expect("a valid secret")
}

/// The key of `text`'s pool. The real derivation (PBKDF2, [`KEY_ITERATIONS`]) takes a tenth
/// of a second; each pool's key is made once per test.
fn key(text: &str) -> DiscoveryKey {
    DiscoveryKey::new(&secret(text))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("an address")
}

fn nonce(n: u64) -> [u8; NONCE_LEN] {
    let mut b = [0u8; NONCE_LEN];
    b[..8].copy_from_slice(&n.to_le_bytes());
    b[8..].copy_from_slice(&(!n).to_le_bytes());
    b
}

/// `member`'s first beacon (sequence 1) announcing port 1250, with nonce `nonce(n)`.
fn beacon_of(member: u64, n: u64) -> Beacon {
    Beacon {
        nonce: nonce(n),
        node: NodeId(member),
        seq: 1,
        port: 1250,
    }
}

/// Members 1 (port 1250) and 2 (`port_2`) of one pool, and the address 1's beacons come from.
fn two_members(t0: Instant, port_2: u16) -> (Discovery, Discovery, SocketAddr) {
    let k = key("workshop pool");
    let a = Discovery::new(k.clone(), NodeId(1), 1250, t0);
    let b = Discovery::new(k, NodeId(2), port_2, t0);
    (a, b, addr("10.0.0.1:47474"))
}

/// What `d` counts once it has heard each of `beacons` (from 10.0.0.1, at `t0`) and dialled
/// none of them.
fn none_dialled(d: &mut Discovery, t0: Instant, beacons: Vec<[u8; BEACON_LEN]>) -> DiscoveryStats {
    for b in beacons {
        assert_eq!(d.receive(t0, addr("10.0.0.1:47474"), &b), None);
    }
    d.stats()
}

#[test]
fn a_member_of_the_same_pool_is_recognised_and_dialled_at_the_address_it_came_from() {
    let t0 = Instant::now();
    let (mut a, mut b, from) = two_members(t0, 1251);
    let dial = b.receive(t0, from, &a.beacon(nonce(1)));
    // The source's IP with the announced port (the beacon's own source port is no pool port).
    assert_eq!(
        dial,
        Some(Dial {
            peer: NodeId(1),
            address: addr("10.0.0.1:1250"),
        })
    );
    // Heard again soon: nothing new to do.
    assert_eq!(
        b.receive(t0 + BEACON_EVERY, from, &a.beacon(nonce(2))),
        None
    );
    // After the back-off it is handed on again (the protocol drops it if linked).
    let later = t0 + REDIAL_AFTER + Duration::from_secs(1);
    assert!(b.receive(later, from, &a.beacon(nonce(3))).is_some());
    // Moved (a new address from DHCP): dialled at once.
    let moved = b.receive(later, addr("10.0.0.9:47474"), &a.beacon(nonce(4)));
    assert_eq!(moved.map(|d| d.address), Some(addr("10.0.0.9:1250")));
    let s = b.stats();
    assert_eq!((s.accepted, s.dials, s.members), (4, 3, 1));
    assert_eq!(a.stats().sent, 4);
}

#[test]
fn a_beacon_of_another_pool_is_ignored_and_counted() {
    let t0 = Instant::now();
    let mut theirs = Discovery::new(key("their pool"), NodeId(1), 1250, t0);
    let mut ours = Discovery::new(key("our pool"), NodeId(2), 1250, t0);
    let beacons = (0..10).map(|i| theirs.beacon(nonce(i))).collect();
    let s = none_dialled(&mut ours, t0, beacons);
    assert_eq!((s.foreign, s.accepted, s.members, s.dials), (10, 0, 0, 0));
}

#[test]
fn the_raw_secret_is_not_the_key() {
    // A beacon tagged with the secret itself, as a careless implementation would, is refused:
    // the key is derived (and a beacon says nothing a guess at the secret could be checked
    // against without the derivation's cost).
    let t0 = Instant::now();
    let text = "workshop pool";
    let raw = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, text.as_bytes());
    let good = key(text);
    let beacon = beacon_of(1, 1);
    let mut bytes = encode(&good, &beacon);
    assert_eq!(decode(&good, &bytes), Ok(beacon));
    let tag = ring::hmac::sign(&raw, &bytes[..BEACON_LEN - TAG_LEN]);
    bytes[BEACON_LEN - TAG_LEN..].copy_from_slice(tag.as_ref());
    assert_eq!(decode(&good, &bytes), Err(Ignored::Tag));
    let mut d = Discovery::new(good, NodeId(2), 1250, t0);
    assert_eq!(d.receive(t0, addr("10.0.0.1:47474"), &bytes), None);
}

#[test]
fn every_changed_byte_is_refused() {
    let k = key("workshop pool");
    let beacon = Beacon {
        nonce: nonce(7),
        node: NodeId(0x1234_5678_9abc_def0),
        seq: 42,
        port: 1250,
    };
    let bytes = encode(&k, &beacon);
    assert_eq!(decode(&k, &bytes), Ok(beacon));
    for at in 0..BEACON_LEN {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = bytes;
            bad[at] ^= flip;
            let want = if at < MAGIC.len() + 1 {
                Ignored::Foreign
            } else {
                Ignored::Tag
            };
            assert_eq!(decode(&k, &bad), Err(want), "byte {at} ^ {flip:#x}");
        }
    }
    // One byte short or long: not a beacon, whatever it holds.
    assert_eq!(decode(&k, &bytes[..BEACON_LEN - 1]), Err(Ignored::Size));
    let mut long = bytes.to_vec();
    long.push(0);
    assert_eq!(decode(&k, &long), Err(Ignored::Size));
}

#[test]
fn a_replayed_or_older_beacon_is_refused() {
    let t0 = Instant::now();
    let (mut a, mut b, from) = two_members(t0, 1250);
    let first = a.beacon(nonce(1));
    let second = a.beacon(nonce(2));
    assert!(b.receive(t0, from, &second).is_some());
    // The same bytes again, from anywhere: a copy.
    assert_eq!(b.receive(t0, addr("10.0.0.66:47474"), &second), None);
    // An earlier beacon never heard (a fresh nonce, an older sequence number): a copy too,
    // so a recording cannot move a member to the recorder's address.
    assert_eq!(b.receive(t0, addr("10.0.0.66:47474"), &first), None);
    assert_eq!(b.stats().replayed, 2);
    // The nonces remembered are bounded, the oldest forgotten first.
    let mut c = Discovery::new(key("another pool"), NodeId(3), 1250, t0);
    let k3 = key("another pool");
    for i in 0..(MAX_NONCES as u64 + 100) {
        c.receive(t0, from, &encode(&k3, &beacon_of(1000 + i, i + 1000)));
    }
    assert_eq!(c.nonces_remembered(), MAX_NONCES);
}

#[test]
fn own_beacons_are_ignored() {
    let t0 = Instant::now();
    let mut a = Discovery::new(key("workshop pool"), NodeId(1), 1250, t0);
    let beacons = (0..5).map(|i| a.beacon(nonce(i))).collect();
    let s = none_dialled(&mut a, t0, beacons);
    assert_eq!((s.own, s.accepted, s.members, s.dials), (5, 0, 0, 0));
}

#[test]
fn an_unusable_address_or_port_is_not_dialled() {
    let t0 = Instant::now();
    let k = key("workshop pool");
    let mut b = Discovery::new(k.clone(), NodeId(2), 1250, t0);
    let zero_port = Beacon {
        port: 0,
        ..beacon_of(1, 1)
    };
    assert_eq!(
        b.receive(t0, addr("10.0.0.1:47474"), &encode(&k, &zero_port)),
        None
    );
    for (i, from) in [
        "0.0.0.0:1",
        "255.255.255.255:1",
        "224.0.0.1:1",
        "[::]:1",
        "[ff02::1]:1",
    ]
    .iter()
    .enumerate()
    {
        let beacon = beacon_of(10 + i as u64, 10 + i as u64);
        assert_eq!(b.receive(t0, addr(from), &encode(&k, &beacon)), None);
    }
    assert_eq!(b.stats().unusable, 6);
}

#[test]
fn random_datagrams_never_panic_nor_pass() {
    let t0 = Instant::now();
    let k = key("workshop pool");
    let mut d = Discovery::new(k, NodeId(2), 1250, t0);
    let mut rng = Rng::new(17);
    let from = addr("10.0.0.1:47474");
    let mut bytes = Vec::new();
    for i in 0..100_000u64 {
        // Lengths around a beacon's most often, any up to 600 bytes otherwise.
        let len = if rng.chance(50) {
            rng.range(BEACON_LEN as u64 - 2, BEACON_LEN as u64 + 3) as usize
        } else {
            rng.below(600)
        };
        bytes.clear();
        bytes.extend((0..len).map(|_| rng.next() as u8));
        // A third of them with a valid header, so that the tag check is what refuses them.
        if i % 3 == 0 && len >= 5 {
            bytes[..4].copy_from_slice(&MAGIC);
            bytes[4] = VERSION;
        }
        assert_eq!(d.receive(t0, from, &bytes), None);
    }
    let s = d.stats();
    assert_eq!(s.malformed + s.foreign, 100_000);
    assert!(s.foreign > 2_000, "the tag check was reached: {s:?}");
    assert_eq!((s.accepted, s.members, s.dials), (0, 0, 0));
}

#[test]
fn a_flood_of_valid_beacons_stays_within_the_bounds() {
    let t0 = Instant::now();
    let k = key("workshop pool");
    let mut d = Discovery::new(k.clone(), NodeId(1), 1250, t0);
    let seconds = 20u64;
    let mut dials = 0u64;
    for i in 0..10_000u64 {
        // 10 000 members, each from an address of its own, over `seconds`.
        let now = t0 + Duration::from_millis(i * seconds * 1000 / 10_000);
        let beacon = beacon_of(100 + i, i);
        let from = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 47474));
        if d.receive(now, from, &encode(&k, &beacon)).is_some() {
            dials += 1;
        }
        if i == 100 {
            // Arrived in the same few milliseconds: only the burst is dialled.
            assert_eq!(dials, u64::from(DIAL_BURST));
        }
        assert!(d.stats().members as usize <= MAX_MEMBERS);
        assert!(d.nonces_remembered() <= MAX_NONCES);
    }
    let most = u64::from(DIAL_BURST) + seconds * u64::from(DIALS_PER_SECOND);
    assert!(
        dials <= most,
        "{dials} dials in {seconds} s, at most {most}"
    );
    assert!(dials >= most - 2, "the rate lets dials through: {dials}");
    assert_eq!(d.stats().members as usize, MAX_MEMBERS);
    assert_eq!(d.stats().accepted, 10_000);
}

#[test]
fn a_silent_member_is_forgotten_and_dialled_again_when_it_comes_back() {
    let t0 = Instant::now();
    let (mut a, mut b, from) = two_members(t0, 1250);
    assert!(b.receive(t0, from, &a.beacon(nonce(1))).is_some());
    let later = t0 + FORGET_AFTER;
    b.forget(later);
    assert_eq!(b.stats().members, 0);
    assert!(b.receive(later, from, &a.beacon(nonce(2))).is_some());
}

#[test]
fn two_beacons_of_one_member_share_nothing_but_the_header_and_its_ids() {
    // The tag reveals nothing: beacons of one member with everything else equal differ in
    // their nonce, so in their whole tag.
    let k = key("workshop pool");
    let nonce_a: [u8; NONCE_LEN] = crate::system_random().expect("randomness");
    let nonce_b: [u8; NONCE_LEN] = crate::system_random().expect("randomness");
    assert_ne!(nonce_a, nonce_b);
    let beacon = |nonce| Beacon {
        nonce,
        node: NodeId(1),
        seq: 1,
        port: 1250,
    };
    let (a, b) = (encode(&k, &beacon(nonce_a)), encode(&k, &beacon(nonce_b)));
    let same = a
        .iter()
        .zip(&b)
        .skip(BEACON_LEN - TAG_LEN)
        .filter(|(x, y)| x == y)
        .count();
    // Each byte of two unrelated tags is equal with odds 1/256: a handful at most.
    assert!(same <= 6, "{same} tag bytes alike");
    // A member's consecutive beacons, as it sends them.
    let mut d = Discovery::new(k, NodeId(1), 1250, Instant::now());
    assert_ne!(d.beacon(nonce_a), d.beacon(nonce_b));
    // No byte of the secret shows.
    let s = b"workshop pool";
    assert!(!a.windows(4).any(|w| s.windows(4).any(|x| x == w)));
}

#[test]
fn beacons_are_spaced_around_the_period() {
    let quarter = BEACON_EVERY / 4;
    let mut rng = Rng::new(3);
    for _ in 0..1000 {
        let d = beacon_delay(rng.next());
        assert!(
            d >= BEACON_EVERY - quarter && d <= BEACON_EVERY + quarter,
            "{d:?}"
        );
    }
    assert_ne!(beacon_delay(0), beacon_delay(1000));
}

// ----- the members found, in the protocol -----

fn tick(n: &mut Node, now: Instant) -> Vec<Action> {
    n.handle(now, Input::Tick { links: Vec::new() })
}

fn dials(actions: &[Action]) -> Vec<(usize, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dial { remote, address } => Some((*remote, address.clone())),
            _ => None,
        })
        .collect()
}

fn discovered(n: &mut Node, now: Instant, peer: u64, address: &str) -> Vec<Action> {
    let input = Input::Discovered {
        peer: NodeId(peer),
        address: addr(address),
    };
    n.handle(now, input)
}

/// Remote `remote`'s dial went unanswered.
fn dial_failed(n: &mut Node, now: Instant, remote: usize) {
    let error = "no answer".into();
    let state = RemoteState::Unreachable;
    n.handle(
        now,
        Input::RemoteFailed {
            remote,
            state,
            error,
        },
    );
}

fn link_up_remote(n: &mut Node, now: Instant, link: LinkId, peer: u64, remote: usize) {
    let input = Input::LinkUp(LinkUp {
        link,
        peer: NodeId(peer),
        name: format!("peer-{peer}"),
        workers: 2,
        remote: Some(remote),
        address: format!("10.0.0.{peer}:1250"),
    });
    n.handle(now, input);
}

#[test]
fn a_discovered_member_is_dialled_like_a_remote_added_by_hand() {
    let t0 = Instant::now();
    // Node 5 hears 9 (larger id: 5 dials at once) and 3 (smaller: 3 is expected to dial
    // first, 5 only after DISCOVERED_DEFER).
    let mut n = node(5, 1, t0);
    discovered(&mut n, t0, 9, "10.0.0.9:1250");
    discovered(&mut n, t0, 3, "10.0.0.3:1250");
    assert_eq!(dials(&tick(&mut n, t0)), [(0, "10.0.0.9:1250".to_string())]);
    assert_eq!(dials(&tick(&mut n, t0 + DISCOVERED_DEFER / 2)), []);
    let t1 = t0 + DISCOVERED_DEFER;
    assert_eq!(dials(&tick(&mut n, t1)), [(1, "10.0.0.3:1250".to_string())]);
    let remotes = n.snapshot(t1).remotes;
    assert_eq!(remotes.len(), 2);
    assert!(remotes.iter().all(|r| r.discovered));
    // A failed dial backs off as a configured remote's does.
    dial_failed(&mut n, t1, 0);
    assert_eq!(dials(&tick(&mut n, t1)), []);
    assert_eq!(dials(&tick(&mut n, t1 + Duration::from_secs(1))).len(), 1);
    // Linked: shown connected; heard again, nothing more.
    link_up_remote(&mut n, t1, 10, 9, 0);
    let r = &n.snapshot(t1).remotes[0];
    assert_eq!((r.state, r.discovered), (RemoteState::Connected, true));
    discovered(&mut n, t1, 9, "10.0.0.9:1250");
    assert_eq!(n.snapshot(t1).remotes.len(), 2);
}

#[test]
fn a_member_linked_already_or_configured_is_not_added_again() {
    let t0 = Instant::now();
    let mut n = node(5, 1, t0);
    link_up(&mut n, t0, 1, 9);
    discovered(&mut n, t0, 9, "10.0.0.9:1250");
    // Its own discovery and itself are no members to add either.
    discovered(&mut n, t0, 5, "10.0.0.5:1250");
    assert!(n.snapshot(t0).remotes.is_empty());
    assert_eq!(dials(&tick(&mut n, t0 + DISCOVERED_DEFER)), []);
}

#[test]
fn a_member_that_dialled_first_is_not_dialled_and_is_redialled_when_its_link_drops() {
    let t0 = Instant::now();
    let mut n = node(5, 1, t0);
    // 3 is heard; it dials first (smaller id), before 5's deferred dial.
    discovered(&mut n, t0, 3, "10.0.0.3:1250");
    link_up(&mut n, t0 + Duration::from_millis(10), 7, 3);
    let t1 = t0 + DISCOVERED_DEFER;
    assert_eq!(dials(&tick(&mut n, t1)), []);
    assert_eq!(n.snapshot(t1).remotes[0].state, RemoteState::Connected);
    // The link drops: the remote holding it redials, as a configured one would.
    link_down(&mut n, t1, 7, "gone");
    assert_eq!(dials(&tick(&mut n, t1)), []);
    let t2 = t1 + Duration::from_secs(1);
    assert_eq!(dials(&tick(&mut n, t2)), [(0, "10.0.0.3:1250".to_string())]);
}

#[test]
fn a_configured_remote_linked_by_the_peer_s_own_dial_hears_when_that_link_drops() {
    // Both dialled: the peer's link came first, this node's dial was refused as a duplicate
    // and its remote took the peer's link; that link's loss must make it redial.
    let t0 = Instant::now();
    let mut settings_node = node(5, 1, t0);
    settings_node.remotes = vec![remotes::Remote::new("10.0.0.9:1250", t0)];
    let n = &mut settings_node;
    assert_eq!(dials(&tick(n, t0)).len(), 1);
    link_up(n, t0, 1, 9);
    link_up_remote(n, t0, 2, 9, 0);
    assert_eq!(n.snapshot(t0).remotes[0].state, RemoteState::Connected);
    link_down(n, t0, 1, "gone");
    assert_eq!(n.snapshot(t0).remotes[0].state, RemoteState::Connecting);
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(dials(&tick(n, t1)).len(), 1);
}

#[test]
fn discovered_members_are_bounded_and_forgotten_when_silent() {
    let t0 = Instant::now();
    let mut n = node(1, 1, t0);
    for i in 0..(MAX_DISCOVERED as u64 + 36) {
        let a = format!("10.0.{}.{}:1250", i / 200, i % 200 + 2);
        discovered(&mut n, t0, 1000 + i, &a);
    }
    assert_eq!(n.snapshot(t0).remotes.len(), MAX_DISCOVERED);
    assert_eq!(dials(&tick(&mut n, t0)).len(), MAX_DISCOVERED);
    // None answers; one keeps announcing itself, the others go silent.
    for remote in 0..MAX_DISCOVERED {
        dial_failed(&mut n, t0, remote);
    }
    let mut now = t0;
    while now < t0 + FORGET_DISCOVERED + Duration::from_secs(60) {
        for (remote, _) in dials(&tick(&mut n, now)) {
            dial_failed(&mut n, now, remote);
        }
        discovered(&mut n, now, 1000, "10.0.0.2:1250");
        now += Duration::from_secs(1);
    }
    let left = n.snapshot(now).remotes;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].address, "10.0.0.2:1250");
    // Their slots are taken again: the list does not grow.
    for i in 0..10u64 {
        discovered(&mut n, now, 5000 + i, &format!("10.1.0.{}:1250", i + 2));
    }
    assert_eq!(n.snapshot(now).remotes.len(), 11);
    assert_eq!(n.remotes.len(), MAX_DISCOVERED);
}

#[test]
fn a_member_that_drops_each_link_at_once_is_dialled_less_and_less_often() {
    // A remote that takes the link and closes it straight away (one with all the links it
    // takes closes as `close::FULL`): each such link counts as a failed dial, so the next
    // dial waits 0.5, 1, 2, 4 s …, not half a second each time; a link that lasted resets it.
    let t0 = Instant::now();
    let mut n = node(5, 1, t0);
    n.remotes
        .push(super::remotes::Remote::new("10.0.0.9:1250", t0));
    let mut now = t0;
    let mut waits = Vec::new();
    for k in 0..5u64 {
        // Dialled as soon as it is due.
        let mut t = now;
        while dials(&tick(&mut n, t)).is_empty() {
            t += Duration::from_millis(50);
            assert!(t - now < Duration::from_secs(60), "never dialled again");
        }
        waits.push((t - now).as_secs_f64());
        link_up_remote(&mut n, t, 100 + k, 9, 0);
        let gone = t + Duration::from_millis(100);
        link_down(
            &mut n,
            gone,
            100 + k,
            "this member has all the links it takes (256)",
        );
        now = gone;
    }
    // The first dial at once; then each wait about twice the one before.
    assert!(waits[0] < 0.06, "{waits:?}");
    for (w, want) in waits[1..].iter().zip([0.5, 1.0, 2.0, 4.0]) {
        assert!((w - want).abs() <= 0.06, "{waits:?}");
    }
    // A link that lasts: the next one lost is redialled after 0.5 s again.
    let mut t = now;
    while dials(&tick(&mut n, t)).is_empty() {
        t += Duration::from_millis(50);
    }
    link_up_remote(&mut n, t, 200, 9, 0);
    let later = t + super::remotes::SHORT_LINK;
    link_down(&mut n, later, 200, "peer quit");
    assert!(dials(&tick(&mut n, later + Duration::from_millis(450))).is_empty());
    assert!(!dials(&tick(&mut n, later + Duration::from_millis(550))).is_empty());
}

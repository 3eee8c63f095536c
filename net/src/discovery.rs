//! LAN discovery's shell (ARCHITECTURE.md §4.12): the UDP socket, the beacon timer and the
//! broadcast addresses around the pure [`Discovery`] (`proto/discovery.rs`), which decides
//! everything. Started by `Pool::start` only when `PoolConfig::discover` is on: off, no socket
//! is opened and nothing is sent.
//!
//! One socket on `0.0.0.0:`[`DISCOVERY_PORT`] sends this member's beacon every few seconds
//! (jittered) to the broadcast address of each IPv4 network the member is on and hears the
//! others'. It is bound with `SO_REUSEADDR`, so members on one machine share the port: a
//! broadcast is delivered to each of them (each ignores its own beacon). Discovery is IPv4
//! only: IPv6 has no broadcast, and a LAN has IPv4.

use crate::node::Event;
use crate::proto::Input;
use crate::proto::discovery::{BEACON_LEN, Discovery, DiscoveryKey, DiscoveryStats, beacon_delay};
use crate::wire::NodeId;
use crate::{PoolConfig, PoolError};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// What [`open`] made ready for [`spawn`].
pub(crate) struct Opened {
    socket: std::net::UdpSocket,
    core: Discovery,
    listen: IpAddr,
    port: u16,
}

/// Whether discovery can announce the pool `config` describes: it must listen, on an IPv4 or
/// every address (not loopback, not one IPv6 address: others dial the address a beacon came
/// from). Checked before anything is bound. Returns the listen address.
pub(crate) fn check(config: &PoolConfig) -> Result<SocketAddr, PoolError> {
    let fail = |text: String| Err(PoolError::Start(format!("LAN discovery: {text}")));
    let Some(listen) = config.listen else {
        return fail("it needs a listen address (other members dial the one it announces)".into());
    };
    let ip = listen.ip();
    if ip.is_loopback() || (ip.is_ipv6() && !ip.is_unspecified()) {
        return fail(format!(
            "it cannot announce a member listening on {ip}: listen on an IPv4 address of the \
             local network, or on 0.0.0.0 (every network)"
        ));
    }
    if config.secret.as_bytes().len() < MIN_SECRET {
        return fail(format!(
            "the pool secret is {} characters; discovery needs at least {MIN_SECRET}, such as \
             a generated one (Preferences → Generate secret): anyone who records a beacon can \
             test guesses of the secret offline",
            config.secret.as_bytes().len()
        ));
    }
    Ok(listen)
}

/// The shortest secret discovery announces a pool with. A beacon's tag lets whoever records
/// one test guesses of the secret at leisure (PBKDF2 makes each guess cost, it cannot make a
/// short typed word safe), which SPAKE2 alone never allows; a generated secret (32 base32
/// characters, 160 bits) is far past this bar.
pub(crate) const MIN_SECRET: usize = 20;

/// Derives the beacon key and binds the socket for node `id`, whose endpoint is bound to
/// `bound` (its real port is the one announced). An error says why, in words.
pub(crate) fn open(
    config: &PoolConfig,
    bound: SocketAddr,
    id: NodeId,
) -> Result<Opened, PoolError> {
    let fail = |text: String| Err(PoolError::Start(format!("LAN discovery: {text}")));
    let ip = check(config)?.ip();
    let port = config.discovery_port;
    let socket = match bind(port) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot open UDP port {port}: {e}")),
    };
    let key = DiscoveryKey::new(&config.secret);
    let core = Discovery::new(key, id, bound.port(), std::time::Instant::now());
    Ok(Opened {
        socket,
        core,
        listen: ip,
        port,
    })
}

/// Starts the discovery task on `runtime`, handing the members it finds to the protocol
/// through `tx`; returns where its counts are kept.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Runtime,
    opened: Opened,
    tx: mpsc::UnboundedSender<Event>,
) -> Result<Arc<Mutex<DiscoveryStats>>, PoolError> {
    let stats = Arc::new(Mutex::new(DiscoveryStats::default()));
    let _guard = runtime.enter();
    let socket = tokio::net::UdpSocket::from_std(opened.socket)
        .map_err(|e| PoolError::Start(format!("LAN discovery: {e}")))?;
    runtime.spawn(run(DiscoveryTask {
        socket,
        core: opened.core,
        listen: opened.listen,
        port: opened.port,
        tx,
        stats: stats.clone(),
    }));
    Ok(stats)
}

/// Opens the discovery socket on `0.0.0.0:port`: shared with other members on this machine
/// (`SO_REUSEADDR`), allowed to broadcast (`SO_BROADCAST`), non-blocking for tokio.
fn bind(port: u16) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    Ok(socket.into())
}

/// An IPv4 interface address and its network's broadcast address, as the system lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Interface {
    pub ip: Ipv4Addr,
    pub broadcast: Option<Ipv4Addr>,
}

/// Where beacons go: the broadcast address of each IPv4 network this machine is on (loopback
/// left out), only the one holding `listen` when the pool listens on one address (peers
/// elsewhere could not reach it); with none known, the limited broadcast 255.255.255.255,
/// which goes out where the default route does.
pub fn beacon_targets(listen: IpAddr, interfaces: &[Ipv4Interface]) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = Vec::new();
    for i in interfaces {
        let Some(broadcast) = i.broadcast else {
            continue;
        };
        let wanted = match listen {
            IpAddr::V4(l) if !l.is_unspecified() => l == i.ip,
            _ => true,
        };
        if wanted && !i.ip.is_loopback() && !out.contains(&broadcast) {
            out.push(broadcast);
        }
    }
    if out.is_empty() {
        out.push(Ipv4Addr::BROADCAST);
    }
    out
}

fn ipv4_interfaces() -> Vec<Ipv4Interface> {
    if_addrs::get_if_addrs()
        .map(|list| {
            list.into_iter()
                .filter_map(|i| match i.addr {
                    if_addrs::IfAddr::V4(v4) => Some(Ipv4Interface {
                        ip: v4.ip,
                        broadcast: v4.broadcast,
                    }),
                    if_addrs::IfAddr::V6(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How often the count of ignored beacons may be logged.
const IGNORED_REPORT: Duration = Duration::from_secs(60);
/// Pause after a failed receive, so that a lasting error cannot spin the task.
const RECEIVE_PAUSE: Duration = Duration::from_millis(100);

/// What the task needs.
struct DiscoveryTask {
    pub socket: tokio::net::UdpSocket,
    pub core: Discovery,
    /// Where the pool listens (which networks to announce it on).
    pub listen: IpAddr,
    /// The port beacons are sent to.
    pub port: u16,
    pub tx: mpsc::UnboundedSender<Event>,
    pub stats: Arc<Mutex<DiscoveryStats>>,
}

/// Sends beacons and hears the others' until the pool stops; each member to dial goes to the
/// protocol as [`Input::Discovered`].
async fn run(mut t: DiscoveryTask) {
    // One byte more than a beacon: a longer datagram is cut to it, and refused by its size.
    let mut buf = [0u8; BEACON_LEN + 1];
    let mut next_beacon = Instant::now();
    let mut send_failed = false;
    let mut ignored_said = (0, None::<Instant>);
    info!(
        "LAN discovery on: beacons to UDP port {} of {}",
        t.port,
        describe(&beacon_targets(t.listen, &ipv4_interfaces()))
    );
    loop {
        tokio::select! {
            r = t.socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let now = std::time::Instant::now();
                    if let Some(dial) = t.core.receive(now, from, &buf[..n.min(buf.len())]) {
                        info!("LAN discovery: a pool member announces itself at {}", dial.address);
                        let input = Input::Discovered { peer: dial.peer, address: dial.address };
                        if t.tx.send(Event::Input(input)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    debug!("LAN discovery: receive failed: {e}");
                    tokio::time::sleep(RECEIVE_PAUSE).await;
                }
            },
            _ = tokio::time::sleep_until(next_beacon) => {
                let (nonce, jitter) = match (crate::system_random(), crate::system_random()) {
                    (Ok(n), Ok(j)) => (n, u64::from_le_bytes(j)),
                    _ => {
                        warn!("LAN discovery: no system randomness, no beacon sent");
                        next_beacon = Instant::now() + beacon_delay(0);
                        continue;
                    }
                };
                let beacon = t.core.beacon(nonce);
                for ip in beacon_targets(t.listen, &ipv4_interfaces()) {
                    if let Err(e) = t.socket.send_to(&beacon, (ip, t.port)).await {
                        // Said once: a machine without a network fails every few seconds.
                        if !std::mem::replace(&mut send_failed, true) {
                            warn!("LAN discovery: cannot send a beacon to {ip}: {e}");
                        } else {
                            debug!("LAN discovery: cannot send a beacon to {ip}: {e}");
                        }
                    }
                }
                next_beacon = Instant::now() + beacon_delay(jitter);
            }
        }
        let stats = t.core.stats();
        if let Ok(mut s) = t.stats.lock() {
            *s = stats;
        }
        report_ignored(&stats, &mut ignored_said);
        if t.tx.is_closed() {
            return;
        }
    }
}

/// Says in the log how many beacons of other pools (or damaged ones) were heard, at once the
/// first time and then at most every [`IGNORED_REPORT`]: two pools on one network, or a
/// member with another secret, show without flooding the log.
fn report_ignored(s: &DiscoveryStats, said: &mut (u64, Option<Instant>)) {
    let ignored = s.foreign + s.malformed + s.replayed + s.unusable;
    let due = said.1.is_none_or(|t| t.elapsed() >= IGNORED_REPORT);
    if ignored != said.0 && due {
        info!(
            "LAN discovery: ignored {} beacon(s) of other pools or damaged, {} malformed, {} \
             replayed, {} unusable; {} of this pool heard",
            s.foreign, s.malformed, s.replayed, s.unusable, s.accepted
        );
        *said = (ignored, Some(Instant::now()));
    }
}

fn describe(targets: &[Ipv4Addr]) -> String {
    targets
        .iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::{Ipv4Interface, beacon_targets};
    use crate::{Pool, PoolConfig, Secret};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    /// Why a one-worker member with `secret`, listening on `listen`, refuses to start
    /// discovering.
    fn refusal(secret: Secret, listen: Option<SocketAddr>) -> String {
        let mut cfg = PoolConfig::new(secret);
        cfg.listen = listen;
        cfg.discover = true;
        cfg.workers = 1;
        Pool::start(cfg).expect_err("refused").to_string()
    }

    #[test]
    fn a_member_others_cannot_dial_refuses_to_discover_before_binding_anything() {
        let secret = Secret::new("workshop pool", "a test").unwrap();
        for listen in [
            Some("127.0.0.1:0"),
            Some("[::1]:0"),
            Some("[2001:db8::1]:0"),
            None,
        ] {
            let err = refusal(secret.clone(), listen.map(|l| l.parse().unwrap()));
            assert!(
                err.starts_with("cannot start the pool: LAN discovery: it "),
                "{err}"
            );
        }
    }

    #[test]
    fn a_short_secret_is_refused_for_discovery_and_a_generated_one_is_long_enough() {
        let short = Secret::new("a typed password!!!", "a test").unwrap();
        let err = refusal(short, Some("0.0.0.0:0".parse().unwrap()));
        assert!(
            err.contains("the pool secret is 19 characters; discovery needs at least 20"),
            "{err}"
        );
        assert!(Secret::generate().as_bytes().len() >= super::MIN_SECRET);
    }

    #[test]
    fn beacons_go_to_each_network_the_pool_listens_on() {
        let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let machine = [
            Ipv4Interface {
                ip: v4("127.0.0.1"),
                broadcast: None,
            },
            Ipv4Interface {
                ip: v4("192.168.1.5"),
                broadcast: Some(v4("192.168.1.255")),
            },
            Ipv4Interface {
                ip: v4("10.0.0.2"),
                broadcast: Some(v4("10.0.255.255")),
            },
            // A second address on the same network: one beacon for it.
            Ipv4Interface {
                ip: v4("192.168.1.6"),
                broadcast: Some(v4("192.168.1.255")),
            },
        ];
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            beacon_targets(any, &machine),
            [v4("192.168.1.255"), v4("10.0.255.255")]
        );
        // Dual stack listens everywhere too.
        assert_eq!(beacon_targets("::".parse().unwrap(), &machine).len(), 2);
        // One address: only its network.
        assert_eq!(
            beacon_targets("10.0.0.2".parse().unwrap(), &machine),
            [v4("10.0.255.255")]
        );
        // Nothing known: the limited broadcast.
        assert_eq!(beacon_targets(any, &machine[..1]), [Ipv4Addr::BROADCAST]);
        assert_eq!(beacon_targets(any, &[]), [Ipv4Addr::BROADCAST]);
    }
}

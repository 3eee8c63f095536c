//! The simulated workshop (ARCHITECTURE.md §4.11): many [`proto::Node`]s in one process on a
//! virtual clock, linked by simulated links, computing chunks for real, with seeded faults.
//! Everything random comes from one seed, so a failing run is replayed exactly.
//!
//! | file | part |
//! |---|---|
//! | `mod.rs` | [`World`]: the clock, the event queue, links, delivering inputs |
//! | `actions.rs` | carrying out the nodes' actions: what each becomes in the world |
//! | `rng.rs` | the seeded random numbers |
//! | `scenario.rs` | topologies, faults, the checks, and the many-seed test |
//! | `hostile.rs` | peers that lie, panic or keep their grants: the owner copes |

mod actions;
mod hostile;
pub(crate) mod rng;
pub(crate) mod scenario;

use actions::run_chunk;
pub use rng::Rng;

use crate::proto::{self, Input, LinkId, LinkUp, Node, NodeSettings, ResultMessage};
use crate::stats::PoolStats;
use crate::wire::{BulkHeader, JobId, NodeId, PROTOCOL_VERSION};
use millpond_core::job::{COMPUTE_ABI, ChunkResult, JobContext, JobOutput};
use millpond_core::mesh::CANONICAL_TRIANGLE_BYTES;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Virtual microseconds since the world's base instant.
pub type Micros = u64;

/// Something that happens at a virtual time.
enum Ev {
    /// An input for `node` in incarnation `gen` (dropped if the node died or restarted, or if
    /// it is bound to a link end that is closed).
    Input {
        node: usize,
        generation: u32,
        input: Input,
    },
    /// A chunk computed on a node.
    Computed(actions::Computed),
    Tick {
        node: usize,
        generation: u32,
    },
    Fault(scenario::Fault),
}

/// One end of a simulated link, as the node at that end names it.
struct End {
    node: usize,
    peer: LinkId,
    open: bool,
    latency: Micros,
    /// Arrival of the last control message sent from this end (the stream is ordered).
    last_arrival: Micros,
    /// Extra delay while a delay fault holds.
    delay: Micros,
}

/// How a node's workers behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Every height it computes is 1 mm too high.
    Liar,
    /// Its first `n` computations panic.
    Panics(u32),
    /// Its workers never answer: it holds what it is granted.
    Silent,
}

/// A job submitted in the world, and what a local run gives.
pub struct JobRecord {
    pub owner: usize,
    pub owner_generation: u32,
    pub expected: Arc<JobOutput>,
    /// `Some(true)`: assembled and identical to the local run.
    pub done: Option<bool>,
}

/// Counts, for the bounds and the figures.
#[derive(Default, Clone)]
pub struct Counters {
    /// Control messages other than gossip.
    pub msgs: u64,
    pub gossip: u64,
    pub results: u64,
    pub meshes: u64,
    /// Simulations' programs carried over a link.
    pub programs: u64,
    /// Simulation jobs bound off the loop (`Action::BindSimulation`).
    pub bindings: u64,
    pub computes: u64,
    /// Link ends ever made.
    pub ends: u64,
    /// Virtual time of the last non-gossip message or result.
    pub last_job_traffic: Micros,
    pub faults: BTreeMap<&'static str, u64>,
}

/// N nodes, their links and the virtual clock.
pub struct World {
    pub t0: Instant,
    pub now: Micros,
    seq: u64,
    queue: BTreeMap<(Micros, u64), Ev>,
    pub nodes: Vec<Option<Node>>,
    pub generation: Vec<u32>,
    /// Simulated compute time of one chunk per node.
    pub chunk_time: Vec<Micros>,
    ends: BTreeMap<LinkId, End>,
    next_link: LinkId,
    pub rng: Rng,
    pub jobs: BTreeMap<JobId, JobRecord>,
    /// A submit waiting for its `Submitted`: (owner, expected output).
    submitting: Option<(usize, Arc<JobOutput>)>,
    /// The id of the job the last submit made, if it was taken.
    submitted: Option<JobId>,
    /// Links on which a bogus result was injected: whether the node closed them for it.
    pub bogus: BTreeMap<LinkId, bool>,
    /// The answer to the bulk stream offered last (`Action::TakeBulk`).
    taken: Option<bool>,
    /// Percent of messages sent twice (the duplicate fault).
    pub duplicate_percent: u64,
    /// Until when a delayed message may still arrive (a late `Steal` is answered `NoWork`).
    pub delayed_until: Micros,
    pub count: Counters,
    pub errors: Vec<String>,
    pub trace: bool,
    pub behaviour: Vec<Behaviour>,
    /// Computations each node has started, for `Behaviour::Panics`.
    started: Vec<u32>,
    /// Each node's latest statistics.
    pub published: BTreeMap<usize, Box<PoolStats>>,
    /// Closes for a wrong result (link's node, reason): expected only where a liar is.
    pub convictions: Vec<(usize, String)>,
    /// Jobs that failed, with why.
    pub failed: Vec<(JobId, String)>,
}

impl World {
    pub fn new(seed: u64, chunk_time: Vec<Micros>) -> Self {
        let t0 = Instant::now();
        let n = chunk_time.len();
        let mut w = Self {
            t0,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: Vec::new(),
            generation: vec![0; n],
            chunk_time,
            ends: BTreeMap::new(),
            next_link: 1,
            rng: Rng::new(seed),
            jobs: BTreeMap::new(),
            submitting: None,
            submitted: None,
            bogus: BTreeMap::new(),
            taken: None,
            duplicate_percent: 0,
            delayed_until: 0,
            count: Counters::default(),
            errors: Vec::new(),
            trace: false,
            behaviour: vec![Behaviour::Honest; n],
            started: vec![0; n],
            published: BTreeMap::new(),
            convictions: Vec::new(),
            failed: Vec::new(),
        };
        for i in 0..n {
            let node = w.fresh_node(i);
            w.nodes.push(Some(node));
            let first = w.rng.range(1, proto::TICK.as_micros() as u64);
            w.at(
                first,
                Ev::Tick {
                    node: i,
                    generation: 0,
                },
            );
        }
        w
    }

    fn fresh_node(&self, i: usize) -> Node {
        let settings = NodeSettings {
            // A restarted node is a new process: a new id, as `Pool::start` draws one.
            id: NodeId(1000 + i as u64 + 1_000_000 * u64::from(self.generation[i])),
            name: format!("sim-{i}"),
            workers: 1 + i % 3,
            remotes: Vec::new(),
            protocol: PROTOCOL_VERSION,
            compute_abi: COMPUTE_ABI,
            mesh_cache_bytes: 1 << 30,
            address: None,
            verify: crate::proto::DEFAULT_VERIFY,
            seed: 99 + i as u64,
        };
        Node::new(settings, self.instant())
    }

    pub fn instant(&self) -> Instant {
        self.t0 + Duration::from_micros(self.now)
    }

    fn at(&mut self, t: Micros, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    pub fn fault_at(&mut self, t: Micros, f: scenario::Fault) {
        self.at(t, Ev::Fault(f));
    }

    fn input_at(&mut self, t: Micros, node: usize, input: Input) {
        let generation = self.generation[node];
        self.at(
            t,
            Ev::Input {
                node,
                generation,
                input,
            },
        );
    }

    pub fn alive(&self, node: usize) -> bool {
        self.nodes[node].is_some()
    }

    /// Open link ends at `node`: (its link id, the peer node).
    pub fn links_of(&self, node: usize) -> Vec<(LinkId, usize)> {
        self.ends
            .iter()
            .filter(|(_, e)| e.open && e.node == node)
            .map(|(l, e)| (*l, self.ends[&e.peer].node))
            .collect()
    }

    pub fn linked(&self, a: usize, b: usize) -> bool {
        self.links_of(a).iter().any(|&(_, p)| p == b)
    }

    /// Links `a` and `b` as the shell would once TLS, SPAKE2 and Hello are done.
    pub fn connect(&mut self, a: usize, b: usize) {
        if a == b || !self.alive(a) || !self.alive(b) || self.linked(a, b) {
            return;
        }
        let latency = self.rng.range(100, 5_000);
        let (la, lb) = (self.next_link, self.next_link + 1);
        self.next_link += 2;
        self.count.ends += 2;
        for (l, node, peer) in [(la, a, lb), (lb, b, la)] {
            let end = End {
                node,
                peer,
                open: true,
                latency,
                last_arrival: 0,
                delay: 0,
            };
            self.ends.insert(l, end);
        }
        for (l, node, other) in [(la, a, b), (lb, b, a)] {
            let Some(o) = &self.nodes[other] else { return };
            let input = Input::LinkUp(LinkUp {
                link: l,
                peer: o.id(),
                name: format!("sim-{other}"),
                workers: (1 + other % 3) as u32,
                remote: None,
                address: format!("sim:{other}"),
            });
            self.input_at(self.now, node, input);
        }
    }

    /// The link end `link` closes; the peer hears of it after the latency.
    fn close_end(&mut self, link: LinkId, reason: &str, tell_self: bool) {
        let Some(e) = self.ends.get_mut(&link) else {
            return;
        };
        if !e.open {
            return;
        }
        e.open = false;
        let (node, peer, latency) = (e.node, e.peer, e.latency);
        if tell_self {
            let input = Input::LinkDown {
                link,
                reason: reason.into(),
            };
            self.input_at(self.now, node, input);
        }
        if let Some(p) = self.ends.get_mut(&peer)
            && p.open
        {
            p.open = false;
            let pnode = p.node;
            let input = Input::LinkDown {
                link: peer,
                reason: reason.into(),
            };
            self.input_at(self.now + latency, pnode, input);
        }
    }

    /// Drops the link whose end at its node is `link`, both sides told (a dead connection).
    pub fn drop_link(&mut self, link: LinkId, reason: &str) {
        self.close_end(link, reason, true);
    }

    /// The other end of `link`.
    pub fn peer_end(&self, link: LinkId) -> LinkId {
        self.ends[&link].peer
    }

    pub fn set_delay(&mut self, link: LinkId, delay: Micros) {
        if let Some(e) = self.ends.get_mut(&link) {
            e.delay = delay;
        }
    }

    /// Kills `node` (or it quits): its links go down at the peers, its inputs stop.
    pub fn kill(&mut self, node: usize, reason: &str) {
        let Some(mut n) = self.nodes[node].take() else {
            return;
        };
        n.shutdown();
        self.generation[node] += 1;
        for (l, _) in self.links_of(node) {
            self.close_end(l, reason, false);
        }
    }

    /// A node killed or gone comes back as a new process with the same id.
    pub fn restart(&mut self, node: usize) {
        if self.alive(node) {
            return;
        }
        self.nodes[node] = Some(self.fresh_node(node));
        let generation = self.generation[node];
        let first = self.now + self.rng.range(1, proto::TICK.as_micros() as u64);
        self.at(first, Ev::Tick { node, generation });
    }

    /// Sends `input` (bound to the peer's end of `link`) from `link`'s end.
    fn carry(&mut self, link: LinkId, ordered: bool, make: impl Fn(LinkId) -> Input) {
        let Some(e) = self.ends.get(&link) else {
            return;
        };
        if !e.open {
            return;
        }
        let (peer, latency, delay, last) = (e.peer, e.latency, e.delay, e.last_arrival);
        let pnode = self.ends[&peer].node;
        let jitter = self.rng.range(0, latency / 4 + 1);
        let mut t = self.now + latency + delay + jitter;
        if ordered {
            t = t.max(last);
            if let Some(e) = self.ends.get_mut(&link) {
                e.last_arrival = t;
            }
        }
        let copies = if self.duplicate_percent > 0 && self.rng.chance(self.duplicate_percent) {
            *self.count.faults.entry("duplicate").or_default() += 1;
            2
        } else {
            1
        };
        for k in 0..copies {
            self.input_at(t + k, pnode, make(peer));
        }
    }

    /// Submits a job of `mesh` at `node`; a local run gives the expected output. Returns the
    /// job's id if the node took it.
    pub fn submit(&mut self, node: usize, ctx: JobContext) -> Option<JobId> {
        if !self.alive(node) {
            return None;
        }
        let chunks = (0..ctx.spec().chunk_count())
            .map(|c| run_chunk(&ctx, c))
            .collect();
        let expected = ctx.finish(chunks).expect("a local run");
        self.submitting = Some((node, Arc::new(expected)));
        let ctx = Box::new(ctx);
        // The job's id from the seed, as the shell draws it from the system: a replay gives
        // the same ids.
        let nonce = u128::from(self.rng.next()) << 64 | u128::from(self.rng.next());
        self.submitted = None;
        self.deliver(node, Input::Submit { ctx, nonce });
        self.submitted.take()
    }

    /// Injects a result for a chunk never granted on `link` at `node`.
    pub fn bogus_result(&mut self, node: usize, link: LinkId, job: JobId, result: ChunkResult) {
        self.bogus.insert(link, false);
        let message = ResultMessage {
            job,
            chunk: result.chunk,
            compute_s: 0.001,
            by: (NodeId(1), 0),
            result: Box::new(result),
        };
        let input = Input::Result {
            link,
            message,
            transfer_s: 0.001,
        };
        self.deliver_bulk(node, input);
    }

    /// Hands a mesh or result that came on a bulk stream to `node` as the shell does: its
    /// header first (`Input::BulkOffered`), the payload only if the node takes it.
    fn deliver_bulk(&mut self, node: usize, input: Input) {
        let header = match &input {
            Input::Result { link, message, .. } => (*link, message.header(0, [0; 32])),
            Input::MeshArrived { link, mesh } => (
                *link,
                BulkHeader::Mesh {
                    hash: mesh.hash(),
                    size: (mesh.len() * CANONICAL_TRIANGLE_BYTES) as u64,
                },
            ),
            Input::ProgramArrived {
                link,
                hash,
                program,
            } => (
                *link,
                BulkHeader::Program {
                    hash: *hash,
                    size: program.canonical_bytes().len() as u64,
                },
            ),
            _ => return self.deliver(node, input),
        };
        let (link, header) = header;
        self.taken = None;
        self.deliver(node, Input::BulkOffered { link, header });
        if self.taken.take() == Some(true) {
            self.deliver(node, input);
        }
    }

    /// Hands `input` to `node` now and carries out what it answers.
    fn deliver(&mut self, node: usize, input: Input) {
        let now = self.instant();
        let Some(n) = self.nodes[node].as_mut() else {
            return;
        };
        if self.trace {
            eprintln!("{:>9} µs  node {node} <- {input:?}", self.now);
        }
        let actions = n.handle(now, input);
        for a in actions {
            self.act(node, a);
        }
    }

    /// Runs events up to virtual time `until`, or until `stop` holds between two events.
    pub fn run(&mut self, until: Micros, stop: &dyn Fn(&World) -> bool) {
        while let Some((&(t, k), _)) = self.queue.first_key_value() {
            if t > until || stop(self) {
                break;
            }
            let ev = self.queue.remove(&(t, k)).expect("the first event");
            self.now = t;
            self.step(ev);
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Input {
                node,
                generation,
                input,
            } => {
                if generation != self.generation[node] {
                    return;
                }
                let bound = match &input {
                    Input::Msg { link, .. }
                    | Input::Result { link, .. }
                    | Input::MeshArrived { link, .. }
                    | Input::ProgramArrived { link, .. }
                    | Input::LinkUp(LinkUp { link, .. }) => Some(*link),
                    _ => None,
                };
                if bound.is_some_and(|l| !self.ends.get(&l).is_some_and(|e| e.open)) {
                    return;
                }
                self.deliver_bulk(node, input);
            }
            Ev::Computed(c) => {
                if c.generation != self.generation[c.node] {
                    return;
                }
                let seconds = self.chunk_time[c.node] as f64 * 1e-6;
                self.deliver(c.node, c.input(seconds));
            }
            Ev::Tick { node, generation } => {
                if generation != self.generation[node] {
                    return;
                }
                self.deliver(node, Input::Tick { links: Vec::new() });
                let next = self.now + proto::TICK.as_micros() as u64;
                self.at(next, Ev::Tick { node, generation });
            }
            Ev::Fault(f) => scenario::inject(self, f),
        }
    }
}

//! The Process Statistics panel: who computes, how fast, and how far each job has come.
//!
//! In server mode the rows come from [`PoolStats`] (refreshed by the pool every 50 ms); in
//! local mode the same rows are built from this computer's runner, so the panel reads the
//! same whichever mode is on. Workers get a table of their own: this computer's first, with
//! chunk counts and compute times measured per chunk, from local runs and from the pool's
//! workers here; then, in server mode, the other hosts' workers, counting the results that
//! came here (each says which node's worker computed it), busy or idle as their hosts'
//! gossip says. Tables sort by any column (click
//! its header).

use super::compute::{Compute, JobRow};
use egui::{Response, RichText, Ui};
use egui_plot::{Line, Plot, PlotPoints};
use millpond_net::{PoolStats, WorkerStats};
use std::cmp::Ordering;

/// One host of the pool, or this computer in local mode.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    pub name: String,
    pub address: String,
    pub hops: u8,
    pub workers: u32,
    pub state: String,
    pub chunks_done: u64,
    pub avg_compute_s: f64,
    pub avg_transfer_s: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rtt_ms: f64,
    pub last_heard_s: f64,
}

/// One worker thread of this computer or, in server mode, of another host.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// The host's name (this computer's rows: its node name).
    pub host: String,
    /// Links to the host: 0 for this computer.
    pub hops: u8,
    /// 1-based, as shown.
    pub worker: u32,
    pub state: String,
    pub chunks_done: u64,
    pub avg_compute_s: f64,
    /// Seconds spent computing.
    pub compute_s: f64,
}

/// Rows for the hosts table in server mode.
pub fn pool_host_rows(stats: &PoolStats) -> Vec<HostRow> {
    stats
        .hosts
        .iter()
        .map(|h| HostRow {
            name: h.name.clone(),
            address: h
                .address
                .clone()
                .unwrap_or_else(|| if h.hops == 0 { "this computer" } else { "—" }.into()),
            hops: h.hops,
            workers: h.workers,
            // A host caught returning wrong results says so, whatever its link's state.
            state: if h.wrong_results > 0 {
                format!(
                    "cut off: {} wrong result(s), {} discarded",
                    h.wrong_results, h.discarded_results
                )
            } else {
                h.state.as_str().into()
            },
            chunks_done: h.chunks_done,
            avg_compute_s: h.avg_compute_s,
            avg_transfer_s: h.avg_transfer_s,
            bytes_in: h.bytes_in,
            bytes_out: h.bytes_out,
            rtt_ms: h.rtt_ms,
            last_heard_s: h.last_heard_s,
        })
        .collect()
}

/// This computer's workers: what each computed in local runs plus, in server mode, in the
/// pool (`pool_workers`, this host's entry of the pool statistics), one row per worker thread
/// — at least `workers` rows, so idle ones show too.
pub fn worker_rows(
    workers: usize,
    pool_workers: &[WorkerStats],
    compute: &Compute,
) -> Vec<WorkerRow> {
    let local = &compute.totals.workers;
    // Busy while chunks of a local run are left: idle as soon as the last one is counted,
    // while the job is still being assembled.
    let computing_here = compute.is_running()
        && !compute.is_pooled()
        && compute
            .current()
            .is_some_and(|c| c.progress.chunks_done < c.progress.chunks_total);
    let n = workers.max(local.len()).max(pool_workers.len());
    (0..n)
        .map(|i| {
            let none = WorkerStats::default();
            let (l, p) = (
                local.get(i).unwrap_or(&none),
                pool_workers.get(i).unwrap_or(&none),
            );
            let sum = WorkerStats {
                busy: p.busy || (computing_here && i < workers),
                chunks_done: l.chunks_done + p.chunks_done,
                compute_s: l.compute_s + p.compute_s,
            };
            WorkerRow {
                host: String::new(),
                hops: 0,
                worker: i as u32 + 1,
                state: if sum.busy { "busy" } else { "idle" }.into(),
                chunks_done: sum.chunks_done,
                avg_compute_s: sum.avg_compute_s(),
                compute_s: sum.compute_s,
            }
        })
        .collect()
}

/// The other hosts' workers in server mode: for each host of `stats` but this one, what each
/// of its workers computed of the results that came here (nearest hosts first, then by name,
/// then by worker), and whether it is busy as its host's gossip last said ("lost" if its host
/// is; "—" for a host known only from its results, which has said nothing).
pub fn remote_worker_rows(stats: &PoolStats) -> Vec<WorkerRow> {
    let mut hosts: Vec<_> = stats.hosts.iter().filter(|h| h.hops != 0).collect();
    hosts.sort_by(|a, b| {
        (a.hops, a.name.to_lowercase(), a.node).cmp(&(b.hops, b.name.to_lowercase(), b.node))
    });
    hosts
        .into_iter()
        .flat_map(|h| {
            h.worker_stats
                .iter()
                .enumerate()
                .map(move |(i, w)| WorkerRow {
                    host: h.name.clone(),
                    hops: h.hops,
                    worker: i as u32 + 1,
                    state: if h.state == millpond_net::HostState::Lost {
                        "lost"
                    } else if !h.workers_busy_known {
                        "—"
                    } else if w.busy {
                        "busy"
                    } else {
                        "idle"
                    }
                    .into(),
                    chunks_done: w.chunks_done,
                    avg_compute_s: w.avg_compute_s(),
                    compute_s: w.compute_s,
                })
        })
        .collect()
}

/// This computer's chunks and average compute time per chunk, from its worker rows.
fn host_work(workers: &[WorkerRow]) -> (u64, f64) {
    let chunks: u64 = workers.iter().map(|w| w.chunks_done).sum();
    let seconds: f64 = workers.iter().map(|w| w.compute_s).sum();
    let avg = if chunks == 0 {
        0.0
    } else {
        seconds / chunks as f64
    };
    (chunks, avg)
}

/// The one row of local mode: this computer, its `workers` (as set in Preferences) and what
/// its worker threads computed (`rows`, which also list threads of earlier settings).
pub fn local_host_row(
    name: &str,
    workers: usize,
    rows: &[WorkerRow],
    compute: &Compute,
) -> HostRow {
    let (chunks_done, avg_compute_s) = host_work(rows);
    HostRow {
        name: name.to_string(),
        address: "this computer".into(),
        hops: 0,
        workers: workers as u32,
        state: if compute.is_running() { "busy" } else { "idle" }.into(),
        chunks_done,
        avg_compute_s,
        avg_transfer_s: 0.0,
        bytes_in: 0,
        bytes_out: 0,
        rtt_ms: 0.0,
        last_heard_s: 0.0,
    }
}

/// Job rows: the running one, then finished ones. A pooled job's progress comes from its
/// own handle (the pool's figures for exactly that job), so the row never shows another
/// job the pool still holds, such as one cancelled a moment ago.
pub fn job_rows(compute: &Compute) -> Vec<JobRow> {
    let mut rows = Vec::new();
    if let Some(c) = compute.current() {
        let p = c.progress;
        rows.push(JobRow {
            name: c.name.clone(),
            progress: p,
            state: if compute.is_cancelling() {
                "cancelling"
            } else {
                "running"
            },
        });
    }
    rows.extend(compute.finished.iter().rev().cloned());
    rows
}

/// A value to sort by.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key {
    Num(f64),
    Text(String),
}

struct Column<R> {
    title: &'static str,
    tip: &'static str,
    text: fn(&R) -> String,
    key: fn(&R) -> Key,
}

/// Which column a table is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: usize,
    pub ascending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Self {
            column: 0,
            ascending: true,
        }
    }
}

pub fn format_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

pub fn format_rate(points_per_s: f64) -> String {
    if points_per_s >= 1e6 {
        format!("{:.2} M pts/s", points_per_s / 1e6)
    } else if points_per_s >= 1e3 {
        format!("{:.1} k pts/s", points_per_s / 1e3)
    } else {
        format!("{points_per_s:.0} pts/s")
    }
}

/// A time per chunk: chunks range from a fraction of a millisecond to seconds.
pub fn format_seconds(s: f64) -> String {
    if !s.is_finite() || s <= 0.0 {
        "—".into()
    } else if s < 0.01 {
        format!("{:.2} ms", s * 1e3)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

pub fn format_eta(s: f64) -> String {
    if !s.is_finite() || s <= 0.0 {
        "—".into()
    } else if s < 60.0 {
        format!("{s:.0} s")
    } else {
        crate::common::format_duration(s)
    }
}

fn host_columns() -> Vec<Column<HostRow>> {
    vec![
        Column {
            title: "Host",
            tip: "The member's name (its host name unless set in its Preferences)",
            text: |r| r.name.clone(),
            key: |r| Key::Text(r.name.to_lowercase()),
        },
        Column {
            title: "Address",
            tip: "Where this computer reaches it (members known only by gossip have none)",
            text: |r| r.address.clone(),
            key: |r| Key::Text(r.address.clone()),
        },
        Column {
            title: "Hops",
            tip: "Links between here and there: 0 is this computer, 1 a direct link",
            // Only a host that can be reached has a distance.
            text: |r| {
                if r.state == "lost" {
                    "—".into()
                } else {
                    r.hops.to_string()
                }
            },
            key: |r| Key::Num(f64::from(r.hops)),
        },
        Column {
            title: "Workers",
            tip: "Worker threads it offers",
            text: |r| r.workers.to_string(),
            key: |r| Key::Num(f64::from(r.workers)),
        },
        Column {
            title: "State",
            tip: "connecting, authenticated, busy, idle or lost",
            text: |r| r.state.clone(),
            key: |r| Key::Text(r.state.clone()),
        },
        Column {
            title: "Chunks",
            tip: "Chunks it computed for jobs of this computer since start",
            text: |r| r.chunks_done.to_string(),
            key: |r| Key::Num(r.chunks_done as f64),
        },
        Column {
            title: "Compute/chunk",
            tip: "Average time one worker took to compute a chunk, measured per chunk",
            text: |r| format_seconds(r.avg_compute_s),
            key: |r| Key::Num(r.avg_compute_s),
        },
        Column {
            title: "Transfer",
            tip: "Average time a chunk's work and result spent on the network",
            text: |r| {
                if r.hops == 0 {
                    "—".into()
                } else {
                    format_seconds(r.avg_transfer_s)
                }
            },
            key: |r| Key::Num(r.avg_transfer_s),
        },
        Column {
            title: "In",
            tip: "Bytes received from it",
            text: |r| format_bytes(r.bytes_in),
            key: |r| Key::Num(r.bytes_in as f64),
        },
        Column {
            title: "Out",
            tip: "Bytes sent to it",
            text: |r| format_bytes(r.bytes_out),
            key: |r| Key::Num(r.bytes_out as f64),
        },
        Column {
            title: "RTT",
            tip: "Round-trip time of the link",
            text: |r| {
                if r.hops == 1 {
                    format!("{:.1} ms", r.rtt_ms)
                } else {
                    "—".into()
                }
            },
            key: |r| Key::Num(r.rtt_ms),
        },
        Column {
            title: "Last heard",
            tip: "Seconds since anything was heard from it",
            text: |r| {
                if r.hops == 0 {
                    "now".into()
                } else {
                    format!("{:.1} s ago", r.last_heard_s)
                }
            },
            key: |r| Key::Num(r.last_heard_s),
        },
    ]
}

fn worker_columns() -> Vec<Column<WorkerRow>> {
    vec![
        Column {
            title: "Host",
            tip: "Where the worker runs: this computer first, then the nearest hosts, by name",
            text: |r| r.host.clone(),
            key: |r| Key::Text(format!("{:03} {}", r.hops, r.host.to_lowercase())),
        },
        Column {
            title: "Worker",
            tip: "A worker thread of its host (this computer's: Preferences, local workers)",
            text: |r| format!("worker {}", r.worker),
            key: |r| Key::Num(f64::from(r.worker)),
        },
        Column {
            title: "State",
            tip: "busy while it computes a chunk, idle otherwise; other hosts' as their gossip last said (— if it said nothing yet, lost if the host is)",
            text: |r| r.state.clone(),
            key: |r| Key::Text(r.state.clone()),
        },
        Column {
            title: "Chunks",
            tip: "Chunks it computed since start (this computer: local runs and pool work; \
                  other hosts: those whose results came here)",
            text: |r| r.chunks_done.to_string(),
            key: |r| Key::Num(r.chunks_done as f64),
        },
        Column {
            title: "Compute/chunk",
            tip: "Average time it took to compute one chunk, measured per chunk",
            text: |r| format_seconds(r.avg_compute_s),
            key: |r| Key::Num(r.avg_compute_s),
        },
        Column {
            title: "Busy time",
            tip: "Seconds it spent computing chunks since start",
            text: |r| format!("{:.1} s", r.compute_s),
            key: |r| Key::Num(r.compute_s),
        },
    ]
}

fn share(r: &JobRow) -> f64 {
    let p = &r.progress;
    let all = p.local_chunks + p.remote_chunks;
    if all == 0 {
        0.0
    } else {
        f64::from(p.local_chunks) / f64::from(all)
    }
}

fn job_columns() -> Vec<Column<JobRow>> {
    vec![
        Column {
            title: "Job",
            tip: "The operation being computed",
            text: |r| r.name.clone(),
            key: |r| Key::Text(r.name.to_lowercase()),
        },
        Column {
            title: "State",
            tip: "running, cancelling, done, cancelled or failed",
            text: |r| r.state.into(),
            key: |r| Key::Text(r.state.into()),
        },
        Column {
            title: "Chunks",
            tip: "Chunks done of the job's total",
            text: |r| format!("{} / {}", r.progress.chunks_done, r.progress.chunks_total),
            key: |r| Key::Num(f64::from(r.progress.chunks_done)),
        },
        Column {
            title: "Local / remote",
            tip: "Share of the chunks computed on this computer and elsewhere in the pool",
            text: |r| {
                let s = share(r);
                if r.progress.local_chunks + r.progress.remote_chunks == 0 {
                    "—".into()
                } else {
                    format!("{:.0}% / {:.0}%", s * 100.0, (1.0 - s) * 100.0)
                }
            },
            key: |r| Key::Num(share(r)),
        },
        Column {
            title: "Throughput",
            tip: "Cutter-location points computed per second",
            text: |r| format_rate(r.progress.points_per_s()),
            key: |r| Key::Num(r.progress.points_per_s()),
        },
        Column {
            title: "ETA",
            tip: "Estimated time until the job is done",
            text: |r| format_eta(r.eta_s()),
            key: |r| Key::Num(r.eta_s()),
        },
    ]
}

/// `rows` in the order `sort` asks for (stable: equal keys keep their order).
fn sorted<R: Clone>(columns: &[Column<R>], rows: &[R], sort: Sort) -> Vec<R> {
    let mut rows = rows.to_vec();
    if let Some(col) = columns.get(sort.column) {
        rows.sort_by(|a, b| {
            let o = (col.key)(a)
                .partial_cmp(&(col.key)(b))
                .unwrap_or(Ordering::Equal);
            if sort.ascending { o } else { o.reverse() }
        });
    }
    rows
}

fn sorted_table<R: Clone>(
    ui: &mut Ui,
    id: &str,
    columns: &[Column<R>],
    rows: &[R],
    sort: &mut Sort,
) {
    let rows = sorted(columns, rows, *sort);
    egui::Grid::new(id).striped(true).show(ui, |ui| {
        for (i, c) in columns.iter().enumerate() {
            let arrow = match (sort.column == i, sort.ascending) {
                (true, true) => " ^",
                (true, false) => " v",
                _ => "",
            };
            let r: Response = ui
                .button(RichText::new(format!("{}{arrow}", c.title)).strong())
                .on_hover_text(format!("{} — click to sort", c.tip));
            if r.clicked() {
                if sort.column == i {
                    sort.ascending = !sort.ascending;
                } else {
                    *sort = Sort {
                        column: i,
                        ascending: true,
                    };
                }
            }
        }
        ui.end_row();
        for row in &rows {
            for c in columns {
                ui.label((c.text)(row));
            }
            ui.end_row();
        }
    });
}

/// The panel's own state: visibility, sort orders, the rows last refreshed.
#[derive(Debug, Default)]
pub struct StatsPanel {
    pub visible: bool,
    pub host_sort: Sort,
    pub worker_sort: Sort,
    pub job_sort: Sort,
    pub hosts: Vec<HostRow>,
    /// This computer's worker threads.
    pub workers: Vec<WorkerRow>,
    /// The other hosts' workers (server mode), shown after this computer's.
    pub remote_workers: Vec<WorkerRow>,
    pub jobs: Vec<JobRow>,
    /// One-line pool totals.
    pub totals: String,
}

impl StatsPanel {
    /// Rebuilds the rows (a few times per second while visible).
    pub fn refresh(
        &mut self,
        pool: Option<&PoolStats>,
        node_name: &str,
        local_workers: usize,
        compute: &Compute,
    ) {
        let me = pool.and_then(|s| s.hosts.iter().find(|h| h.hops == 0));
        let pool_workers = me.map_or(&[][..], |h| &h.worker_stats[..]);
        let workers = me.map_or(local_workers, |h| h.workers as usize);
        self.workers = worker_rows(workers, pool_workers, compute);
        let my_name = me.map_or(node_name, |h| h.name.as_str());
        for w in &mut self.workers {
            w.host = my_name.to_string();
        }
        self.remote_workers = pool.map_or_else(Vec::new, remote_worker_rows);
        self.hosts = match pool {
            Some(s) if !s.hosts.is_empty() => {
                let mut rows = pool_host_rows(s);
                // This host's row: the pool's own workers since it started plus what was
                // computed here in local mode, as the worker rows add them up.
                let (chunks, avg) = host_work(&self.workers);
                if let Some(me) = rows.iter_mut().find(|r| r.hops == 0) {
                    me.chunks_done = chunks;
                    me.avg_compute_s = avg;
                }
                rows
            }
            _ => vec![local_host_row(
                node_name,
                local_workers,
                &self.workers,
                compute,
            )],
        };
        self.jobs = job_rows(compute);
        let workers: u32 = self
            .hosts
            .iter()
            .filter(|h| h.state != "lost")
            .map(|h| h.workers)
            .sum();
        // Per computing worker, here and elsewhere: a chunk relayed through a link is
        // counted once, by the node that computed it.
        let chunks: u64 = self
            .workers
            .iter()
            .chain(&self.remote_workers)
            .map(|w| w.chunks_done)
            .sum();
        let rate = compute.current().map_or(0.0, |c| c.progress.points_per_s());
        // Hosts in the pool now: a lost one stays listed (what it computed is history) but
        // is not counted.
        let hosts = self.hosts.iter().filter(|h| h.state != "lost").count();
        let lost = self.hosts.len() - hosts;
        self.totals = format!(
            "{} ({hosts} host{}{}, {workers} workers): {chunks} chunks computed, now {}",
            if pool.is_some() { "Pool" } else { "Local mode" },
            if hosts == 1 { "" } else { "s" },
            if lost > 0 {
                format!(" and {lost} lost")
            } else {
                String::new()
            },
            format_rate(rate)
        );
    }

    pub fn ui(&mut self, ui: &mut Ui, compute: &Compute) {
        ui.horizontal(|ui| {
            ui.heading("Process statistics");
            ui.label(&self.totals);
        });
        egui::ScrollArea::both()
            .id_salt("stats-scroll")
            .auto_shrink([false, true])
            .show(ui, |ui| {
                ui.label(RichText::new("Hosts").strong());
                sorted_table(
                    ui,
                    "hosts",
                    &host_columns(),
                    &self.hosts,
                    &mut self.host_sort,
                );
                ui.add_space(6.0);
                let title = if self.remote_workers.is_empty() {
                    "Workers on this computer"
                } else {
                    "Workers on this computer and other hosts"
                };
                ui.label(RichText::new(title).strong());
                let workers: Vec<WorkerRow> = self
                    .workers
                    .iter()
                    .chain(&self.remote_workers)
                    .cloned()
                    .collect();
                sorted_table(
                    ui,
                    "workers",
                    &worker_columns(),
                    &workers,
                    &mut self.worker_sort,
                );
                ui.add_space(6.0);
                ui.label(RichText::new("Jobs").strong());
                if self.jobs.is_empty() {
                    ui.weak("No job yet: click Generate.");
                } else {
                    sorted_table(ui, "jobs", &job_columns(), &self.jobs, &mut self.job_sort);
                }
                ui.add_space(6.0);
                ui.label(RichText::new("Throughput over time (CL points/s)").strong());
                let points: PlotPoints<'_> = compute.history().iter().copied().collect();
                Plot::new("throughput")
                    .height(120.0)
                    .x_axis_label("time since start, s")
                    .y_axis_formatter(|mark, _| {
                        let v = mark.value;
                        if v.abs() >= 1e6 {
                            format!("{:.1} M", v / 1e6)
                        } else if v.abs() >= 1e3 {
                            format!("{:.0} k", v / 1e3)
                        } else {
                            format!("{v:.0}")
                        }
                    })
                    .include_y(0.0)
                    .allow_scroll(false)
                    .show(ui, |p| p.line(Line::new("CL points/s", points)));
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1_500), "1.5 kB");
        assert_eq!(format_bytes(2_500_000), "2.5 MB");
        assert_eq!(format_rate(1_234_567.0), "1.23 M pts/s");
        assert_eq!(format_eta(0.0), "—");
        assert_eq!(format_eta(12.4), "12 s");
        assert_eq!(format_eta(3725.0), "1:02:05");
    }

    fn host(name: &str, chunks: u64) -> HostRow {
        HostRow {
            name: name.into(),
            address: "a".into(),
            hops: 1,
            workers: 2,
            state: "idle".into(),
            chunks_done: chunks,
            avg_compute_s: 0.0,
            avg_transfer_s: 0.0,
            bytes_in: 0,
            bytes_out: 0,
            rtt_ms: 0.0,
            last_heard_s: 0.0,
        }
    }

    #[test]
    fn tables_sort_by_any_column_both_ways() {
        let rows = vec![host("b", 5), host("A", 50), host("c", 7)];
        let cols = host_columns();
        let names = |s: Sort| -> Vec<String> {
            sorted(&cols, &rows, s)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names(Sort::default()), ["A", "b", "c"], "names ignore case");
        let chunks = cols.iter().position(|c| c.title == "Chunks").unwrap();
        let by_chunks = Sort {
            column: chunks,
            ascending: true,
        };
        assert_eq!(names(by_chunks), ["b", "c", "A"], "numbers sort as numbers");
        let down = Sort {
            ascending: false,
            ..by_chunks
        };
        assert_eq!(names(down), ["A", "c", "b"]);
    }

    #[test]
    fn local_row_is_this_computer_idle_before_any_job() {
        let c = Compute::new(egui::Context::default());
        let workers = worker_rows(2, &[], &c);
        assert_eq!(workers.len(), 2, "idle workers are listed too");
        let r = local_host_row("bench", 2, &workers, &c);
        assert_eq!((r.hops, r.workers, r.state.as_str()), (0, 2, "idle"));
        assert_eq!(r.chunks_done, 0);
        assert_eq!(format_seconds(r.avg_compute_s), "—");
    }

    #[test]
    fn worker_rows_add_local_runs_and_pool_work_per_worker() {
        let mut c = Compute::new(egui::Context::default());
        c.totals.workers = vec![
            WorkerStats {
                busy: false,
                chunks_done: 4,
                compute_s: 0.4,
            },
            WorkerStats {
                busy: false,
                chunks_done: 2,
                compute_s: 0.6,
            },
        ];
        let pool = [WorkerStats {
            busy: true,
            chunks_done: 6,
            compute_s: 1.2,
        }];
        let rows = worker_rows(3, &pool, &c);
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].chunks_done, rows[0].state.as_str()), (10, "busy"));
        assert!((rows[0].avg_compute_s - 0.16).abs() < 1e-12);
        assert!((rows[1].avg_compute_s - 0.3).abs() < 1e-12);
        assert_eq!((rows[2].chunks_done, rows[2].avg_compute_s), (0, 0.0));
        let (chunks, avg) = host_work(&rows);
        assert_eq!(chunks, 12);
        assert!((avg - 2.2 / 12.0).abs() < 1e-12);
    }

    #[test]
    fn a_host_caught_lying_is_named_cut_off() {
        use millpond_net::HostStats;
        let stats = PoolStats {
            hosts: vec![HostStats {
                name: "liar".into(),
                hops: 1,
                wrong_results: 1,
                discarded_results: 14,
                ..HostStats::default()
            }],
            ..PoolStats::default()
        };
        let rows = pool_host_rows(&stats);
        assert_eq!(rows[0].state, "cut off: 1 wrong result(s), 14 discarded");
    }

    #[test]
    fn other_hosts_workers_follow_this_computers_and_sort_with_them() {
        use millpond_net::HostStats;
        let remote = |name: &str, hops: u8, workers: Vec<WorkerStats>| HostStats {
            node: u64::from(hops),
            name: name.into(),
            hops,
            workers: workers.len() as u32,
            chunks_done: workers.iter().map(|w| w.chunks_done).sum(),
            worker_stats: workers,
            workers_busy_known: true,
            ..HostStats::default()
        };
        let w = |chunks: u64, s: f64| WorkerStats {
            busy: false,
            chunks_done: chunks,
            compute_s: s,
        };
        let busy = WorkerStats {
            busy: true,
            ..w(5, 1.0)
        };
        let lost = HostStats {
            state: millpond_net::HostState::Lost,
            ..remote("gone", 3, vec![w(1, 0.1)])
        };
        let unheard = HostStats {
            workers_busy_known: false,
            ..remote("node 00ff", 4, vec![w(1, 0.1)])
        };
        let stats = PoolStats {
            hosts: vec![
                remote("me", 0, vec![w(1, 0.1)]),
                remote("far", 2, vec![w(3, 0.9)]),
                remote("Aa-near", 1, vec![busy, w(2, 0.8)]),
                lost,
                unheard,
            ],
            ..PoolStats::default()
        };
        let mut rows = remote_worker_rows(&stats);
        let ids: Vec<(&str, u32, u64, &str)> = rows
            .iter()
            .map(|r| (r.host.as_str(), r.worker, r.chunks_done, r.state.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("Aa-near", 1, 5, "busy"),
                ("Aa-near", 2, 2, "idle"),
                ("far", 1, 3, "idle"),
                ("gone", 1, 1, "lost"),
                ("node 00ff", 1, 1, "—"),
            ]
        );
        rows.truncate(3);
        assert!((rows[1].avg_compute_s - 0.4).abs() < 1e-12);
        assert!(
            (rows[2].compute_s - 0.9).abs() < 1e-12,
            "busy time is compute time"
        );
        // In one table with this computer's: it stays first when sorted by host.
        let c = Compute::new(egui::Context::default());
        let mut all = worker_rows(2, &[], &c);
        for r in &mut all {
            r.host = "zz-this".into();
        }
        all.extend(rows);
        let cols = worker_columns();
        let order = |s: Sort| -> Vec<(String, u32)> {
            sorted(&cols, &all, s)
                .into_iter()
                .map(|r| (r.host, r.worker))
                .collect()
        };
        let first = order(Sort::default());
        assert_eq!(first[0], ("zz-this".to_string(), 1));
        assert_eq!(first[1], ("zz-this".to_string(), 2));
        assert_eq!(first[4], ("far".to_string(), 1));
        let busy = cols.iter().position(|c| c.title == "Busy time").unwrap();
        let by_busy = order(Sort {
            column: busy,
            ascending: false,
        });
        assert_eq!(by_busy[0], ("Aa-near".to_string(), 1));
    }

    #[test]
    fn chunk_times_keep_their_digits() {
        assert_eq!(format_seconds(0.000_42), "0.42 ms");
        assert_eq!(format_seconds(0.056), "56 ms");
        assert_eq!(format_seconds(2.5), "2.50 s");
    }
}

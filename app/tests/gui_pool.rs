//! UI tests of Preferences and server mode: a real pool on 127.0.0.1 (port 0), computing in
//! it, and a remote server with another secret showing "authentication failed".

mod gui_support;

use egui_kittest::kittest::Queryable;
use gui_support::{TestApp, app, app_in};
use millpond::gui::preferences::{self, PoolState, Preferences};
use millpond_net::{Pool, PoolConfig, Secret};
use std::time::Duration;

/// An app whose saved preferences listen on loopback only, on any free port, with a secret.
fn loopback_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let prefs = Preferences {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        local_workers: 2,
        node_name: "gui-test".into(),
        ..Preferences::default()
    };
    prefs.save(dir.path()).unwrap();
    preferences::save_secret(
        dir.path(),
        &Secret::new("correct horse battery", "test").unwrap(),
    )
    .unwrap();
    app_in(dir)
}

fn open_preferences(t: &mut TestApp) {
    t.harness.get_by_label("Preferences").click();
    t.harness.run_ok();
    assert!(t.app().prefs_ui.open);
}

#[test]
fn preferences_open_with_every_setting_named() {
    let mut t = app();
    open_preferences(&mut t);
    t.assert_shown(&[
        "Server mode: join the compute pool",
        "Listen on",
        "Port",
        "Node name",
        "Local workers",
        "Rapid rate",
        "Secret",
        "Generate secret",
        "Add server",
        "Discover members on the local network",
    ]);
    // The secret is generated, saved privately and masked.
    t.harness.get_by_label("Generate secret").click();
    t.harness.run_ok();
    let saved = preferences::load_secret(t.dir.path())
        .unwrap()
        .expect("saved");
    assert_eq!(t.app().secret.as_ref(), Some(&saved));
    assert!(!t.has_text(&saved.reveal()), "the secret shows unmasked");
    t.harness.get_by_label("Show secret").click();
    t.harness.run_ok();
    assert!(t.app().prefs_ui.show_secret);
    // A remote server needs HOST:PORT.
    t.app_mut().add_remote("no-port");
    t.harness.run_ok();
    assert!(t.has_text("give HOST:PORT"), "{}", t.texts());
}

/// LAN discovery is off until chosen, and the choice is saved with the other preferences
/// (server mode stays off here: nothing is started, nothing broadcast).
#[test]
fn lan_discovery_is_off_by_default_and_saved_when_chosen() {
    let mut t = app();
    assert!(!Preferences::default().discover);
    open_preferences(&mut t);
    assert!(!t.app().prefs_ui.edit.discover);
    t.harness
        .get_by_label("Discover members on the local network")
        .click();
    t.harness.run_ok();
    assert!(t.app().prefs_ui.edit.discover);
    // Not saved until "Save and apply".
    assert!(!Preferences::load(t.dir.path()).0.discover);
    t.harness.get_by_label("Save and apply").click();
    t.harness.run_ok();
    assert!(t.app().prefs.discover);
    assert!(Preferences::load(t.dir.path()).0.discover);
    assert!(matches!(t.app().pool.state(), PoolState::Off));
}

/// Clicks the server mode checkbox and waits (at most `timeout`) for the pool's state to be
/// one `done` accepts.
fn click_server_mode(t: &mut TestApp, timeout: Duration, done: impl Fn(&PoolState) -> bool) {
    t.harness
        .get_by_label("Server mode: join the compute pool")
        .click();
    assert!(
        t.run_until(timeout, |a| done(a.pool.state())),
        "pool state: {:?}",
        t.app().pool.state().describe()
    );
}

#[test]
fn server_mode_starts_and_stops_a_pool_that_computes() {
    let mut t = loopback_app();
    open_preferences(&mut t);
    click_server_mode(&mut t, Duration::from_secs(20), |s| {
        matches!(s, PoolState::Running(_))
    });
    let addr = t.app().pool.pool().unwrap().local_addr().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    t.harness.run_ok();
    assert!(t.has_text("listening on UDP 127.0.0.1"), "{}", t.texts());
    // Saved: the next start joins again.
    assert!(Preferences::load(t.dir.path()).0.server_mode);

    // A job now goes through the pool (this node's own workers compute it).
    let op = t.raster();
    t.harness.get_by_label("Generate").click();
    t.harness.step();
    assert!(t.app().compute.is_pooled());
    assert!(
        t.run_until(Duration::from_secs(120), |a| a.toolpath(op).is_some()),
        "{}",
        t.texts()
    );
    // The statistics panel lists this host with the chunks its pool workers computed and
    // their time per chunk, measured by the pool.
    let total = t.last_job_chunks();
    t.harness.get_by_label("Statistics").click();
    // Refreshed a few times per second while visible.
    assert!(
        t.run_until(Duration::from_secs(3), |a| {
            a.stats
                .hosts
                .first()
                .is_some_and(|h| h.chunks_done == total)
        }),
        "job of {total} chunks: {:?}",
        t.app().stats.hosts
    );
    t.harness.run_ok();
    let hosts = t.app().stats.hosts.clone();
    assert_eq!(hosts[0].name, "gui-test");
    assert_eq!(hosts[0].hops, 0);
    assert!(hosts[0].address.starts_with("127.0.0.1:"), "{hosts:?}");
    assert!(hosts[0].avg_compute_s > 0.0, "{hosts:?}");
    // One row per pool worker here, adding up to the host row.
    let pool_host = t.app().pool_stats.as_ref().unwrap().hosts[0].clone();
    assert_eq!(pool_host.worker_stats.len(), 2, "{pool_host:?}");
    let workers = t.app().stats.workers.clone();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert_eq!(workers.iter().map(|w| w.chunks_done).sum::<u64>(), total);
    let busy_s: f64 = workers.iter().map(|w| w.compute_s).sum();
    assert!((busy_s / total as f64 - hosts[0].avg_compute_s).abs() < 1e-9);
    assert!(t.has_text("worker 2"), "{}", t.texts());
    assert!(t.has_text("Throughput over time"), "{}", t.texts());

    // Simulate goes through the pool too while server mode is on: the stock's tiles are a
    // job of the pool's (its workers' chunk count grows by them), and what it shows is what
    // a simulation on this computer alone shows, to the bit.
    let simulate = |t: &mut TestApp| {
        t.simulate();
        let taken = t.app_mut().simulation.last.take();
        match taken {
            Some(Ok(sim)) => sim,
            other => panic!("{other:?}"),
        }
    };
    let pooled = simulate(&mut t);
    let chunks_after = t.app().pool.pool().unwrap().stats().hosts[0]
        .worker_stats
        .iter()
        .map(|w| w.chunks_done)
        .sum::<u64>();
    assert!(
        chunks_after > total,
        "the simulation did not go through the pool"
    );

    click_server_mode(&mut t, Duration::from_secs(5), |s| {
        matches!(s, PoolState::Off)
    });
    let here = simulate(&mut t);
    assert!(pooled.operations[0].0.removed_mm3 > 0.0);
    assert_eq!(pooled.operations, here.operations);
    assert!(
        pooled.surface == here.surface,
        "the pool's stock is drawn otherwise"
    );
}

#[test]
fn statistics_list_a_helpers_workers_after_this_computers() {
    let mut t = loopback_app();
    // Seconds of work, so the helper takes part.
    t.set_raster(|p| p.stepover = 0.1);
    t.app_mut().set_server_mode(true);
    assert!(t.run_until(Duration::from_secs(20), |a| matches!(
        a.pool.state(),
        PoolState::Running(_)
    )));
    let addr = t.app().pool.pool().unwrap().local_addr().unwrap();
    // Another member with two workers, dialling this one with the same secret.
    let mut cfg = PoolConfig::new(Secret::new("correct horse battery", "test").unwrap());
    cfg.remotes = vec![addr.to_string()];
    cfg.workers = 2;
    cfg.name = "helper".into();
    let helper = Pool::start(cfg).unwrap();
    t.harness.get_by_label("Statistics").click();
    assert!(
        t.run_until(Duration::from_secs(20), |a| a
            .pool_stats
            .as_ref()
            .is_some_and(|s| s.hosts.iter().any(|h| h.name == "helper"))),
        "{:?}",
        t.app().pool_stats
    );
    let op = t.raster();
    // What the Generate button does (the open Statistics panel leaves it scrolled out of
    // this window; gui_compute clicks it).
    t.app_mut().generate(false);
    // The pooled job is drawn as its chunks arrive, as a local one is; the helper's workers
    // show busy while they compute, as its gossip says.
    let (mut previews, mut helper_busy) = (0, false);
    assert!(
        t.run_until(Duration::from_secs(120), |a| {
            previews += usize::from(a.compute.preview().is_some());
            helper_busy |= a
                .stats
                .remote_workers
                .iter()
                .any(|w| w.host == "helper" && w.state == "busy");
            a.toolpath(op).is_some()
        }),
        "{}",
        t.texts()
    );
    eprintln!("frames with a preview: {previews}; helper seen busy: {helper_busy}");
    assert!(previews > 0, "no preview of the pooled job");
    let total = t.last_job_chunks();
    // The helper's workers are listed after this computer's, adding up to the chunks its
    // link delivered, with their compute time as busy time.
    let helper_chunks = |a: &millpond::gui::app::MillpondApp| {
        a.stats
            .hosts
            .iter()
            .find(|h| h.name == "helper")
            .map_or(0, |h| h.chunks_done)
    };
    assert!(
        t.run_until(Duration::from_secs(3), |a| {
            let mine: u64 = a.stats.workers.iter().map(|w| w.chunks_done).sum();
            let theirs: u64 = a.stats.remote_workers.iter().map(|w| w.chunks_done).sum();
            mine + helper_chunks(a) >= total && theirs == helper_chunks(a)
        }),
        "job of {total} chunks: {:?} {:?}",
        t.app().stats.hosts,
        t.app().stats.remote_workers
    );
    assert!(
        t.run_until(Duration::from_secs(2), |a| a
            .stats
            .remote_workers
            .iter()
            .all(|w| w.state == "idle")),
        "the helper's workers are not idle after the job: {:?}",
        t.app().stats.remote_workers
    );
    t.harness.run_ok();
    let remote = t.app().stats.remote_workers.clone();
    eprintln!("{total} chunks: helper workers {remote:?}");
    assert!(helper_chunks(t.app()) > 0, "the helper computed nothing");
    assert_eq!(remote.len(), 2, "{remote:?}");
    assert!(remote.iter().all(|w| w.host == "helper" && w.hops == 1));
    assert_eq!(
        remote.iter().map(|w| w.worker).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(remote.iter().map(|w| w.compute_s).sum::<f64>() > 0.0);
    assert!(t.has_text("helper"), "{}", t.texts());
    assert!(
        t.has_text("Workers on this computer and other hosts"),
        "{}",
        t.texts()
    );

    // The helper quits and a new one starts with the same name (a restart is a new node):
    // the status bar says the first left, its row says lost with no distance and is not
    // counted, and the new one is.
    helper.shutdown();
    let mut cfg = PoolConfig::new(Secret::new("correct horse battery", "test").unwrap());
    cfg.remotes = vec![addr.to_string()];
    cfg.workers = 2;
    cfg.name = "helper".into();
    let restarted = Pool::start(cfg).unwrap();
    let rows = |a: &millpond::gui::app::MillpondApp| {
        let helpers: Vec<_> = a
            .stats
            .hosts
            .iter()
            .filter(|h| h.name == "helper")
            .collect();
        (
            helpers.iter().filter(|h| h.state == "lost").count(),
            helpers.iter().filter(|h| h.state != "lost").count(),
        )
    };
    assert!(
        t.run_until(Duration::from_secs(20), |a| rows(a) == (1, 1)),
        "{:?}",
        t.app().stats.hosts
    );
    t.harness.run_ok();
    assert!(
        t.app().status.starts_with("Pool: helper lost (peer quit"),
        "{}",
        t.app().status
    );
    let totals = t.app().stats.totals.clone();
    assert!(
        totals.starts_with("Pool (2 hosts and 1 lost, 4 workers)"),
        "{totals}"
    );
    let lost = t
        .app()
        .stats
        .hosts
        .iter()
        .find(|h| h.state == "lost")
        .cloned()
        .unwrap();
    assert!(lost.chunks_done > 0, "the lost helper's history: {lost:?}");
    restarted.shutdown();
}

#[test]
fn a_remote_with_another_secret_shows_authentication_failed() {
    // The other member: a real pool on loopback with a different secret.
    let mut cfg = PoolConfig::new(Secret::new("a different secret", "test").unwrap());
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.workers = 1;
    cfg.name = "other".into();
    let other = Pool::start(cfg).unwrap();
    let other_addr = other.local_addr().unwrap();

    let mut t = loopback_app();
    open_preferences(&mut t);
    t.app_mut().set_server_mode(true);
    assert!(t.run_until(Duration::from_secs(20), |a| matches!(
        a.pool.state(),
        PoolState::Running(_)
    )));
    let remote = format!("127.0.0.1:{}", other_addr.port());
    let field = t.harness.get_by_label("Add");
    field.focus();
    field.type_text(&remote);
    t.harness.run_ok();
    t.harness.get_by_label("Add server").click();
    t.harness.run_ok();
    assert_eq!(t.app().prefs.remote_servers, vec![remote.clone()]);
    assert!(
        t.run_until(Duration::from_secs(20), |a| a
            .pool_stats
            .as_ref()
            .is_some_and(|s| s.remotes.iter().any(
                |r| r.state == millpond_net::RemoteState::AuthenticationFailed
            ))),
        "{}",
        t.texts()
    );
    t.harness.run_ok();
    assert!(t.has_text("authentication failed"), "{}", t.texts());
    // Removing it stops the attempts: the pool restarts without it.
    // (Operations have Remove buttons too: take the one on the server's row.)
    let row_y = t.harness.get_by_label(&remote).rect().center().y;
    t.harness
        .query_all_by_label("Remove")
        .find(|b| (b.rect().center().y - row_y).abs() < 4.0)
        .expect("a Remove button on the server's row")
        .click();
    t.harness.run_ok();
    assert!(t.app().prefs.remote_servers.is_empty());
    assert!(
        t.run_until(Duration::from_secs(20), |a| matches!(
            a.pool.state(),
            PoolState::Running(_)
        ) && a
            .pool_stats
            .as_ref()
            .is_some_and(|s| s.remotes.is_empty())),
        "{}",
        t.texts()
    );
    t.harness.run_ok();
    assert!(!t.has_text("authentication failed"), "{}", t.texts());
    assert!(Preferences::load(t.dir.path()).0.remote_servers.is_empty());
    other.shutdown();
}

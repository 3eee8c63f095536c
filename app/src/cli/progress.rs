//! Progress on the terminal while a command computes: one bar per operation with chunks,
//! CL points per second and the time left — on stderr, and only when stderr is a terminal
//! (scripts reading the output get exactly what they got before) and `--quiet` was not given.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

/// One operation's bar, or nothing where no bar is wanted.
#[derive(Debug)]
pub struct OperationProgress {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl OperationProgress {
    /// A bar for `label` over `chunks` chunks, drawn if stderr is a terminal and not `quiet`.
    pub fn new(label: &str, chunks: u32, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(u64::from(chunks)),
                ProgressDrawTarget::stderr_with_hz(10),
            );
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} chunks · {msg} · ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            started: Instant::now(),
        }
    }

    /// `done` chunks finished, `points` CL points computed so far.
    pub fn update(&self, done: u32, points: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(u64::from(done));
            let s = self.started.elapsed().as_secs_f64();
            if s > 0.0 {
                bar.set_message(format!("{:.0} points/s", points as f64 / s));
            }
        }
    }

    /// Clears the bar; the command's summary lines follow as before.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

//! Detached jobs (ARCHITECTURE.md §4.13): a job submitted to a serving member, which owns
//! and runs it on its pool while the submitter goes away, keeps its program for a bounded
//! time and size, and hands it to whoever asks with its id and the pool secret.
//!
//! The pieces: the messages ([`wire`]), the job table without I/O
//! ([`crate::proto::detached`]), the serving member's side (`server.rs`: client
//! connections, runner threads) and the submitting side ([`Client`]). What a job *is* —
//! how its description becomes G-code — is the app's ([`RunDetached`]): this crate carries
//! the description as bytes it does not read.

mod client;
pub(crate) mod server;
pub mod wire;

pub use crate::proto::detached::{DetachedInput, Limits};
pub use client::{Client, ClientError, FetchOutcome};
pub use wire::{DetachedId, JobRow, JobState};

use millpond_core::CancelToken;
use millpond_core::runner::Executor;

/// How a serving member turns a detached job into its program (the app's `millpond
/// serve` gives one: plan, compute, post, write, as `millpond toolpath --job` does).
pub trait RunDetached: std::fmt::Debug + Send + Sync {
    /// Whether `description` is a job this member can run, before it is queued: the reason
    /// if not (the client shows it).
    fn check(&self, description: &[u8]) -> Result<(), String>;

    /// Runs a job to its G-code, computing through `executor` (this member's pool), calling
    /// `progress(done, total)` with its chunks over all its operations, and stopping within
    /// milliseconds of `cancel`.
    fn run(
        &self,
        input: &DetachedInput,
        executor: &dyn Executor,
        progress: &(dyn Fn(u64, u64) + Sync),
        cancel: &CancelToken,
    ) -> Result<Vec<u8>, String>;
}

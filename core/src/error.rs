//! Why a job cannot be planned, computed or assembled: one error type for the job and the
//! strategies' specs, so that a strategy can check its own parameters without knowing the
//! job that runs it.

use crate::cutter::CutterError;
use crate::mesh::MeshHash;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum JobError {
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error(transparent)]
    Cutter(#[from] CutterError),
    #[error("job was planned for mesh {expected} but was given mesh {actual}")]
    WrongMesh {
        expected: MeshHash,
        actual: MeshHash,
    },
    #[error("chunk result rejected: {0}")]
    BadResult(String),
    #[error("cancelled")]
    Cancelled,
}

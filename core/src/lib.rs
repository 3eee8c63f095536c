//! Millpond's geometry and toolpath engine.
//!
//! Pure and synchronous: no sockets, no windows, no global state. The whole data flow of
//! ARCHITECTURE.md §2 lives here — STL bytes to [`Mesh`], a [`TriangleIndex`] over it, a
//! [`JobSpec`](job::JobSpec) planned into chunks that [`run_chunk`](job::run_chunk) computes
//! (the only code the pool runs remotely), and the assembled [`Toolpath`](toolpath::Toolpath)
//! turned into G-code. [`setup`] turns a machinist's description of an operation (strategy,
//! parameters, tool, stock) into that job spec, for the window and the command line alike.

pub mod arcs;
pub mod cancel;
pub mod cutter;
pub mod drop;
pub mod error;
pub mod gcode;
pub mod gcode_read;
pub mod geom;
pub mod grid;
pub mod index;
pub mod job;
pub mod job_file;
pub mod line_rise;
pub mod links;
pub mod mesh;
pub mod models;
pub mod params;
pub mod placement;
pub mod planner;
pub mod post;
pub mod program;
pub mod raster;
pub mod rest;
pub mod rough;
pub mod runner;
pub mod setup;
pub mod sim_job;
pub mod sim_spec;
pub mod simulate;
pub mod stl;
pub mod stock_model;
pub mod toolpath;
pub mod tools;
pub mod waterline;

pub use cutter::Cutter;
pub use drop::{Axis, DropCutter};
pub use geom::{Aabb, Point3, Rect, Triangle};
pub use index::TriangleIndex;
pub use job::{CancelToken, JobContext, JobSpec};
pub use mesh::{Mesh, MeshHash};
pub use planner::{MachineProfile, TimeEstimate};
pub use stl::StlError;
pub use toolpath::{Feeds, Toolpath};

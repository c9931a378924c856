//! Process supervisor for agentd: spawns `sh -c` commands in their own process groups,
//! captures their combined output into bounded head+tail buffers, reports exit status,
//! delivers signals to whole groups, reaps, and kills everything on shutdown.
//!
//! It must not know HTTP or JSON; `agentd` maps its types to the wire. It never reads
//! environment variables: everything comes in through [`supervisor::Config`].

pub mod buffer;
pub mod contain;
pub mod group;
pub mod init;
mod launch;
pub mod priority;
mod spawn;
pub mod supervisor;

pub use buffer::{OutputBuffer, SinceRead, Strategy, Truncation};
pub use contain::{ContainError, ContainMode, ContainRequest};
pub use group::GroupSignal;
pub use priority::Priority;
pub use supervisor::{
    Config, DEFAULT_MAX_EXITED, DEFAULT_MAX_RUNNING, DEFAULT_RETENTION, DEFAULT_SWEEP_INTERVAL,
    Exit, NON_INTERACTIVE_ENV, OnExit, OutputView, Process, SignalError, SpawnStep, StartError,
    StartRequest, Status, Supervisor,
};

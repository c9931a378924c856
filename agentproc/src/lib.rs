//! Process supervisor for agentd: spawns `sh -c` commands in their own process groups,
//! captures their combined output into bounded head+tail buffers, reports exit status,
//! delivers signals to whole groups, reaps, and kills everything on shutdown.
//!
//! It must not know HTTP or JSON; `agentd` maps its types to the wire. It never reads
//! environment variables: everything comes in through [`Config`].

pub mod buffer;
mod contain;
mod group;
mod init;
mod launch;
mod priority;
mod spawn;
mod supervisor;
mod sync;

pub use buffer::{OutputBuffer, SinceRead, Strategy, Truncation};
pub use contain::{
    CgroupUnavailable, ContainError, ContainMode, ContainRequest, probe_containment,
};
pub use group::{GroupSignal, group_alive, group_members, new_group, signal_group, stop_group};
pub use init::{InitError, become_init, is_pid1};
pub use priority::Priority;
pub use supervisor::{
    Config, DEFAULT_MAX_EXITED, DEFAULT_MAX_RUNNING, DEFAULT_RETENTION, DEFAULT_SWEEP_INTERVAL,
    Exit, NON_INTERACTIVE_ENV, OnExit, OutputView, Process, SignalError, SpawnStep, StartError,
    StartRequest, Status, Supervisor,
};

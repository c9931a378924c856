//! Process supervisor for agentd: spawns `sh -c` commands in their own process groups,
//! captures their combined output into bounded head+tail buffers, reports exit status,
//! delivers signals to whole groups, reaps, and kills everything on shutdown.
//!
//! It must not know HTTP or JSON; `agentd` maps its types to the wire.

pub mod group;

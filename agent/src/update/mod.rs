//! Over-the-air updates of the agent's own binary, like Mender's install → commit after a health check → roll
//! back otherwise, for one binary:
//! - [`install`]: fetch the signed release from the portal, verify it against the agent's own release keys,
//!   download the binary (resumable, rate-limited), stage it;
//! - [`slots`]: the update files in the state directory and their crash-safe changes (stage, commit, roll
//!   back, the outcome to report);
//! - [`launcher`]: `outpost-agent launch`, which runs the installed binary, counts a new version's starts
//!   and rolls it back when it crashes or is not confirmed healthy in time.
//!
//! The link (`crate::link`) runs `update` commands, reports each step (`update` reports through the outbox),
//! commits when the portal's `UpdateHealthy` notice names the running version, and queues the outcome the
//! launcher left at the next connection.

pub mod install;
pub mod launcher;
pub mod slots;

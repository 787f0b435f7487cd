//! What this binary is: its version, the target triple it was built for, and the fault a test build carries
//! (stamped by `build.rs`).

/// The agent's version (`OUTPOST_BUILD_VERSION` at build time, else the crate's version).
pub const VERSION: &str = env!("OUTPOST_AGENT_VERSION");

/// The Rust target triple this binary was built for: the releases it can install.
pub const TARGET: &str = env!("OUTPOST_TARGET");

/// A fault compiled into a test build of the over-the-air update tests (`OUTPOST_BUILD_FAULT`); a normal
/// build has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `run` exits with an error at once.
    CrashAtStart,
    /// `run` starts but never connects to the broker.
    NeverConnect,
}

/// The fault of this build, if it is a faulty test build.
pub fn fault() -> Option<Fault> {
    match env!("OUTPOST_FAULT") {
        "crash-at-start" => Some(Fault::CrashAtStart),
        "never-connect" => Some(Fault::NeverConnect),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_build_is_stamped_with_its_version_and_target_and_no_fault() {
        assert!(!VERSION.is_empty());
        assert!(TARGET.split('-').count() >= 3, "{TARGET}");
        if option_env!("OUTPOST_BUILD_FAULT").is_none() {
            assert_eq!(fault(), None);
        }
    }
}

//! Runs code inside a lab namespace from a test process: a scoped thread enters the namespace with
//! `setns(CLONE_NEWNET)` and runs the closure there. Sockets opened by that thread, and threads (or tokio
//! runtimes) it starts, belong to the namespace; the rest of the test process stays where it was.

use std::fs::File;

use anyhow::{anyhow, Context, Result};
use nix::sched::{setns, CloneFlags};

/// Runs `f` on a thread inside the network namespace `ns` (a name under `/run/netns`) and returns its result.
pub fn in_netns<T, F>(ns: &str, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("open {path} (is the lab up?)"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<T> {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("enter network namespace {ns} (needs root)"))?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow!("the code run inside {ns} panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_an_error() {
        let err = in_netns("outpost-no-such-ns", || ()).unwrap_err();
        assert!(
            err.to_string().contains("/run/netns/outpost-no-such-ns"),
            "{err}"
        );
    }
}

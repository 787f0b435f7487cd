//! Over-the-air update fixtures: extra builds of the agent under other versions (one good, one that crashes at
//! start, one that never reaches the portal: `OUTPOST_BUILD_VERSION` / `OUTPOST_BUILD_FAULT`, see
//! `agent/build.rs`), and a release publisher with its own signing key.
//!
//! The builds use the `ota-test` profile (`target/ota-test/`), so they never replace the binaries other tests
//! run; each is copied out to `target/ota-test/builds/outpost-agent-<version>`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::{agent_bin, cargo_command, workspace_dir};

/// The good update: starts, connects, is confirmed.
pub const GOOD: &str = "90.1.0";
/// Exits with an error at start.
pub const CRASHES: &str = "90.2.0";
/// Starts but never connects to the broker.
pub const NEVER_HEALTHY: &str = "90.3.0";

/// The three test builds, by version.
#[derive(Debug, Clone)]
pub struct TestBuilds {
    pub good: PathBuf,
    pub crashes: PathBuf,
    pub never_healthy: PathBuf,
}

/// Builds the test versions once per test process (sequentially: each is a rebuild of the agent crate only).
pub fn test_builds() -> Result<&'static TestBuilds> {
    static BUILDS: OnceLock<std::result::Result<TestBuilds, String>> = OnceLock::new();
    BUILDS
        .get_or_init(|| build_all().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

fn build_all() -> Result<TestBuilds> {
    Ok(TestBuilds {
        good: build(GOOD, None)?,
        crashes: build(CRASHES, Some("crash-at-start"))?,
        never_healthy: build(NEVER_HEALTHY, Some("never-connect"))?,
    })
}

fn build(version: &str, fault: Option<&str>) -> Result<PathBuf> {
    let target = workspace_dir().join("target").join("ota-test");
    let status = cargo_command()
        .args([
            "build",
            "--quiet",
            "--profile",
            "ota-test",
            "-p",
            "outpost-agent",
            "--bin",
            "outpost-agent",
        ])
        .env("OUTPOST_BUILD_VERSION", version)
        .env("OUTPOST_BUILD_FAULT", fault.unwrap_or(""))
        .status()
        .context("running cargo build for a test version of the agent")?;
    if !status.success() {
        bail!("cargo build --profile ota-test of agent version {version} failed");
    }
    let builds = target.join("builds");
    fs::create_dir_all(&builds)?;
    let out = builds.join(format!("outpost-agent-{version}"));
    // Copy, then rename: a reader never sees half a binary.
    let tmp = builds.join(format!(".outpost-agent-{version}.tmp"));
    fs::copy(target.join("outpost-agent"), &tmp)?;
    fs::rename(&tmp, &out)?;
    let got = run_version(&out)?;
    if !got.contains(version) {
        bail!(
            "the test build {} says `{got}`, not {version}",
            out.display()
        );
    }
    Ok(out)
}

fn run_version(bin: &Path) -> Result<String> {
    let out = Command::new(bin).arg("--version").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The `outpost-release` tool of this test profile.
pub fn release_tool() -> Result<PathBuf> {
    Ok(agent_bin()?.with_file_name("outpost-release"))
}

/// Someone who publishes releases: a signing key and the folder of its public key (what the agent trusts).
pub struct Publisher {
    dir: TempDir,
}

impl Publisher {
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("outpost-publisher-")
            .tempdir()?;
        let p = Publisher { dir };
        fs::create_dir(p.keys_dir())?;
        let out = Command::new(release_tool()?)
            .args(["keygen", "--out"])
            .arg(p.key())
            .arg("--pub")
            .arg(p.keys_dir().join("publisher.pub"))
            .output()?;
        check(&out, "outpost-release keygen")?;
        Ok(p)
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("publisher.pem")
    }

    /// The folder holding the publisher's public key (`[update] release_keys` of the agents).
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// Copies `binary` into the publisher's folder as `name` and signs it; returns (release file, binary).
    pub fn sign(
        &self,
        binary: &Path,
        name: &str,
        version: &str,
        target: &str,
        extra: &[&str],
    ) -> Result<(PathBuf, PathBuf)> {
        let copy = self.dir.path().join(name);
        fs::copy(binary, &copy)?;
        let out = Command::new(release_tool()?)
            .args(["sign", "--key"])
            .arg(self.key())
            .arg(&copy)
            .args(["--version", version, "--target", target])
            .args(extra)
            .output()?;
        check(&out, "outpost-release sign")?;
        let mut release = copy.as_os_str().to_owned();
        release.push(".release.json");
        Ok((PathBuf::from(release), copy))
    }
}

fn check(out: &Output, what: &str) -> Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

//! Installing one release the portal offers: fetch the signed release file, verify it against the agent's own
//! release keys (signature, target, newer version), download the binary into the state directory (resumed
//! after an interruption, at most `max_download_rate` bytes a second), check its size and SHA-256, then
//! stage it ([`Slots::stage`]). The running version is untouched until the last step, and on any refusal.

use std::path::PathBuf;
use std::time::Duration;

use outpost_cloud_link::release::{self, Manifest, ReleaseError, TrustedKeys};
use outpost_cloud_link::update::codes;
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info};

use super::slots::{DownloadTag, Pending, Slots};
use crate::build_info;
use crate::portal_api::PortalClient;

/// A download that gets no bytes for this long is given up (and resumed by the next attempt).
pub const DOWNLOAD_STALL: Duration = Duration::from_secs(60);

/// Why an update was not installed: a stable code (`ReleaseError::kind` or an `update::codes` code) and a
/// message saying what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl From<ReleaseError> for Refusal {
    fn from(e: ReleaseError) -> Self {
        Refusal::new(e.kind(), e.to_string())
    }
}

/// What one install needs.
#[derive(Clone)]
pub struct Installer {
    pub slots: Slots,
    pub portal: PortalClient,
    pub agent_id: String,
    pub secret: String,
    /// Where the trusted release keys are (`/etc/outpost/release-keys`).
    pub keys_dir: PathBuf,
    /// Bytes per second for the binary download; 0: no limit.
    pub max_download_rate: u64,
}

impl std::fmt::Debug for Installer {
    // Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installer")
            .field("slots", &self.slots)
            .field("portal", &self.portal.base_url())
            .field("agent_id", &self.agent_id)
            .field("keys_dir", &self.keys_dir)
            .field("max_download_rate", &self.max_download_rate)
            .finish_non_exhaustive()
    }
}

/// The release to install, from the `update` command.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub release_id: i64,
    pub command_id: u64,
    /// The version the portal says it is (the signed manifest decides).
    pub version: &'a str,
}

impl Installer {
    /// Verifies, downloads and stages the release; returns the pending mark (the caller restarts into it).
    pub async fn install(&self, req: Request<'_>) -> Result<Pending, Refusal> {
        let manifest = self.verified_manifest(req.release_id).await?;
        if manifest.version != req.version {
            debug!(offered = %req.version, signed = %manifest.version, "the portal named another version than the signed manifest; the manifest counts");
        }
        self.download(req.release_id, &manifest).await?;
        let part = self.slots.download_part();
        let file = std::fs::File::open(&part).map_err(|e| {
            Refusal::new(
                codes::INSTALL,
                format!("cannot read the download {}: {e}", part.display()),
            )
        })?;
        if let Err(e) = release::check_binary(&manifest, file) {
            // A bad download is not kept for resuming.
            let _ = std::fs::remove_file(&part);
            return Err(e.into());
        }
        let pending = Pending {
            version: manifest.version.clone(),
            from_version: build_info::VERSION.to_owned(),
            release_id: Some(req.release_id),
            command_id: Some(req.command_id),
            tries: 0,
            had_previous: false,
            installed_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let pending = self.slots.stage(pending).map_err(|e| {
            Refusal::new(
                codes::INSTALL,
                format!("cannot install the new binary: {e}; free space in the state directory and send the update again"),
            )
        })?;
        info!(version = %pending.version, from = %pending.from_version, "update installed; restarting into it");
        Ok(pending)
    }

    /// The release file, verified: a trusted signature, this agent's target, a newer version.
    pub async fn verified_manifest(&self, release_id: i64) -> Result<Manifest, Refusal> {
        let bytes = self
            .portal
            .release_file(&self.agent_id, &self.secret, release_id)
            .await
            .map_err(|e| {
                Refusal::new(
                    codes::DOWNLOAD,
                    format!("fetching release {release_id} from the portal failed: {e}"),
                )
            })?;
        let keys = TrustedKeys::load_dir(&self.keys_dir)?;
        let manifest = release::verify(&bytes, &keys)?;
        release::check_target(&manifest, build_info::TARGET)?;
        release::check_version(&manifest, build_info::VERSION)?;
        Ok(manifest)
    }

    /// Downloads the binary into `download.part`, resuming a partial download of the same release.
    async fn download(&self, release_id: i64, manifest: &Manifest) -> Result<(), Refusal> {
        let failed = |what: String| Refusal::new(codes::DOWNLOAD, what);
        let install_failed = |what: String| Refusal::new(codes::INSTALL, what);
        let tag = DownloadTag {
            version: manifest.version.clone(),
            sha256: manifest.sha256.clone(),
        };
        let mut have = self
            .slots
            .begin_download(&tag)
            .map_err(|e| install_failed(e.to_string()))?;
        if have > manifest.size {
            have = 0;
        }
        if have == manifest.size && have > 0 {
            return Ok(());
        }
        let mut resp = self
            .portal
            .release_binary(&self.agent_id, &self.secret, release_id, have)
            .await
            .map_err(|e| failed(format!("downloading release {release_id} failed: {e}")))?;
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            // Our part is no prefix of the file any more: start over.
            resp = self
                .portal
                .release_binary(&self.agent_id, &self.secret, release_id, 0)
                .await
                .map_err(|e| failed(format!("downloading release {release_id} failed: {e}")))?;
        }
        // 206: the rest after our part; anything else: the whole file.
        let truncate = resp.status() != StatusCode::PARTIAL_CONTENT;
        if truncate {
            have = 0;
        }
        info!(
            release_id,
            resume_from = have,
            size = manifest.size,
            "downloading the update"
        );
        let file = self
            .slots
            .open_part(truncate)
            .map_err(|e| install_failed(e.to_string()))?;
        let mut file = tokio::fs::File::from_std(file);
        let started = Instant::now();
        let mut received: u64 = 0;
        loop {
            let chunk = match timeout(DOWNLOAD_STALL, resp.chunk()).await {
                Err(_) => {
                    return Err(failed(format!(
                        "the download stalled for {} s; it resumes from {} bytes when the update is sent again",
                        DOWNLOAD_STALL.as_secs(),
                        have + received
                    )))
                }
                Ok(Err(e)) => {
                    return Err(failed(format!(
                        "the download broke off after {} bytes: {e}; it resumes from there when the update is sent again",
                        have + received
                    )))
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            received += chunk.len() as u64;
            if have + received > manifest.size {
                let _ = std::fs::remove_file(self.slots.download_part());
                return Err(ReleaseError::SizeMismatch {
                    expected: manifest.size,
                    got: have + received,
                }
                .into());
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| install_failed(format!("writing the download failed: {e}")))?;
            if self.max_download_rate > 0 {
                let due = Duration::from_secs_f64(received as f64 / self.max_download_rate as f64);
                sleep_until(started + due).await;
            }
        }
        file.flush()
            .await
            .map_err(|e| install_failed(format!("writing the download failed: {e}")))?;
        file.sync_all()
            .await
            .map_err(|e| install_failed(format!("syncing the download failed: {e}")))?;
        Ok(())
    }
}

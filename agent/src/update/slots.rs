//! The update files in the state directory and every change to them: staging a verified binary (the running
//! one kept as the previous), the pending mark, commit and rollback, and the outcome left for the next
//! connection. Each change is a rename of fsynced files followed by an fsync of the directory, so a power
//! cut leaves either the old state or the new one.
//!
//! ```text
//! STATE/update/
//!   current          the installed binary the launcher runs (absent: the packaged binary runs)
//!   current.version  its version, one line
//!   previous         the binary that ran before `current`, kept until the update commits
//!   download.part    the binary being downloaded (resumed with a Range request)
//!   download.json    which release `download.part` belongs to (version and SHA-256)
//!   pending.json     an update is installed and not yet confirmed ([`Pending`]): the launcher counts tries
//!   outcome.json     how the last update ended ([`UpdateReport`]), queued for the portal at the next connection
//! ```

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use outpost_cloud_link::update::{UpdateReport, UpdateState};
use serde::{Deserialize, Serialize};

use crate::state_dir::{atomic_write, remove_if_exists, StateDirError};

/// An installed update waiting for the portal's confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub version: String,
    pub from_version: String,
    #[serde(default)]
    pub release_id: Option<i64>,
    #[serde(default)]
    pub command_id: Option<u64>,
    /// Starts of the new version counted by the launcher so far.
    #[serde(default)]
    pub tries: u32,
    /// `previous` holds the binary to go back to; `false`: going back means removing `current` (the
    /// packaged binary ran before).
    pub had_previous: bool,
    /// When it was installed, Unix milliseconds.
    pub installed_at_ms: i64,
}

impl Pending {
    /// The `update` report of this update in `state`.
    pub fn report(
        &self,
        state: UpdateState,
        code: Option<&str>,
        reason: Option<String>,
    ) -> UpdateReport {
        UpdateReport {
            release_id: self.release_id,
            command_id: self.command_id,
            version: self.version.clone(),
            from_version: self.from_version.clone(),
            state,
            reason,
            code: code.map(str::to_owned),
        }
    }
}

/// Which release a partial download belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadTag {
    pub version: String,
    pub sha256: String,
}

/// The update folder of one state directory.
#[derive(Debug, Clone)]
pub struct Slots {
    dir: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateDirError + 'a {
    move |e| StateDirError::io(op, path, e)
}

impl Slots {
    pub fn new(state_root: &Path) -> Self {
        Self {
            dir: state_root.join("update"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn current(&self) -> PathBuf {
        self.dir.join("current")
    }

    fn current_version_path(&self) -> PathBuf {
        self.dir.join("current.version")
    }

    pub fn previous(&self) -> PathBuf {
        self.dir.join("previous")
    }

    pub fn download_part(&self) -> PathBuf {
        self.dir.join("download.part")
    }

    fn download_tag_path(&self) -> PathBuf {
        self.dir.join("download.json")
    }

    fn pending_path(&self) -> PathBuf {
        self.dir.join("pending.json")
    }

    fn outcome_path(&self) -> PathBuf {
        self.dir.join("outcome.json")
    }

    /// Creates the folder (mode 0700) if missing.
    pub fn ensure(&self) -> Result<(), StateDirError> {
        fs::create_dir_all(&self.dir).map_err(io_err("create", &self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("set mode on", &self.dir))
    }

    fn sync_dir(&self) -> Result<(), StateDirError> {
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync directory", &self.dir))
    }

    fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, StateDirError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                StateDirError::io(
                    "parse",
                    path,
                    io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateDirError::io("read", path, e)),
        }
    }

    fn write_json(&self, path: &Path, value: &impl Serialize) -> Result<(), StateDirError> {
        self.ensure()?;
        let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        atomic_write(path, &bytes, 0o600, true)
    }

    fn remove(&self, path: &Path) -> Result<(), StateDirError> {
        remove_if_exists(path)
    }

    pub fn pending(&self) -> Result<Option<Pending>, StateDirError> {
        self.read_json(&self.pending_path())
    }

    pub fn set_pending(&self, pending: &Pending) -> Result<(), StateDirError> {
        self.write_json(&self.pending_path(), pending)
    }

    pub fn outcome(&self) -> Result<Option<UpdateReport>, StateDirError> {
        self.read_json(&self.outcome_path())
    }

    /// Forgets the outcome once it is queued for the portal (the outbox keeps it from then on).
    pub fn clear_outcome(&self) -> Result<(), StateDirError> {
        self.remove(&self.outcome_path())
    }

    /// The version of `current`, when an installed binary is there.
    pub fn current_version(&self) -> Option<String> {
        if !self.current().exists() {
            return None;
        }
        fs::read_to_string(self.current_version_path())
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    pub fn download_tag(&self) -> Result<Option<DownloadTag>, StateDirError> {
        self.read_json(&self.download_tag_path())
    }

    /// Starts a download of `tag`: a partial download of another release is thrown away.
    pub fn begin_download(&self, tag: &DownloadTag) -> Result<u64, StateDirError> {
        self.ensure()?;
        let part = self.download_part();
        if self.download_tag()?.as_ref() != Some(tag) {
            self.remove(&part)?;
            self.write_json(&self.download_tag_path(), tag)?;
        }
        Ok(fs::metadata(&part).map(|m| m.len()).unwrap_or(0))
    }

    /// Opens `download.part` to append (mode 0700: it becomes the binary).
    pub fn open_part(&self, truncate: bool) -> Result<fs::File, StateDirError> {
        let part = self.download_part();
        let mut options = fs::OpenOptions::new();
        options.create(true).mode(0o700);
        if truncate {
            options.write(true).truncate(true);
        } else {
            options.append(true);
        }
        options.open(&part).map_err(io_err("open", &part))
    }

    /// Swaps the verified `download.part` in as `current`, keeping the running binary as `previous`, and
    /// marks the update pending. Order, for a power cut at any point: the pending mark first (the launcher
    /// then knows an update is under way and restores `previous` if `current` is missing), then
    /// `current` → `previous`, then `download.part` → `current`, each rename followed by a directory sync.
    pub fn stage(&self, mut pending: Pending) -> Result<Pending, StateDirError> {
        self.ensure()?;
        let part = self.download_part();
        let file = fs::File::open(&part).map_err(io_err("open", &part))?;
        file.sync_all().map_err(io_err("sync", &part))?;
        fs::set_permissions(&part, fs::Permissions::from_mode(0o700))
            .map_err(io_err("set mode on", &part))?;
        pending.had_previous = self.current().exists();
        pending.tries = 0;
        self.set_pending(&pending)?;
        if pending.had_previous {
            fs::rename(self.current(), self.previous())
                .map_err(io_err("keep as previous", &self.current()))?;
        } else {
            self.remove(&self.previous())?;
        }
        let version_file = self.current_version_path();
        fs::rename(&part, self.current()).map_err(io_err("install", &self.current()))?;
        self.sync_dir()?;
        atomic_write(
            &version_file,
            format!("{}\n", pending.version).as_bytes(),
            0o600,
            true,
        )?;
        self.remove(&self.download_tag_path())?;
        self.clear_outcome()?;
        self.sync_dir()?;
        Ok(pending)
    }

    /// The new version was confirmed: the update stays, `previous` is no longer needed (on a router its
    /// flash is better spent), and the outcome waits for the portal.
    pub fn commit(&self, pending: &Pending) -> Result<UpdateReport, StateDirError> {
        let report = pending.report(UpdateState::Committed, None, None);
        self.write_json(&self.outcome_path(), &report)?;
        self.remove(&self.pending_path())?;
        self.remove(&self.previous())?;
        self.sync_dir()?;
        Ok(report)
    }

    /// Goes back to the binary that ran before the update and leaves the outcome for the restored
    /// version to report.
    pub fn roll_back(
        &self,
        pending: &Pending,
        code: &str,
        reason: String,
    ) -> Result<UpdateReport, StateDirError> {
        let report = pending.report(UpdateState::RolledBack, Some(code), Some(reason));
        self.write_json(&self.outcome_path(), &report)?;
        if pending.had_previous && self.previous().exists() {
            fs::rename(self.previous(), self.current())
                .map_err(io_err("restore", &self.previous()))?;
            atomic_write(
                &self.current_version_path(),
                format!("{}\n", pending.from_version).as_bytes(),
                0o600,
                true,
            )?;
        } else {
            self.remove(&self.current())?;
            self.remove(&self.current_version_path())?;
        }
        self.remove(&self.pending_path())?;
        self.sync_dir()?;
        Ok(report)
    }

    /// Removes an installed binary that a newer packaged binary supersedes.
    pub fn drop_current(&self) -> Result<(), StateDirError> {
        self.remove(&self.current())?;
        self.remove(&self.current_version_path())?;
        self.sync_dir()
    }

    /// Writes `bytes` as a whole `download.part` (tests and local installs).
    pub fn write_part(&self, bytes: &[u8]) -> Result<(), StateDirError> {
        self.ensure()?;
        let mut f = self.open_part(true)?;
        f.write_all(bytes)
            .map_err(io_err("write", &self.download_part()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(version: &str) -> Pending {
        Pending {
            version: version.into(),
            from_version: "1.0.0".into(),
            release_id: Some(4),
            command_id: Some(9),
            tries: 0,
            had_previous: false,
            installed_at_ms: 1,
        }
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn staging_over_the_packaged_binary_and_rolling_back_removes_current() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        slots.write_part(b"v2").unwrap();
        let p = slots.stage(pending("2.0.0")).unwrap();
        assert!(!p.had_previous);
        assert_eq!(read(&slots.current()), "v2");
        assert_eq!(slots.current_version().as_deref(), Some("2.0.0"));
        assert_eq!(slots.pending().unwrap(), Some(p.clone()));
        assert!(!slots.download_part().exists());
        let mode = fs::metadata(slots.current()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let report = slots
            .roll_back(&p, "not-healthy", "no confirmation".into())
            .unwrap();
        assert_eq!(report.state, UpdateState::RolledBack);
        assert!(!slots.current().exists());
        assert_eq!(slots.current_version(), None);
        assert_eq!(slots.pending().unwrap(), None);
        assert_eq!(slots.outcome().unwrap(), Some(report));
    }

    #[test]
    fn staging_over_an_installed_binary_keeps_it_and_rollback_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        slots.write_part(b"v2").unwrap();
        let p2 = slots.stage(pending("2.0.0")).unwrap();
        slots.commit(&p2).unwrap();
        assert_eq!(
            slots.outcome().unwrap().unwrap().state,
            UpdateState::Committed
        );

        slots.write_part(b"v3").unwrap();
        let mut next = pending("3.0.0");
        next.from_version = "2.0.0".into();
        let p3 = slots.stage(next).unwrap();
        assert!(p3.had_previous);
        assert_eq!(read(&slots.previous()), "v2");
        assert_eq!(read(&slots.current()), "v3");
        // A new update clears the last outcome (it was reported at the connection before).
        assert_eq!(slots.outcome().unwrap(), None);

        slots
            .roll_back(&p3, "crashed-at-start", "exit 1".into())
            .unwrap();
        assert_eq!(read(&slots.current()), "v2");
        assert_eq!(slots.current_version().as_deref(), Some("2.0.0"));
        assert!(!slots.previous().exists());
    }

    #[test]
    fn commit_forgets_previous_and_leaves_the_outcome_until_it_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        slots.write_part(b"v2").unwrap();
        let p2 = slots.stage(pending("2.0.0")).unwrap();
        slots.commit(&p2).unwrap();
        slots.write_part(b"v3").unwrap();
        let p3 = slots.stage(pending("3.0.0")).unwrap();
        let report = slots.commit(&p3).unwrap();
        assert!(!slots.previous().exists());
        assert_eq!(read(&slots.current()), "v3");
        assert_eq!(report.version, "3.0.0");
        assert_eq!(slots.outcome().unwrap(), Some(report));
        slots.clear_outcome().unwrap();
        assert_eq!(slots.outcome().unwrap(), None);
    }

    #[test]
    fn a_partial_download_of_another_release_is_thrown_away() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        let a = DownloadTag {
            version: "2.0.0".into(),
            sha256: "a".repeat(64),
        };
        assert_eq!(slots.begin_download(&a).unwrap(), 0);
        let mut f = slots.open_part(false).unwrap();
        f.write_all(b"half").unwrap();
        assert_eq!(
            slots.begin_download(&a).unwrap(),
            4,
            "same release: resumed"
        );
        let b = DownloadTag {
            version: "2.0.1".into(),
            sha256: "b".repeat(64),
        };
        assert_eq!(
            slots.begin_download(&b).unwrap(),
            0,
            "another release: restarted"
        );
        assert!(!slots.download_part().exists());
    }
}

//! The agent's state directory (`/var/lib/outpost-agent`): what lives where, atomic file writes, and the wipe.
//!
//! ```text
//! <state>/identity.json   who the agent is (agent id, secret, broker, CA); 0600; its presence = activated
//! <state>/runtime.json    what the running daemon is doing (for `status`); rewritten on every change
//! <state>/db/             sled: outbox, executed command ids, data epoch, local data (see `store`)
//! <state>/settings.json   the portal's settings document the agent runs with (`settings`); removed by a cleanup
//! <state>/update/         an installed update and its marks (`update::slots`); kept by a deletion (software)
//! <state>/deleted         marker: the portal deleted this agent and the state was wiped
//! ```

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/outpost-agent";

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StateDirError {
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// Paths inside one state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn identity(&self) -> PathBuf {
        self.root.join("identity.json")
    }

    /// The portal's settings document (`crate::settings::StoredSettings`).
    pub fn settings(&self) -> PathBuf {
        self.root.join("settings.json")
    }

    pub fn runtime(&self) -> PathBuf {
        self.root.join("runtime.json")
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("db")
    }

    /// The running daemon's control socket (see `control`).
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    pub fn deleted_marker(&self) -> PathBuf {
        self.root.join("deleted")
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_marker().exists()
    }

    /// Creates the directory (mode 0700) if needed and tightens an existing one to 0700.
    pub fn ensure(&self) -> Result<(), StateDirError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| StateDirError::io("create state directory", &self.root, e))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .map_err(|e| StateDirError::io("set mode 0700 on", &self.root, e))
    }

    /// Removes everything the agent knows (identity, runtime file, database) and leaves the `deleted` marker.
    /// Best effort: keeps going past failures and reports them all.
    pub fn wipe_to_deleted(&self) -> Result<(), Vec<StateDirError>> {
        let mut errors = Vec::new();
        for file in [self.identity(), self.runtime(), self.settings()] {
            if let Err(e) = fs::remove_file(&file) {
                if e.kind() != io::ErrorKind::NotFound {
                    errors.push(StateDirError::io("remove", &file, e));
                }
            }
        }
        let db = self.db();
        if let Err(e) = fs::remove_dir_all(&db) {
            if e.kind() != io::ErrorKind::NotFound {
                errors.push(StateDirError::io("remove", &db, e));
            }
        }
        let marker = self.deleted_marker();
        let text = format!(
            "This agent was deleted in the portal on {}; its state was wiped.\nActivate it again with: outpost-agent activate CODE --portal URL\n",
            chrono::Utc::now().to_rfc3339()
        );
        if let Err(e) = atomic_write(&marker, text.as_bytes(), 0o644, true) {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Removes the file at `path`; one that is not there is fine.
pub fn remove_if_exists(path: &Path) -> Result<(), StateDirError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateDirError::io("remove", path, e)),
    }
}

/// Writes `bytes` to `path` so a reader sees the old file or the new one, never a mix: a temporary file in the
/// same directory (created with `mode`), then a rename. With `durable`, both are fsynced first, so the new
/// content survives a power cut once this returns.
pub fn atomic_write(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    durable: bool,
) -> Result<(), StateDirError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| StateDirError::io("create", &tmp, e))?;
        // The umask may have narrowed the mode, never widened it; make it exact either way.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| StateDirError::io("set mode on", &tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| StateDirError::io("write", &tmp, e))?;
        if durable {
            file.sync_all()
                .map_err(|e| StateDirError::io("sync", &tmp, e))?;
        }
        fs::rename(&tmp, path).map_err(|e| StateDirError::io("rename into place", path, e))?;
        if durable {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StateDirError::io("sync directory", dir, e))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn ensure_creates_a_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().join("a/state"));
        dir.ensure().unwrap();
        assert_eq!(mode(dir.root()), 0o700);
        fs::set_permissions(dir.root(), fs::Permissions::from_mode(0o755)).unwrap();
        dir.ensure().unwrap();
        assert_eq!(
            mode(dir.root()),
            0o700,
            "an existing directory is tightened"
        );
    }

    #[test]
    fn atomic_write_replaces_whole_files_with_the_given_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f.json");
        atomic_write(&p, b"one", 0o600, true).unwrap();
        atomic_write(&p, b"two", 0o600, false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600);
        let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn wipe_leaves_only_the_marker() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        fs::write(dir.identity(), "{}").unwrap();
        fs::write(dir.runtime(), "{}").unwrap();
        fs::write(dir.settings(), "{}").unwrap();
        fs::create_dir_all(dir.db().join("snap")).unwrap();
        dir.wipe_to_deleted().unwrap();
        assert!(!dir.identity().exists() && !dir.runtime().exists() && !dir.db().exists());
        assert!(
            !dir.settings().exists(),
            "the portal's settings go with the identity"
        );
        assert!(dir.is_deleted());
    }
}

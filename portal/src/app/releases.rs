//! Signed agent releases the portal stores and serves (issue 8): adding one (the release file parsed, its
//! manifest checked, the binary checked against the manifest's size and SHA-256, then stored under the
//! data directory before its row), listing, reading and removing them.
//!
//! The portal does not need to trust the release keys (agents do, with the keys installed with their
//! package, so a compromised portal cannot push code); when it is given keys ([`TrustedKeys`], the CLI's
//! `--release-keys DIR`) it also refuses a release none of them signed.
//!
//! The binary is copied to a temporary file next to its final place, fsynced and checked; then, inside
//! the transaction that inserts the row, renamed into place (and the folder fsynced) before the commit.
//! Any failure removes the file and rolls the row back, so a failure leaves neither; a crash between the
//! rename and the commit leaves only a file no row points at, which the next add of that release replaces.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use outpost_cloud_link::release::{self, Manifest, ReleaseError, SignedRelease, TrustedKeys};
use tracing::warn;

use super::{Actor, App};
use crate::store::history::{self, AccountLine};
use crate::store::releases::{self, Filter, NewRelease, ReleaseRow};
use crate::store::{Store, StoreError};

/// Why adding, reading or removing a release failed. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseOpError {
    #[error("the release file is refused: {0}")]
    File(ReleaseError),
    #[error("the release is refused by the portal's release keys: {0}")]
    Untrusted(ReleaseError),
    #[error("the binary does not match the release's manifest: {0}")]
    Binary(ReleaseError),
    #[error("the release's manifest cannot be stored: {0}; sign the release again with a plain version and target")]
    BadName(String),
    #[error("release {version} for {target} is already stored (id {id}); remove it first (`outpost-portal releases remove --data DIR {id}`) or sign a new version")]
    Duplicate {
        version: String,
        target: String,
        id: i64,
    },
    #[error("there is no release {0}; `outpost-portal releases list` or GET /api/v1/releases lists them")]
    Unknown(i64),
    #[error("the portal's database is not a file, so there is no data directory to keep release binaries in; run the portal with --data DIR")]
    NoDataDir,
    #[error("cannot store the binary at {}: {source}; check that the data directory is writable and has room", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the stored binary {}: {source}; add the release again (remove it first)", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the stored binary {} is {got} bytes but the release says {expected}; it was changed on disk: remove the release and add it again", path.display())]
    Damaged {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error("storing the binary was interrupted: {0}; try again")]
    Task(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ReleaseOpError {
    fn from(e: sqlx::Error) -> Self {
        ReleaseOpError::Store(StoreError::Query(e))
    }
}

/// Who ran a local command (`outpost-portal releases add` on the portal's host), for the history:
/// `local:<login> (outpost-portal <command>)`, the login from `SUDO_USER`, else `USER`, else the uid.
pub fn local_actor(command: &str) -> Actor {
    let login = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
    Actor(format!("local:{login} (outpost-portal {command})"))
}

/// A release file parsed and its manifest checked, before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub manifest: Manifest,
    /// The ids of the keys that signed it, in the file's order.
    pub key_ids: Vec<String>,
    /// The file as received.
    pub text: String,
}

/// Parses a release file: its structure, the manifest's bytes, the manifest's fields; with `keys`, also a
/// valid signature by one of them over the manifest's bytes. Pure (no store, no files).
pub fn parse_release(
    file_bytes: &[u8],
    keys: Option<&TrustedKeys>,
) -> Result<Parsed, ReleaseOpError> {
    let signed = SignedRelease::from_json(file_bytes).map_err(ReleaseOpError::File)?;
    let manifest_bytes = signed.manifest_bytes().map_err(ReleaseOpError::File)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        ReleaseOpError::File(ReleaseError::Malformed {
            what: "manifest",
            detail: e.to_string(),
        })
    })?;
    manifest.validate().map_err(ReleaseOpError::File)?;
    if signed.signatures.is_empty() {
        return Err(ReleaseOpError::File(ReleaseError::Malformed {
            what: "release file",
            detail: "it carries no signature".into(),
        }));
    }
    if let Some(keys) = keys {
        release::verify(file_bytes, keys).map_err(ReleaseOpError::Untrusted)?;
    }
    releases::binary_rel_path(&manifest.target, &manifest.version)
        .map_err(ReleaseOpError::BadName)?;
    // The file was parsed as JSON, so it is UTF-8.
    let text = String::from_utf8(file_bytes.to_vec()).map_err(|_| {
        ReleaseOpError::File(ReleaseError::Malformed {
            what: "release file",
            detail: "not UTF-8".into(),
        })
    })?;
    Ok(Parsed {
        key_ids: signed.signatures.iter().map(|s| s.key.clone()).collect(),
        manifest,
        text,
    })
}

/// The data directory of the store (where `releases/` lies).
async fn data_root(store: &Store) -> Result<PathBuf, ReleaseOpError> {
    let mut conn = store.conn().await?;
    releases::data_root(&mut conn)
        .await?
        .ok_or(ReleaseOpError::NoDataDir)
}

/// The stored binary's full path.
pub async fn binary_file(store: &Store, row: &ReleaseRow) -> Result<PathBuf, ReleaseOpError> {
    Ok(data_root(store).await?.join(&row.binary_path))
}

/// A temporary file in the binary's folder, removed when dropped (after the rename there is nothing left
/// to remove).
struct Staged {
    path: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Copies `binary` to a temporary file next to `final_path`, fsyncs it and checks it against the
/// manifest (read back from the disk, so what is checked is what was written).
fn stage(
    final_path: &Path,
    mut binary: impl Read,
    manifest: &Manifest,
) -> Result<Staged, ReleaseOpError> {
    let write = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReleaseOpError::Write { path, source }
    };
    let dir = final_path.parent().expect("a binary path has a folder");
    fs::create_dir_all(dir).map_err(write(dir))?;
    let name = final_path
        .file_name()
        .expect("a binary path has a name")
        .to_string_lossy();
    let staged = Staged {
        path: dir.join(format!(
            ".{name}.{}-{}.tmp",
            std::process::id(),
            rand::random::<u32>()
        )),
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&staged.path)
        .map_err(write(&staged.path))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match binary.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReleaseOpError::Binary(ReleaseError::ReadBinary(e))),
        };
        file.write_all(&buf[..n]).map_err(write(&staged.path))?;
    }
    file.sync_all().map_err(write(&staged.path))?;
    drop(file);
    let written = File::open(&staged.path).map_err(write(&staged.path))?;
    release::check_binary(manifest, written).map_err(ReleaseOpError::Binary)?;
    Ok(staged)
}

/// Renames the staged file into place and fsyncs the folder.
fn place(staged: &Staged, final_path: &Path) -> Result<(), ReleaseOpError> {
    let write = |source| ReleaseOpError::Write {
        path: final_path.to_path_buf(),
        source,
    };
    fs::rename(&staged.path, final_path).map_err(write)?;
    let dir = final_path.parent().expect("a binary path has a folder");
    File::open(dir).and_then(|d| d.sync_all()).map_err(write)?;
    Ok(())
}

/// Adds a release: see the module's documentation. Returns the stored row.
pub async fn add(
    store: &Store,
    now: DateTime<Utc>,
    file_bytes: &[u8],
    binary: impl Read + Send + 'static,
    keys: Option<&TrustedKeys>,
    actor: &Actor,
) -> Result<ReleaseRow, ReleaseOpError> {
    let parsed = parse_release(file_bytes, keys)?;
    let m = &parsed.manifest;
    let duplicate = |id| ReleaseOpError::Duplicate {
        version: m.version.clone(),
        target: m.target.clone(),
        id,
    };
    {
        let mut conn = store.conn().await?;
        if let Some(row) = releases::find(&mut conn, &m.version, &m.target).await? {
            return Err(duplicate(row.id));
        }
    }
    let rel_path =
        releases::binary_rel_path(&m.target, &m.version).map_err(ReleaseOpError::BadName)?;
    let final_path = data_root(store).await?.join(&rel_path);
    let staged = {
        let final_path = final_path.clone();
        let manifest = m.clone();
        tokio::task::spawn_blocking(move || stage(&final_path, binary, &manifest))
            .await
            .map_err(|e| ReleaseOpError::Task(e.to_string()))??
    };
    let rel_text = rel_path.to_string_lossy().into_owned();
    let mut tx = store.begin().await?;
    let inserted = releases::insert(
        &mut tx,
        &NewRelease {
            version: &m.version,
            target: &m.target,
            size: m.size,
            sha256: &m.sha256,
            rollback: m.rollback,
            notes: m.notes.as_deref(),
            release_file: &parsed.text,
            key_ids: &parsed.key_ids,
            binary_path: &rel_text,
            added_by: actor.as_str(),
        },
        now,
    )
    .await;
    let id = match inserted {
        Ok(id) => id,
        Err(e) if releases::is_unique_violation(&e) => {
            drop(tx);
            let mut conn = store.conn().await?;
            let id = releases::find(&mut conn, &m.version, &m.target)
                .await?
                .map_or(0, |r| r.id);
            return Err(duplicate(id));
        }
        Err(e) => return Err(e.into()),
    };
    history::append_account(
        &mut tx,
        AccountLine {
            company: None,
            action: "release-added",
            actor: actor.as_str(),
            details: &format!(
                "release {id}: {} {} for {}, {} bytes, sha256 {}, signed by {}",
                release::AGENT_NAME,
                m.version,
                m.target,
                m.size,
                m.sha256,
                parsed.key_ids.join(", ")
            ),
            address: None,
        },
        now,
    )
    .await?;
    let mut placed = false;
    let committed = async {
        place(&staged, &final_path)?;
        placed = true;
        tx.commit().await?;
        Ok::<_, ReleaseOpError>(())
    }
    .await;
    if let Err(e) = committed {
        if placed {
            if let Err(rm) = fs::remove_file(&final_path) {
                warn!(path = %final_path.display(), error = %rm, "could not remove the binary of a release that was not stored");
            }
        }
        return Err(e);
    }
    let mut conn = store.conn().await?;
    releases::get(&mut conn, id)
        .await?
        .ok_or(ReleaseOpError::Unknown(id))
}

/// The releases matching the filter, newest first.
pub async fn list(store: &Store, filter: &Filter) -> Result<Vec<ReleaseRow>, ReleaseOpError> {
    let mut conn = store.conn().await?;
    Ok(releases::list(&mut conn, filter).await?)
}

pub async fn get(store: &Store, id: i64) -> Result<ReleaseRow, ReleaseOpError> {
    let mut conn = store.conn().await?;
    releases::get(&mut conn, id)
        .await?
        .ok_or(ReleaseOpError::Unknown(id))
}

/// Removes the row (with a history line), then its binary. A binary that cannot be removed is logged and
/// left: no row points at it any more.
pub async fn remove(
    store: &Store,
    now: DateTime<Utc>,
    id: i64,
    actor: &Actor,
) -> Result<ReleaseRow, ReleaseOpError> {
    let root = data_root(store).await?;
    let mut tx = store.begin().await?;
    let row = releases::delete(&mut tx, id)
        .await?
        .ok_or(ReleaseOpError::Unknown(id))?;
    history::append_account(
        &mut tx,
        AccountLine {
            company: None,
            action: "release-removed",
            actor: actor.as_str(),
            details: &format!(
                "release {id}: {} {} for {}",
                release::AGENT_NAME,
                row.version,
                row.target
            ),
            address: None,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    let path = root.join(&row.binary_path);
    if let Err(e) = fs::remove_file(&path) {
        warn!(path = %path.display(), error = %e, "release removed but its binary could not be deleted; delete it by hand");
    }
    Ok(row)
}

impl App {
    /// [`add`] on the app's store and clock.
    pub async fn add_release(
        &self,
        file_bytes: &[u8],
        binary: impl Read + Send + 'static,
        keys: Option<&TrustedKeys>,
        actor: &Actor,
    ) -> Result<ReleaseRow, ReleaseOpError> {
        add(self.store(), self.now(), file_bytes, binary, keys, actor).await
    }

    pub async fn releases(&self, filter: &Filter) -> Result<Vec<ReleaseRow>, ReleaseOpError> {
        list(self.store(), filter).await
    }

    pub async fn release(&self, id: i64) -> Result<ReleaseRow, ReleaseOpError> {
        get(self.store(), id).await
    }

    /// The release and its binary's full path.
    pub async fn release_binary(&self, id: i64) -> Result<(ReleaseRow, PathBuf), ReleaseOpError> {
        let row = get(self.store(), id).await?;
        let path = binary_file(self.store(), &row).await?;
        Ok((row, path))
    }

    pub async fn remove_release(
        &self,
        id: i64,
        actor: &Actor,
    ) -> Result<ReleaseRow, ReleaseOpError> {
        remove(self.store(), self.now(), id, actor).await
    }
}

#[cfg(test)]
mod tests {
    use release::{sign_with, SigningKey};

    use super::*;

    const BINARY: &[u8] = b"\x7fELF pretend agent";
    const TARGET: &str = "aarch64-unknown-linux-musl";

    fn signed(key: &SigningKey) -> Vec<u8> {
        let manifest = Manifest::for_binary(BINARY, "1.2.3", TARGET, false, None).unwrap();
        sign_with(&manifest, key).unwrap().to_json()
    }

    #[test]
    fn a_signed_file_parses_without_keys_and_names_its_signers() {
        let (key, _) = SigningKey::generate().unwrap();
        let p = parse_release(&signed(&key), None).unwrap();
        assert_eq!(p.manifest.version, "1.2.3");
        assert_eq!(p.key_ids, vec![key.key_id()]);
    }

    #[test]
    fn with_keys_only_a_release_signed_by_one_of_them_parses() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let file = signed(&key);
        let trusted = TrustedKeys::from_keys("/keys", [key.public_key()]);
        parse_release(&file, Some(&trusted)).unwrap();
        let stranger = TrustedKeys::from_keys("/keys", [other.public_key()]);
        let e = parse_release(&file, Some(&stranger)).unwrap_err();
        assert!(matches!(e, ReleaseOpError::Untrusted(_)), "{e}");
        assert!(e.to_string().contains("not signed by a trusted key"), "{e}");
    }

    #[test]
    fn unsigned_and_malformed_files_are_refused() {
        let manifest = Manifest::for_binary(BINARY, "1.2.3", TARGET, false, None).unwrap();
        let unsigned = SignedRelease::unsigned(&serde_json::to_vec(&manifest).unwrap()).to_json();
        let e = parse_release(&unsigned, None).unwrap_err();
        assert!(e.to_string().contains("no signature"), "{e}");
        let e = parse_release(b"{not json", None).unwrap_err();
        assert!(matches!(e, ReleaseOpError::File(_)), "{e}");
    }
}

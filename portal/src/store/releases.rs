//! Signed agent releases: one row per (version, target), the signed release file as received, the key ids
//! that signed it, and where its binary lies under the data directory ([`binary_rel_path`]). The binary
//! file itself is written by `app::releases` before the row is inserted.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_ms, to_i64, to_ms, to_u64, Conn, StoreError};

/// The folder under the data directory that holds the binaries (`releases/<target>/`).
pub const RELEASES_DIR: &str = "releases";

/// One stored release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRow {
    pub id: i64,
    pub version: String,
    pub target: String,
    pub size: u64,
    pub sha256: String,
    pub rollback: bool,
    pub notes: Option<String>,
    /// The signed release file exactly as received (JSON).
    pub release_file: String,
    /// The ids of the keys that signed it, in the file's order.
    pub key_ids: Vec<String>,
    /// The binary's path relative to the data directory.
    pub binary_path: String,
    pub added_at: DateTime<Utc>,
    pub added_by: String,
}

/// What to insert.
#[derive(Debug, Clone, Copy)]
pub struct NewRelease<'a> {
    pub version: &'a str,
    pub target: &'a str,
    pub size: u64,
    pub sha256: &'a str,
    pub rollback: bool,
    pub notes: Option<&'a str>,
    pub release_file: &'a str,
    pub key_ids: &'a [String],
    pub binary_path: &'a str,
    pub added_by: &'a str,
}

/// Which releases to list (`None`: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub target: Option<String>,
    pub version: Option<String>,
}

/// Where the binary of `version` for `target` lies, relative to the data directory:
/// `releases/<target>/outpost-agent-<version>`. Both parts must be single, plain path components (a
/// validated manifest's are: `[a-z0-9_.-]` and `[0-9A-Za-z.-]`); anything else is refused so a crafted
/// manifest cannot write outside the releases folder.
pub fn binary_rel_path(target: &str, version: &str) -> Result<PathBuf, String> {
    for (what, part) in [("target", target), ("version", version)] {
        let plain = !part.is_empty()
            && part != "."
            && part != ".."
            && !part.starts_with('.')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !plain {
            return Err(format!(
                "the {what} `{part}` cannot name a file (only [0-9A-Za-z_.-], not starting with a dot)"
            ));
        }
    }
    Ok(Path::new(RELEASES_DIR).join(target).join(format!(
        "{}-{version}",
        outpost_cloud_link::release::AGENT_NAME
    )))
}

/// The data directory: the folder of the database file (the store keeps no other record of it). `None`
/// for a database that is not a file.
pub async fn data_root(conn: &mut Conn) -> Result<Option<PathBuf>, StoreError> {
    let file: Option<String> =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_optional(conn)
            .await?;
    Ok(file
        .filter(|f| !f.is_empty())
        .and_then(|f| Path::new(&f).parent().map(Path::to_path_buf)))
}

const COLUMNS: &str = "id, version, target, size, sha256, rollback, notes, release_file, key_ids, \
                       binary_path, added_at, added_by";

fn from_row(row: &SqliteRow) -> Result<ReleaseRow, StoreError> {
    let key_ids: String = row.try_get("key_ids")?;
    Ok(ReleaseRow {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        target: row.try_get("target")?,
        size: to_u64("size", row.try_get("size")?)?,
        sha256: row.try_get("sha256")?,
        rollback: row.try_get::<i64, _>("rollback")? != 0,
        notes: row.try_get("notes")?,
        release_file: row.try_get("release_file")?,
        key_ids: key_ids
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect(),
        binary_path: row.try_get("binary_path")?,
        added_at: from_ms(row.try_get("added_at")?)?,
        added_by: row.try_get("added_by")?,
    })
}

/// Inserts a release and returns its id. A second row with the same (version, target) fails with the
/// database's unique-constraint error ([`is_unique_violation`]).
pub async fn insert(
    conn: &mut Conn,
    r: &NewRelease<'_>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO releases (version, target, size, sha256, rollback, notes, release_file, key_ids, \
         binary_path, added_at, added_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(r.version)
    .bind(r.target)
    .bind(to_i64(r.size))
    .bind(r.sha256)
    .bind(i64::from(r.rollback))
    .bind(r.notes)
    .bind(r.release_file)
    .bind(r.key_ids.join(","))
    .bind(r.binary_path)
    .bind(to_ms(now))
    .bind(r.added_by)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

/// Whether `e` is a unique-constraint violation (a duplicate (version, target)).
pub fn is_unique_violation(e: &StoreError) -> bool {
    match e {
        StoreError::Query(sqlx::Error::Database(db)) => db.is_unique_violation(),
        _ => false,
    }
}

/// The releases matching the filter, newest first (by id).
pub async fn list(conn: &mut Conn, filter: &Filter) -> Result<Vec<ReleaseRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM releases WHERE (? IS NULL OR target = ?) AND (? IS NULL OR version = ?) \
         ORDER BY id DESC"
    ))
    .bind(filter.target.as_deref())
    .bind(filter.target.as_deref())
    .bind(filter.version.as_deref())
    .bind(filter.version.as_deref())
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<ReleaseRow>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM releases WHERE id = ?"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn find(
    conn: &mut Conn,
    version: &str,
    target: &str,
) -> Result<Option<ReleaseRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM releases WHERE version = ? AND target = ?"
    ))
    .bind(version)
    .bind(target)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes the row; the removed row, or `None` if there was none.
pub async fn delete(conn: &mut Conn, id: i64) -> Result<Option<ReleaseRow>, StoreError> {
    let row = sqlx::query(&format!(
        "DELETE FROM releases WHERE id = ? RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_lie_under_releases_by_target_and_version() {
        assert_eq!(
            binary_rel_path("aarch64-unknown-linux-musl", "1.2.3-rc.1").unwrap(),
            Path::new("releases/aarch64-unknown-linux-musl/outpost-agent-1.2.3-rc.1")
        );
    }

    #[test]
    fn names_that_could_leave_the_folder_are_refused() {
        for (target, version) in [
            ("..", "1.0.0"),
            ("a/b", "1.0.0"),
            ("x86_64-linux", "../../etc"),
            ("x86_64-linux", ""),
            (".hidden-x", "1.0.0"),
            ("x86_64-linux", "1.0.0\0"),
        ] {
            let e = binary_rel_path(target, version).unwrap_err();
            assert!(e.contains("cannot name a file"), "{target} {version}: {e}");
        }
    }
}

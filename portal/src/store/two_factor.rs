//! What two-factor sign-in and the account pages keep: the portal's trusted-device signing key (made on
//! first use), remembered devices (by the hash of their id), recovery codes (hashed, marked when used),
//! the wrong codes a waiting session has typed, and ending a user's other sessions. Secrets arrive here
//! already hashed.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sqlx::Row;

use super::{from_ms, to_ms, Conn, StoreError};

/// The name of the key that signs trusted-device cookies.
pub const DEVICE_KEY: &str = "trusted-device";

/// The 32-byte key `name`, made (random) and stored on first use. Two first uses racing agree on one key.
pub async fn key(conn: &mut Conn, name: &str, now: DateTime<Utc>) -> Result<[u8; 32], StoreError> {
    let mut fresh = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut fresh);
    sqlx::query(
        "INSERT INTO portal_keys (name, key_hex, created_at) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(hex::encode(fresh))
    .bind(to_ms(now))
    .execute(&mut *conn)
    .await?;
    let stored: String = sqlx::query_scalar("SELECT key_hex FROM portal_keys WHERE name = ?")
        .bind(name)
        .fetch_one(conn)
        .await?;
    let bytes = hex::decode(&stored)
        .map_err(|_| StoreError::Corrupt(format!("portal key {name} is not hex")))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| StoreError::Corrupt(format!("portal key {name} does not have 32 bytes")))
}

/// Confirms the user's pending TOTP secret `secret` (only if it is still the stored, unconfirmed one: a
/// renewal racing with the confirmation does not confirm the replaced secret); returns whether it did.
pub async fn enable_totp(
    conn: &mut Conn,
    user: i64,
    secret: &str,
    step: i64,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE users SET totp_enabled_at = ?, totp_last_step = ?, updated_at = ? \
         WHERE id = ? AND totp_secret = ? AND totp_enabled_at IS NULL",
    )
    .bind(to_ms(now))
    .bind(step)
    .bind(to_ms(now))
    .bind(user)
    .bind(secret)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A remembered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// The hash of the device id (what the remove button names; the id itself is only in the cookie).
    pub id_hash: String,
    pub user_id: i64,
    pub browser: String,
    pub created_at: DateTime<Utc>,
    pub last_used: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_device(conn: &mut Conn, d: &DeviceRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO trusted_devices (id_hash, user_id, browser, created_at, last_used, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&d.id_hash)
    .bind(d.user_id)
    .bind(&d.browser)
    .bind(to_ms(d.created_at))
    .bind(to_ms(d.last_used))
    .bind(to_ms(d.expires_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether `user` still has the live device `id_hash`; if so, marks it used at `now`.
pub async fn use_device(
    conn: &mut Conn,
    id_hash: &str,
    user: i64,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE trusted_devices SET last_used = ? WHERE id_hash = ? AND user_id = ? AND expires_at > ?",
    )
    .bind(to_ms(now))
    .bind(id_hash)
    .bind(user)
    .bind(to_ms(now))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The user's live devices, most recently used first.
pub async fn devices_of(
    conn: &mut Conn,
    user: i64,
    now: DateTime<Utc>,
) -> Result<Vec<DeviceRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id_hash, user_id, browser, created_at, last_used, expires_at FROM trusted_devices \
         WHERE user_id = ? AND expires_at > ? ORDER BY last_used DESC",
    )
    .bind(user)
    .bind(to_ms(now))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeviceRow {
                id_hash: r.try_get("id_hash")?,
                user_id: r.try_get("user_id")?,
                browser: r.try_get("browser")?,
                created_at: from_ms(r.try_get("created_at")?)?,
                last_used: from_ms(r.try_get("last_used")?)?,
                expires_at: from_ms(r.try_get("expires_at")?)?,
            })
        })
        .collect()
}

/// Forgets one of the user's devices: false if the user has no such device.
pub async fn delete_device(conn: &mut Conn, user: i64, id_hash: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM trusted_devices WHERE user_id = ? AND id_hash = ?")
        .bind(user)
        .bind(id_hash)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets every device of the user; returns how many.
pub async fn delete_devices_of(conn: &mut Conn, user: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM trusted_devices WHERE user_id = ?")
        .bind(user)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Replaces the user's recovery codes with `hashes` (all unused).
pub async fn replace_recovery_codes(
    conn: &mut Conn,
    user: i64,
    hashes: &[String],
) -> Result<(), StoreError> {
    delete_recovery_codes(conn, user).await?;
    for hash in hashes {
        sqlx::query("INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES (?, ?, NULL)")
            .bind(user)
            .bind(hash)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn delete_recovery_codes(conn: &mut Conn, user: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?")
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Uses up the user's unused recovery code `hash`: false if there is none (unknown, or used already,
/// also by a racing request).
pub async fn use_recovery_code(
    conn: &mut Conn,
    user: i64,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? AND used_at IS NULL",
    )
    .bind(to_ms(now))
    .bind(user)
    .bind(hash)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many unused recovery codes the user has.
pub async fn recovery_codes_left(conn: &mut Conn, user: i64) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL",
    )
    .bind(user)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Counts one more wrong code for the session `token_hash`; returns how many it has typed now.
pub async fn count_code_failure(conn: &mut Conn, token_hash: &str) -> Result<u32, StoreError> {
    let n: Option<i64> = sqlx::query_scalar(
        "UPDATE user_sessions SET code_failures = code_failures + 1 WHERE token_hash = ? \
         RETURNING code_failures",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await?;
    Ok(n.map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX)))
}

/// Ends every session of the user but `keep_hash`; returns how many.
pub async fn delete_other_sessions(
    conn: &mut Conn,
    user: i64,
    keep_hash: &str,
) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM user_sessions WHERE user_id = ? AND token_hash <> ?")
        .bind(user)
        .bind(keep_hash)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;
    use crate::store::users::{self, NewUser, SessionRow};
    use crate::store::Store;
    use chrono::Duration;

    async fn store_with_user() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).await.unwrap();
        let mut conn = store.conn().await.unwrap();
        let company = users::insert_company(&mut conn, "Acme", Utc::now())
            .await
            .unwrap();
        let id = users::insert(
            &mut conn,
            &NewUser {
                company_id: Some(company),
                username: "ana",
                email: Some("ana@example.com"),
                name: "Ana",
                role: Role::CompanyAdmin,
                require_2fa: false,
            },
            Utc::now(),
        )
        .await
        .unwrap();
        drop(conn);
        (dir, store, id)
    }

    #[tokio::test]
    async fn the_key_is_made_once_and_kept() {
        let (_dir, store, _) = store_with_user().await;
        let mut conn = store.conn().await.unwrap();
        let a = key(&mut conn, DEVICE_KEY, Utc::now()).await.unwrap();
        let b = key(&mut conn, DEVICE_KEY, Utc::now()).await.unwrap();
        assert_eq!(a, b);
        assert_ne!(a, [0u8; 32]);
        assert_ne!(a, key(&mut conn, "other", Utc::now()).await.unwrap());
    }

    #[tokio::test]
    async fn recovery_codes_work_once_and_devices_are_the_users_own() {
        let (_dir, store, user) = store_with_user().await;
        let mut conn = store.conn().await.unwrap();
        let now = Utc::now();
        replace_recovery_codes(&mut conn, user, &["a".into(), "b".into()])
            .await
            .unwrap();
        assert_eq!(recovery_codes_left(&mut conn, user).await.unwrap(), 2);
        assert!(use_recovery_code(&mut conn, user, "a", now).await.unwrap());
        assert!(!use_recovery_code(&mut conn, user, "a", now).await.unwrap());
        assert!(!use_recovery_code(&mut conn, user + 1, "b", now)
            .await
            .unwrap());
        assert_eq!(recovery_codes_left(&mut conn, user).await.unwrap(), 1);

        let device = DeviceRow {
            id_hash: "h".into(),
            user_id: user,
            browser: "Firefox 133 on Linux".into(),
            created_at: now,
            last_used: now,
            expires_at: now + Duration::days(30),
        };
        insert_device(&mut conn, &device).await.unwrap();
        assert!(!use_device(&mut conn, "h", user + 1, now).await.unwrap());
        let later = now + Duration::hours(1);
        assert!(use_device(&mut conn, "h", user, later).await.unwrap());
        let listed = devices_of(&mut conn, user, later).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].last_used.timestamp_millis(),
            later.timestamp_millis()
        );
        assert!(!use_device(&mut conn, "h", user, now + Duration::days(31))
            .await
            .unwrap());
        assert!(!delete_device(&mut conn, user + 1, "h").await.unwrap());
        assert!(delete_device(&mut conn, user, "h").await.unwrap());
        assert!(devices_of(&mut conn, user, now).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn code_failures_count_per_session_and_other_sessions_end() {
        let (_dir, store, user) = store_with_user().await;
        let mut conn = store.conn().await.unwrap();
        let now = Utc::now();
        for hash in ["s1", "s2", "s3"] {
            users::insert_session(
                &mut conn,
                &SessionRow {
                    token_hash: hash.into(),
                    user_id: user,
                    second_factor: false,
                    browser: "b".into(),
                    address: None,
                    created_at: now,
                    last_seen: now,
                    expires_at: now + Duration::hours(1),
                },
            )
            .await
            .unwrap();
        }
        assert_eq!(count_code_failure(&mut conn, "s1").await.unwrap(), 1);
        assert_eq!(count_code_failure(&mut conn, "s1").await.unwrap(), 2);
        assert_eq!(count_code_failure(&mut conn, "s2").await.unwrap(), 1);
        assert_eq!(
            count_code_failure(&mut conn, "gone").await.unwrap(),
            u32::MAX
        );
        assert_eq!(
            delete_other_sessions(&mut conn, user, "s2").await.unwrap(),
            2
        );
        let left = users::sessions_of(&mut conn, user, now).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].token_hash, "s2");
    }
}

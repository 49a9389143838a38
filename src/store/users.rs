//! 職員: staff logins, their sessions, and the audit trail of who looked at whom.

use super::Store;
use crate::domain::{Extension, Role};
use anyhow::Context;
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub extension: Option<String>,
}

/// argon2id hash in PHC form. CPU-heavy: call from `spawn_blocking` on a server.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?
        .to_string())
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// [`verify_password`] in memory the caller keeps: argon2 needs ~19 MiB of blocks per check,
/// and a server that reuses one buffer per concurrent check keeps its memory flat (a fresh
/// allocation per check, freed on another thread each time, stays resident in the allocator's
/// per-thread arenas). `memory` grows to what the hash's parameters ask and is kept.
pub fn verify_password_in(password: &str, phc: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::{Output, PasswordHash};
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (hash.hash, hash.salt) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version {
        Some(v) => argon2::Version::try_from(v),
        None => Ok(argon2::Version::default()),
    };
    let (Ok(version), Ok(params)) = (version, argon2::Params::try_from(&hash)) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let hashed = argon2::Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        &mut memory[..blocks],
    );
    // Output's equality is constant-time.
    hashed.is_ok() && Output::new(&out).is_ok_and(|out| out == expected)
}

/// Session tokens are random; the database keeps only their BLAKE2b digest.
pub fn token_digest(token: &str) -> String {
    use blake2::{Blake2b512, Digest};
    let d = Blake2b512::digest(token.as_bytes());
    d.iter().take(32).map(|b| format!("{b:02x}")).collect()
}

pub fn new_token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b.iter().map(|b| format!("{b:02x}")).collect())
}

fn user_from_row(row: &sqlx::any::AnyRow) -> anyhow::Result<User> {
    let role: String = row.try_get(3)?;
    Ok(User {
        id: row.try_get(0)?,
        username: row.try_get(1)?,
        display_name: row.try_get(2)?,
        role: Role::parse(&role)
            .with_context(|| format!("unknown role {role:?} in the database"))?,
        extension: row.try_get(4)?,
    })
}

impl Store {
    /// Adds a user, or replaces the password, role and extension of an existing one. Replacing
    /// ends every session of that user in the same transaction: whoever logged in with the old
    /// password (or under the old role) must log in again.
    pub async fn upsert_user(
        &self,
        username: &str,
        display_name: &str,
        password_hash: &str,
        role: Role,
        extension: Option<&Extension>,
    ) -> anyhow::Result<i64> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO users (username, display_name, password_hash, role, extension, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (username) DO UPDATE SET \
             display_name = excluded.display_name, password_hash = excluded.password_hash, \
             role = excluded.role, extension = excluded.extension, active = 1 RETURNING id",
        )
        .bind(username.to_string())
        .bind(display_name.to_string())
        .bind(password_hash.to_string())
        .bind(role.code())
        .bind(extension.map(|e| e.as_str().to_string()))
        .bind(super::now())
        .fetch_one(tx.conn())
        .await
        .with_context(|| format!("saving user {username} (is the extension taken by another user?)"))?;
        let id: i64 = row.try_get(0)?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(tx.conn())
            .await
            .with_context(|| format!("ending the sessions of {username}"))?;
        tx.commit()
            .await
            .with_context(|| format!("saving user {username}"))?;
        Ok(id)
    }

    /// Disables a login and ends its sessions (the row stays: calls and the audit trail name
    /// it). False when no active user has that name.
    pub async fn remove_user(&self, username: &str) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE users SET active = 0 WHERE username = $1 AND active = 1 RETURNING id",
        )
        .bind(username.to_string())
        .fetch_optional(tx.conn())
        .await
        .with_context(|| format!("removing user {username}"))?;
        let Some(row) = row else {
            return Ok(false);
        };
        let id: i64 = row.try_get(0)?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(tx.conn())
            .await
            .with_context(|| format!("ending the sessions of {username}"))?;
        tx.commit()
            .await
            .with_context(|| format!("removing user {username}"))?;
        Ok(true)
    }

    /// The user and password hash for a login attempt.
    pub async fn user_for_login(&self, username: &str) -> anyhow::Result<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT id, username, display_name, role, extension, password_hash FROM users \
             WHERE username = $1 AND active = 1",
        )
        .bind(username.to_string())
        .fetch_optional(&self.read)
        .await?;
        match row {
            Some(row) => Ok(Some((user_from_row(&row)?, row.try_get(5)?))),
            None => Ok(None),
        }
    }

    pub async fn users(&self) -> anyhow::Result<Vec<User>> {
        self.active_users("").await
    }

    /// The active users with a PBX extension (the agents the supervisors' board lists), by
    /// username: the board is rebuilt up to twice a second and need not read every login.
    pub async fn users_with_extension(&self) -> anyhow::Result<Vec<User>> {
        self.active_users(" AND extension IS NOT NULL").await
    }

    /// The active users, by username; `and` narrows the `WHERE` (a fixed SQL text).
    async fn active_users(&self, and: &'static str) -> anyhow::Result<Vec<User>> {
        let sql = format!(
            "SELECT id, username, display_name, role, extension FROM users \
             WHERE active = 1{and} ORDER BY username"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.read).await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn create_session(
        &self,
        user_id: i64,
        token: &str,
        hours: i64,
    ) -> anyhow::Result<()> {
        let now = chrono::Utc::now();
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1,$2,$3,$4)")
            .bind(token_digest(token))
            .bind(user_id)
            .bind(super::ts(now))
            .bind(super::ts(now + chrono::Duration::hours(hours)))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn session_user(&self, token: &str) -> anyhow::Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.role, u.extension FROM sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.active = 1",
        )
        .bind(token_digest(token))
        .bind(super::now())
        .fetch_optional(self.reads())
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn delete_session(&self, token: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_digest(token))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Deletes expired sessions and login counters whose window ended before `stale_before`.
    /// Returns how many sessions went.
    pub async fn sweep_expired(&self, stale_before: &str) -> anyhow::Result<u64> {
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(super::now())
            .execute(&self.write)
            .await
            .context("sweeping expired sessions")?
            .rows_affected();
        sqlx::query("DELETE FROM login_attempts WHERE window_start <= $1")
            .bind(stale_before.to_string())
            .execute(&self.write)
            .await
            .context("sweeping old login counters")?;
        Ok(sessions)
    }

    /// Counts one login attempt against `key` before its password is checked, in one atomic
    /// statement (so concurrent guesses are each counted before any is checked). A window that
    /// began at or before `stale_before` starts over at `now`. Returns the attempts in the
    /// window, this one included, and when the window began.
    pub async fn reserve_login_attempt(
        &self,
        key: &str,
        now: &str,
        stale_before: &str,
    ) -> anyhow::Result<(i64, String)> {
        let row = sqlx::query(
            "INSERT INTO login_attempts (throttle_key, attempts, window_start) VALUES ($1, 1, $2) \
             ON CONFLICT (throttle_key) DO UPDATE SET \
             attempts = CASE WHEN login_attempts.window_start <= $3 THEN 1 \
                             ELSE login_attempts.attempts + 1 END, \
             window_start = CASE WHEN login_attempts.window_start <= $3 THEN excluded.window_start \
                                 ELSE login_attempts.window_start END \
             RETURNING attempts, window_start",
        )
        .bind(key.to_string())
        .bind(now.to_string())
        .bind(stale_before.to_string())
        .fetch_one(&self.write)
        .await
        .context("counting a login attempt")?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Gives back one reserved attempt (its password was right, or never checked).
    pub async fn release_login_attempt(&self, key: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE login_attempts SET attempts = attempts - 1 \
             WHERE throttle_key = $1 AND attempts > 0",
        )
        .bind(key.to_string())
        .execute(&self.write)
        .await
        .context("releasing a login attempt")?;
        Ok(())
    }

    /// Forgets a counter (a successful login clears its account's failures).
    pub async fn clear_login_attempts(&self, key: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM login_attempts WHERE throttle_key = $1")
            .bind(key.to_string())
            .execute(&self.write)
            .await
            .context("clearing login attempts")?;
        Ok(())
    }

    /// An audit entry written inside a larger change: it commits, or rolls back, with it.
    pub async fn audit_in(
        tx: &mut super::WriteTx,
        user_id: Option<i64>,
        action: &str,
        resident_id: Option<i64>,
        detail: &str,
        remote_addr: &str,
    ) -> Result<(), super::StoreError> {
        sqlx::query(
            "INSERT INTO audit_entries (at, user_id, action, resident_id, detail, remote_addr) VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(super::now())
        .bind(user_id)
        .bind(action.to_string())
        .bind(resident_id)
        .bind(detail.to_string())
        .bind(remote_addr.to_string())
        .execute(tx.conn())
        .await?;
        Ok(())
    }

    /// 操作記録: one line per view or change of a resident.
    pub async fn audit(
        &self,
        user_id: Option<i64>,
        action: &str,
        resident_id: Option<i64>,
        detail: &str,
        remote_addr: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO audit_entries (at, user_id, action, resident_id, detail, remote_addr) VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(super::now())
        .bind(user_id)
        .bind(action.to_string())
        .bind(resident_id)
        .bind(detail.to_string())
        .bind(remote_addr.to_string())
        .execute(&self.write)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_in_kept_memory_agrees_with_argon2() {
        let phc = hash_password("correct horse").unwrap();
        let mut memory = Vec::new();
        assert!(verify_password_in("correct horse", &phc, &mut memory));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password_in("correct hors", &phc, &mut memory));
        assert!(!verify_password_in(
            "correct horse",
            "not a hash",
            &mut memory
        ));
        assert_eq!(memory.len(), argon2::Params::DEFAULT_M_COST as usize);
        let other = hash_password("another").unwrap();
        assert!(verify_password_in("another", &other, &mut memory));
        assert!(!verify_password_in("correct horse", &other, &mut memory));
    }
}

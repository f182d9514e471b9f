//! Accounts of the HTTP services. The registry stores them; hashing passwords and issuing
//! tokens is the HTTP layer's job (`vigie-api`), so only password hashes pass through here.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Error, Registry, Result};

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Asks for predictions.
    User,
    /// Also manages accounts, noise injection and promotions.
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(Error::Corrupt(format!("unknown role {other:?}"))),
        }
    }
}

/// One account, as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    /// Unix seconds; tokens issued before it are not this account's.
    pub created_at: i64,
    pub created_by: String,
}

/// Account names: 1 to 64 characters among letters, digits and `.`, `_`, `-`, `@`.
pub fn check_user_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a user name has 1 to 64 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(format!(
            "{c:?} is not allowed in a user name (letters, digits, '.', '_', '-', '@')"
        ));
    }
    Ok(())
}

impl Registry {
    /// Adds an account; fails with [`Error::UserExists`] when the name is taken, in any case
    /// (names are compared without case: `Alice` is `alice`).
    pub async fn add_user(&self, user: &User) -> Result<()> {
        check_user_name(&user.name).map_err(Error::BadUserName)?;
        let mut tx = self.write_transaction().await?;
        let taken: Option<String> =
            sqlx::query("SELECT name FROM users WHERE lower(name) = lower($1)")
                .bind(&user.name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
        if let Some(taken) = taken {
            return Err(Error::UserExists(taken));
        }
        let inserted = sqlx::query(
            "INSERT INTO users (name, role, password_hash, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.name)
        .bind(user.role.as_str())
        .bind(&user.password_hash)
        .bind(user.created_at)
        .bind(&user.created_by)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => Ok(tx.commit().await?),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::UserExists(user.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an account (its name in any case). The last admin cannot be deleted: nobody
    /// could manage accounts over the API any more.
    pub async fn delete_user(&self, name: &str) -> Result<User> {
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query(
            "SELECT name, role, password_hash, created_at, created_by FROM users \
             WHERE lower(name) = lower($1)",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let user = match row {
            Some(row) => user_of_row(&row)?,
            None => return Err(Error::UnknownUser(name.to_string())),
        };
        if user.role == Role::Admin {
            let admins: i64 = sqlx::query("SELECT COUNT(*) FROM users WHERE role = 'admin'")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if admins <= 1 {
                return Err(Error::LastAdmin(name.to_string()));
            }
        }
        sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(&user.name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Every account, by name.
    pub async fn users(&self) -> Result<Vec<User>> {
        let rows =
            sqlx::query("SELECT name, role, password_hash, created_at, created_by FROM users")
                .fetch_all(&self.pool)
                .await?;
        let mut users = rows.iter().map(user_of_row).collect::<Result<Vec<_>>>()?;
        users.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(users)
    }

    /// One account (its name in any case), if it exists.
    pub async fn user(&self, name: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT name, role, password_hash, created_at, created_by FROM users \
             WHERE lower(name) = lower($1)",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_of_row).transpose()
    }
}

fn user_of_row(row: &AnyRow) -> Result<User> {
    let role: String = row.try_get("role")?;
    Ok(User {
        name: row.try_get("name")?,
        role: role.parse()?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_checked() {
        for good in ["alice", "dispatch-01", "a.b_c@samu"] {
            assert!(check_user_name(good).is_ok(), "{good}");
        }
        assert!(check_user_name("").is_err());
        assert!(check_user_name(&"x".repeat(65)).is_err());
        let err = check_user_name("bob smith").unwrap_err();
        assert!(err.contains("' '"), "{err}");
    }
}

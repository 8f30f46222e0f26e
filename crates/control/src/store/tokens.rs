//! API tokens. A token's secret (`pal_` and 43 characters of base64url: 256 random bits) is
//! shown once, when it is made; the store keeps only its SHA-256. A plain hash is the right
//! tool here, not a password hash: the secret is random and long, so there is nothing to guess,
//! and the lookup must be cheap because every API request makes one.

use super::StoreError;
use base64::Engine;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a token may do. `admin` may do everything, including managing tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every `GET`: sites, audit log, events, reports, analytics.
    Read,
    /// Create, change and delete sites.
    Edit,
    /// Purge a site's cache.
    Purge,
    /// Suspend and reinstate sites; triage abuse reports.
    Suspend,
    /// Everything, and tokens.
    Admin,
}

impl Scope {
    /// Every scope, in the order the API lists them.
    pub const ALL: [Scope; 5] = [
        Scope::Read,
        Scope::Edit,
        Scope::Purge,
        Scope::Suspend,
        Scope::Admin,
    ];

    /// The scope as the API and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Edit => "edit",
            Scope::Purge => "purge",
            Scope::Suspend => "suspend",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is none of read, edit, purge, suspend and admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {} (read, edit, purge, suspend, admin)", model::shown(.0))]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(text: &str) -> Result<Scope, UnknownScope> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownScope(text.to_string()))
    }
}

/// A token as the API shows it: never its secret, never its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Token {
    /// `tok_` and 16 hex digits: names the token in the audit log; not a secret.
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The sites it may act on; `None`: every site.
    pub sites: Option<Vec<String>>,
    /// When it was made, in Unix milliseconds.
    pub created_at: i64,
    /// The token that made it; `None` for the first admin token.
    pub created_by: Option<String>,
    /// When it was revoked, in Unix milliseconds; `None` while it is live.
    pub revoked_at: Option<i64>,
}

impl Token {
    /// Whether this token may use `scope`, on `site` when the route names one.
    pub fn allows(&self, scope: Scope, site: Option<&str>) -> bool {
        let scoped = self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope);
        scoped && self.covers(site)
    }

    /// Whether the token reaches `site` (`None`: a route about no one site, which only a
    /// token for every site reaches).
    pub fn covers(&self, site: Option<&str>) -> bool {
        match (&self.sites, site) {
            (None, _) => true,
            (Some(sites), Some(site)) => sites.iter().any(|s| s == site),
            (Some(_), None) => false,
        }
    }
}

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// What the operator calls it: 1 to 100 characters.
    pub name: String,
    /// What it may do; at least one.
    pub scopes: Vec<Scope>,
    /// The sites it may act on; `None`: every site.
    pub sites: Option<Vec<String>>,
}

/// Prefix of every secret: makes a leaked token recognisable to secret scanners.
pub const SECRET_PREFIX: &str = "pal_";

/// A fresh secret: 256 random bits.
pub fn new_secret() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Corrupt("the system's random source failed".into()))?;
    Ok(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn new_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Corrupt("the system's random source failed".into()))?;
    Ok(format!("tok_{}", super::audit::hex(&bytes)))
}

fn hash(secret: &str) -> Vec<u8> {
    digest(&SHA256, secret.as_bytes()).as_ref().to_vec()
}

/// Stores a token for `secret` and returns it.
pub fn insert(
    tx: &Transaction<'_>,
    new: &NewToken,
    secret: &str,
    created_by: Option<&str>,
    at: i64,
) -> Result<Token, StoreError> {
    let id = new_id()?;
    let scopes =
        serde_json::to_string(&new.scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let sites = new
        .sites
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO tokens (id, name, hash, scopes, sites, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, new.name, hash(secret), scopes, sites, at, created_by],
    )?;
    Ok(Token {
        id,
        name: new.name.clone(),
        scopes: new.scopes.clone(),
        sites: new.sites.clone(),
        created_at: at,
        created_by: created_by.map(str::to_string),
        revoked_at: None,
    })
}

const COLUMNS: &str = "id, name, scopes, sites, created_at, created_by, revoked_at";

fn read(row: &rusqlite::Row<'_>) -> Result<Token, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("token: {e}"));
    let scopes: String = row.get(2)?;
    let sites: Option<String> = row.get(3)?;
    Ok(Token {
        id: row.get(0)?,
        name: row.get(1)?,
        scopes: serde_json::from_str(&scopes).map_err(corrupt)?,
        sites: sites
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(corrupt)?,
        created_at: row.get(4)?,
        created_by: row.get(5)?,
        revoked_at: row.get(6)?,
    })
}

/// The live (not revoked) token whose secret this is.
pub fn authenticate(conn: &Connection, secret: &str) -> Result<Option<Token>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at IS NULL");
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query(params![hash(secret)])?;
    match rows.next()? {
        Some(row) => read(row).map(Some),
        None => Ok(None),
    }
}

/// The token with that id, revoked or not.
pub fn get(conn: &Connection, id: &str) -> Result<Option<Token>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1");
    conn.query_row(&sql, params![id], |row| Ok(read(row)))
        .optional()?
        .transpose()
}

/// Every token, oldest first, revoked ones included (they explain the audit log's actors).
pub fn list(conn: &Connection) -> Result<Vec<Token>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM tokens ORDER BY created_at, id");
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query([])?;
    let mut tokens = Vec::new();
    while let Some(row) = rows.next()? {
        tokens.push(read(row)?);
    }
    Ok(tokens)
}

/// Marks the token revoked; `None` when there is no such token or it already was.
pub fn revoke(tx: &Transaction<'_>, id: &str, at: i64) -> Result<Option<Token>, StoreError> {
    let changed = tx.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, at],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    get(tx, id)
}

/// How many tokens exist at all (zero: the first start, which makes the admin token).
pub fn count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn make(
        conn: &mut Connection,
        scopes: Vec<Scope>,
        sites: Option<Vec<String>>,
    ) -> (Token, String) {
        let secret = new_secret().unwrap();
        let tx = conn.transaction().unwrap();
        let token = insert(
            &tx,
            &NewToken {
                name: "t".into(),
                scopes,
                sites,
            },
            &secret,
            None,
            1,
        )
        .unwrap();
        tx.commit().unwrap();
        (token, secret)
    }

    #[test]
    fn a_secret_authenticates_until_revoked_and_only_its_hash_is_stored() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            let (token, secret) = make(conn, vec![Scope::Read], None);
            assert_eq!(authenticate(conn, &secret).unwrap(), Some(token.clone()));
            assert_eq!(authenticate(conn, "pal_wrong").unwrap(), None);
            assert_eq!(authenticate(conn, "").unwrap(), None);
            let stored: Vec<u8> = conn
                .query_row("SELECT hash FROM tokens", [], |r| r.get(0))
                .unwrap();
            assert_ne!(stored, secret.as_bytes());
            let dump: String = conn
                .query_row(
                    "SELECT name || scopes || coalesce(sites, '') FROM tokens",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(!dump.contains(&secret[4..]));
            let tx = conn.transaction().unwrap();
            assert!(revoke(&tx, &token.id, 2).unwrap().is_some());
            assert!(
                revoke(&tx, &token.id, 3).unwrap().is_none(),
                "revoked once only"
            );
            tx.commit().unwrap();
            assert_eq!(authenticate(conn, &secret).unwrap(), None);
        });
    }

    #[test]
    fn scopes_and_sites_limit_what_a_token_may_do() {
        let (_dir, store) = test_store();
        store.with(|conn| {
            let (reader, _) = make(conn, vec![Scope::Read], Some(vec!["blog".into()]));
            assert!(reader.allows(Scope::Read, Some("blog")));
            assert!(!reader.allows(Scope::Read, Some("shop")));
            assert!(!reader.allows(Scope::Read, None));
            assert!(!reader.allows(Scope::Edit, Some("blog")));
            let (admin, _) = make(conn, vec![Scope::Admin], None);
            for scope in Scope::ALL {
                assert!(admin.allows(scope, None) && admin.allows(scope, Some("any")));
            }
        });
    }

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("pal_"));
        assert_eq!(a.len(), 4 + 43);
    }
}

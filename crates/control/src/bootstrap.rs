//! The first start: with no token in the store, one admin token is made. Its secret is
//! printed once and only its hash is kept; `PALISADE_BOOTSTRAP_TOKEN`, when set at that first
//! start, is taken as the secret instead (automated set-ups know it in advance).

use crate::store::audit::{self, Change};
use crate::store::tokens::{self, NewToken, Scope};
use crate::store::{self, Store, StoreError};

/// The environment variable that names the first admin token's secret.
pub const BOOTSTRAP_ENV: &str = "PALISADE_BOOTSTRAP_TOKEN";
/// The shortest secret taken from the environment.
pub const MIN_BOOTSTRAP_LEN: usize = 24;

/// What the first start did.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Tokens exist already: nothing to do.
    Existing,
    /// A new admin token: its secret, to print once.
    Generated(String),
    /// The admin token is the environment's value.
    FromEnvironment,
}

/// Why the first admin token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The secret given in the environment is too short or not printable ASCII.
    #[error("{BOOTSTRAP_ENV} must be at least {MIN_BOOTSTRAP_LEN} characters of printable ASCII")]
    WeakSecret,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes the first admin token when the store has none.
pub fn ensure_admin_token(
    store: &Store,
    from_env: Option<String>,
) -> Result<Bootstrap, BootstrapError> {
    store.with(|conn| {
        if tokens::count(conn)? > 0 {
            return Ok(Bootstrap::Existing);
        }
        let (secret, outcome) = match from_env {
            Some(secret) => {
                if secret.len() < MIN_BOOTSTRAP_LEN || !secret.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(BootstrapError::WeakSecret);
                }
                (secret, Bootstrap::FromEnvironment)
            }
            None => {
                let secret = tokens::new_secret()?;
                (secret.clone(), Bootstrap::Generated(secret))
            }
        };
        let tx = conn.transaction().map_err(StoreError::from)?;
        let now = store::now_ms();
        let token = tokens::insert(
            &tx,
            &NewToken {
                name: "bootstrap admin".into(),
                scopes: vec![Scope::Admin],
                sites: None,
            },
            &secret,
            None,
            now,
        )?;
        audit::append(
            &tx,
            Change {
                actor: "system",
                action: "token.create",
                target: format!("token:{}", token.id),
                before: None,
                after: serde_json::to_value(&token).ok(),
                reason: Some("first start".into()),
            },
            now,
        )?;
        tx.commit().map_err(StoreError::from)?;
        Ok(outcome)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn the_first_start_makes_one_admin_token_and_later_starts_none() {
        let (_dir, store) = test_store();
        let Bootstrap::Generated(secret) = ensure_admin_token(&store, None).unwrap() else {
            panic!("a token is made");
        };
        let token = store
            .with(|conn| tokens::authenticate(conn, &secret))
            .unwrap()
            .unwrap();
        assert_eq!(token.scopes, vec![Scope::Admin]);
        assert_eq!(
            ensure_admin_token(&store, None).unwrap(),
            Bootstrap::Existing
        );
        assert_eq!(
            ensure_admin_token(&store, Some("x".repeat(40))).unwrap(),
            Bootstrap::Existing,
            "the environment counts at the first start only"
        );
    }

    #[test]
    fn the_environment_names_the_secret_and_must_be_strong() {
        let (_dir, store) = test_store();
        assert!(matches!(
            ensure_admin_token(&store, Some("short".into())),
            Err(BootstrapError::WeakSecret)
        ));
        let secret = "automation-knows-this-secret-0123".to_string();
        assert_eq!(
            ensure_admin_token(&store, Some(secret.clone())).unwrap(),
            Bootstrap::FromEnvironment
        );
        assert!(
            store
                .with(|conn| tokens::authenticate(conn, &secret))
                .unwrap()
                .is_some()
        );
    }
}

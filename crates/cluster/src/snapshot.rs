//! The snapshot message's body: every site at one version (`control::replica`), the stream
//! position to follow from, and the control node's challenge keys sealed under the cluster's
//! key (every edge signs and checks clearance with them, so a visitor cleared at one edge
//! passes at all).

use crate::envelope::Refused;
use crate::secret::Keys;
use control::replica;
use model::Site;
use serde::{Deserialize, Serialize};

/// What the challenge keys are sealed to (a sealed value opens only in its own place).
const CHALLENGE_KEYS_CONTEXT: &[u8] = b"palisade challenge-keys v1";
/// What a site's private key is sealed to.
pub const TLS_KEY_CONTEXT: &[u8] = b"palisade tls-key v1";

#[derive(Serialize, Deserialize)]
struct Body {
    /// The stream position an edge that loads it follows from.
    after: String,
    /// The challenge key file's text, sealed and base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    challenge_keys: Option<String>,
    /// The sites.
    config: replica::Snapshot,
}

/// A snapshot as an edge reads it.
pub struct Opened {
    /// Its version.
    pub version: u64,
    /// The stream position to follow from.
    pub after: String,
    /// Every site.
    pub sites: Vec<Site>,
    /// The control node's challenge key file, when it sent one.
    pub challenge_keys: Option<String>,
    /// Each purged site's newest purge version.
    pub purged: Vec<(String, u64)>,
    /// The control node's run that numbered its version (from its envelope).
    pub epoch: u64,
    /// The control node's global lists.
    pub global: replica::WireLists,
}

/// The body of a snapshot message.
pub fn encode(
    keys: &Keys,
    after: &str,
    challenge_keys: Option<&str>,
    config: replica::Snapshot,
) -> Vec<u8> {
    let body = Body {
        after: after.to_string(),
        challenge_keys: challenge_keys
            .map(|text| keys.seal_text(text.as_bytes(), CHALLENGE_KEYS_CONTEXT)),
        config,
    };
    serde_json::to_vec(&body).expect("a snapshot serialises")
}

/// Reads a snapshot message's body (its envelope already verified); certificates that
/// travelled are written beneath `certs`.
pub fn decode(
    keys: &Keys,
    body: &[u8],
    version: u64,
    certs: &std::path::Path,
) -> Result<Opened, Refused> {
    let body: Body = serde_json::from_slice(body).map_err(|error| {
        tracing::error!(%error, "cluster: a snapshot does not decode");
        Refused::Body
    })?;
    if body.config.version != version {
        return Err(Refused::Unexpected);
    }
    let challenge_keys = match body.challenge_keys {
        None => None,
        Some(sealed) => {
            let text = keys
                .open_text(&sealed, CHALLENGE_KEYS_CONTEXT)
                .ok_or(Refused::Signature)?;
            Some(String::from_utf8(text).map_err(|_| Refused::Body)?)
        }
    };
    let open = |sealed: &str| keys.open_text(sealed, TLS_KEY_CONTEXT);
    let unsealer = replica::Unsealer {
        dir: certs,
        open: &open,
    };
    let sites = body
        .config
        .sites
        .iter()
        .map(|site| site.to_site(Some(&unsealer)))
        .collect::<Result<_, _>>()
        .map_err(|error| {
            tracing::error!(%error, "cluster: a snapshot's site does not check");
            Refused::Body
        })?;
    Ok(Opened {
        version,
        after: body.after,
        sites,
        challenge_keys,
        purged: body.config.purged,
        epoch: 0,
        global: body.config.global,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_keys_travel_sealed_and_open_only_under_the_cluster_key() {
        let keys = Keys::from_secret(&[3; 32]);
        let text = "current 1 c2VjcmV0\n";
        let config = replica::Snapshot {
            version: 4,
            sites: vec![],
            purged: vec![],
            global: Default::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path();
        let body = encode(&keys, "7-0", Some(text), config);
        assert!(
            !body.windows(text.len()).any(|w| w == text.as_bytes()),
            "not in the clear"
        );
        let opened = decode(&keys, &body, 4, certs).unwrap();
        assert_eq!(opened.challenge_keys.as_deref(), Some(text));
        assert_eq!(opened.after, "7-0");
        assert!(matches!(
            decode(&Keys::from_secret(&[4; 32]), &body, 4, certs),
            Err(Refused::Signature)
        ));
        assert!(
            matches!(decode(&keys, &body, 5, certs), Err(Refused::Unexpected)),
            "the body's version is the envelope's"
        );
    }
}

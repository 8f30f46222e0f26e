//! The cluster secret and the keys made from it. Every node holds the same secret file; from it
//! HKDF-SHA256 makes one key that signs messages (HMAC-SHA256) and one that encrypts the
//! secrets inside them (ChaCha20-Poly1305). Redis sees only signed, sealed bytes.

use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, hkdf, hmac};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bytes of a secret `palisade cluster init` writes (written as hex).
pub const SECRET_BYTES: usize = 32;

/// Bytes of a signature.
pub const TAG_BYTES: usize = 32;

const NONCE_BYTES: usize = 12;

/// What went wrong with the secret file.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `cluster init` would overwrite a file.
    #[error("{} exists already: a cluster's secret is not replaced by accident (remove it first to make a new one, and give the new one to every node)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read or written.
    #[error("the cluster secret {}: {error} (make one with `palisade cluster init {}` and give the same file to every node)", path.display(), path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's refusal.
        error: std::io::Error,
    },
    /// The file does not hold a secret.
    #[error("the cluster secret {} is not {SECRET_BYTES} or more bytes written as hex (make one with `palisade cluster init FILE`)", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// Writes a new secret to `path`, readable by its owner only; refuses to overwrite.
pub fn init(path: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut secret = [0u8; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| SecretError::Io {
            path: path.into(),
            error: std::io::Error::other("the system's random source failed"),
        })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => SecretError::Exists { path: path.into() },
            _ => SecretError::Io {
                path: path.into(),
                error,
            },
        })?;
    let text = format!("{}\n", hex(&secret));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| SecretError::Io {
            path: path.into(),
            error,
        })
}

/// The keys a node signs, checks, seals and opens with.
pub struct Keys {
    sign: hmac::Key,
    /// Names rate-limit keys in Redis (`count_field`): a key of its own, so that a name is
    /// never a signature of anything.
    count: hmac::Key,
    seal: aead::LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { .. }")
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl Keys {
    /// Reads the secret file and makes the keys.
    pub fn load(path: &Path) -> Result<Keys, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|error| SecretError::Io {
            path: path.into(),
            error,
        })?;
        let secret = unhex(text.trim())
            .filter(|s| s.len() >= SECRET_BYTES)
            .ok_or_else(|| SecretError::Malformed { path: path.into() })?;
        Ok(Keys::from_secret(&secret))
    }

    /// The keys a secret makes.
    pub fn from_secret(secret: &[u8]) -> Keys {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"palisade cluster v1").extract(secret);
        let expand = |label: &[u8], len: usize| {
            let mut out = vec![0u8; len];
            prk.expand(&[label], Len(len))
                .and_then(|okm| okm.fill(&mut out))
                .expect("HKDF-SHA256 gives up to 8160 bytes");
            out
        };
        let sign = hmac::Key::new(hmac::HMAC_SHA256, &expand(b"sign", 32));
        let seal = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &expand(b"seal", 32))
            .expect("a 32-byte key is ChaCha20-Poly1305's size");
        Keys {
            sign,
            count: hmac::Key::new(hmac::HMAC_SHA256, &expand(b"count", 32)),
            seal: aead::LessSafeKey::new(seal),
            random: SystemRandom::new(),
        }
    }

    /// The signature of `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> [u8; TAG_BYTES] {
        let tag = hmac::sign(&self.sign, bytes);
        let mut out = [0u8; TAG_BYTES];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The name a shared rate limit's key goes by in Redis: 128 bits of a digest keyed by the
    /// cluster's secret, as hex. The same on every node; without the secret, nobody can tell
    /// which address or API key it stands for, or make one that collides with it.
    pub fn count_field(&self, key_digest: &[u8]) -> String {
        hex(&hmac::sign(&self.count, key_digest).as_ref()[..16])
    }

    /// Whether `tag` signs `bytes` (in constant time).
    pub fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.sign, bytes, tag).is_ok()
    }

    /// Encrypts `plain`, bound to `context` (which is not encrypted but must match to open):
    /// a random nonce, then the ciphertext and its tag.
    pub fn seal(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut out = Vec::with_capacity(NONCE_BYTES + plain.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .seal
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(context),
                &mut out[NONCE_BYTES..],
            )
            .expect("ChaCha20-Poly1305 seals any length a message has");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// [`Keys::seal`] as base64url text (for JSON).
    pub fn seal_text(&self, plain: &[u8], context: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.seal(plain, context))
    }

    /// What [`Keys::seal_text`] sealed with the same `context`.
    pub fn open_text(&self, sealed: &str, context: &[u8]) -> Option<Vec<u8>> {
        use base64::Engine;
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .ok()?;
        self.open(&sealed, context)
    }

    /// What [`Keys::seal`] sealed with the same `context`; `None` if it was not sealed by this
    /// cluster's key or was changed.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        let (nonce, rest) = sealed.split_at_checked(NONCE_BYTES)?;
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = rest.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, aead::Aad::from(context), &mut buffer)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// A random number from the system's source (a control node's epoch), never 0.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    u64::from_be_bytes(bytes) | 1
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_an_owner_only_secret_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        init(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(init(&path), Err(SecretError::Exists { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before, "left as it was");
        Keys::load(&path).unwrap();
    }

    #[test]
    fn a_missing_or_short_secret_is_refused_with_the_way_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let error = Keys::load(&path).unwrap_err();
        assert!(
            error.to_string().contains("palisade cluster init"),
            "{error}"
        );
        std::fs::write(&path, "abcd\n").unwrap();
        assert!(matches!(
            Keys::load(&path),
            Err(SecretError::Malformed { .. })
        ));
        std::fs::write(&path, "zz".repeat(32)).unwrap();
        assert!(matches!(
            Keys::load(&path),
            Err(SecretError::Malformed { .. })
        ));
    }

    #[test]
    fn signatures_and_seals_hold_only_under_the_same_secret() {
        let keys = Keys::from_secret(&[1; 32]);
        let other = Keys::from_secret(&[2; 32]);
        let tag = keys.sign(b"message");
        assert!(keys.verify(b"message", &tag));
        assert!(!keys.verify(b"messagf", &tag));
        assert!(!other.verify(b"message", &tag));
        let sealed = keys.seal(b"private key", b"site:blog");
        assert!(!sealed.windows(11).any(|w| w == b"private key"));
        assert_eq!(keys.open(&sealed, b"site:blog").unwrap(), b"private key");
        assert_eq!(
            keys.open(&sealed, b"site:shop"),
            None,
            "bound to its context"
        );
        assert_eq!(other.open(&sealed, b"site:blog"), None);
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert_eq!(keys.open(&flipped, b"site:blog"), None);
        assert_eq!(keys.open(&sealed[..5], b"site:blog"), None, "too short");
    }

    #[test]
    fn a_rate_limit_key_has_one_name_per_cluster_and_it_is_no_signature() {
        let keys = Keys::from_secret(&[1; 32]);
        let digest = [7u8; 16];
        let name = keys.count_field(&digest);
        assert_eq!(name.len(), 32);
        assert_eq!(name, Keys::from_secret(&[1; 32]).count_field(&digest));
        assert_ne!(name, Keys::from_secret(&[2; 32]).count_field(&digest));
        assert_ne!(name, keys.count_field(&[8u8; 16]));
        assert!(!hex(&keys.sign(&digest)).starts_with(&name));
    }
}

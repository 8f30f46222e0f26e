//! The signing keys of challenges and clearance cookies, kept in the data directory.
//!
//! One file, `challenge-keys`, holds the current key and, after a rotation, the previous
//! one with the time it was retired. Every edge that reads the same file (a shared data
//! directory, or a copy) verifies what any of them signed. A rotation leaves the previous key
//! valid for one clearance lifetime, so visitors cleared just before it are not challenged
//! again; after that it is ignored.
//!
//! ```text
//! # Palisade challenge signing keys. Secret: anyone holding them can mint clearance.
//! current 1764130000 5mB6...   (created, unix seconds; 32 random bytes, base64url)
//! previous 1764129000 Qx1k...  (retired, unix seconds)
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "challenge-keys";

const SECRET_LEN: usize = 32;

/// A problem with the key file, naming it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The operating system's refusal.
        source: std::io::Error,
    },
    /// A line of the key file is not `current` or `previous`, a time in unix seconds and a
    /// 32-byte base64url secret, or repeats a kind.
    #[error("{path}, line {line}: {message}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    #[error("{path}: no `current` key")]
    /// The key file has no `current` line.
    NoCurrent {
        /// The key file.
        path: PathBuf,
    },
    /// The system's random source failed while making a key.
    #[error("the system's random number generator failed")]
    Random,
}

/// One secret, with the two keys derived from it (a challenge can never pass for a cookie).
#[derive(Clone)]
pub struct SigningKey {
    secret: [u8; SECRET_LEN],
    pub(crate) challenge: hmac::Key,
    pub(crate) clearance: hmac::Key,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// A key from its 32-byte secret. The challenge and clearance keys are derived from it under
    /// different labels, so a challenge can never pass for a cookie.
    pub fn from_secret(secret: [u8; SECRET_LEN]) -> SigningKey {
        let root = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let derive =
            |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        SigningKey {
            secret,
            challenge: derive(b"palisade challenge v1"),
            clearance: derive(b"palisade clearance v1"),
        }
    }

    fn generate() -> Result<SigningKey, KeyError> {
        let mut secret = [0u8; SECRET_LEN];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| KeyError::Random)?;
        Ok(SigningKey::from_secret(secret))
    }
}

/// The keys an edge signs and verifies with.
#[derive(Debug, Clone)]
pub struct ChallengeKeys {
    /// Signs every new challenge and cookie; verifies them first.
    pub current: SigningKey,
    created: u64,
    /// The key before the last rotation and when it was retired (unix seconds).
    pub previous: Option<(SigningKey, u64)>,
}

impl ChallengeKeys {
    /// Fresh keys that no file holds (tests, benchmarks).
    pub fn ephemeral() -> Result<ChallengeKeys, KeyError> {
        Ok(ChallengeKeys {
            current: SigningKey::generate()?,
            created: unix_now(),
            previous: None,
        })
    }

    /// The previous key, while it is still within `lifetime` of its retirement.
    pub fn previous_within(&self, lifetime: Duration, now: SystemTime) -> Option<&SigningKey> {
        let (key, retired) = self.previous.as_ref()?;
        let until = retired.saturating_add(lifetime.as_secs());
        (unix(now) < until).then_some(key)
    }

    /// Reads the key file in `data_dir`, creating it (mode 0600) when it is missing.
    pub fn load_or_create(data_dir: &Path) -> Result<ChallengeKeys, KeyError> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = ChallengeKeys::ephemeral()?;
                write_atomically(&path, &keys)?;
                Ok(keys)
            }
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }

    /// The key file's text, as [`ChallengeKeys::install`] takes it (a cluster's control node
    /// sends it to its edges). Secret.
    pub fn file_text(data_dir: &Path) -> Result<String, KeyError> {
        let path = data_dir.join(KEY_FILE);
        std::fs::read_to_string(&path).map_err(|source| KeyError::Io { path, source })
    }

    /// Replaces the key file in `data_dir` with `text` (another node's, checked first):
    /// every edge of a cluster signs and verifies with the control node's keys, so a visitor
    /// cleared at one passes at all. Running edges use it from their next reload.
    pub fn install(data_dir: &Path, text: &str) -> Result<ChallengeKeys, KeyError> {
        let path = data_dir.join(KEY_FILE);
        let keys = parse(&path, text)?;
        write_atomically(&path, &keys)?;
        Ok(keys)
    }

    /// Makes a new current key; the old one becomes the previous. Running edges pick the
    /// new file up at their next reload.
    pub fn rotate(data_dir: &Path) -> Result<ChallengeKeys, KeyError> {
        let old = ChallengeKeys::load_or_create(data_dir)?;
        let now = unix_now();
        let keys = ChallengeKeys {
            current: SigningKey::generate()?,
            created: now,
            previous: Some((old.current, now)),
        };
        write_atomically(&data_dir.join(KEY_FILE), &keys)?;
        Ok(keys)
    }
}

fn parse(path: &Path, text: &str) -> Result<ChallengeKeys, KeyError> {
    let malformed = |line: usize, message: &str| KeyError::Malformed {
        path: path.to_path_buf(),
        line,
        message: message.to_string(),
    };
    let mut current = None;
    let mut previous = None;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(kind), Some(time), Some(secret), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(malformed(
                line_no,
                "expected `current|previous UNIX_SECONDS KEY`",
            ));
        };
        let time: u64 = time
            .parse()
            .map_err(|_| malformed(line_no, "the time is not a number of seconds"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(secret)
            .ok()
            .and_then(|b| <[u8; SECRET_LEN]>::try_from(b).ok())
            .ok_or_else(|| malformed(line_no, "the key is not 32 bytes of base64url"))?;
        let key = SigningKey::from_secret(bytes);
        let slot = match kind {
            "current" => &mut current,
            "previous" => &mut previous,
            _ => return Err(malformed(line_no, "expected `current` or `previous`")),
        };
        if slot.replace((key, time)).is_some() {
            return Err(malformed(line_no, "a second key of the same kind"));
        }
    }
    let (current, created) = current.ok_or_else(|| KeyError::NoCurrent {
        path: path.to_path_buf(),
    })?;
    Ok(ChallengeKeys {
        current,
        created,
        previous,
    })
}

fn write_atomically(path: &Path, keys: &ChallengeKeys) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::from(
        "# Palisade challenge signing keys. Secret: anyone holding them can mint clearance.\n\
         # Every edge of a site needs the same file. `palisade keys rotate` makes a new one.\n",
    );
    text += &format!(
        "current {} {}\n",
        keys.created,
        URL_SAFE_NO_PAD.encode(keys.current.secret)
    );
    if let Some((key, retired)) = &keys.previous {
        text += &format!(
            "previous {retired} {}\n",
            URL_SAFE_NO_PAD.encode(key.secret)
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

pub(crate) fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unix_now() -> u64 {
    unix(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("palisade-keys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn created_once_then_read_back() {
        let dir = temp_dir("create");
        let first = ChallengeKeys::load_or_create(&dir).unwrap();
        let again = ChallengeKeys::load_or_create(&dir).unwrap();
        assert_eq!(first.current.secret, again.current.secret);
        assert!(again.previous.is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_the_old_key_for_one_lifetime() {
        let dir = temp_dir("rotate");
        let first = ChallengeKeys::load_or_create(&dir).unwrap();
        let rotated = ChallengeKeys::rotate(&dir).unwrap();
        assert_ne!(first.current.secret, rotated.current.secret);
        let read = ChallengeKeys::load_or_create(&dir).unwrap();
        let (previous, retired) = read.previous.as_ref().unwrap();
        assert_eq!(previous.secret, first.current.secret);
        let hour = Duration::from_secs(3600);
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert!(read.previous_within(hour, at(*retired + 3599)).is_some());
        assert!(read.previous_within(hour, at(*retired + 3600)).is_none());
        // A second rotation forgets the first key.
        let twice = ChallengeKeys::rotate(&dir).unwrap();
        assert_eq!(twice.previous.unwrap().0.secret, rotated.current.secret);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_broken_file_is_an_error_naming_the_line() {
        let dir = temp_dir("broken");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(KEY_FILE);
        for (text, expect) in [
            ("# c\ncurrent 12 notbase64!\n", "line 2"),
            ("current 12\n", "line 1"),
            ("current x AAAA\n", "line 1"),
            ("# nothing\n", "no `current` key"),
            ("current 1 AAAA\n", "32 bytes"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = ChallengeKeys::load_or_create(&dir).unwrap_err().to_string();
            assert!(err.contains(expect), "{text:?}: {err}");
            assert!(err.contains(KEY_FILE), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

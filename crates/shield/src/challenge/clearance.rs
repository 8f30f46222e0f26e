//! The clearance cookie: proof that this browser, on this network, solved a challenge for
//! this site recently.
//!
//! The value is base64url of `version (1) | expires, unix seconds (8)` and an HMAC-SHA256 tag
//! over those bytes and the [`Binding`] (site, address prefix, User-Agent): the cookie carries
//! no identity, and the edge keeps no state for it.

use super::binding::Binding;
use super::keys::{ChallengeKeys, unix};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::{Duration, SystemTime};

/// The cookie's name.
pub const COOKIE: &str = "palisade_clearance";

const VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 8;
const VALUE_LEN: usize = PAYLOAD_LEN + 32;
const VALUE_TEXT_LEN: usize = (VALUE_LEN * 4).div_ceil(3);

/// A cookie value good for `ttl` from `now`.
pub fn mint(keys: &ChallengeKeys, binding: &Binding<'_>, ttl: Duration, now: SystemTime) -> String {
    let mut value = [0u8; VALUE_LEN];
    value[0] = VERSION;
    value[1..PAYLOAD_LEN].copy_from_slice(&unix(now).saturating_add(ttl.as_secs()).to_be_bytes());
    let tag = binding.sign(&keys.current.clearance, &value[..PAYLOAD_LEN]);
    value[PAYLOAD_LEN..].copy_from_slice(tag.as_ref());
    URL_SAFE_NO_PAD.encode(value)
}

/// The `Set-Cookie` header's value. `secure` on TLS connections.
pub fn set_cookie(value: &str, ttl: Duration, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// True when `value` is a live clearance for `binding`. `ttl` is the site's clearance
/// lifetime: no cookie may claim to live longer, and the key before a rotation is trusted for
/// that long after it.
pub fn verify(
    keys: &ChallengeKeys,
    binding: &Binding<'_>,
    value: &[u8],
    ttl: Duration,
    now: SystemTime,
) -> bool {
    if value.len() != VALUE_TEXT_LEN {
        return false;
    }
    let mut raw = [0u8; VALUE_LEN];
    if !matches!(URL_SAFE_NO_PAD.decode_slice(value, &mut raw), Ok(VALUE_LEN)) || raw[0] != VERSION
    {
        return false;
    }
    let (payload, tag) = raw.split_at(PAYLOAD_LEN);
    let mut expires = [0u8; 8];
    expires.copy_from_slice(&payload[1..]);
    let expires = u64::from_be_bytes(expires);
    let now_s = unix(now);
    // Clocks of edges differ a little: allow 5 s on top of the lifetime.
    if expires <= now_s || expires > now_s.saturating_add(ttl.as_secs() + 5) {
        return false;
    }
    binding.verify(&keys.current.clearance, payload, tag)
        || keys
            .previous_within(ttl, now)
            .is_some_and(|key| binding.verify(&key.clearance, payload, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(1800);

    fn binding() -> Binding<'static> {
        Binding {
            site: "blog",
            ip: "2001:db8:5:6::1".parse().unwrap(),
            user_agent: b"Mozilla/5.0 (X11)",
        }
    }

    #[test]
    fn a_minted_cookie_verifies_until_it_expires() {
        let keys = ChallengeKeys::ephemeral().unwrap();
        let now = SystemTime::now();
        let value = mint(&keys, &binding(), TTL, now);
        assert_eq!(value.len(), VALUE_TEXT_LEN);
        assert!(verify(&keys, &binding(), value.as_bytes(), TTL, now));
        let moved_within_64 = Binding {
            ip: "2001:db8:5:6:aaaa::2".parse().unwrap(),
            ..binding()
        };
        assert!(verify(&keys, &moved_within_64, value.as_bytes(), TTL, now));
        let late = now + TTL;
        assert!(!verify(&keys, &binding(), value.as_bytes(), TTL, late));
    }

    #[test]
    fn forged_moved_and_overlong_cookies_are_refused() {
        let keys = ChallengeKeys::ephemeral().unwrap();
        let now = SystemTime::now();
        let value = mint(&keys, &binding(), TTL, now);
        let check = |b: &Binding<'_>, v: &[u8]| verify(&keys, b, v, TTL, now);
        for other in [
            Binding {
                site: "shop",
                ..binding()
            },
            Binding {
                ip: "2001:db8:5:7::1".parse().unwrap(),
                ..binding()
            },
            Binding {
                user_agent: b"curl/8",
                ..binding()
            },
        ] {
            assert!(!check(&other, value.as_bytes()), "{other:?}");
        }
        let foreign = mint(&ChallengeKeys::ephemeral().unwrap(), &binding(), TTL, now);
        assert!(!check(&binding(), foreign.as_bytes()));
        // A site that shortened its lifetime does not honour cookies minted for a longer one.
        let long = mint(&keys, &binding(), TTL * 4, now);
        assert!(!check(&binding(), long.as_bytes()));
        for junk in [
            &b""[..],
            b"x",
            &[b'A'; VALUE_TEXT_LEN],
            &[0xff; VALUE_TEXT_LEN],
        ] {
            assert!(!check(&binding(), junk));
        }
        let mut flipped = value.into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        assert!(!check(&binding(), &flipped));
    }

    #[test]
    fn set_cookie_has_the_attributes() {
        let header = set_cookie("v", TTL, true);
        assert_eq!(
            header,
            "palisade_clearance=v; Path=/; Max-Age=1800; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(!set_cookie("v", TTL, false).contains("Secure"));
    }

    #[test]
    fn cookies_minted_before_a_rotation_verify_for_one_lifetime() {
        let old = ChallengeKeys::ephemeral().unwrap();
        let now = SystemTime::now();
        let value = mint(&old, &binding(), TTL, now);
        let mut rotated = ChallengeKeys::ephemeral().unwrap();
        rotated.previous = Some((old.current.clone(), unix(now)));
        assert!(verify(&rotated, &binding(), value.as_bytes(), TTL, now));
        rotated.previous = Some((old.current, unix(now) - TTL.as_secs()));
        assert!(!verify(&rotated, &binding(), value.as_bytes(), TTL, now));
    }
}

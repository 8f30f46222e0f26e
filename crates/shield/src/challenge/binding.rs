//! What a challenge and a clearance are bound to: the site, the client's address prefix and
//! its User-Agent. A cookie carried to another site, another network or another browser no
//! longer verifies.

use ring::hmac;
use std::net::IpAddr;

/// The request context a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The site's name.
    pub site: &'a str,
    /// The client's address; only its network counts (see [`address_prefix`]).
    pub ip: IpAddr,
    /// The `User-Agent` as sent; empty when there was none.
    pub user_agent: &'a [u8],
}

impl Binding<'_> {
    /// Signs `payload` together with the binding.
    pub(crate) fn sign(&self, key: &hmac::Key, payload: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(key);
        self.feed(&mut context, payload);
        context.sign()
    }

    /// Constant-time check of `tag` over `payload` and the binding.
    pub(crate) fn verify(&self, key: &hmac::Key, payload: &[u8], tag: &[u8]) -> bool {
        let mut context = hmac::Context::with_key(key);
        self.feed(&mut context, payload);
        let expected = context.sign();
        // ring's `hmac::verify` wants the message in one slice; compare the tags here.
        constant_time_eq(expected.as_ref(), tag)
    }

    fn feed(&self, context: &mut hmac::Context, payload: &[u8]) {
        // Lengths first, so no two different bindings feed the same bytes.
        context.update(&(payload.len() as u32).to_be_bytes());
        context.update(payload);
        context.update(&(self.site.len() as u32).to_be_bytes());
        context.update(self.site.as_bytes());
        context.update(&address_prefix(self.ip));
        context.update(&(self.user_agent.len() as u32).to_be_bytes());
        context.update(self.user_agent);
    }
}

/// The client's network: IPv4 by /24, IPv6 by /64 (a household or an office keeps its
/// clearance when its address moves within it). IPv4-mapped IPv6 counts as IPv4.
pub fn address_prefix(ip: IpAddr) -> [u8; 17] {
    let mut out = [0u8; 17];
    match ip {
        IpAddr::V4(v4) => {
            out[0] = 4;
            out[1..4].copy_from_slice(&v4.octets()[..3]);
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => return address_prefix(IpAddr::V4(v4)),
            None => {
                out[0] = 6;
                out[1..9].copy_from_slice(&v6.octets()[..8]);
            }
        },
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the compiler from short-cutting the fold.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_group_networks() {
        let p = |s: &str| address_prefix(s.parse().unwrap());
        assert_eq!(p("192.0.2.1"), p("192.0.2.254"));
        assert_ne!(p("192.0.2.1"), p("192.0.3.1"));
        assert_eq!(p("2001:db8:1:2::1"), p("2001:db8:1:2:ffff::9"));
        assert_ne!(p("2001:db8:1:2::1"), p("2001:db8:1:3::1"));
        assert_eq!(p("::ffff:192.0.2.7"), p("192.0.2.1"));
    }

    #[test]
    fn signatures_cover_every_part_of_the_binding() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let base = Binding {
            site: "blog",
            ip: "192.0.2.1".parse().unwrap(),
            user_agent: b"Mozilla",
        };
        let tag = base.sign(&key, b"payload");
        assert!(base.verify(&key, b"payload", tag.as_ref()));
        assert!(!base.verify(&key, b"payloae", tag.as_ref()));
        assert!(!base.verify(&key, b"payload", &tag.as_ref()[..31]));
        let other_site = Binding {
            site: "shop",
            ..base
        };
        let other_net = Binding {
            ip: "192.0.3.1".parse().unwrap(),
            ..base
        };
        let other_ua = Binding {
            user_agent: b"curl",
            ..base
        };
        for other in [other_site, other_net, other_ua] {
            assert!(!other.verify(&key, b"payload", tag.as_ref()), "{other:?}");
        }
        let same_net = Binding {
            ip: "192.0.2.99".parse().unwrap(),
            ..base
        };
        assert!(same_net.verify(&key, b"payload", tag.as_ref()));
    }
}

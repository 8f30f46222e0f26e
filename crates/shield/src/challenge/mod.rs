//! The browser challenge of under-attack mode: a proof of work a browser does once, then a
//! signed cookie that lets it through for a while.
//!
//! ```text
//! page        the interstitial: HTML + a Web Worker doing the work     page
//! token       the challenge the page carries: signed, expiring          token
//! pow         what counts as an answer                                  pow
//! replay      each answer accepted once, in fixed memory                replay
//! clearance   the cookie the answer earns                               clearance
//! binding     what both are bound to: site, address prefix, browser    binding
//! keys        the signing keys, in the data directory, rotatable       keys
//! ```
//! Nothing here keeps state per visitor: the page carries its own signed challenge, the cookie
//! its own signed expiry. The one shared piece is the replay filter, of fixed size. The HTTP
//! side (when to challenge, the verify endpoint) is the edge's `phases::challenge`.

pub mod binding;
pub mod clearance;
pub mod keys;
pub mod page;
pub mod pow;
pub mod replay;
pub mod solvers;
pub mod token;

pub use binding::Binding;
pub use keys::{ChallengeKeys, KeyError};
pub use replay::ReplayFilter;
pub use token::{NonceSource, Puzzle, Rejection, Solved};

use crate::RequestFacts;
use crate::guard::BuildError;
use crate::rules::Expr;
use model::ChallengeSettings;

/// Parts of every puzzle: eight small proofs rather than one big one, so the wait varies
/// little from visitor to visitor.
pub const PARTS: u8 = 8;

/// Where challenges are answered. The prefix is Palisade's own on every site.
pub const RESERVED_PREFIX: &str = "/.well-known/palisade/";
/// Where the page posts its answer.
pub const VERIFY_PATH: &str = "/.well-known/palisade/challenge";

/// A site's challenge settings, compiled with its snapshot.
#[derive(Debug)]
pub struct SiteChallenge {
    /// The site's `[site.challenge]` table as configured.
    pub settings: ChallengeSettings,
    exempt: Expr,
}

impl SiteChallenge {
    /// Compiles the site's `exempt` expression; `key` names the site's table in errors.
    pub fn build(key: &str, settings: &ChallengeSettings) -> Result<SiteChallenge, BuildError> {
        let exempt = Expr::parse(&settings.exempt).map_err(|error| BuildError {
            key: format!("{key}.challenge.exempt"),
            expr_at: settings.exempt_at,
            error,
        })?;
        Ok(SiteChallenge {
            settings: settings.clone(),
            exempt,
        })
    }

    /// True for requests under-attack mode lets through unchallenged: `/.well-known/`
    /// always, and what the site's `exempt` expression matches.
    pub fn exempt(&self, facts: &RequestFacts<'_>) -> bool {
        facts.path.starts_with("/.well-known/") || self.exempt.eval(facts)
    }

    /// The puzzle to hand out with `extra` bits of evidence of solvers ([`solvers`]) on top of
    /// the difficulty, up to `max_difficulty`.
    pub fn puzzle(&self, extra: u8) -> Puzzle {
        let base = self.settings.difficulty;
        Puzzle {
            bits: base.saturating_add(extra).min(self.settings.max_difficulty),
            parts: PARTS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(path: &str) -> RequestFacts<'_> {
        static EMPTY: std::sync::LazyLock<http::HeaderMap> =
            std::sync::LazyLock::new(http::HeaderMap::new);
        RequestFacts {
            ip: "192.0.2.1".parse().unwrap(),
            host: "blog.test",
            method: "GET",
            path,
            query: "",
            headers: &EMPTY,
            tls: false,
            version: http::Version::HTTP_11,
            connection: crate::ConnectionTraits::none(),
        }
    }

    #[test]
    fn feeds_and_well_known_paths_are_exempt_by_default() {
        let site = SiteChallenge::build("site[0]", &ChallengeSettings::default()).unwrap();
        for path in [
            "/feed",
            "/feed/atom",
            "/blog/index.xml",
            "/news.rss",
            "/robots.txt",
            "/.well-known/acme-challenge/x",
            "/.well-known/palisade/challenge",
        ] {
            assert!(site.exempt(&facts(path)), "{path}");
        }
        for path in ["/", "/feeds", "/index.html", "/wp-login.php"] {
            assert!(!site.exempt(&facts(path)), "{path}");
        }
        // A site's own expression replaces the default, but not `/.well-known/`.
        let api = ChallengeSettings {
            exempt: r#"http.request.uri.path starts_with "/api/""#.into(),
            ..ChallengeSettings::default()
        };
        let site = SiteChallenge::build("site[0]", &api).unwrap();
        assert!(site.exempt(&facts("/api/v1")));
        assert!(!site.exempt(&facts("/feed")));
        assert!(site.exempt(&facts("/.well-known/security.txt")));
    }

    #[test]
    fn a_bad_exempt_expression_names_its_key_and_position() {
        let bad = ChallengeSettings {
            exempt: "http.request.uri.path starts_with".into(),
            exempt_at: Some((12, 10)),
            ..ChallengeSettings::default()
        };
        let err = SiteChallenge::build("site[1]", &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("site[1].challenge.exempt"), "{err}");
        assert!(err.contains("line 12"), "{err}");
    }

    #[test]
    fn difficulty_rises_by_the_extra_bits_up_to_the_cap() {
        let site = SiteChallenge::build(
            "s",
            &ChallengeSettings {
                difficulty: 12,
                max_difficulty: 15,
                ..ChallengeSettings::default()
            },
        )
        .unwrap();
        let bits = |extra: u8| site.puzzle(extra).bits;
        assert_eq!(bits(0), 12);
        assert_eq!(bits(1), 13);
        assert_eq!(bits(3), 15);
        assert_eq!(bits(200), 15);
        assert_eq!(site.puzzle(0).parts, PARTS);
    }
}

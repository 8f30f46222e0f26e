//! A site's `state` key and its `[site.challenge]` table: the browser challenge of
//! under-attack mode.
//!
//! The `exempt` expression stays text here, like a rule's: the `shield` crate compiles it with
//! the site's snapshot and reports errors at its line and column in the file.

use crate::duration::as_text_opt;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// What a site is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteState {
    /// Served as configured; the shield challenges what its rules, limits and automatic
    /// attack detection say.
    #[default]
    Active,
    /// Every visitor without clearance is challenged (the operator's switch).
    UnderAttack,
    /// A plain proxy: no shield, no challenge, no cache (the operator's switch while
    /// debugging the site, or when its owner asks for the protection to step aside).
    Paused,
    /// Service terminated by the operator: the site's hosts get a fixed notice, nothing from
    /// its cache, and its origin is never contacted. Set only through the control plane,
    /// which records who, when, why and on what evidence ([`Suspension`]).
    Suspended,
}

impl SiteState {
    /// The state as the configuration and the API write it: `active`, `under_attack`,
    /// `paused` or `suspended`.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteState::Active => "active",
            SiteState::UnderAttack => "under_attack",
            SiteState::Paused => "paused",
            SiteState::Suspended => "suspended",
        }
    }
}

/// What the edge needs to know of a suspension: which notice to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suspension {
    /// A legal demand (a court order, a statute): HTTP 451 (RFC 7725); otherwise 403.
    pub legal: bool,
}

/// Requests under-attack mode lets through unchallenged unless the site says otherwise:
/// feeds (readers fetch them without a browser) and `robots.txt`. `/.well-known/` is always
/// exempt, whatever this says (ACME, security.txt, Palisade's own endpoints).
pub const DEFAULT_EXEMPT: &str = r#"http.request.uri.path ends_with ".xml" or http.request.uri.path ends_with ".rss" or http.request.uri.path ends_with ".atom" or http.request.uri.path eq "/feed" or http.request.uri.path starts_with "/feed/" or http.request.uri.path eq "/robots.txt""#;

/// Fewest and most leading zero bits per part a challenge may ask for.
pub const MIN_DIFFICULTY: u8 = 1;
/// The most leading zero bits per part a challenge may ask for; the fewest is 1.
pub const MAX_DIFFICULTY: u8 = 28;

/// The longest a challenge may stay answerable: the edge remembers answered challenges this
/// long, in fixed memory, to refuse replays.
pub const MAX_CHALLENGE_TTL: Duration = Duration::from_secs(30 * 60);
pub const MAX_CLEARANCE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A site's `[site.challenge]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengeSettings {
    /// Leading zero bits each of the proof of work's parts must have, when the attack is mild.
    pub difficulty: u8,
    /// The most the difficulty rises to as the attack grows (one bit per doubling of the
    /// request rate beyond what tripped the detector).
    pub max_difficulty: u8,
    /// How long a clearance cookie lets a visitor through.
    pub clearance_ttl: Duration,
    /// How long a challenge page's answer is accepted after the page was served.
    pub challenge_ttl: Duration,
    /// Requests under-attack mode does not challenge (a rule expression).
    pub exempt: String,
    /// During an attack, the most requests one clearance may carry past a challenge in
    /// [`CLEARANCE_WINDOW`]; a clearance that carries more is a solver's, and is revoked.
    pub max_requests_per_clearance: u32,
    /// Where `exempt`'s text starts in the file (line, column), so a compile error points into it.
    pub exempt_at: Option<(usize, usize)>,
}

impl Default for ChallengeSettings {
    fn default() -> Self {
        ChallengeSettings {
            difficulty: DEFAULT_DIFFICULTY,
            max_difficulty: DEFAULT_DIFFICULTY,
            clearance_ttl: Duration::from_secs(30 * 60),
            challenge_ttl: Duration::from_secs(5 * 60),
            exempt: DEFAULT_EXEMPT.to_string(),
            exempt_at: None,
            max_requests_per_clearance: 300,
        }
    }
}

/// The window `max_requests_per_clearance` counts over.
pub const CLEARANCE_WINDOW: Duration = Duration::from_secs(10);

/// The default difficulty: 8 parts of 13 bits, about 65,000 hashes. Headless Chromium on a
/// loaded 2-core machine solves it in 0.6 s (median) to 0.9 s (p90) with WebCrypto, in 0.2 s
/// with the page's own SHA-256 (plain HTTP); see docs/challenge.md.
pub const DEFAULT_DIFFICULTY: u8 = 13;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileChallenge {
    difficulty: Option<u8>,
    max_difficulty: Option<u8>,
    #[serde(default, with = "as_text_opt")]
    clearance_ttl: Option<Duration>,
    #[serde(default, with = "as_text_opt")]
    challenge_ttl: Option<Duration>,
    exempt: Option<Spanned<String>>,
    max_requests_per_clearance: Option<u32>,
}

type Invalid = (Option<std::ops::Range<usize>>, String, String);

impl FileChallenge {
    pub(crate) fn validate(
        self,
        key: &str,
        source: &crate::locate::Source<'_>,
    ) -> Result<ChallengeSettings, Invalid> {
        let d = ChallengeSettings::default();
        let field = |name: &str| format!("{key}.{name}");
        let difficulty = self.difficulty.unwrap_or(d.difficulty);
        let bits = MIN_DIFFICULTY..=MAX_DIFFICULTY;
        if !bits.contains(&difficulty) {
            return Err((
                None,
                field("difficulty"),
                format!("must be from {MIN_DIFFICULTY} to {MAX_DIFFICULTY} (leading zero bits)"),
            ));
        }
        // By default the difficulty never rises: a harder puzzle costs every real visitor and
        // nothing to a flood that never solves (docs/challenge.md).
        let max_difficulty = self.max_difficulty.unwrap_or(difficulty);
        if !bits.contains(&max_difficulty) || max_difficulty < difficulty {
            return Err((
                None,
                field("max_difficulty"),
                format!("must be from difficulty ({difficulty}) to {MAX_DIFFICULTY}"),
            ));
        }
        let clearance_ttl = self.clearance_ttl.unwrap_or(d.clearance_ttl);
        let challenge_ttl = self.challenge_ttl.unwrap_or(d.challenge_ttl);
        if clearance_ttl < Duration::from_secs(60) || clearance_ttl > MAX_CLEARANCE_TTL {
            return Err((
                None,
                field("clearance_ttl"),
                "must be from 1m to 30d".into(),
            ));
        }
        if challenge_ttl < Duration::from_secs(10) || challenge_ttl > MAX_CHALLENGE_TTL {
            return Err((
                None,
                field("challenge_ttl"),
                "must be from 10s to 30m".into(),
            ));
        }
        let (exempt, exempt_at) = match self.exempt {
            Some(text) => (
                text.get_ref().clone(),
                crate::shield::text_start(&text, source),
            ),
            None => (d.exempt, None),
        };
        let max_requests_per_clearance = self
            .max_requests_per_clearance
            .unwrap_or(d.max_requests_per_clearance);
        if max_requests_per_clearance == 0 {
            return Err((
                None,
                field("max_requests_per_clearance"),
                "must be at least 1".into(),
            ));
        }
        Ok(ChallengeSettings {
            difficulty,
            max_difficulty,
            clearance_ttl,
            challenge_ttl,
            exempt,
            exempt_at,
            max_requests_per_clearance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn site(extra: &str) -> Result<Config, crate::ConfigError> {
        Config::from_toml_str(
            "p.toml",
            &format!(
                "[[site]]\nname = \"blog\"\nhosts = [\"blog.test\"]\norigins = [\"http://127.0.0.1:1\"]\n{extra}"
            ),
        )
    }

    #[test]
    fn defaults_and_explicit_values() {
        let config = site("").unwrap();
        assert_eq!(config.sites[0].state, SiteState::Active);
        assert_eq!(config.sites[0].challenge, ChallengeSettings::default());
        let config = site(
            "state = \"under_attack\"\n[site.challenge]\ndifficulty = 10\nclearance_ttl = \"2h\"\n\
             exempt = '''\nhttp.request.uri.path starts_with \"/api/\"'''\n",
        )
        .unwrap();
        let s = &config.sites[0];
        assert_eq!(s.state, SiteState::UnderAttack);
        assert_eq!(s.challenge.difficulty, 10);
        assert_eq!(s.challenge.max_difficulty, 10);
        assert_eq!(s.challenge.clearance_ttl, Duration::from_secs(7200));
        assert_eq!(
            s.challenge.exempt,
            "http.request.uri.path starts_with \"/api/\""
        );
        // The expression starts on the line after the opening quotes.
        assert_eq!(s.challenge.exempt_at, Some((10, 1)));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("state = \"paused_forever\"", "state"),
            (
                "[site.challenge]\ndifficulty = 0",
                "site[0].challenge.difficulty",
            ),
            (
                "[site.challenge]\ndifficulty = 29",
                "site[0].challenge.difficulty",
            ),
            (
                "[site.challenge]\ndifficulty = 12\nmax_difficulty = 11",
                "max_difficulty",
            ),
            ("[site.challenge]\nchallenge_ttl = \"2h\"", "challenge_ttl"),
            ("[site.challenge]\nclearance_ttl = \"1s\"", "clearance_ttl"),
            ("[site.challenge]\nbits = 3", "bits"),
        ] {
            let err = site(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }
}

//! Attack signatures: when detection trips for a site, find what distinguishes the surge from
//! the site's usual traffic and answer only the requests that carry it.
//!
//! - **Sampling** ([`SiteSignatures::sample`]): the request counter attack detection keeps
//!   anyway picks about one request in `every`; a picked request's traits ([`traits`]) are
//!   hashed into the *attack window* (the last few seconds, 1,024 samples at most) and, while
//!   the site is not under attack, one in a further stride into the *baseline window* (about
//!   ten minutes of usual traffic, 2,048 samples at most; a new site's fills to half in its
//!   first minute). Both are heavy-hitter estimates of
//!   bounded memory: counting values in a uniform sample finds every value above a few percent
//!   of the traffic.
//! - **Derivation** ([`derive`]): on the tick detection trips, and on every tick after while
//!   part of the surge is still unmatched, the greedy search proposes up to three rules.
//! - **Mitigations** ([`Mitigation`]): each proposed rule becomes a rule of the rules language
//!   (so an operator can read it, and pin it as a permanent `[[site.rule]]`), written from the
//!   first sampled request that matches it. It challenges, or blocks when it is certain (a
//!   tool that claims a browser's name without a browser's headers). Requests that match no
//!   mitigation go on as usual.
//! - **Fallback**: when the rules together match less than `min_coverage` of the surge,
//!   challenging everyone is the fallback, if the site allows it (`attack_fallback`).
//! - Everything ends with the attack (detection's hold); an operator can dismiss a mitigation
//!   (not proposed again during this attack) or pin it.

pub mod derive;
pub mod shape;
pub mod traits;

mod site;

pub use derive::Thresholds;
pub use site::{
    Mitigation, MitigationAction, SignatureChange, SiteSignatures, TickInput, TickOutcome,
};
pub use traits::{Trait, Traits};

//! Finding what distinguishes a surge: from the samples of the attack window and of the
//! baseline window, the few conjunctions of traits that match most of the surge and little of
//! the baseline.
//!
//! The attack window mixes the surge with the site's usual traffic: with the current rate
//! `r` and the baseline rate `b`, a share `s = 1 - b/r` of it is surge. For a condition set
//! `P` matching a share `c` of the attack window and `p` of the baseline window, the share of
//! the surge it matches is `(c - (1 - s)·p) / s`, and `p` is the share of the usual traffic
//! it would touch (its false positives).
//!
//! The search is greedy, one rule at a time: among the heavy hitters of each trait in the
//! samples the rule still matches (values held by at least a fifth of them), take the one
//! that keeps the most surge while shedding the most baseline, until the baseline share is
//! under `max_baseline_share` or four conditions are in. Then the next rule looks at the
//! samples the first left, up to three rules, until `min_coverage` of the surge is matched.
//! Ties go to the trait declared first ([`Trait`]): a client's software before its request.

use super::traits::{ABSENT, Sample, TRAITS, Trait};
use std::collections::HashMap;

/// The thresholds a signature must meet; see docs/shield.md.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// The share of the surge the rules together must match for the attack to count as
    /// covered; below it the site falls back to challenging everyone (when allowed).
    pub min_coverage: f64,
    /// The most of the baseline traffic one rule may match.
    pub max_baseline_share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_coverage: 0.8,
            max_baseline_share: 0.01,
        }
    }
}

/// The most conditions in one rule.
pub const MAX_CONDITIONS: usize = 4;
/// The most rules one derivation finds.
pub const MAX_RULES: usize = 3;
/// A value is a candidate when at least this share of the samples still matched holds it.
const HEAVY_SHARE: f64 = 0.2;
/// Fewer attack samples than this say nothing.
pub const MIN_ATTACK_SAMPLES: usize = 32;
/// With fewer baseline samples than this, the usual traffic is unknown: a rule must then name
/// the client's software (`Trait::is_client`), and is never certain enough to block.
pub const MIN_BASELINE_SAMPLES: usize = 64;
/// A rule must match at least this share of the surge to be worth its cost.
const MIN_RULE_COVERAGE: f64 = 0.1;
/// The share of a rule's attack samples that must be tools claiming to be a browser for the
/// rule to block rather than challenge.
const CERTAIN_SHARE: f64 = 0.99;

/// One condition: trait `t` has the value hashed to `hash`.
pub type Condition = (Trait, u64);

/// A rule the search found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The conditions, all of which a request must meet; in the order chosen.
    pub conditions: Vec<Condition>,
    /// The estimated share of the surge it matches.
    pub surge_coverage: f64,
    /// The share of the baseline window it matches.
    pub baseline_share: f64,
    /// Every attack sample it matched claimed a browser's name without a browser's headers,
    /// and the baseline was known: blocking it cannot touch a browser.
    pub certain: bool,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Derivation {
    /// The rules, best first.
    pub rules: Vec<Found>,
    /// The share of the surge they match together.
    pub coverage: f64,
}

/// Whether `sample` meets every condition.
pub fn matches(conditions: &[Condition], sample: &Sample) -> bool {
    conditions
        .iter()
        .all(|&(t, hash)| sample.hashes[t.index()] == hash)
}

/// Searches the attack window `attack` against the `baseline` window, when a share
/// `surge_share` of the attack window's traffic is surge. Rules whose conditions equal one in
/// `refused` (dismissed by the operator) are not proposed again; the samples they match are
/// left uncovered.
pub fn derive(
    attack: &[Sample],
    baseline: &[Sample],
    surge_share: f64,
    thresholds: &Thresholds,
    refused: &[Vec<Condition>],
) -> Derivation {
    let mut found = Derivation::default();
    if attack.len() < MIN_ATTACK_SAMPLES || surge_share.is_nan() || surge_share <= 0.0 {
        return found;
    }
    let surge_share = surge_share.min(1.0);
    let known_baseline = baseline.len() >= MIN_BASELINE_SAMPLES;
    let total = attack.len() as f64;
    let mut left: Vec<&Sample> = attack.iter().collect();
    while found.rules.len() < MAX_RULES && left.len() >= MIN_ATTACK_SAMPLES / 2 {
        let Some(rule) = one_rule(&left, baseline, known_baseline) else {
            break;
        };
        let matched_attack = left.iter().filter(|s| matches(&rule.conditions, s)).count();
        left.retain(|s| !matches(&rule.conditions, s));
        if refused.contains(&rule.conditions) {
            continue;
        }
        let attack_share = matched_attack as f64 / total;
        let baseline_share = share(baseline, &rule.conditions);
        let surge_coverage =
            ((attack_share - (1.0 - surge_share) * baseline_share) / surge_share).clamp(0.0, 1.0);
        if baseline_share > thresholds.max_baseline_share || surge_coverage < MIN_RULE_COVERAGE {
            break;
        }
        found.coverage += surge_coverage;
        found.rules.push(Found {
            surge_coverage,
            baseline_share,
            certain: known_baseline && rule.false_browser_share >= CERTAIN_SHARE,
            conditions: rule.conditions,
        });
        if found.coverage >= thresholds.min_coverage {
            break;
        }
    }
    found.coverage = found.coverage.min(1.0);
    found
}

struct Candidate {
    conditions: Vec<Condition>,
    false_browser_share: f64,
}

/// The greedy search for one rule over the attack samples not yet covered.
fn one_rule(left: &[&Sample], baseline: &[Sample], known_baseline: bool) -> Option<Candidate> {
    let mut conditions: Vec<Condition> = Vec::new();
    let mut attack: Vec<&Sample> = left.to_vec();
    let mut usual: Vec<&Sample> = baseline.iter().collect();
    let whole = left.len() as f64;
    let baseline_len = baseline.len().max(1) as f64;
    while conditions.len() < MAX_CONDITIONS {
        let mut best: Option<(f64, Condition)> = None;
        for t in Trait::ALL {
            if conditions.iter().any(|&(c, _)| c == t) {
                continue;
            }
            // Without a baseline to compare with, the first condition must name the client.
            if conditions.is_empty() && !known_baseline && !t.is_client() {
                continue;
            }
            for (hash, count) in heavy_hitters(&attack, t) {
                let kept = count as f64 / whole;
                let touched = usual.iter().filter(|s| s.hashes[t.index()] == hash).count() as f64
                    / baseline_len;
                let score = kept * (1.0 - touched);
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, (t, hash)));
                }
            }
        }
        let Some((score, condition)) = best else {
            break;
        };
        let (t, hash) = condition;
        let before = usual.len();
        let narrower: Vec<&Sample> = usual
            .iter()
            .copied()
            .filter(|s| s.hashes[t.index()] == hash)
            .collect();
        // A condition that sheds no baseline traffic narrows nothing (after the first).
        if !conditions.is_empty() && narrower.len() == before {
            break;
        }
        if score <= 0.0 && conditions.is_empty() {
            return None;
        }
        conditions.push(condition);
        attack.retain(|s| s.hashes[t.index()] == hash);
        usual = narrower;
        if usual.is_empty() || (usual.len() as f64 / baseline_len) < 0.001 {
            break;
        }
    }
    if conditions.is_empty() {
        return None;
    }
    // Order the conditions as declared (cheap and telling traits first), so that the same
    // signature found twice reads the same.
    conditions.sort_by_key(|&(t, _)| t);
    let false_browsers = attack.iter().filter(|s| s.false_browser).count();
    Some(Candidate {
        false_browser_share: false_browsers as f64 / attack.len().max(1) as f64,
        conditions,
    })
}

/// The values of trait `t` held by at least [`HEAVY_SHARE`] of `samples`, with their counts.
fn heavy_hitters(samples: &[&Sample], t: Trait) -> Vec<(u64, usize)> {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for sample in samples {
        let hash = sample.hashes[t.index()];
        if hash != ABSENT {
            *counts.entry(hash).or_default() += 1;
        }
    }
    let floor = (samples.len() as f64 * HEAVY_SHARE).ceil() as usize;
    let mut heavy: Vec<(u64, usize)> = counts
        .into_iter()
        .filter(|&(_, count)| count >= floor.max(2))
        .collect();
    heavy.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    heavy
}

/// The share of `samples` that meet every condition.
pub fn share(samples: &[Sample], conditions: &[Condition]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.iter().filter(|s| matches(conditions, s)).count() as f64 / samples.len() as f64
}

// Keeps `TRAITS` in use here: a Sample has one hash per trait.
const _: () = assert!(Trait::ALL.len() == TRAITS);

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample with the given (trait, value) pairs; other traits get a per-sample value
    /// (`spread`) or a common one.
    fn sample(values: &[(Trait, u64)], spread: u64) -> Sample {
        let mut hashes = [ABSENT; TRAITS];
        for t in Trait::ALL {
            hashes[t.index()] = match t {
                Trait::Ja4 | Trait::H2 => ABSENT,
                Trait::Path | Trait::Prefix | Trait::QueryShape => 1000 + spread % 50,
                _ => 7,
            };
        }
        for &(t, v) in values {
            hashes[t.index()] = v;
        }
        Sample {
            hashes,
            false_browser: false,
        }
    }

    fn browsers(n: u64) -> Vec<Sample> {
        (0..n)
            .map(|i| sample(&[(Trait::UserAgent, 1), (Trait::HeaderNames, 11)], i))
            .collect()
    }

    fn tool(n: u64) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                sample(
                    &[
                        (Trait::UserAgent, 2),
                        (Trait::HeaderNames, 22),
                        (Trait::Path, 5),
                    ],
                    i,
                )
            })
            .collect()
    }

    #[test]
    fn a_tool_flood_is_singled_out_by_its_client_traits() {
        let baseline = browsers(500);
        let mut attack = tool(900);
        attack.extend(browsers(100));
        let found = derive(&attack, &baseline, 0.9, &Thresholds::default(), &[]);
        assert_eq!(found.rules.len(), 1, "{found:?}");
        let rule = &found.rules[0];
        assert_eq!(rule.conditions, vec![(Trait::UserAgent, 2)]);
        assert_eq!(rule.baseline_share, 0.0);
        assert!(rule.surge_coverage > 0.99, "{rule:?}");
        assert!(!rule.certain);
        assert!(found.coverage >= 0.8);
    }

    #[test]
    fn a_flood_with_two_tools_gets_two_rules() {
        let baseline = browsers(500);
        let mut attack = tool(450);
        attack.extend(
            (0..450).map(|i| sample(&[(Trait::UserAgent, 3), (Trait::HeaderNames, 33)], i)),
        );
        attack.extend(browsers(100));
        let found = derive(&attack, &baseline, 0.9, &Thresholds::default(), &[]);
        assert_eq!(found.rules.len(), 2, "{found:?}");
        assert!(found.coverage > 0.95);
    }

    #[test]
    fn a_shared_value_needs_a_second_condition_to_spare_the_baseline() {
        // Browsers visit the attacked path too; the attack's query shape is its own.
        let mut baseline = browsers(400);
        baseline.extend((0..100).map(|i| sample(&[(Trait::UserAgent, 1), (Trait::Path, 5)], i)));
        let attack: Vec<Sample> = (0..900)
            .map(|i| {
                sample(
                    &[
                        (Trait::UserAgent, 1),
                        (Trait::HeaderNames, 11),
                        (Trait::Path, 5),
                        (Trait::QueryShape, 77),
                    ],
                    i,
                )
            })
            .chain(browsers(100))
            .collect();
        let found = derive(&attack, &baseline, 0.9, &Thresholds::default(), &[]);
        assert_eq!(found.rules.len(), 1, "{found:?}");
        assert_eq!(found.rules[0].conditions, vec![(Trait::QueryShape, 77)]);
    }

    #[test]
    fn a_flood_like_the_usual_traffic_has_no_signature() {
        let baseline = browsers(500);
        let attack = browsers(1000);
        let found = derive(&attack, &baseline, 0.9, &Thresholds::default(), &[]);
        assert!(found.rules.is_empty(), "{found:?}");
        assert_eq!(found.coverage, 0.0);
    }

    #[test]
    fn without_a_baseline_a_rule_must_name_the_client_and_never_blocks() {
        let mut attack = tool(900);
        for s in &mut attack {
            s.false_browser = true;
        }
        let found = derive(&attack, &[], 1.0, &Thresholds::default(), &[]);
        assert_eq!(found.rules.len(), 1);
        assert!(found.rules[0].conditions.iter().any(|(t, _)| t.is_client()));
        assert!(!found.rules[0].certain);
        // With a baseline, the same flood of false browsers is certain.
        let found = derive(&attack, &browsers(500), 1.0, &Thresholds::default(), &[]);
        assert!(found.rules[0].certain, "{found:?}");
    }

    #[test]
    fn a_refused_rule_is_not_proposed_again() {
        let baseline = browsers(500);
        let attack = tool(900);
        let first = derive(&attack, &baseline, 1.0, &Thresholds::default(), &[]);
        let refused = vec![first.rules[0].conditions.clone()];
        let again = derive(&attack, &baseline, 1.0, &Thresholds::default(), &refused);
        assert!(
            again.rules.iter().all(|r| r.conditions != refused[0]),
            "{again:?}"
        );
    }

    #[test]
    fn too_few_samples_say_nothing() {
        let found = derive(&tool(10), &browsers(500), 1.0, &Thresholds::default(), &[]);
        assert!(found.rules.is_empty());
    }
}

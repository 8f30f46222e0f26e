//! Prometheus metrics: plain atomics on the hot path, text exposition on scrape.
//!
//! Per-site counters live in a [`SiteMetrics`] that the snapshot hands to each request, so
//! counting never takes a lock or looks up a label. Series survive reloads: a site keeps its
//! counters as long as its name does.

use shield::challenge::Rejection;
use shield::events::EventAction;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the request-duration histogram buckets.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The label used for requests that matched no site (421s, framing errors).
pub const UNROUTED: &str = "_unrouted";

/// Counters for one site.
#[derive(Debug, Default)]
pub struct SiteMetrics {
    /// Responses by status class: index 0 is 1xx ... index 4 is 5xx.
    responses: [AtomicU64; 5],
    /// Non-cumulative bucket counts; the last slot is +Inf.
    duration_buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_micros_sum: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Cache outcomes, indexed by [`CacheOutcome`].
    cache: [AtomicU64; CacheOutcome::ALL.len()],
    /// Shield actions, indexed like [`SHIELD_ACTIONS`].
    shield: [AtomicU64; SHIELD_ACTIONS.len()],
    /// 1 while the site is in under-attack mode.
    under_attack: AtomicU64,
    /// 1 while attack detection says the site is under attack.
    attack_detected: AtomicU64,
    /// The share of the surge the mitigations match, in millionths (0 when not under attack).
    attack_coverage_millionths: AtomicU64,
    /// Mitigations in force, and started since the process began.
    mitigations_active: AtomicU64,
    mitigations_started: AtomicU64,
    /// 1 while the site's origin is under pressure (as of the last second's tick).
    origin_pressure: AtomicU64,
    /// Challenge pages served, answers accepted, answers refused by [`Rejection`] index.
    challenges_issued: AtomicU64,
    challenges_solved: AtomicU64,
    challenges_failed: [AtomicU64; CHALLENGE_FAILURES.len()],
    /// Non-cumulative counts of solve times; the last slot is +Inf.
    solve_buckets: [AtomicU64; SOLVE_BUCKETS.len() + 1],
    solve_millis_sum: AtomicU64,
    /// Requests waiting now for an origin slot (`origin_gate`).
    origin_queued: AtomicU64,
    /// Non-cumulative counts of the time requests waited for an origin slot; the last slot is
    /// +Inf.
    queue_wait_buckets: [AtomicU64; QUEUE_WAIT_BUCKETS.len() + 1],
    queue_wait_micros_sum: AtomicU64,
    /// What became of requests that met the origin cap, by [`QueueOutcome`].
    queue_outcomes: [AtomicU64; QueueOutcome::ALL.len()],
    /// Requests that waited their turn while the edge was short of CPU, those of them that
    /// waited all of `overload_wait`, and the time they waited.
    deprioritised: AtomicU64,
    deprioritised_waited_out: AtomicU64,
    deprioritised_wait_micros_sum: AtomicU64,
}

/// Upper bounds (seconds) of the origin queue's wait histogram: `origin_queue_timeout` is 1 s
/// by default and at most 60 s.
const QUEUE_WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// What became of a request that met its site's origin cap and the queue (`origin_gate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    /// It waited and got a slot.
    Admitted,
    /// It waited `origin_queue_timeout` and was shed.
    TimedOut,
    /// A more deserving request took its place in the full queue; shed.
    Displaced,
    /// The queue was full of requests at least as deserving; shed without waiting.
    Refused,
    /// Its client went away while it waited.
    Abandoned,
}

impl QueueOutcome {
    const ALL: [QueueOutcome; 5] = [
        QueueOutcome::Admitted,
        QueueOutcome::TimedOut,
        QueueOutcome::Displaced,
        QueueOutcome::Refused,
        QueueOutcome::Abandoned,
    ];

    /// The outcome as the metrics page labels it.
    pub fn label(self) -> &'static str {
        match self {
            QueueOutcome::Admitted => "admitted",
            QueueOutcome::TimedOut => "timeout",
            QueueOutcome::Displaced => "displaced",
            QueueOutcome::Refused => "refused",
            QueueOutcome::Abandoned => "abandoned",
        }
    }
}

/// Upper bounds (seconds) of the challenge solve-time histogram.
const SOLVE_BUCKETS: [f64; 9] = [0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 120.0];

/// Why answers are refused, in the order counted.
const CHALLENGE_FAILURES: [Rejection; 4] = [
    Rejection::Invalid,
    Rejection::Expired,
    Rejection::WrongAnswer,
    Rejection::Replayed,
];

/// The shield actions counted per site.
const SHIELD_ACTIONS: [EventAction; 5] = [
    EventAction::Block,
    EventAction::Challenge,
    EventAction::RateLimit,
    EventAction::Log,
    EventAction::Shed,
];

pub use cache::CacheOutcome;

/// The cache's state as the metrics page shows it.
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheReport {
    /// Bytes held by the memory tier, as charged against `cache_memory`.
    pub memory_bytes: u64,
    /// Entries in the memory tier: responses, Vary specs, uncacheable marks.
    pub memory_entries: u64,
    /// Disk space of the disk tier's files, in bytes.
    pub disk_bytes: u64,
    /// Objects in the disk tier.
    pub disk_objects: u64,
    /// Origin fetches other requests may be waiting on now.
    pub fills: u64,
    /// Purges the background pass has not yet applied to every stored object.
    pub pending_purges: u64,
}

impl SiteMetrics {
    /// Counts one shield action on a request.
    pub fn shield(&self, action: EventAction) {
        if let Some(i) = SHIELD_ACTIONS.iter().position(|a| *a == action) {
            self.shield[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets the under-attack gauge.
    pub fn set_under_attack(&self, on: bool) {
        self.under_attack.store(u64::from(on), Ordering::Relaxed);
    }

    /// Sets the attack gauges: detection's verdict and the share of the surge the mitigations
    /// match (`None` when not under attack).
    pub fn set_attack(&self, detected: bool, coverage: Option<f64>) {
        self.attack_detected
            .store(u64::from(detected), Ordering::Relaxed);
        let millionths = (coverage.unwrap_or(0.0).clamp(0.0, 1.0) * 1e6) as u64;
        self.attack_coverage_millionths
            .store(millionths, Ordering::Relaxed);
    }

    /// A mitigation came into force.
    pub fn mitigation_started(&self) {
        self.mitigations_started.fetch_add(1, Ordering::Relaxed);
        self.mitigations_active.fetch_add(1, Ordering::Relaxed);
    }

    /// A request of the site waited `waited` for its turn while the edge was short of CPU;
    /// `let_go`: the line let it go (not `overload_wait` running out).
    pub fn deprioritised(&self, waited: Duration, let_go: bool) {
        self.deprioritised.fetch_add(1, Ordering::Relaxed);
        if !let_go {
            self.deprioritised_waited_out
                .fetch_add(1, Ordering::Relaxed);
        }
        self.deprioritised_wait_micros_sum
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    /// A mitigation ended.
    pub fn mitigation_ended(&self) {
        let _ = self
            .mitigations_active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Sets the origin-pressure gauge; returns what it was.
    pub fn set_origin_pressure(&self, on: bool) -> bool {
        self.origin_pressure.swap(u64::from(on), Ordering::Relaxed) == 1
    }

    /// A challenge page was served.
    pub fn challenge_issued(&self) {
        self.challenges_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// An answer was accepted after `solve_time` (from serving the page).
    pub fn challenge_solved(&self, solve_time: Duration) {
        self.challenges_solved.fetch_add(1, Ordering::Relaxed);
        let secs = solve_time.as_secs_f64();
        let bucket = SOLVE_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(SOLVE_BUCKETS.len());
        self.solve_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.solve_millis_sum
            .fetch_add(solve_time.as_millis() as u64, Ordering::Relaxed);
    }

    /// An answer was refused.
    pub fn challenge_failed(&self, why: Rejection) {
        if let Some(i) = CHALLENGE_FAILURES.iter().position(|r| *r == why) {
            self.challenges_failed[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request began to wait for an origin slot.
    pub fn origin_queue_joined(&self) {
        self.origin_queued.fetch_add(1, Ordering::Relaxed);
    }

    /// A request stopped waiting for an origin slot after `waited`.
    pub fn origin_queue_left(&self, outcome: QueueOutcome, waited: Duration) {
        let _ = self
            .origin_queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.queue_outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        let secs = waited.as_secs_f64();
        let bucket = QUEUE_WAIT_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(QUEUE_WAIT_BUCKETS.len());
        self.queue_wait_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.queue_wait_micros_sum
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    /// Requests waiting now for an origin slot.
    #[cfg(test)]
    pub fn origin_queued(&self) -> u64 {
        self.origin_queued.load(Ordering::Relaxed)
    }

    /// A request met the origin cap and the full queue, and did not wait.
    pub fn origin_queue_refused(&self) {
        self.queue_outcomes[QueueOutcome::Refused as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one cache outcome.
    pub fn cache(&self, outcome: CacheOutcome) {
        self.cache[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Records one finished request.
    pub fn record(&self, status: u16, duration: Duration, bytes_in: u64, bytes_out: u64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        let secs = duration.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(BUCKETS.len());
        self.duration_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_micros_sum
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }
}

/// Every metric the edge exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    sites: Mutex<BTreeMap<String, Arc<SiteMetrics>>>,
    /// Connections closed at accept by `max_connections`.
    pub connections_refused_total_cap: AtomicU64,
    /// Connections closed at accept by `max_connections_per_ip`.
    pub connections_refused_client_cap: AtomicU64,
    /// Connections closed at accept by `max_new_connections_per_ip`.
    pub connections_refused_accept_rate: AtomicU64,
    /// Connections the edge cut because the client was too slow or abused HTTP/2, by
    /// [`CutReason`].
    connections_cut: [AtomicU64; CutReason::ALL.len()],
    /// Abuse reports by [`ReportOutcome`].
    abuse_reports: [AtomicU64; ReportOutcome::ALL.len()],
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// Times an idle HTTP/1.1 connection released its buffers and kept only its socket.
    pub connections_parked: AtomicU64,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: AtomicU64,
    /// Reloads that swapped in a new snapshot.
    pub reloads_ok: AtomicU64,
    /// Reloads refused; the previous snapshot kept serving.
    pub reloads_failed: AtomicU64,
    /// The scheduling lag last measured, in microseconds; 1 while the edge is short of CPU;
    /// requests waiting their turn; shortages since the process began (`cpu_priority`).
    scheduling_lag_micros: AtomicU64,
    short_of_cpu: AtomicU64,
    waiting_turn: AtomicU64,
    cpu_shortages: AtomicU64,
    /// Metrics of parts outside the edge (the cluster's), written after the edge's own.
    sections: Sections,
}

/// Writes more metrics into the rendered page.
pub type Section = Arc<dyn Fn(&mut String) + Send + Sync>;

#[derive(Default)]
struct Sections(Mutex<Vec<Section>>);

impl std::fmt::Debug for Sections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sections { .. }")
    }
}

/// Why the edge closed a client's connection on its own initiative (beyond idle timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutReason {
    /// No complete request header within `header_read_timeout` (slowloris).
    HeaderTimeout,
    /// A request body slower than `min_request_body_rate` (slow POST).
    BodyRate,
    /// Writes made no progress for `send_timeout` (slow read).
    SendTimeout,
    /// Too many PING or SETTINGS frames (HTTP/2 control-frame flood).
    H2ControlFlood,
    /// Too many streams reset by the client (HTTP/2 rapid reset).
    H2ResetFlood,
}

impl CutReason {
    const ALL: [CutReason; 5] = [
        CutReason::HeaderTimeout,
        CutReason::BodyRate,
        CutReason::SendTimeout,
        CutReason::H2ControlFlood,
        CutReason::H2ResetFlood,
    ];

    /// The reason as the metrics page labels it: the limit's key, or the flood.
    pub fn label(self) -> &'static str {
        match self {
            CutReason::HeaderTimeout => "header_read_timeout",
            CutReason::BodyRate => "min_request_body_rate",
            CutReason::SendTimeout => "send_timeout",
            CutReason::H2ControlFlood => "h2_control_flood",
            CutReason::H2ResetFlood => "h2_reset_flood",
        }
    }
}

/// What became of a report posted to the abuse intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Handed to the sink, which stored it (201).
    Taken,
    /// Refused as malformed or out of bounds (400, 415).
    Invalid,
    /// Body over the size cap (413).
    TooLarge,
    /// Body not in within `request_body_timeout` (408).
    TimedOut,
    /// Over the per-address limit (429).
    RateLimited,
    /// No sink installed: reports are not taken here (503).
    Unavailable,
    /// The sink failed or did not answer in time (503).
    Failed,
}

impl ReportOutcome {
    const ALL: [ReportOutcome; 7] = [
        ReportOutcome::Taken,
        ReportOutcome::Invalid,
        ReportOutcome::TooLarge,
        ReportOutcome::TimedOut,
        ReportOutcome::RateLimited,
        ReportOutcome::Unavailable,
        ReportOutcome::Failed,
    ];

    /// The outcome as the metrics page labels it.
    pub fn label(self) -> &'static str {
        match self {
            ReportOutcome::Taken => "taken",
            ReportOutcome::Invalid => "invalid",
            ReportOutcome::TooLarge => "too_large",
            ReportOutcome::TimedOut => "timeout",
            ReportOutcome::RateLimited => "rate_limited",
            ReportOutcome::Unavailable => "unavailable",
            ReportOutcome::Failed => "failed",
        }
    }
}

/// One site's series of a histogram: cumulative buckets from the non-cumulative `counts`
/// (one more than `bounds`: the last is +Inf), the sum and the count.
fn write_histogram(
    out: &mut String,
    metric: &str,
    site: &str,
    bounds: &[f64],
    counts: &[AtomicU64],
    sum: f64,
) {
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(counts) {
        cumulative += count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{metric}_bucket{{site=\"{site}\",le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += counts[bounds.len()..]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum::<u64>();
    let _ = writeln!(
        out,
        "{metric}_bucket{{site=\"{site}\",le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(out, "{metric}_sum{{site=\"{site}\"}} {sum}");
    let _ = writeln!(out, "{metric}_count{{site=\"{site}\"}} {cumulative}");
}

/// Request bodies read ahead of their origin slot (`origin_body_buffer`), as the metrics page
/// shows them.
#[derive(Debug, Default, Clone, Copy)]
pub struct BodyBufferReport {
    /// Bytes held now, against `body_buffer_memory`.
    pub held_bytes: u64,
    /// Bodies streamed instead because `body_buffer_memory` was reached, since start.
    pub overflowed: u64,
}

/// One origin's state as the metrics page shows it.
pub struct OriginReport {
    /// The site's name.
    pub site: String,
    /// The origin's `host:port`.
    pub origin: String,
    /// Whether it takes traffic: neither a health check nor passive ejection took it out.
    pub healthy: bool,
    /// Connections to it that failed, since start.
    pub connect_errors: u64,
    /// Requests to it that timed out, since start.
    pub timeouts: u64,
    /// Requests to it that failed otherwise (a broken response, a reset), since start.
    pub other_errors: u64,
}

impl Metrics {
    /// Every counter at zero and no site yet.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Counts a connection the edge closed for `reason`.
    pub fn connection_cut(&self, reason: CutReason) {
        self.connections_cut[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one report posted to the abuse intake.
    pub fn abuse_report(&self, outcome: ReportOutcome) {
        self.abuse_reports[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// What the CPU probe measured: the lag, whether the edge is short, requests waiting
    /// their turn. Counts a shortage when one begins.
    pub fn set_cpu(&self, lag: Duration, short: bool, waiting: u64) {
        self.scheduling_lag_micros
            .store(lag.as_micros() as u64, Ordering::Relaxed);
        if self.short_of_cpu.swap(u64::from(short), Ordering::Relaxed) == 0 && short {
            self.cpu_shortages.fetch_add(1, Ordering::Relaxed);
        }
        self.waiting_turn.store(waiting, Ordering::Relaxed);
    }

    /// The counters for `site`, created on first use and kept across reloads.
    pub fn site(&self, site: &str) -> Arc<SiteMetrics> {
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(sites.entry(site.to_string()).or_default())
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(
        &self,
        open_connections: u32,
        origins: &[OriginReport],
        cache: &CacheReport,
        buffers: &BodyBufferReport,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let sites = self.sites.lock().unwrap_or_else(|p| p.into_inner()).clone();

        out.push_str(
            "# HELP palisade_requests_total Requests answered, by site and status class.\n",
        );
        out.push_str("# TYPE palisade_requests_total counter\n");
        for (name, m) in &sites {
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let n = m.responses[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "palisade_requests_total{{site=\"{name}\",class=\"{class}\"}} {n}"
                );
            }
        }

        out.push_str("# HELP palisade_request_duration_seconds Time from request head to the end of the response body.\n");
        out.push_str("# TYPE palisade_request_duration_seconds histogram\n");
        for (name, m) in &sites {
            let sum = m.duration_micros_sum.load(Ordering::Relaxed) as f64 / 1e6;
            write_histogram(
                &mut out,
                "palisade_request_duration_seconds",
                name,
                &BUCKETS,
                &m.duration_buckets,
                sum,
            );
        }

        for (metric, help, pick) in [
            (
                "palisade_received_bytes_total",
                "Request body bytes received from clients.",
                (|m: &SiteMetrics| m.bytes_in.load(Ordering::Relaxed)) as fn(&SiteMetrics) -> u64,
            ),
            (
                "palisade_sent_bytes_total",
                "Response body bytes sent to clients.",
                |m: &SiteMetrics| m.bytes_out.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
            for (name, m) in &sites {
                let _ = writeln!(out, "{metric}{{site=\"{name}\"}} {}", pick(m));
            }
        }

        out.push_str("# HELP palisade_cache_requests_total Requests the cache handled, by site and outcome (hit, stale, revalidated, miss, pass).\n");
        out.push_str("# TYPE palisade_cache_requests_total counter\n");
        for (name, m) in &sites {
            for outcome in CacheOutcome::ALL {
                let n = m.cache[outcome as usize].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "palisade_cache_requests_total{{site=\"{name}\",outcome=\"{}\"}} {n}",
                    outcome.label()
                );
            }
        }
        out.push_str("# HELP palisade_shield_actions_total Requests the shield acted on, by site and action (block, challenge, rate_limit, log, shed).\n");
        out.push_str("# TYPE palisade_shield_actions_total counter\n");
        for (name, m) in &sites {
            for (i, action) in SHIELD_ACTIONS.iter().enumerate() {
                let n = m.shield[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "palisade_shield_actions_total{{site=\"{name}\",action=\"{}\"}} {n}",
                    action.as_str()
                );
            }
        }
        out.push_str(
            "# HELP palisade_attack_detected 1 while attack detection sees a surge on the site.\n",
        );
        out.push_str("# TYPE palisade_attack_detected gauge\n");
        for (name, m) in &sites {
            let _ = writeln!(
                out,
                "palisade_attack_detected{{site=\"{name}\"}} {}",
                m.attack_detected.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP palisade_attack_signature_coverage The estimated share of the current surge the site's signature mitigations match (0 when no attack).\n");
        out.push_str("# TYPE palisade_attack_signature_coverage gauge\n");
        for (name, m) in &sites {
            let share = m.attack_coverage_millionths.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "palisade_attack_signature_coverage{{site=\"{name}\"}} {share}"
            );
        }
        out.push_str("# HELP palisade_mitigations_active Mitigations derived from attack signatures in force on the site.\n");
        out.push_str("# TYPE palisade_mitigations_active gauge\n");
        for (name, m) in &sites {
            let _ = writeln!(
                out,
                "palisade_mitigations_active{{site=\"{name}\"}} {}",
                m.mitigations_active.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP palisade_mitigations_total Mitigations derived from attack signatures that came into force on the site.\n");
        out.push_str("# TYPE palisade_mitigations_total counter\n");
        for (name, m) in &sites {
            let _ = writeln!(
                out,
                "palisade_mitigations_total{{site=\"{name}\"}} {}",
                m.mitigations_started.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP palisade_under_attack 1 while every client without clearance is challenged on the site: its state is under_attack, or no attack signature covers a surge and the site's attack_fallback is challenge.\n");
        out.push_str("# TYPE palisade_under_attack gauge\n");
        for (name, m) in &sites {
            let _ = writeln!(
                out,
                "palisade_under_attack{{site=\"{name}\"}} {}",
                m.under_attack.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP palisade_origin_pressure 1 while the site's origin is under pressure (requests in flight near max_origin_concurrency, or latency rising): the cache-miss limit is in force.\n");
        out.push_str("# TYPE palisade_origin_pressure gauge\n");
        for (name, m) in &sites {
            let _ = writeln!(
                out,
                "palisade_origin_pressure{{site=\"{name}\"}} {}",
                m.origin_pressure.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP palisade_challenges_total Browser challenges by site and outcome: issued (pages served), solved (answers accepted), failed (answers refused).\n");
        out.push_str("# TYPE palisade_challenges_total counter\n");
        for (name, m) in &sites {
            let failed: u64 = m
                .challenges_failed
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .sum();
            for (outcome, n) in [
                ("issued", m.challenges_issued.load(Ordering::Relaxed)),
                ("solved", m.challenges_solved.load(Ordering::Relaxed)),
                ("failed", failed),
            ] {
                let _ = writeln!(
                    out,
                    "palisade_challenges_total{{site=\"{name}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP palisade_challenge_failures_total Refused challenge answers by site and reason.\n");
        out.push_str("# TYPE palisade_challenge_failures_total counter\n");
        for (name, m) in &sites {
            for (i, why) in CHALLENGE_FAILURES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "palisade_challenge_failures_total{{site=\"{name}\",reason=\"{}\"}} {}",
                    why.as_str(),
                    m.challenges_failed[i].load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP palisade_challenge_solve_seconds Time from serving a challenge page to receiving its accepted answer.\n");
        out.push_str("# TYPE palisade_challenge_solve_seconds histogram\n");
        for (name, m) in &sites {
            let sum = m.solve_millis_sum.load(Ordering::Relaxed) as f64 / 1e3;
            write_histogram(
                &mut out,
                "palisade_challenge_solve_seconds",
                name,
                &SOLVE_BUCKETS,
                &m.solve_buckets,
                sum,
            );
        }
        out.push_str("# HELP palisade_origin_queued Requests waiting now for a slot under the site's max_origin_concurrency.\n");
        out.push_str("# TYPE palisade_origin_queued gauge\n");
        for (name, m) in &sites {
            let _ = writeln!(
                out,
                "palisade_origin_queued{{site=\"{name}\"}} {}",
                m.origin_queued.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP palisade_origin_queue_wait_seconds Time requests waited for a slot under the site's max_origin_concurrency, whatever became of them.\n");
        out.push_str("# TYPE palisade_origin_queue_wait_seconds histogram\n");
        for (name, m) in &sites {
            let sum = m.queue_wait_micros_sum.load(Ordering::Relaxed) as f64 / 1e6;
            write_histogram(
                &mut out,
                "palisade_origin_queue_wait_seconds",
                name,
                &QUEUE_WAIT_BUCKETS,
                &m.queue_wait_buckets,
                sum,
            );
        }
        out.push_str("# HELP palisade_origin_queue_total Requests that met the site's max_origin_concurrency, by outcome: admitted (waited, got a slot), timeout, displaced, refused (shed), abandoned (the client went away).\n");
        out.push_str("# TYPE palisade_origin_queue_total counter\n");
        for (name, m) in &sites {
            for outcome in QueueOutcome::ALL {
                let _ = writeln!(
                    out,
                    "palisade_origin_queue_total{{site=\"{name}\",outcome=\"{}\"}} {}",
                    outcome.label(),
                    m.queue_outcomes[outcome as usize].load(Ordering::Relaxed)
                );
            }
        }
        for (metric, kind, help, value) in [
            (
                "palisade_cache_memory_bytes",
                "gauge",
                "Bytes held by the cache's memory tier (as charged against cache_memory).",
                cache.memory_bytes,
            ),
            (
                "palisade_cache_memory_entries",
                "gauge",
                "Entries in the memory tier (responses, Vary specs, uncacheable marks).",
                cache.memory_entries,
            ),
            (
                "palisade_cache_disk_bytes",
                "gauge",
                "Bytes of files in the disk tier.",
                cache.disk_bytes,
            ),
            (
                "palisade_cache_disk_objects",
                "gauge",
                "Objects in the disk tier.",
                cache.disk_objects,
            ),
            (
                "palisade_cache_fills",
                "gauge",
                "Origin fetches other requests may be waiting on now.",
                cache.fills,
            ),
            (
                "palisade_cache_purges_pending",
                "gauge",
                "Purges not yet applied to every stored object by the background pass (they already apply to requests).",
                cache.pending_purges,
            ),
            (
                "palisade_body_buffer_bytes",
                "gauge",
                "Bytes of request bodies read ahead of their origin slot now (origin_body_buffer), against body_buffer_memory.",
                buffers.held_bytes,
            ),
            (
                "palisade_body_buffer_overflows_total",
                "counter",
                "Request bodies that streamed instead of being read ahead because body_buffer_memory was reached.",
                buffers.overflowed,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} {kind}\n{metric} {value}"
            );
        }

        out.push_str("# HELP palisade_origin_healthy 1 when the origin takes traffic, 0 when a health check or passive ejection took it out.\n");
        out.push_str("# TYPE palisade_origin_healthy gauge\n");
        for o in origins {
            let _ = writeln!(
                out,
                "palisade_origin_healthy{{site=\"{}\",origin=\"{}\"}} {}",
                o.site, o.origin, o.healthy as u8
            );
        }
        out.push_str("# HELP palisade_origin_errors_total Failed origin requests by kind.\n");
        out.push_str("# TYPE palisade_origin_errors_total counter\n");
        for o in origins {
            for (kind, n) in [
                ("connect", o.connect_errors),
                ("timeout", o.timeouts),
                ("other", o.other_errors),
            ] {
                let _ = writeln!(
                    out,
                    "palisade_origin_errors_total{{site=\"{}\",origin=\"{}\",kind=\"{kind}\"}} {n}",
                    o.site, o.origin
                );
            }
        }

        let _ = writeln!(
            out,
            "# HELP palisade_open_connections Client connections open now.\n# TYPE palisade_open_connections gauge\npalisade_open_connections {open_connections}"
        );
        out.push_str(
            "# HELP palisade_connections_refused_total Connections closed at accept by a cap.\n",
        );
        out.push_str("# TYPE palisade_connections_refused_total counter\n");
        for (reason, counter) in [
            ("max_connections", &self.connections_refused_total_cap),
            (
                "max_connections_per_ip",
                &self.connections_refused_client_cap,
            ),
            (
                "max_new_connections_per_ip",
                &self.connections_refused_accept_rate,
            ),
        ] {
            let _ = writeln!(
                out,
                "palisade_connections_refused_total{{reason=\"{reason}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP palisade_connections_cut_total Connections closed by the edge for a slow or abusive client.\n",
        );
        out.push_str("# TYPE palisade_connections_cut_total counter\n");
        for reason in CutReason::ALL {
            let _ = writeln!(
                out,
                "palisade_connections_cut_total{{reason=\"{}\"}} {}",
                reason.label(),
                self.connections_cut[reason as usize].load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP palisade_abuse_reports_total Reports posted to the abuse intake, by outcome.\n",
        );
        out.push_str("# TYPE palisade_abuse_reports_total counter\n");
        for outcome in ReportOutcome::ALL {
            let _ = writeln!(
                out,
                "palisade_abuse_reports_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                self.abuse_reports[outcome as usize].load(Ordering::Relaxed)
            );
        }
        for (metric, help, counter) in [
            (
                "palisade_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
                &self.tls_handshake_failures,
            ),
            (
                "palisade_connections_parked_total",
                "Times an idle HTTP/1.1 connection released its buffers and kept only its socket.",
                &self.connections_parked,
            ),
            (
                "palisade_access_log_dropped_total",
                "Access-log lines lost: the writer fell behind, or a write failed.",
                &self.access_log_dropped,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP palisade_requests_deprioritised_total Requests of the site that waited their turn while the edge was short of CPU (the site under attack, or above its share of requests), by how the wait ended: let_go, or waited_out (all of overload_wait).\n");
        out.push_str("# TYPE palisade_requests_deprioritised_total counter\n");
        for (name, m) in &sites {
            let all = m.deprioritised.load(Ordering::Relaxed);
            let out_of_time = m.deprioritised_waited_out.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "palisade_requests_deprioritised_total{{site=\"{name}\",outcome=\"let_go\"}} {}\n\
                 palisade_requests_deprioritised_total{{site=\"{name}\",outcome=\"waited_out\"}} {out_of_time}",
                all.saturating_sub(out_of_time)
            );
        }
        out.push_str("# HELP palisade_deprioritised_wait_seconds_total Time the site's requests spent waiting their turn while the edge was short of CPU.\n");
        out.push_str("# TYPE palisade_deprioritised_wait_seconds_total counter\n");
        for (name, m) in &sites {
            let _ = writeln!(
                out,
                "palisade_deprioritised_wait_seconds_total{{site=\"{name}\"}} {}",
                m.deprioritised_wait_micros_sum.load(Ordering::Relaxed) as f64 / 1e6
            );
        }
        for (metric, kind, help, value) in [
            (
                "palisade_scheduling_lag_seconds",
                "gauge",
                "How late the edge's probe task last woke: how long a ready request waits for a worker thread.",
                self.scheduling_lag_micros.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "palisade_short_of_cpu",
                "gauge",
                "1 while the scheduling lag is at or over overload_lag: sites under attack or above their share of requests wait their turn.",
                self.short_of_cpu.load(Ordering::Relaxed) as f64,
            ),
            (
                "palisade_requests_waiting_turn",
                "gauge",
                "Requests of deprioritised sites waiting their turn now.",
                self.waiting_turn.load(Ordering::Relaxed) as f64,
            ),
            (
                "palisade_cpu_shortages_total",
                "counter",
                "Times the edge became short of CPU.",
                self.cpu_shortages.load(Ordering::Relaxed) as f64,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} {kind}\n{metric} {value}"
            );
        }
        out.push_str("# HELP palisade_config_reloads_total Configuration reloads by result.\n");
        out.push_str("# TYPE palisade_config_reloads_total counter\n");
        let _ = writeln!(
            out,
            "palisade_config_reloads_total{{result=\"ok\"}} {}\npalisade_config_reloads_total{{result=\"error\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed)
        );
        let sections = self
            .sections
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for section in sections {
            section(&mut out);
        }
        out
    }

    /// Requests answered for every site since the process began (heartbeats derive the rate).
    pub fn requests_total(&self) -> u64 {
        let sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        sites
            .values()
            .map(|m| {
                m.responses
                    .iter()
                    .map(|r| r.load(Ordering::Relaxed))
                    .sum::<u64>()
            })
            .sum()
    }

    /// Adds metrics a part outside the edge keeps (the cluster's) to every rendering.
    pub fn add_section(&self, section: Section) {
        self.sections
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(section);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_class_and_renders_cumulative_buckets() {
        let metrics = Metrics::new();
        let blog = metrics.site("blog");
        blog.record(200, Duration::from_millis(3), 10, 100);
        blog.record(503, Duration::from_secs(20), 0, 5);
        let text = metrics.render(
            7,
            &[],
            &CacheReport::default(),
            &BodyBufferReport::default(),
        );
        assert!(text.contains("palisade_requests_total{site=\"blog\",class=\"2xx\"} 1"));
        assert!(text.contains("palisade_requests_total{site=\"blog\",class=\"5xx\"} 1"));
        assert!(
            text.contains("palisade_request_duration_seconds_bucket{site=\"blog\",le=\"0.005\"} 1")
        );
        assert!(
            text.contains("palisade_request_duration_seconds_bucket{site=\"blog\",le=\"10\"} 1")
        );
        assert!(
            text.contains("palisade_request_duration_seconds_bucket{site=\"blog\",le=\"+Inf\"} 2")
        );
        assert!(text.contains("palisade_sent_bytes_total{site=\"blog\"} 105"));
        assert!(text.contains("palisade_open_connections 7"));
    }

    #[test]
    fn a_site_keeps_its_counters_when_asked_again() {
        let metrics = Metrics::new();
        metrics.site("blog").record(200, Duration::ZERO, 0, 0);
        metrics.site("blog").record(200, Duration::ZERO, 0, 0);
        assert!(
            metrics
                .render(
                    0,
                    &[],
                    &CacheReport::default(),
                    &BodyBufferReport::default()
                )
                .contains("palisade_requests_total{site=\"blog\",class=\"2xx\"} 2")
        );
    }
}

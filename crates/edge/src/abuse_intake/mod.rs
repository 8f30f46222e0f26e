//! The abuse-report intake's parts below the request path: where reports go ([`ReportSink`]),
//! the per-address limit ([`AbuseIntake`]), and its HTML pages ([`pages`]). Parsing a posted
//! report is `model::ReportSubmission::from_json` / `from_form`; the wire endpoint
//! (`/.well-known/palisade/abuse`) is the `reserved` phase's, in `phases::abuse`. See
//! `docs/abuse.md`.
//!
//! What a reporter can cost the edge is bounded: a body of at most [`MAX_REPORT_BYTES`] read
//! within `request_body_timeout`, and [`REPORTS_PER_ADDRESS`] reports per
//! [`REPORTS_PERIOD`] from one address (an IPv6 /64), counted in a fixed 128 KiB.

pub mod pages;

use arc_swap::ArcSwapOption;
use model::NewReport;
use shield::ratelimit::{WindowCounter, client_prefix, random_seed};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where reports are taken, under the reserved prefix every site shares.
pub const ABUSE_PATH: &str = "/.well-known/palisade/abuse";

/// Largest report body: twenty long URLs and a 10,000-character description fit with room.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// Reports one address may send per [`REPORTS_PERIOD`]: more than anyone reporting in good
/// faith needs, few enough that a script cannot bury the operator's queue.
pub const REPORTS_PER_ADDRESS: u32 = 5;

/// The sliding window [`REPORTS_PER_ADDRESS`] is counted over.
pub const REPORTS_PERIOD: Duration = Duration::from_secs(600);

/// Counters per row of the per-address sketch: 2 × 4 rows × 4096 × 4 bytes = 128 KiB.
const COUNTER_WIDTH: usize = 4096;

/// What [`ReportSink::submit`] returns: where the report is, or why it was not taken (for the
/// log; the reporter is only told to try later).
pub type SubmitFuture = Pin<Box<dyn Future<Output = Result<Receipt, SubmitError>> + Send>>;

/// Where a taken report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Stored under this id (the reporter is given it).
    Stored(u64),
    /// Kept to be stored: an edge of a cluster that cannot reach its control node now holds
    /// it and delivers it when it can (the reporter is told it is on its way).
    Queued,
}

/// Where checked reports go: the control plane's store. The edge calls it once per report
/// that passed every check, and answers the reporter with the id it returns.
///
/// ```
/// use edge::{Receipt, ReportSink, SubmitFuture};
///
/// struct Discard;
/// impl ReportSink for Discard {
///     fn submit(&self, _report: model::NewReport) -> SubmitFuture {
///         Box::pin(async { Ok(Receipt::Stored(1)) })
///     }
/// }
/// ```
pub trait ReportSink: Send + Sync {
    /// Stores `report` (or keeps it to be stored); the future resolves to where it is, or to
    /// why it was not taken (the reporter then gets 503 and may try again).
    fn submit(&self, report: NewReport) -> SubmitFuture;
}

/// The intake's state, kept by the edge across snapshots.
pub struct AbuseIntake {
    /// None until the control plane installs one: reports are then refused with 503.
    sink: ArcSwapOption<Arc<dyn ReportSink>>,
    /// Reports per client address over [`REPORTS_PERIOD`].
    counter: WindowCounter,
    seed: u64,
}

impl std::fmt::Debug for AbuseIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbuseIntake")
            .field("sink", &self.sink.load().is_some())
            .field("counter", &self.counter)
            .finish()
    }
}

impl Default for AbuseIntake {
    fn default() -> Self {
        AbuseIntake::new()
    }
}

impl AbuseIntake {
    pub fn new() -> AbuseIntake {
        AbuseIntake {
            sink: ArcSwapOption::empty(),
            counter: WindowCounter::new(REPORTS_PERIOD, COUNTER_WIDTH),
            seed: random_seed(),
        }
    }

    /// Installs (or replaces) where reports go.
    pub fn set_sink(&self, sink: Arc<dyn ReportSink>) {
        self.sink.store(Some(Arc::new(sink)));
    }

    pub(crate) fn sink(&self) -> Option<Arc<dyn ReportSink>> {
        self.sink.load().as_deref().cloned()
    }

    /// Counts one report from `ip`; true when it is over the limit.
    pub(crate) fn over_limit(&self, ip: IpAddr, now: Instant) -> bool {
        let key = xxhash_rust::xxh3::xxh3_64_with_seed(&client_prefix(ip), self.seed);
        self.counter.hit(key, now) > f64::from(REPORTS_PER_ADDRESS)
    }
}

/// Why a [`ReportSink`] did not store a report: said in the edge's log (the reporter is only
/// told to try again later).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The store refused or failed.
    #[error("the store failed: {0}")]
    Store(Box<dyn std::error::Error + Send + Sync>),
    /// The store did not answer within the edge's wait.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

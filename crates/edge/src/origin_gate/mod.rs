//! The gate in front of a site's origins: at most `max_origin_concurrency` requests in flight,
//! and a short, fair waiting line for the requests over it.
//!
//! ## The policy, in plain words
//! - Under the cap, a request goes straight to the origin. This costs one atomic add (the same
//!   as a bare counter): no lock, no allocation, no clock.
//! - At the cap, a request does not get 503 at once: it waits in the site's line, at most
//!   `origin_queue_timeout` (1 s), with at most `origin_queue_length` (1,024) others.
//! - When a slot frees up, the most deserving waiting request gets it:
//!   1. *trusted* clients: those with clearance (the challenge's cookie, verified) or let
//!      through by an allow list or rule;
//!   2. *regulars*: addresses the origin served in calm times, first seen at least two
//!      minutes before this congestion began ([`regulars`]);
//!   3. everyone else;
//!   4. *heavy* networks: an IPv4 /24 or IPv6 /48 holding more than its fair share of the
//!      requests waiting and let in from the line: more than twice what the other networks
//!      hold on average (and more than two), judged when a slot is given, not only on arrival;
//!   5. *suspects*: requests that matched an attack signature's mitigation and went on.
//!
//!   Within a class, first come, first served.
//! - A request that waits past the timeout is shed; so is a newcomer when the line is full of
//!   requests at least as deserving. A more deserving newcomer takes the place of the least
//!   deserving request waiting (the newest of the worst class), which is shed at once. Shed
//!   means what the cap always meant: the cache's stale copy, or 503 with `Retry-After`.
//!
//! ## How it stays cheap and true
//! One atomic word holds the requests in flight (low half) and waiting (high half): the fast
//! path's single add reads both, and a request that frees a slot sees in the same word whether
//! anyone waits, so no waiting request can miss a slot. The line itself sits behind a mutex
//! taken only when someone waits or was let in from it. A request let in from the line takes
//! over the slot its releaser held (the in-flight count never dips), so a newcomer on the fast
//! path cannot jump the line. Per-network loads count only requests that went through the
//! line: under sustained congestion that is nearly every request in flight after one origin
//! round trip, and under the cap nobody needs ranking.

mod line;
pub mod regulars;

use line::{Claims, Joined, Line, Ticket};

use crate::clock;
use crate::metrics::{QueueOutcome, SiteMetrics};
use model::OriginQueue;
use regulars::Regulars;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::oneshot;

/// One waiting request in the high half of [`OriginGate::count`].
const WAITER: u64 = 1 << 32;

/// A permit's network when it was not let in from the line (network keys are never 0).
const NOT_FROM_LINE: u64 = 0;

/// Congestion has ended when nothing has had to wait for this long; only then are visits
/// noted as history again.
const CALM_AFTER_MS: u64 = 10_000;

fn in_flight(count: u64) -> u32 {
    count as u32
}

fn waiting(count: u64) -> u32 {
    (count >> 32) as u32
}

/// What the gate is told about a request that has to wait.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    pub client_ip: IpAddr,
    /// Clearance, or an allow list or rule let it through.
    pub trusted: bool,
    /// It matched an attack signature's mitigation (`SiteRequest::suspect`).
    pub suspect: bool,
}

/// Why a request over the cap was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The site has no queue (`origin_queue_timeout` or `origin_queue_length` is 0).
    NoQueue,
    /// The line was full of requests at least as deserving.
    Refused,
    /// A more deserving request took its place in a full line.
    Displaced,
    /// It waited `origin_queue_timeout` without a slot.
    TimedOut,
}

/// A site's origin requests in flight, and the line of those waiting for a slot.
pub struct OriginGate {
    /// Low 32 bits: origin requests in flight (permits held). High 32 bits: requests waiting.
    count: AtomicU64,
    line: Mutex<Gated>,
    regulars: Regulars,
    /// When a request last had to wait (clock ms; 0: never).
    congested_ms: AtomicU64,
    /// When the current congestion began (clock ms): the first wait after a calm spell.
    began_ms: AtomicU64,
    /// Seeds the hashes of networks and addresses, so a client cannot aim at another's slots.
    seed: u64,
}

/// What the gate's mutex guards.
struct Gated {
    line: Line<oneshot::Sender<OriginPermit>>,
    /// The cap as the last request to wait read it (a reload may change it).
    cap: u32,
}

impl std::fmt::Debug for OriginGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.count.load(Ordering::Relaxed);
        f.debug_struct("OriginGate")
            .field("in_flight", &in_flight(count))
            .field("waiting", &waiting(count))
            .finish()
    }
}

impl OriginGate {
    pub fn new(seed: u64) -> OriginGate {
        OriginGate {
            count: AtomicU64::new(0),
            line: Mutex::new(Gated {
                line: Line::default(),
                cap: 0,
            }),
            regulars: Regulars::default(),
            congested_ms: AtomicU64::new(0),
            began_ms: AtomicU64::new(0),
            seed,
        }
    }

    /// Origin requests in flight.
    pub fn in_flight(&self) -> u32 {
        in_flight(self.count.load(Ordering::Relaxed))
    }

    /// Requests waiting in the line.
    pub fn waiting(&self) -> u32 {
        waiting(self.count.load(Ordering::Relaxed))
    }

    /// A slot at once, if fewer than `cap` are taken and nobody waits (0: no cap).
    #[inline]
    pub fn try_enter(self: &Arc<Self>, cap: u32) -> Option<OriginPermit> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if cap == 0 || (in_flight(before) < cap && waiting(before) == 0) {
            return Some(OriginPermit {
                gate: Some(Arc::clone(self)),
                network: NOT_FROM_LINE,
            });
        }
        // Not ours: given back as a permit's drop would, so that a slot freed meanwhile
        // still reaches whoever waits.
        self.release(NOT_FROM_LINE);
        None
    }

    /// Waits in the line for a slot under `cap`, for at most `queue.timeout`, ranked by
    /// `standing` (see the module's policy). `metrics`: the site's queue gauges.
    pub async fn wait(
        self: &Arc<Self>,
        cap: u32,
        queue: OriginQueue,
        standing: Standing,
        metrics: &SiteMetrics,
    ) -> Result<OriginPermit, Shed> {
        if !queue.is_on() || cap == 0 {
            return Err(Shed::NoQueue);
        }
        let now_ms = clock::now_ms();
        let claims = Claims {
            network: self.network_key(standing.client_ip),
            trusted: standing.trusted,
            regular: self.is_regular(standing.client_ip, now_ms),
            suspect: standing.suspect,
        };
        let (sender, mut receiver) = oneshot::channel();
        let place = {
            let mut gated = self.lock();
            gated.cap = cap;
            self.congested(now_ms);
            let place = match gated.line.join(claims, sender, queue.length as usize) {
                Joined::Waiting(place) => {
                    self.count.fetch_add(WAITER, Ordering::AcqRel);
                    place
                }
                // The displaced request learns it from its closed channel.
                Joined::Displaced(place, _displaced) => place,
                Joined::Refused(_) => {
                    drop(gated);
                    metrics.origin_queue_refused();
                    return Err(Shed::Refused);
                }
            };
            self.admit(&mut gated);
            place
        };
        let mut waiter = Waiter {
            gate: self,
            place: Some(place),
            metrics,
            since: Instant::now(),
        };
        metrics.origin_queue_joined();
        let outcome = match tokio::time::timeout(queue.timeout, &mut receiver).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(Shed::Displaced),
            Err(_) => {
                let left = {
                    let mut gated = self.lock();
                    let left = gated.line.leave(place).is_some();
                    if left {
                        self.count.fetch_sub(WAITER, Ordering::AcqRel);
                    }
                    left
                };
                if left {
                    Err(Shed::TimedOut)
                } else {
                    // Let in or displaced just as time ran out: the channel says which.
                    receiver.try_recv().map_err(|_| Shed::Displaced)
                }
            }
        };
        waiter.place = None;
        waiter.finish(match outcome {
            Ok(_) => QueueOutcome::Admitted,
            Err(Shed::TimedOut) => QueueOutcome::TimedOut,
            Err(_) => QueueOutcome::Displaced,
        });
        outcome
    }

    /// Notes that the client at `client_ip` was served while the site is calm, as history for
    /// the line (`under_attack`: attack detection's verdict, which also stops it). Called at
    /// most once per client connection.
    pub fn note_visit(&self, client_ip: IpAddr, under_attack: bool) {
        if under_attack {
            return;
        }
        let now_ms = clock::now_ms();
        let congested = self.congested_ms.load(Ordering::Relaxed);
        if congested != 0 && now_ms.saturating_sub(congested) <= CALM_AFTER_MS {
            return;
        }
        self.regulars
            .note(self.address_key(client_ip), minute(now_ms));
    }

    fn is_regular(&self, client_ip: IpAddr, now_ms: u64) -> bool {
        let congested = self.congested_ms.load(Ordering::Relaxed);
        // The congestion this request meets began now if the last wait was long ago.
        let began = if congested == 0 || now_ms.saturating_sub(congested) > CALM_AFTER_MS {
            now_ms
        } else {
            self.began_ms.load(Ordering::Relaxed)
        };
        self.regulars
            .is_regular(self.address_key(client_ip), minute(began), minute(now_ms))
    }

    /// A request had to wait at `now_ms` (under the line's lock).
    fn congested(&self, now_ms: u64) {
        let last = self.congested_ms.swap(now_ms, Ordering::Relaxed);
        if last == 0 || now_ms.saturating_sub(last) > CALM_AFTER_MS {
            self.began_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// A slot is given back (a permit dropped; `network` when it was let in from the line,
    /// else [`NOT_FROM_LINE`]).
    #[inline]
    fn release(self: &Arc<Self>, network: u64) {
        let before = self.count.fetch_sub(1, Ordering::AcqRel);
        if network != NOT_FROM_LINE || waiting(before) != 0 {
            self.hand_over(network);
        }
    }

    /// The slow side of [`OriginGate::release`]: someone waits, or the permit came from the
    /// line.
    #[cold]
    fn hand_over(self: &Arc<Self>, network: u64) {
        let mut gated = self.lock();
        if network != NOT_FROM_LINE {
            gated.line.finished(network);
        }
        self.admit(&mut gated);
    }

    /// Lets the most deserving waiting requests into the free slots (under the line's lock).
    fn admit(self: &Arc<Self>, gated: &mut MutexGuard<'_, Gated>) {
        while !gated.line.is_empty() {
            let count = self.count.load(Ordering::Acquire);
            if gated.cap != 0 && in_flight(count) >= gated.cap {
                return;
            }
            // One more in flight, one fewer waiting, in one step.
            if self
                .count
                .compare_exchange(
                    count,
                    count + 1 - WAITER,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                continue;
            }
            let Some((network, sender)) = gated.line.let_in() else {
                unreachable!("the line is not empty")
            };
            let permit = OriginPermit {
                gate: Some(Arc::clone(self)),
                network,
            };
            if let Err(mut permit) = sender.send(permit) {
                // Its client went away as it was let in: the slot goes to the next one. (Not
                // dropped as a permit: that would take this lock again.)
                permit.gate = None;
                self.count.fetch_sub(1, Ordering::AcqRel);
                gated.line.finished(network);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Gated> {
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client's network for fair shares: an IPv4 /24, an IPv6 /48 (never
    /// [`NOT_FROM_LINE`]).
    fn network_key(&self, ip: IpAddr) -> u64 {
        let mut bytes = [0u8; 7];
        let v4 = match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        match (v4, ip) {
            (Some(v4), _) => {
                bytes[0] = 4;
                bytes[1..4].copy_from_slice(&v4.octets()[..3]);
            }
            (None, IpAddr::V6(v6)) => {
                bytes[0] = 6;
                bytes[1..7].copy_from_slice(&v6.octets()[..6]);
            }
            (None, IpAddr::V4(_)) => unreachable!("an IPv4 address has its IPv4 form"),
        }
        xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, self.seed).max(1)
    }

    /// The client's address for history: IPv4 whole, IPv6 by its /64.
    fn address_key(&self, ip: IpAddr) -> u64 {
        let prefix = shield::ratelimit::client_prefix(ip);
        xxhash_rust::xxh3::xxh3_64_with_seed(&prefix, !self.seed)
    }
}

fn minute(ms: u64) -> u32 {
    u32::try_from(ms / 60_000).unwrap_or(u32::MAX)
}

/// A request in the line: leaves it if its future is dropped (the client went away), and
/// keeps the site's queue gauges true.
struct Waiter<'a> {
    gate: &'a Arc<OriginGate>,
    /// Still in the line with this ticket.
    place: Option<Ticket>,
    metrics: &'a SiteMetrics,
    since: Instant,
}

impl Waiter<'_> {
    fn finish(&mut self, outcome: QueueOutcome) {
        self.metrics
            .origin_queue_left(outcome, self.since.elapsed());
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let Some(place) = self.place.take() else {
            return;
        };
        {
            let mut gated = self.gate.lock();
            if gated.line.leave(place).is_some() {
                self.gate.count.fetch_sub(WAITER, Ordering::AcqRel);
            }
        }
        // A permit sent as it went away is dropped with the channel, which frees its slot.
        self.finish(QueueOutcome::Abandoned);
    }
}

/// One origin request in flight; its slot is given back when it is dropped (the response is
/// done), to the most deserving request waiting if any.
pub struct OriginPermit {
    /// `None` only while a permit that could not be handed over is taken apart.
    gate: Option<Arc<OriginGate>>,
    /// The client's network when the request was let in from the line, else
    /// [`NOT_FROM_LINE`].
    network: u64,
}

impl std::fmt::Debug for OriginPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginPermit")
            .field("from_line", &(self.network != NOT_FROM_LINE))
            .finish()
    }
}

impl Drop for OriginPermit {
    #[inline]
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release(self.network);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::mpsc;

    const QUEUE: OriginQueue = OriginQueue {
        timeout: Duration::from_secs(1),
        length: 16,
    };

    fn gate() -> Arc<OriginGate> {
        Arc::new(OriginGate::new(7))
    }

    fn from(ip: &str) -> Standing {
        Standing {
            client_ip: ip.parse().unwrap(),
            trusted: false,
            suspect: false,
        }
    }

    fn trusted(ip: &str) -> Standing {
        Standing {
            trusted: true,
            ..from(ip)
        }
    }

    fn suspect(ip: &str) -> Standing {
        Standing {
            trusted: true,
            suspect: true,
            ..from(ip)
        }
    }

    /// Lets the spawned waiters run until `n` of them wait in the line.
    async fn until_waiting(gate: &OriginGate, n: u32) {
        for _ in 0..1000 {
            if gate.waiting() == n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{} waiting, not {n}", gate.waiting());
    }

    /// Spawns a request named `name` waiting for a slot; when let in, it reports its name and
    /// permit on `admitted`, or its shed reason on `shed`.
    fn spawn_waiter(
        gate: &Arc<OriginGate>,
        cap: u32,
        queue: OriginQueue,
        standing: Standing,
        name: &'static str,
        events: &mpsc::UnboundedSender<(&'static str, Result<OriginPermit, Shed>)>,
    ) -> tokio::task::JoinHandle<()> {
        let (gate, events) = (Arc::clone(gate), events.clone());
        let metrics = Arc::new(SiteMetrics::default());
        tokio::spawn(async move {
            let outcome = gate.wait(cap, queue, standing, &metrics).await;
            let _ = events.send((name, outcome));
        })
    }

    #[tokio::test]
    async fn under_the_cap_requests_enter_at_once_and_over_it_wait_for_a_freed_slot() {
        let gate = gate();
        let first = gate.try_enter(2).expect("a free slot");
        let _second = gate.try_enter(2).expect("a free slot");
        assert!(gate.try_enter(2).is_none(), "at the cap");
        assert_eq!(gate.in_flight(), 2);
        let (events, mut admitted) = mpsc::unbounded_channel();
        spawn_waiter(&gate, 2, QUEUE, from("10.0.0.1"), "waiter", &events);
        until_waiting(&gate, 1).await;
        // Nobody may jump the line, even when a slot is free for an instant.
        assert!(gate.try_enter(2).is_none());
        drop(first);
        let (name, permit) = admitted.recv().await.unwrap();
        assert_eq!(name, "waiter");
        let permit = permit.expect("let in");
        // The slot passed from hand to hand: the count never dipped.
        assert_eq!((gate.in_flight(), gate.waiting()), (2, 0));
        drop(permit);
        assert_eq!(gate.in_flight(), 1);
        assert!(gate.try_enter(0).is_some(), "0 means no cap");
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_trusted_then_unknown_then_suspect_requests() {
        let gate = gate();
        let held = gate.try_enter(1).unwrap();
        let (events, mut admitted) = mpsc::unbounded_channel();
        spawn_waiter(&gate, 1, QUEUE, suspect("10.0.1.1"), "suspect", &events);
        until_waiting(&gate, 1).await;
        spawn_waiter(&gate, 1, QUEUE, from("10.0.2.1"), "unknown", &events);
        until_waiting(&gate, 2).await;
        spawn_waiter(&gate, 1, QUEUE, trusted("10.0.3.1"), "trusted", &events);
        until_waiting(&gate, 3).await;
        drop(held);
        let mut order = Vec::new();
        for _ in 0..3 {
            let (name, permit) = admitted.recv().await.unwrap();
            order.push(name);
            drop(permit.expect("let in"));
        }
        assert_eq!(order, ["trusted", "unknown", "suspect"]);
        assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn a_heavy_network_waits_behind_light_ones_that_came_later() {
        let gate = gate();
        let held = gate.try_enter(1).unwrap();
        let (events, mut admitted) = mpsc::unbounded_channel();
        // Eight requests from one /24, then one each from two other networks.
        for n in 0..8 {
            spawn_waiter(&gate, 1, QUEUE, from("10.9.9.1"), "heavy", &events);
            until_waiting(&gate, n + 1).await;
        }
        spawn_waiter(&gate, 1, QUEUE, from("10.1.0.1"), "light", &events);
        spawn_waiter(&gate, 1, QUEUE, from("10.2.0.1"), "light", &events);
        until_waiting(&gate, 10).await;
        drop(held);
        let mut order = Vec::new();
        for _ in 0..10 {
            let (name, permit) = admitted.recv().await.unwrap();
            order.push(name);
            drop(permit.expect("let in"));
        }
        // Judged when let in, the heavy network's requests all wait behind the light ones.
        assert_eq!(&order[..3], ["light", "light", "heavy"], "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_waits_past_the_timeout_is_shed_and_leaves_the_line() {
        let gate = gate();
        let _held = gate.try_enter(1).unwrap();
        let metrics = SiteMetrics::default();
        let started = tokio::time::Instant::now();
        let outcome = gate.wait(1, QUEUE, from("10.0.0.1"), &metrics).await;
        assert_eq!(outcome.err(), Some(Shed::TimedOut));
        assert_eq!(started.elapsed(), QUEUE.timeout);
        assert_eq!((gate.in_flight(), gate.waiting()), (1, 0));
        assert_eq!(gate.lock().line.len(), 0);
        // Without a queue, shed at once.
        let off = OriginQueue { length: 0, ..QUEUE };
        let outcome = gate.wait(1, off, from("10.0.0.1"), &metrics).await;
        assert_eq!(outcome.err(), Some(Shed::NoQueue));
    }

    #[tokio::test]
    async fn a_full_line_sheds_its_least_deserving_request_first() {
        let gate = gate();
        let held = gate.try_enter(1).unwrap();
        let short = OriginQueue { length: 2, ..QUEUE };
        let (events, mut outcomes) = mpsc::unbounded_channel();
        spawn_waiter(&gate, 1, short, suspect("10.0.1.1"), "suspect", &events);
        spawn_waiter(&gate, 1, short, from("10.0.2.1"), "unknown", &events);
        until_waiting(&gate, 2).await;
        // Full: a trusted newcomer displaces the suspect, an unknown one is refused.
        spawn_waiter(&gate, 1, short, trusted("10.0.3.1"), "trusted", &events);
        let (name, outcome) = outcomes.recv().await.unwrap();
        assert_eq!((name, outcome.err()), ("suspect", Some(Shed::Displaced)));
        spawn_waiter(&gate, 1, short, from("10.0.4.1"), "late", &events);
        let (name, outcome) = outcomes.recv().await.unwrap();
        assert_eq!((name, outcome.err()), ("late", Some(Shed::Refused)));
        assert_eq!(gate.waiting(), 2);
        drop(held);
        let (name, permit) = outcomes.recv().await.unwrap();
        assert_eq!(name, "trusted");
        drop(permit);
        let (name, permit) = outcomes.recv().await.unwrap();
        assert_eq!(name, "unknown");
        drop(permit);
        assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn a_client_that_goes_away_while_waiting_leaves_no_trace() {
        let gate = gate();
        let held = gate.try_enter(1).unwrap();
        let (events, mut admitted) = mpsc::unbounded_channel();
        let gone = spawn_waiter(&gate, 1, QUEUE, trusted("10.0.0.1"), "gone", &events);
        until_waiting(&gate, 1).await;
        spawn_waiter(&gate, 1, QUEUE, from("10.0.0.2"), "stays", &events);
        until_waiting(&gate, 2).await;
        gone.abort();
        let _ = gone.await;
        assert_eq!(gate.waiting(), 1);
        drop(held);
        let (name, permit) = admitted.recv().await.unwrap();
        assert_eq!(name, "stays");
        drop(permit);
        assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
        assert_eq!(
            gate.lock()
                .line
                .load(gate.network_key("10.0.0.1".parse().unwrap())),
            0
        );
    }

    #[tokio::test]
    async fn visits_are_noted_as_history_only_while_the_site_is_calm() {
        let ip = "10.0.0.1".parse().unwrap();
        // Under attack: nothing noted (the table is not even made).
        let gate = gate();
        gate.note_visit(ip, true);
        assert_eq!(gate.regulars.memory_bytes(), 0);
        // Right after a request had to wait: nothing noted either.
        let _held = gate.try_enter(1).unwrap();
        let quick = OriginQueue {
            timeout: Duration::from_millis(10),
            ..QUEUE
        };
        let metrics = SiteMetrics::default();
        assert!(
            gate.wait(1, quick, from("10.0.0.2"), &metrics)
                .await
                .is_err()
        );
        gate.note_visit(ip, false);
        assert_eq!(gate.regulars.memory_bytes(), 0);
        // Calm: noted.
        let calm = self::gate();
        calm.note_visit(ip, false);
        assert!(calm.regulars.memory_bytes() > 0);
        // A first sighting is not history yet.
        assert!(!calm.is_regular(ip, clock::now_ms()));
    }

    /// Many requests entering, waiting and leaving on several threads: the cap is never
    /// passed, every request gets a slot or is shed, and the counts end at zero.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_counts_stay_true_under_concurrent_churn() {
        let gate = gate();
        let busy = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let metrics = Arc::new(SiteMetrics::default());
        let queue = OriginQueue {
            timeout: Duration::from_millis(50),
            length: 8,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..400u32 {
            let (gate, busy, most, metrics) = (
                Arc::clone(&gate),
                Arc::clone(&busy),
                Arc::clone(&most),
                Arc::clone(&metrics),
            );
            tasks.spawn(async move {
                let ip = format!("10.{}.0.{}", n % 7, n % 250);
                let standing = Standing {
                    trusted: n % 5 == 0,
                    suspect: n % 11 == 0,
                    ..from(&ip)
                };
                let permit = match gate.try_enter(4) {
                    Some(permit) => Some(permit),
                    None => gate.wait(4, queue, standing, &metrics).await.ok(),
                };
                if let Some(permit) = permit {
                    let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(u64::from(n % 3))).await;
                    busy.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                    true
                } else {
                    false
                }
            });
        }
        let mut served = 0;
        while let Some(result) = tasks.join_next().await {
            served += usize::from(result.unwrap());
        }
        assert!(most.load(Ordering::SeqCst) <= 4, "the cap was passed");
        assert!(served > 4, "only {served} served");
        assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
        let gated = gate.lock();
        assert_eq!(gated.line.len(), 0);
        assert_eq!(metrics.origin_queued(), 0);
    }
}

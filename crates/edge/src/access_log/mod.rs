//! The access log: one JSON line per request ([`line`] has the format), gathered in buffers on
//! the threads that serve requests and written by a thread of its own.
//!
//! Where a logged request's cost went before (one pinned core, 1 KiB cache hits: 16 µs per line,
//! more than the hit itself): the line was serialised into a new `String` (serde_json, grown
//! twice, the timestamp through `Display`), sent alone through a channel whose every send woke
//! the writer thread, and the writer, on the same core, preempted the server about once per
//! line to write one or two lines per `write` system call. Now a line is formatted by hand into
//! a 64 KiB buffer (`access_log_buffer`) that is handed over whole: one wake-up and one `write`
//! per few hundred lines. bench/access_log.sh measures it against nginx's buffered log.
//!
//! | module | job |
//! |---|---|
//! | `line` | a record's bytes, as serde_json wrote them, plus `sample_rate` |
//! | `timestamp` | the `time` field, its date worked out once per second |
//! | `sample` | `access_log_sample`: which requests are logged |
//! | `writer` | the writer thread: writes buffers, flushes every `access_log_flush`, reopens the file |
//!
//! ## Invariants (each pinned by a named test)
//! 1. A request never waits on the log's output: its thread makes no system call for the log
//!    and never blocks on the writer; when the writer falls behind (a slow disk, a blocked stdout
//!    pipe) new lines are dropped and counted in `palisade_access_log_dropped_total`, and a
//!    warning says so once a second while it lasts. (black-box
//!    `a_blocked_stdout_pipe_never_slows_requests_and_dropped_lines_are_counted`;
//!    `tests::a_full_queue_drops_new_lines_and_counts_them`.)
//! 2. Every line is written once or counted as dropped, never twice, across SIGUSR1 reopens.
//!    (black-box `rotation_by_sigusr1_under_load_loses_no_line_and_duplicates_none`.)
//! 3. A line waits at most `access_log_flush` before it is written, however quiet the edge is.
//!    (`tests::a_quiet_log_is_written_within_the_flush_interval`; black-box
//!    `a_line_reaches_the_file_within_the_flush_interval`.)
//! 4. The line's fields, their order and their bytes stay as they were; `sample_rate` is added
//!    last. (`line::tests::every_field_is_the_bytes_serde_json_wrote_for_it`.)

mod line;
mod sample;
mod timestamp;
mod writer;

use crate::metrics::Metrics;
use model::{AccessLogSettings, AccessLogTarget};
use sample::Sample;
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};
use timestamp::SecondStamp;
use writer::{Batch, Output};

/// What is logged about one request.
pub struct AccessRecord<'a> {
    /// When the request started; written as RFC 3339 with milliseconds.
    pub time: SystemTime,
    /// The site's name; `_unrouted` when no site claimed the host.
    pub site: &'a str,
    /// The client's address (the real client's, behind a trusted proxy).
    pub client_ip: IpAddr,
    /// The method as sent.
    pub method: &'a str,
    /// The host the request named, lowercase and without port; empty when it named none.
    pub host: &'a str,
    /// The path as sent, without the query.
    pub path: &'a str,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'a str,
    /// The status sent to the client.
    pub status: u16,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// From the request's start to the response's end, in milliseconds.
    pub duration_ms: f64,
    /// The origin the response came from (`host:port`), absent when none was contacted.
    pub origin: Option<&'a str>,
    /// Time from sending to the origin to its response header.
    pub upstream_ms: Option<f64>,
}

/// Room past `access_log_buffer` in every buffer, so that the line that fills it seldom makes
/// it grow (a line is a few hundred bytes unless its path is long).
const LINE_ROOM: usize = 4 << 10;

/// Full buffers waiting for the writer, in bytes: a disk that stalls for a tenth of a second at
/// 16,000 lines a second holds about 400 KiB; this is ten times that.
const QUEUE_BYTES: usize = 4 << 20;

/// At most 64 and at least 4 full buffers wait (with the default 64 KiB buffers, 64).
fn queue_buffers(buffer_bytes: usize) -> usize {
    (QUEUE_BYTES / buffer_bytes.max(1)).clamp(4, 64)
}

/// Handle for writing access-log lines; clones share one writer.
#[derive(Clone)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
    metrics: Arc<Metrics>,
}

/// What the request threads and the writer share.
struct Shared {
    /// Where lines gather; a thread uses the one [`shard_index`] gives it.
    shards: Box<[Shard]>,
    to_writer: SyncSender<Batch>,
    /// Written buffers, cleared, waiting to be filled again (no allocation once warm).
    spare: Mutex<Vec<Vec<u8>>>,
    spare_limit: usize,
    buffer_bytes: usize,
    sample: Sample,
    line_end: line::LineEnd,
    /// Set by [`AccessLog::reopen`] (SIGUSR1); the writer reopens the file.
    reopen: AtomicBool,
    /// Flushes asked for by [`AccessLog::flush`]; the writer answers through `flushed`.
    flush_asked: AtomicU64,
    flushed: Mutex<u64>,
    flushed_changed: Condvar,
    metrics: Arc<Metrics>,
}

/// One buffer being filled, on a cache line of its own so that two threads filling neighbouring
/// shards do not slow each other down.
#[repr(align(128))]
struct Shard(Mutex<Pending>);

struct Pending {
    bytes: Vec<u8>,
    stamp: SecondStamp,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Nothing panics while holding it (formatting into a Vec does not fail).
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

thread_local! {
    static SHARD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// This thread's shard among `shards`: threads take indexes in turn as they first log, so the
/// worker threads, which log nearly every line, each get their own while there are as many
/// shards as threads; past that, two threads share one (and its lock).
fn shard_index(shards: usize) -> usize {
    SHARD_INDEX.with(|index| {
        let mut i = index.get();
        if i == usize::MAX {
            i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
            index.set(i);
        }
        i % shards
    })
}

/// Two shards per core: the worker threads (one per core at most) rarely share one, and the
/// memory it costs stays small (64 KiB each by default).
fn shard_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cores * 2).clamp(2, 64)
}

impl AccessLog {
    /// Starts the writer thread for `settings`. A file is opened for appending (created if
    /// absent); stdout is written as it was inherited (a file, a pipe, a terminal).
    pub fn start(
        settings: &AccessLogSettings,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<AccessLog> {
        if settings.target == AccessLogTarget::Off {
            return Ok(AccessLog {
                shared: None,
                metrics,
            });
        }
        let output = match Output::open(&settings.target) {
            Ok(output) => output,
            // A service started with stdout closed still serves; it just has nowhere to log.
            Err(error) if settings.target == AccessLogTarget::Stdout => {
                tracing::warn!(%error, "stdout is closed: no access log is written");
                return Ok(AccessLog {
                    shared: None,
                    metrics,
                });
            }
            Err(error) => return Err(error),
        };
        Self::start_with_output(output, settings, metrics)
    }

    /// [`AccessLog::start`] writing to `output`, whatever `settings.target` says.
    fn start_with_output(
        output: Output,
        settings: &AccessLogSettings,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<AccessLog> {
        let buffer_bytes = settings.buffer_bytes.max(1);
        let depth = queue_buffers(buffer_bytes);
        let (to_writer, batches) = sync_channel(depth);
        let shards = (0..shard_count())
            .map(|_| {
                Shard(Mutex::new(Pending {
                    bytes: Vec::new(),
                    stamp: SecondStamp::new(),
                }))
            })
            .collect();
        let shared = Arc::new(Shared {
            shards,
            to_writer,
            spare: Mutex::new(Vec::new()),
            spare_limit: depth,
            buffer_bytes,
            sample: Sample::new(settings.sample),
            line_end: line::LineEnd::new(settings.sample),
            reopen: AtomicBool::new(false),
            flush_asked: AtomicU64::new(0),
            flushed: Mutex::new(0),
            flushed_changed: Condvar::new(),
            metrics: Arc::clone(&metrics),
        });
        let writer = writer::Writer {
            shared: Arc::downgrade(&shared),
            batches,
            output,
            flush_every: settings.flush,
            metrics: Arc::clone(&metrics),
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run())?;
        Ok(AccessLog {
            shared: Some(shared),
            metrics,
        })
    }

    /// Whether lines are written at all; callers skip building records when not.
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Adds `record`'s line to this thread's buffer (if the request is sampled), and hands the
    /// buffer to the writer once it is full. Never blocks on the writer.
    pub fn write(&self, record: &AccessRecord<'_>) {
        let Some(shared) = &self.shared else { return };
        if !shared.sample.keep() {
            return;
        }
        let shard = &shared.shards[shard_index(shared.shards.len())];
        let mut pending = shard.lock();
        let pending = &mut *pending;
        if pending.bytes.capacity() == 0 {
            pending.bytes = shared.spare_buffer();
        }
        let start = pending.bytes.len();
        line::write_line(
            &mut pending.bytes,
            record,
            &shared.line_end,
            &mut pending.stamp,
        );
        if pending.bytes.len() < shared.buffer_bytes {
            return;
        }
        let full = std::mem::replace(&mut pending.bytes, shared.spare_buffer());
        if let Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) =
            shared.to_writer.try_send(Batch::Lines(full))
        {
            // The writer is behind: keep the lines already buffered (the writer takes them at
            // its next flush) and drop this one, which would grow the buffer without bound.
            if let Batch::Lines(mut kept) = batch {
                kept.truncate(start);
                let unused = std::mem::replace(&mut pending.bytes, kept);
                shared.recycle(unused);
            }
            self.metrics
                .access_log_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the writer to close and reopen the file (SIGUSR1, after logrotate renamed it):
    /// lines buffered until now go to the file that was open, later ones to the new file.
    pub fn reopen(&self) {
        if let Some(shared) = &self.shared {
            shared.reopen.store(true, Ordering::Release);
            // A full queue means the writer is busy and sees the flag after its next write.
            let _ = shared.to_writer.try_send(Batch::Wake);
        }
    }

    /// Writes every line logged so far, waiting at most `within` (the writer may be stuck on a
    /// blocked pipe: shutdown must not hang on it). Whether it finished in time.
    pub async fn flush(&self, within: Duration) -> bool {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.flush_blocking(within))
            .await
            .unwrap_or(false)
    }

    fn flush_blocking(&self, within: Duration) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let ticket = shared.flush_asked.fetch_add(1, Ordering::AcqRel) + 1;
        let _ = shared.to_writer.try_send(Batch::Wake);
        let flushed = shared
            .flushed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (_flushed, waited) = shared
            .flushed_changed
            .wait_timeout_while(flushed, within, |done| *done < ticket)
            .unwrap_or_else(PoisonError::into_inner);
        !waited.timed_out()
    }

    /// Lines dropped so far (the writer behind, or a failed write).
    pub fn dropped(&self) -> u64 {
        self.metrics.access_log_dropped.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn spare_buffer(&self) -> Vec<u8> {
        let reused = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        reused.unwrap_or_else(|| Vec::with_capacity(self.buffer_bytes + LINE_ROOM))
    }

    /// Keeps a written buffer for reuse, unless enough are kept or a long line made it grow.
    fn recycle(&self, mut bytes: Vec<u8>) {
        if bytes.capacity() > 2 * (self.buffer_bytes + LINE_ROOM) {
            return;
        }
        bytes.clear();
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < self.spare_limit {
            spare.push(bytes);
        }
    }

    /// The lines every shard holds, each shard's buffer swapped for an empty one: the lock is
    /// held for the swap only, never while writing.
    fn take_pending(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.shards.iter().filter_map(|shard| {
            let mut pending = shard.lock();
            if pending.bytes.is_empty() {
                return None;
            }
            Some(std::mem::take(&mut pending.bytes))
        })
    }

    /// Tells [`AccessLog::flush`] callers up to `ticket` that their lines are written.
    fn flushed_up_to(&self, ticket: u64) {
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        if *flushed < ticket {
            *flushed = ticket;
            self.flushed_changed.notify_all();
        }
    }
}

impl Drop for Shared {
    /// The last handle is gone (the edge stopped): what the shards hold still goes to the writer,
    /// which ends once the queue is empty.
    fn drop(&mut self) {
        for shard in &self.shards {
            let bytes = std::mem::take(&mut shard.lock().bytes);
            if !bytes.is_empty() && self.to_writer.try_send(Batch::Lines(bytes)).is_err() {
                self.metrics
                    .access_log_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Reopens the log on SIGUSR1, and warns once a second while lines are being dropped (from here,
/// not from the writer: a writer stuck on a blocked pipe could not say so). Runs until shutdown.
pub async fn upkeep(
    log: AccessLog,
    mut reopen: Option<tokio::signal::unix::Signal>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dropped = log.dropped();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = log.dropped();
                if now > dropped {
                    tracing::warn!(
                        dropped = now - dropped,
                        "access log: lines dropped in the last second; the writer cannot keep up \
                         (a slow or full disk, or a stdout pipe nobody reads)"
                    );
                }
                dropped = now;
            }
            signal = async {
                match reopen.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => match signal {
                Some(()) if log.enabled() => {
                    tracing::info!("SIGUSR1: reopening the access log");
                    log.reopen();
                }
                Some(()) => {}
                // The signal driver is gone (the runtime is stopping): stop listening.
                None => reopen = None,
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Instant, UNIX_EPOCH};

    fn record(path: &str) -> AccessRecord<'_> {
        AccessRecord {
            time: UNIX_EPOCH,
            site: "s",
            client_ip: "127.0.0.1".parse().unwrap(),
            method: "GET",
            host: "h",
            path,
            protocol: "HTTP/1.1",
            status: 200,
            bytes_in: 0,
            bytes_out: 1,
            duration_ms: 0.5,
            origin: None,
            upstream_ms: None,
        }
    }

    fn settings(path: &std::path::Path, buffer_bytes: usize, flush: Duration) -> AccessLogSettings {
        AccessLogSettings {
            target: AccessLogTarget::File(path.to_path_buf()),
            buffer_bytes,
            flush,
            sample: 1.0,
        }
    }

    fn lines_in(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_quiet_log_is_written_within_the_flush_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let flush = Duration::from_millis(100);
        let log = AccessLog::start(&settings(&path, 64 << 10, flush), Metrics::new()).unwrap();
        log.write(&record("/one"));
        let written = Instant::now();
        // One line never fills a 64 KiB buffer: only the flush interval writes it.
        while lines_in(&path).is_empty() && written.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let waited = written.elapsed();
        assert_eq!(lines_in(&path).len(), 1);
        assert!(
            waited < flush + Duration::from_millis(900),
            "the line waited {waited:?} with a {flush:?} flush interval"
        );
    }

    #[test]
    fn full_buffers_are_written_without_waiting_for_the_flush_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(
            &settings(&path, 4096, Duration::from_secs(60)),
            Metrics::new(),
        )
        .unwrap();
        for i in 0..200 {
            log.write(&record(&format!("/{i}")));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // 200 lines of about 200 bytes fill several 4 KiB buffers; the last, partial one waits
        // for the (minute-long) interval.
        while lines_in(&path).len() < 100 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let written = lines_in(&path).len();
        assert!((100..200).contains(&written), "{written} lines written");
    }

    #[tokio::test]
    async fn flush_writes_every_line_logged_so_far() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(
            &settings(&path, 64 << 10, Duration::from_secs(60)),
            Metrics::new(),
        )
        .unwrap();
        for i in 0..1000 {
            log.write(&record(&format!("/{i}")));
        }
        assert!(log.flush(Duration::from_secs(10)).await);
        let lines = lines_in(&path);
        assert_eq!(lines.len(), 1000);
        assert!(lines[999].contains("\"path\":\"/999\""), "{}", lines[999]);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn a_full_queue_drops_new_lines_and_counts_them() {
        // A writer that never writes: its output is a pipe nobody reads, and its queue and the
        // pipe fill. Writing must go on returning at once, counting what it drops.
        let (reader, writer) = std::io::pipe().unwrap();
        let metrics = Metrics::new();
        let log = AccessLog::start_with_output(
            Output::from_file(std::fs::File::from(std::os::fd::OwnedFd::from(writer))),
            &settings(
                std::path::Path::new("unused"),
                4096,
                Duration::from_secs(60),
            ),
            Arc::clone(&metrics),
        )
        .unwrap();
        let started = Instant::now();
        let lines = 20_000;
        for i in 0..lines {
            log.write(&record(&format!("/{i}")));
        }
        let took = started.elapsed();
        let dropped = log.dropped();
        // The pipe holds 64 KiB and the queue 64 buffers of 4 KiB: about 1,700 lines of this
        // size; the rest cannot be written while nobody reads.
        assert!(
            dropped > lines / 2,
            "{dropped} of {lines} lines dropped behind a blocked pipe"
        );
        assert!(
            took < Duration::from_secs(10),
            "{lines} lines took {took:?} behind a blocked pipe"
        );
        drop(reader);
    }

    #[test]
    fn a_sampled_line_says_its_rate_and_about_that_share_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut settings = settings(&path, 64 << 10, Duration::from_secs(60));
        settings.sample = 0.25;
        let log = AccessLog::start(&settings, Metrics::new()).unwrap();
        for i in 0..4000 {
            log.write(&record(&format!("/{i}")));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(runtime.block_on(log.flush(Duration::from_secs(10))));
        let lines = lines_in(&path);
        // 1000 expected, binomial spread about 27: ten spreads either side.
        assert!((730..1270).contains(&lines.len()), "{} lines", lines.len());
        assert!(
            lines.iter().all(|l| l.ends_with(",\"sample_rate\":0.25}")),
            "{lines:?}"
        );
    }
}

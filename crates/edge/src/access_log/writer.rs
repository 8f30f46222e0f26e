//! The writer thread: the only place the access log makes system calls.
//!
//! It writes each full buffer as it arrives (one `write`, or a few on a pipe), and every
//! `access_log_flush` it takes the partly filled buffers from the shards too, so a quiet edge's
//! lines still show within the interval. It reopens a file when asked (SIGUSR1), and counts the
//! lines a failed write loses as dropped.

use super::Shared;
use crate::metrics::Metrics;
use model::AccessLogTarget;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// What the writer's queue carries.
pub(super) enum Batch {
    /// A buffer of whole lines.
    Lines(Vec<u8>),
    /// Look at the flags now (reopen, flush) rather than at the next interval.
    Wake,
}

/// Where lines are written.
pub(super) struct Output {
    file: File,
    /// The path to reopen, for a file target; stdout is never reopened.
    path: Option<PathBuf>,
    /// Why the last write failed, while writes fail: the warning is logged once per spell.
    failing: Option<std::io::ErrorKind>,
    /// The last failed write may have left half a line: the next write starts a new one.
    torn: bool,
}

fn open_append(path: &PathBuf) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl Output {
    /// Opens `target`. Stdout is written through its own file descriptor (a duplicate of 1),
    /// not through `std::io::stdout()`, whose lock and line buffering would split every buffer
    /// into a `write` per line.
    pub(super) fn open(target: &AccessLogTarget) -> std::io::Result<Output> {
        match target {
            AccessLogTarget::File(path) => Ok(Output {
                path: Some(path.clone()),
                ..Output::from_file(open_append(path)?)
            }),
            AccessLogTarget::Stdout => {
                use std::os::fd::AsFd;
                let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
                Ok(Output::from_file(File::from(fd)))
            }
            AccessLogTarget::Off => Err(std::io::Error::other("the access log is off")),
        }
    }

    /// Writes to `file`, which is never reopened.
    pub(super) fn from_file(file: File) -> Output {
        Output {
            file,
            path: None,
            failing: None,
            torn: false,
        }
    }

    /// Writes `bytes` (whole lines); returns how many lines a failure lost.
    fn write_lines(&mut self, bytes: &[u8]) -> u64 {
        if self.torn && self.file.write_all(b"\n").is_ok() {
            self.torn = false;
        }
        let mut written = 0;
        while written < bytes.len() {
            match self.file.write(&bytes[written..]) {
                Ok(0) => return self.failed(std::io::ErrorKind::WriteZero.into(), bytes, written),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return self.failed(e, bytes, written),
            }
        }
        if self.failing.take().is_some() {
            tracing::info!("access log: writing again");
        }
        0
    }

    fn failed(&mut self, error: std::io::Error, bytes: &[u8], written: usize) -> u64 {
        if self.failing != Some(error.kind()) {
            tracing::warn!(%error, "access log: write failed; lines are dropped and counted until writes succeed");
            self.failing = Some(error.kind());
        }
        self.torn = written > 0 && bytes[written - 1] != b'\n';
        memchr::memchr_iter(b'\n', &bytes[written..]).count() as u64
    }

    /// Opens the file's path again (logrotate renamed it): later lines go to the new file. On
    /// failure the file open until now stays in use.
    fn reopen(&mut self) {
        let Some(path) = &self.path else {
            tracing::info!("access log: stdout is not reopened");
            return;
        };
        match open_append(path) {
            Ok(file) => {
                self.file = file;
                self.torn = false;
            }
            Err(error) => tracing::warn!(
                %error,
                path = %path.display(),
                "access log: cannot reopen; still writing to the file opened before"
            ),
        }
    }
}

/// The writer thread's state.
pub(super) struct Writer {
    /// Weak: the writer must not keep the log alive; once the edge drops it, the writer writes
    /// what was queued and ends.
    pub(super) shared: Weak<Shared>,
    pub(super) batches: Receiver<Batch>,
    pub(super) output: Output,
    pub(super) flush_every: Duration,
    pub(super) metrics: Arc<Metrics>,
}

impl Writer {
    pub(super) fn run(mut self) {
        let mut next_flush = Instant::now() + self.flush_every;
        let mut flushes_done = 0;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match self.batches.recv_timeout(wait) {
                Ok(Batch::Lines(bytes)) => self.write(bytes),
                Ok(Batch::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let Some(shared) = self.shared.upgrade() else {
                continue;
            };
            if shared.reopen.swap(false, Ordering::AcqRel) {
                // What was logged before the signal goes to the file logrotate renamed, so the
                // new file starts with the first line logged after it.
                self.write_everything(&shared);
                self.output.reopen();
                next_flush = Instant::now() + self.flush_every;
            }
            let asked = shared.flush_asked.load(Ordering::Acquire);
            if asked > flushes_done || Instant::now() >= next_flush {
                self.write_everything(&shared);
                shared.flushed_up_to(asked);
                flushes_done = asked;
                next_flush = Instant::now() + self.flush_every;
            }
        }
    }

    fn write(&mut self, bytes: Vec<u8>) {
        let lost = self.output.write_lines(&bytes);
        if lost > 0 {
            self.metrics
                .access_log_dropped
                .fetch_add(lost, Ordering::Relaxed);
        }
        if let Some(shared) = self.shared.upgrade() {
            shared.recycle(bytes);
        }
    }

    /// Writes the queue as it stands, then every shard's partial buffer.
    fn write_everything(&mut self, shared: &Shared) {
        for _ in 0..shared.spare_limit {
            match self.batches.try_recv() {
                Ok(Batch::Lines(bytes)) => self.write(bytes),
                Ok(Batch::Wake) => {}
                Err(_) => break,
            }
        }
        let pending: Vec<Vec<u8>> = shared.take_pending().collect();
        for bytes in pending {
            self.write(bytes);
        }
    }
}

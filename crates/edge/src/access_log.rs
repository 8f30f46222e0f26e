//! One JSON line per request, written by a dedicated thread.
//!
//! Requests never wait on the log: lines go through a bounded channel, and when the writer falls
//! behind (a slow disk, a blocked stdout pipe) lines are dropped and counted in
//! `palisade_access_log_dropped_total` rather than slowing the edge down.

use crate::metrics::Metrics;
use model::AccessLogTarget;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

/// Lines buffered between requests and the writer thread.
const QUEUE_LINES: usize = 16 * 1024;

/// What is logged about one request.
#[derive(Serialize)]
pub struct AccessRecord<'a> {
    /// When the request started; written as RFC 3339 with milliseconds.
    #[serde(serialize_with = "rfc3339")]
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

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

/// Handle for writing access-log lines.
#[derive(Clone)]
pub struct AccessLog {
    sender: Option<SyncSender<String>>,
    metrics: Arc<Metrics>,
}

impl AccessLog {
    /// Starts the writer thread for `target`. A file is opened for appending (created if absent).
    pub fn start(target: &AccessLogTarget, metrics: Arc<Metrics>) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => {
                return Ok(AccessLog {
                    sender: None,
                    metrics,
                });
            }
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (sender, receiver) = sync_channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(receiver, out))?;
        Ok(AccessLog {
            sender: Some(sender),
            metrics,
        })
    }

    /// Whether lines are written at all; callers skip building records when not.
    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Queues one line for the writer thread; drops it (and counts it) when the queue is full.
    pub fn write(&self, record: &AccessRecord<'_>) {
        let Some(sender) = &self.sender else { return };
        let Ok(line) = serde_json::to_string(record) else {
            return;
        };
        match sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics
                    .access_log_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn write_lines(receiver: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = receiver.recv() {
        let mut ok = writeln!(out, "{line}").is_ok();
        // Drain what is already queued before flushing, so a busy edge writes in large chunks
        // and a quiet one still shows each line at once.
        while let Ok(line) = receiver.try_recv() {
            ok &= writeln!(out, "{line}").is_ok();
        }
        ok &= out.flush().is_ok();
        if !ok {
            // A closed stdout or a full disk: keep draining so senders never block, and let
            // the operator see it once rather than per line.
            tracing::warn!("access log write failed; lines are being lost");
        }
    }
}

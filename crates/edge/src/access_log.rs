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
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub site: &'a str,
    pub client_ip: IpAddr,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
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

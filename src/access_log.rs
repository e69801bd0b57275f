//! JSON-lines logs: the access log (one line per request, written when its response body is
//! done) and, through the same [`Sink`], the WAF audit log.
//!
//! Lines are buffered per worker thread and written in batches (when a buffer passes 32 KiB and
//! every 200 ms), so logging costs a memcpy on the hot path, not a system call. A file is opened
//! for append; each batch is one `write`, so lines from several workers never interleave.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::server::worker_index;

const FLUSH_AT: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

enum Output {
    Stdout,
    File(File),
}

/// An open access log.
pub struct Sink {
    pub target: LogTarget,
    output: Output,
    buffers: Box<[Mutex<Vec<u8>>]>,
}

impl Sink {
    pub fn open(target: &LogTarget, workers: usize) -> std::io::Result<Self> {
        let output = match target {
            LogTarget::Stdout => Output::Stdout,
            LogTarget::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Output::File(OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        let buffers = (0..workers.max(1) + 1).map(|_| Mutex::new(Vec::new())).collect();
        Ok(Self { target: target.clone(), output, buffers })
    }

    /// Appends `record` as one JSON line (the access log, the WAF audit log).
    pub fn write_json<T: Serialize>(&self, record: &T) {
        let slot = &self.buffers[worker_index() % self.buffers.len()];
        let mut buffer = slot.lock().unwrap_or_else(|e| e.into_inner());
        if serde_json::to_writer(&mut *buffer, record).is_ok() {
            buffer.push(b'\n');
        }
        if buffer.len() >= FLUSH_AT {
            self.write_out(&mut buffer);
        }
    }

    fn write_out(&self, buffer: &mut Vec<u8>) {
        if buffer.is_empty() {
            return;
        }
        let written = match &self.output {
            Output::Stdout => std::io::stdout().lock().write_all(buffer),
            Output::File(file) => (&*file).write_all(buffer),
        };
        if let Err(error) = written {
            tracing::warn!(%error, "access log write failed; lines dropped");
        }
        buffer.clear();
    }

    /// Writes out every worker's buffered lines.
    pub fn flush(&self) {
        for slot in self.buffers.iter() {
            let mut buffer = slot.lock().unwrap_or_else(|e| e.into_inner());
            self.write_out(&mut buffer);
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One access-log line in the making; written by [`Pending::finish`] when the body is done.
pub struct Pending {
    pub sink: Arc<Sink>,
    pub started: Instant,
    pub request_id: String,
    pub client_ip: IpAddr,
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub route: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    pub target: Option<Arc<str>>,
    pub tenant: Option<String>,
    pub consumer: Option<String>,
    pub bytes_in: u64,
    pub waf_action: Option<&'static str>,
    pub limited: bool,
}

#[derive(Serialize)]
struct Record<'a> {
    ts: String,
    request_id: &'a str,
    client_ip: IpAddr,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    status: u16,
    route: Option<&'a str>,
    upstream: Option<&'a str>,
    target: Option<&'a str>,
    tenant: Option<&'a str>,
    consumer: Option<&'a str>,
    duration_ms: f64,
    bytes_in: u64,
    bytes_out: u64,
    waf_action: Option<&'a str>,
    limited: bool,
}

impl Pending {
    pub fn finish(self: Box<Self>, bytes_out: u64) {
        let record = Record {
            ts: rfc3339(SystemTime::now()),
            request_id: &self.request_id,
            client_ip: self.client_ip,
            method: &self.method,
            host: &self.host,
            path: &self.path,
            status: self.status,
            route: self.route.as_deref(),
            upstream: self.upstream.as_deref(),
            target: self.target.as_deref(),
            tenant: self.tenant.as_deref(),
            consumer: self.consumer.as_deref(),
            duration_ms: (self.started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            bytes_in: self.bytes_in,
            bytes_out,
            waf_action: self.waf_action,
            limited: self.limited,
        };
        self.sink.write_json(&record);
    }
}

/// `2026-11-25T19:24:18.123Z`, UTC, millisecond precision.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (year, month, day) = barbican_waf::civil::date_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", since.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_980_258_123);
        assert_eq!(rfc3339(t), "2026-11-29T19:24:18.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}

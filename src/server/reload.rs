//! Reloads: three sources, one validate-then-swap path.
//!
//! - the config file changing on disk ([`watch_files`]: polled, so atomic renames, symlink
//!   swaps such as Kubernetes ConfigMaps, and editors that replace files all count; debounced),
//!   and the certificate files it names;
//! - SIGHUP ([`Shared::reload`]);
//! - `PUT /api/v1/config` ([`Shared::replace`]), which also writes the accepted text back to the
//!   config file so that the file and the running config agree.
//!
//! Each compiles the whole config first; any error leaves the serving snapshot untouched, is
//! counted in `barbican_config_reloads_total{result="error"}` and is returned in full.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{check_restart_only, Shared};
use crate::config::{ConfigError, Source};

/// How often watched files are looked at, and how long a change must hold still.
const POLL: Duration = Duration::from_millis(200);
const SETTLE: Duration = Duration::from_millis(100);

/// Why a config submitted through the admin API was not applied.
#[derive(Debug)]
pub enum ReplaceError {
    /// `If-Match` named another revision than the one serving.
    Stale {
        serving: u64,
    },
    Invalid(Vec<ConfigError>),
}

impl Shared {
    /// Re-reads the config file and applies it (SIGHUP, or a change on disk).
    pub async fn reload(&self) -> Result<u64, Vec<ConfigError>> {
        let _one_at_a_time = self.reloading.lock().await;
        let source = self.current_source().reread();
        let result = match source {
            Ok(source) => self.apply_source(source).await,
            Err(errors) => Err(errors),
        };
        self.record(&result, "file");
        result
    }

    /// Applies config `text` submitted through the admin API; with `if_match`, only when that
    /// revision is the one serving. `Ok` holds the new revision and its warnings.
    pub async fn replace(&self, text: String, if_match: Option<u64>) -> Result<(u64, Vec<ConfigError>), ReplaceError> {
        let _one_at_a_time = self.reloading.lock().await;
        let serving = self.snapshot().revision;
        if if_match.is_some_and(|wanted| wanted != serving) {
            return Err(ReplaceError::Stale { serving });
        }
        let current = self.current_source();
        let source = Source { text, base_dir: current.base_dir.clone(), file: current.file.clone() };
        let result = self.apply_source(source.clone()).await;
        self.record(&result, "admin API");
        let revision = result.map_err(ReplaceError::Invalid)?;
        if let Some(path) = &source.file {
            if let Err(error) = write_atomically(path, &source.text) {
                tracing::warn!(path = %path.display(), %error, "applied, but could not write the config file; a restart would load the old file");
            }
        }
        // Still under the reload lock: the snapshot serving is the one just applied.
        Ok((revision, self.snapshot().warnings.clone()))
    }

    /// The source of the serving config.
    pub fn current_source(&self) -> Source {
        self.source.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn apply_source(&self, source: Source) -> Result<u64, Vec<ConfigError>> {
        let current = self.snapshot();
        let next = self.compile(&source, current.revision + 1)?;
        check_restart_only(&current, &next)?;
        let revision = next.revision;
        self.apply(next).await?;
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = source;
        Ok(revision)
    }

    fn record(&self, result: &Result<u64, Vec<ConfigError>>, origin: &str) {
        self.metrics.reload(result.is_ok());
        match result {
            Ok(revision) => tracing::info!(revision, origin, "config applied"),
            Err(errors) => {
                for error in errors {
                    tracing::error!(%error, origin, "config rejected; the previous config keeps serving");
                }
            }
        }
    }
}

/// Writes `text` to `path` by renaming a sibling temporary file over it, so a reader (or the
/// watcher) never sees half a file.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// What a file looked like: enough to notice any replacement or rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// A watched file and how it looked.
type Look = (PathBuf, Option<Seen>);

fn look(path: &Path) -> Option<Seen> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Seen { modified: meta.modified().ok(), len: meta.len(), inode: meta.ino() })
}

/// The files the serving config depends on: the config file, then certificates and keys.
fn watched(shared: &Shared) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = shared.current_source().file.into_iter().collect();
    files.extend(shared.snapshot().files.iter().cloned());
    files
}

/// Reloads when the config file or a file it names changes; runs on the control runtime.
/// The files are looked at now, so that a change made right after start-up is not missed.
pub fn watch_files(shared: Arc<Shared>) -> impl std::future::Future<Output = ()> {
    let last = reference(&[], watched(&shared));
    watch_loop(shared, last)
}

async fn watch_loop(shared: Arc<Shared>, mut last: Vec<Look>) {
    let mut shutdown = shared.shutdown_signal();
    loop {
        tokio::select! {
            _ = super::stopped(&mut shutdown) => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let now = look_again(&last);
        if now == last {
            continue;
        }
        // Let a writer finish: act once the files hold still.
        tokio::time::sleep(SETTLE).await;
        let settled = look_again(&now);
        if settled != now {
            continue;
        }
        let config_only = settled.iter().zip(&last).skip(1).all(|(a, b)| a == b);
        let unchanged_text = config_only
            && shared.current_source().reread().is_ok_and(|fresh| fresh.text == shared.current_source().text);
        if !unchanged_text {
            // Errors are logged and counted by reload; the watcher just waits for the next change.
            let _ = shared.reload().await;
        }
        last = reference(&settled, watched(&shared));
    }
}

/// The same files, looked at now.
fn look_again(files: &[Look]) -> Vec<Look> {
    files.iter().map(|(p, _)| (p.clone(), look(p))).collect()
}

/// What the files `now_watched` are compared with at the next poll. Those looked at before
/// the reload read them keep that look, so a write that lands while the reload runs is still
/// a change; files the config names for the first time are looked at now.
fn reference(settled: &[Look], now_watched: Vec<PathBuf>) -> Vec<Look> {
    now_watched
        .into_iter()
        .map(|p| {
            let seen = settled.iter().find(|(q, _)| *q == p).map_or_else(|| look(&p), |(_, seen)| seen.clone());
            (p, seen)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_during_a_reload_is_a_change_at_the_next_poll() {
        let dir = tempfile::tempdir().unwrap();
        let (config, cert) = (dir.path().join("barbican.yaml"), dir.path().join("cert.pem"));
        std::fs::write(&config, "first").unwrap();
        let settled = vec![(config.clone(), look(&config))];
        // The reload read "first"; meanwhile the file is replaced, and the config it read
        // names a certificate.
        write_atomically(&config, "second, written during the reload").unwrap();
        std::fs::write(&cert, "pem").unwrap();
        let last = reference(&settled, vec![config.clone(), cert.clone()]);
        assert_eq!(last[0], settled[0], "the config keeps the look from before the reload");
        assert_ne!(last[0].1, look(&config), "so the next poll sees the write");
        assert_eq!(last[1], (cert.clone(), look(&cert)), "a newly named file is looked at now");
    }
}

//! Zero-downtime binary upgrade: the running process hands its listening sockets to its
//! successor over a Unix socket (SCM_RIGHTS), as pingora and sozu do.
//!
//! The listening sockets never close, so no connection is refused: while both processes hold
//! them, either may accept; once the successor says it is ready, the old process stops
//! accepting and drains (requests in flight finish, keep-alive clients get `connection: close`
//! on their next answer, WebSockets close with 1001 spread over their drain window) and exits.
//!
//! ```text
//! new → old   TAKEOVER\n
//! old → new   {"listeners": ["0.0.0.0:8080", ...]}  + one fd per listener
//! new → old   READY\n            (after it has started serving on them)
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sendfd::{RecvWithFd, SendWithFd};

use super::Shared;

/// How long either side waits for the other.
const PATIENCE: Duration = Duration::from_secs(30);

/// Sockets handed over by the previous process, and the line to tell it we are ready.
pub struct Takeover {
    pub sockets: HashMap<SocketAddr, std::net::TcpListener>,
    channel: UnixStream,
}

impl Takeover {
    /// Asks the process listening on `path` for its sockets.
    pub fn request(path: &Path) -> std::io::Result<Self> {
        let mut channel = UnixStream::connect(path)?;
        channel.set_read_timeout(Some(PATIENCE))?;
        channel.write_all(b"TAKEOVER\n")?;
        let mut header = vec![0u8; 64 * 1024];
        let mut fds = [0; 256];
        let (len, count) = channel.recv_with_fd(&mut header, &mut fds)?;
        // Own every received descriptor at once, so that none leaks on an error below.
        let owned: Vec<OwnedFd> = fds[..count]
            .iter()
            .map(|&fd| {
                // SAFETY: the kernel just installed `fd` in this process for this message
                // (SCM_RIGHTS); nothing else refers to it, so this is its only owner.
                #[allow(unsafe_code)]
                unsafe {
                    OwnedFd::from_raw_fd(fd)
                }
            })
            .collect();
        let header: serde_json::Value = serde_json::from_slice(&header[..len]).map_err(std::io::Error::other)?;
        let addrs: Vec<SocketAddr> =
            header["listeners"].as_array().into_iter().flatten().filter_map(|a| a.as_str()?.parse().ok()).collect();
        if addrs.len() != owned.len() {
            return Err(std::io::Error::other(format!("got {} sockets for {} listeners", owned.len(), addrs.len())));
        }
        let mut sockets = HashMap::new();
        for (addr, fd) in addrs.into_iter().zip(owned) {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            sockets.insert(addr, listener);
        }
        Ok(Self { sockets, channel })
    }

    /// Tells the previous process that this one serves now; it drains and exits.
    pub fn confirm(mut self) -> std::io::Result<()> {
        self.channel.write_all(b"READY\n")
    }
}

/// Offers this process's sockets to a successor on `path` (replacing a stale socket file).
/// After a successful handover the gateway shuts down gracefully.
pub fn offer(path: PathBuf, shared: Arc<Shared>) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    tracing::info!(path = %path.display(), "ready to hand sockets to a successor (barbican run --takeover)");
    Ok(async move {
        loop {
            let accepted = tokio::task::spawn_blocking({
                let listener = listener.try_clone();
                move || listener.and_then(|l| l.accept())
            })
            .await;
            let Ok(Ok((channel, _))) = accepted else {
                tracing::warn!("upgrade socket failed; binary upgrades are off");
                return;
            };
            let sockets = match shared.handover_sockets() {
                Ok(sockets) => sockets,
                Err(error) => {
                    tracing::error!(%error, "cannot share listening sockets");
                    continue;
                }
            };
            match tokio::task::spawn_blocking(move || hand_over(channel, sockets)).await {
                Ok(Ok(())) => {
                    tracing::info!("successor is serving; draining and exiting");
                    shared.begin_shutdown();
                    return;
                }
                Ok(Err(error)) => tracing::warn!(%error, "handover failed; still serving"),
                Err(error) => tracing::warn!(%error, "handover task failed; still serving"),
            }
        }
    })
}

fn hand_over(channel: UnixStream, sockets: Vec<(SocketAddr, std::net::TcpListener)>) -> std::io::Result<()> {
    channel.set_read_timeout(Some(PATIENCE))?;
    let mut lines = BufReader::new(channel.try_clone()?);
    let mut line = String::new();
    lines.read_line(&mut line)?;
    if line.trim() != "TAKEOVER" {
        return Err(std::io::Error::other(format!("unexpected request {line:?}")));
    }
    let addrs: Vec<String> = sockets.iter().map(|(addr, _)| addr.to_string()).collect();
    let header = serde_json::to_vec(&serde_json::json!({ "listeners": addrs }))?;
    let fds: Vec<i32> = sockets.iter().map(|(_, socket)| socket.as_raw_fd()).collect();
    channel.send_with_fd(&header, &fds)?;
    line.clear();
    lines.read_line(&mut line)?;
    if line.trim() != "READY" {
        return Err(std::io::Error::other("the successor did not confirm"));
    }
    Ok(())
}

//! Relaying an upgraded WebSocket connection, frame by frame, in both directions.
//!
//! Frames pass through untouched (masks included); only headers are read, to count message
//! sizes and to find frame boundaries. A pump reads a frame from one side and writes it to the
//! other before reading the next, so a slow reader slows its writer (backpressure) and an idle
//! connection holds no buffer. When the gateway must close a connection (a message over the
//! limit, idleness, a drain, shutdown), each pump finishes the frame it is in and then writes a
//! close frame of its own to the side it writes to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::frame::{self, GOING_AWAY, MESSAGE_TOO_BIG};

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message: u64,
    pub idle_timeout: Duration,
}

/// Why the gateway closed a connection, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The two ends closed it themselves.
    ByPeers,
    Idle,
    TooBig,
    /// Drained: its target left, or the gateway is shutting down.
    Drained,
}

/// Payloads up to this size are read whole and written with their header in one write.
const WHOLE_FRAME: u64 = 16 * 1024;

/// Relays until both directions end. `close_at` asks for a 1001 close at that instant.
pub async fn relay<C, U>(
    client: C,
    upstream: U,
    limits: Limits,
    mut close_at: watch::Receiver<Option<Instant>>,
) -> Closed
where
    C: AsyncRead + AsyncWrite + Send,
    U: AsyncRead + AsyncWrite + Send,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let (close, _) = watch::channel(None::<Closed>);
    let started = Instant::now();
    let last_frame = AtomicU64::new(0);
    let activity = Activity { started, last_frame: &last_frame };

    let pumps = async {
        tokio::join!(
            pump(&mut client_read, &mut upstream_write, true, limits, &close, &activity),
            pump(&mut upstream_read, &mut client_write, false, limits, &close, &activity),
        )
    };
    let watchdog = async {
        loop {
            let deadline = activity.last() + limits.idle_timeout;
            let drain = async {
                loop {
                    let at = *close_at.borrow_and_update();
                    match at {
                        Some(at) => break tokio::time::sleep_until(at).await,
                        None => {
                            if close_at.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if activity.last() + limits.idle_timeout <= Instant::now() {
                        close.send_replace(Some(Closed::Idle));
                        break;
                    }
                }
                _ = drain => {
                    close.send_replace(Some(Closed::Drained));
                    break;
                }
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = pumps => {}
        _ = watchdog => {}
    }
    let reason = *close.borrow();
    reason.unwrap_or(Closed::ByPeers)
}

struct Activity<'a> {
    started: Instant,
    last_frame: &'a AtomicU64,
}

impl Activity<'_> {
    fn touch(&self) {
        self.last_frame.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last_frame.load(Ordering::Relaxed))
    }
}

/// Copies frames from `src` to `dst` until `src` ends or the connection is being closed.
/// `to_server` says whether `dst` is the upstream (whose frames must be masked).
async fn pump<R, W>(
    src: &mut R,
    dst: &mut W,
    to_server: bool,
    limits: Limits,
    close: &watch::Sender<Option<Closed>>,
    activity: &Activity<'_>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut closing = close.subscribe();
    let mut message_len = 0u64;
    let mut close_forwarded = false;
    loop {
        // Between frames: the only place a close of our own may be written.
        let mut head = [0u8; 14];
        let first = tokio::select! {
            biased;
            _ = closing_requested(&mut closing) => {
                let reason = (*close.borrow()).unwrap_or(Closed::Drained);
                if !close_forwarded {
                    let (code, text) = match reason {
                        Closed::TooBig => (MESSAGE_TOO_BIG, "message too big"),
                        Closed::Idle => (GOING_AWAY, "idle"),
                        _ => (GOING_AWAY, "going away"),
                    };
                    let _ = dst.write_all(&frame::close(code, text, to_server)).await;
                }
                let _ = dst.shutdown().await;
                return;
            }
            read = src.read_exact(&mut head[..2]) => read,
        };
        if first.is_err() {
            // The sender went away without a close frame: say so to the other side.
            if !close_forwarded {
                let _ = dst.write_all(&frame::close(GOING_AWAY, "peer went away", to_server)).await;
            }
            let _ = dst.shutdown().await;
            ended_by_peer(close);
            return;
        }
        activity.touch();
        let rest = frame::remaining_len([head[0], head[1]]);
        let read_rest = tokio::time::timeout(limits.idle_timeout, src.read_exact(&mut head[2..2 + rest])).await;
        let header = match read_rest {
            Ok(Ok(_)) => frame::parse(&head[..2 + rest]),
            _ => Err("truncated frame header"),
        };
        let Ok(header) = header else {
            let _ = dst.shutdown().await;
            ended_by_peer(close);
            return;
        };
        if !header.is_control() {
            message_len = if header.opcode == frame::CONTINUATION {
                message_len.saturating_add(header.payload_len)
            } else {
                header.payload_len
            };
            if message_len > limits.max_message {
                close.send_replace(Some(Closed::TooBig));
                continue;
            }
            if header.fin {
                message_len = 0;
            }
        }
        if header.opcode == frame::CLOSE {
            close_forwarded = true;
        }
        if copy_frame(src, dst, &head[..header.len], header.payload_len, limits.idle_timeout).await.is_err() {
            let _ = dst.shutdown().await;
            ended_by_peer(close);
            return;
        }
    }
}

async fn closing_requested(closing: &mut watch::Receiver<Option<Closed>>) {
    let _ = closing.wait_for(Option::is_some).await;
}

/// One side ended the connection; unless the gateway is already closing it, the other side
/// is told so (and its pump ends).
fn ended_by_peer(close: &watch::Sender<Option<Closed>>) {
    close.send_if_modified(|reason| {
        let first = reason.is_none();
        if first {
            *reason = Some(Closed::ByPeers);
        }
        first
    });
}

/// Writes the header and copies `len` payload bytes; small frames go out in one write.
async fn copy_frame<R, W>(src: &mut R, dst: &mut W, header: &[u8], len: u64, stall: Duration) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "frame stalled");
    if len <= WHOLE_FRAME {
        let mut buf = Vec::with_capacity(header.len() + len as usize);
        buf.extend_from_slice(header);
        buf.resize(header.len() + len as usize, 0);
        tokio::time::timeout(stall, src.read_exact(&mut buf[header.len()..])).await.map_err(|_| timed_out())??;
        return dst.write_all(&buf).await;
    }
    dst.write_all(header).await?;
    let mut buf = vec![0u8; WHOLE_FRAME as usize];
    let mut left = len;
    while left > 0 {
        let want = left.min(WHOLE_FRAME) as usize;
        let n = tokio::time::timeout(stall, src.read(&mut buf[..want])).await.map_err(|_| timed_out())??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        dst.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    /// A client's frame (masked): `fin`, `opcode`, a payload of `len` random bytes, the length in
    /// its shortest form.
    fn frame(rng: &mut fastrand::Rng, fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut f = vec![u8::from(fin) << 7 | opcode];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend((0..4 + len).map(|_| rng.u8(..)));
        f
    }

    /// What the upstream receives when a client sends `wire` and then ends the connection.
    async fn relayed(wire: &[u8]) -> Vec<u8> {
        let (client, mut client_end) = duplex(1 << 20);
        let (upstream, mut upstream_end) = duplex(1 << 20);
        let (_keep, close_at) = watch::channel(None);
        let limits = Limits { max_message: 1 << 20, idle_timeout: Duration::from_secs(5) };
        let relay = tokio::spawn(relay(client, upstream, limits, close_at));
        client_end.write_all(wire).await.expect("client writes");
        client_end.shutdown().await.expect("client ends");
        let mut got = Vec::new();
        upstream_end.read_to_end(&mut got).await.expect("upstream reads");
        drop((client_end, upstream_end));
        relay.await.expect("the relay ends without panicking");
        got
    }

    /// Frames of every length form, fragmented messages and control frames cross untouched;
    /// a malformed header after them (a reserved opcode, a 64-bit length with its top bit set,
    /// a fragmented control frame) ends the relay there, nothing of it passed on.
    #[tokio::test]
    async fn frames_pass_untouched_and_a_malformed_header_ends_the_relay() {
        let mut rng = fastrand::Rng::with_seed(6455);
        let bad: [&[u8]; 4] = [
            &[0x83, 0x80, 1, 2, 3, 4],
            &[0x00, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            &[0x09, 0x80, 1, 2, 3, 4],
            &[0x89, 0x80 | 126, 0, 200, 1, 2, 3, 4],
        ];
        for round in 0..60 {
            let mut valid = Vec::new();
            for _ in 0..rng.usize(1..6) {
                let len = [rng.usize(..126), rng.usize(126..2000), rng.usize(0x10000..0x12000)][rng.usize(..3)];
                let (fin, opcode) = match rng.u8(..4) {
                    0 => (false, 0x1),
                    1 => (true, 0x2),
                    2 => (true, 0x9),
                    _ => (true, 0x0),
                };
                let len = if opcode == 0x9 { len.min(125) } else { len };
                valid.extend(frame(&mut rng, fin, opcode, len));
            }
            let mut wire = valid.clone();
            let bad = bad[round % bad.len()];
            wire.extend_from_slice(bad);
            wire.extend(frame(&mut rng, true, 0x1, 5));
            let got = relayed(&wire).await;
            assert!(got == valid, "round {round}: {} bytes relayed of {} valid, then {bad:?}", got.len(), valid.len());
        }
    }
}

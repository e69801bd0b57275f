//! WebSocket load tools for `bench/websocket.sh`: an echo server, a holder of many idle
//! connections, and a ping-pong throughput client. Not part of the gateway.
//!
//! ```text
//! ws_load echo ADDR                         echo every message back
//! ws_load idle URL N                        open N connections, print "open N", hold until killed
//! ws_load pingpong URL CONNECTIONS SECONDS  send small messages, one in flight per connection
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["echo", addr] => echo(addr).await,
        ["idle", url, n] => idle(url, n.parse().expect("a count")).await,
        ["pingpong", url, conns, secs] => {
            pingpong(url, conns.parse().expect("a count"), secs.parse().expect("seconds")).await
        }
        _ => {
            eprintln!("usage: ws_load echo ADDR | idle URL N | pingpong URL CONNECTIONS SECONDS");
            std::process::exit(2);
        }
    }
}

async fn echo(addr: &str) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
            let (mut write, mut read) = ws.split();
            while let Some(Ok(message)) = read.next().await {
                if message.is_close() {
                    break;
                }
                if (message.is_text() || message.is_binary()) && write.send(message).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn idle(url: &str, n: usize) {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => held.push(ws),
            Err(error) => {
                eprintln!("connection {i} failed: {error}");
                std::process::exit(1);
            }
        }
    }
    println!("open {}", held.len());
    tokio::signal::ctrl_c().await.ok();
    std::future::pending::<()>().await;
}

async fn pingpong(url: &str, connections: usize, seconds: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let payload = "x".repeat(64);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
        let (stop, count, payload) = (stop.clone(), count.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if ws.send(Message::text(payload.clone())).await.is_err() {
                    return;
                }
                match ws.next().await {
                    Some(Ok(_)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => return,
                }
            }
            let _ = ws.close(None).await;
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let total = count.load(Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    println!("messages/s {:.0}", total as f64 / elapsed);
}

//! Zero-downtime binary upgrade, with real processes: a second `barbican` takes the listening
//! sockets over from the first while clients keep sending; nothing is refused or fails.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::harness::{eventually, upstream};

fn barbican(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_barbican"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("barbican starts")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_binary_takes_over_without_refusing_or_failing_a_request() {
    let up = upstream("a").run().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let config = dir.path().join("barbican.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners: [{{ name: public, bind: '127.0.0.1:{port}' }}]
admin: {{ bind: '127.0.0.1:{admin_port}' }}
workers: 1
shutdown_timeout: 5s
upstreams: [{{ name: u, targets: [{{ addr: {} }}] }}]
routes: [{{ name: r, upstream: u }}]
",
            up.addr
        ),
    )
    .unwrap();
    let socket = dir.path().join("upgrade.sock");
    let (config, socket) = (config.to_str().unwrap().to_string(), socket.to_str().unwrap().to_string());

    let mut old = barbican(&["run", "--config", &config, "--upgrade-socket", &socket]);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let url = format!("http://127.0.0.1:{port}/");
    eventually(Duration::from_secs(10), "the old process to serve", || {
        let (client, url) = (client.clone(), url.clone());
        async move { client.request(http::Request::get(url).body(Full::<Bytes>::default()).unwrap()).await.is_ok() }
    })
    .await;
    eventually(Duration::from_secs(5), "the upgrade socket", || {
        let socket = socket.clone();
        async move { std::path::Path::new(&socket).exists() }
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url, stop, ok, failed) = (client.clone(), url.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::get(&url).body(Full::<Bytes>::default()).unwrap();
                match client.request(request).await {
                    Ok(response) if response.status() == 200 => {
                        let _ = response.into_body().collect().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ok.load(Ordering::Relaxed);

    let mut new = barbican(&["run", "--config", &config, "--upgrade-socket", &socket, "--takeover"]);
    let exited = tokio::task::spawn_blocking(move || {
        let status = old.wait();
        (status, old)
    });
    let (status, _old) =
        tokio::time::timeout(Duration::from_secs(20), exited).await.expect("the old process exits").unwrap();
    assert!(status.unwrap().success(), "the old process exits cleanly after draining");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let ready = client
        .request(
            http::Request::get(format!("http://127.0.0.1:{admin_port}/readyz")).body(Full::<Bytes>::default()).unwrap(),
        )
        .await
        .map(|r| r.status());
    let _ = new.kill();
    let _ = new.wait();
    assert_eq!(failed, 0, "{failed} requests failed during the upgrade ({ok} succeeded)");
    assert!(ok > before + 100, "requests kept flowing through the upgrade: {before} before, {ok} in all");
    assert_eq!(ready.ok(), Some(http::StatusCode::OK), "the new process serves the admin listener too");
}

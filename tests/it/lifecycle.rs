//! Start-up and shutdown: a draining gateway finishes what it started and refuses the rest.

use std::time::Duration;

use crate::harness::{config, eventually, gateway, upstream};

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_then_stops_listening() {
    let slow = upstream("slow").delay(Duration::from_millis(500)).run().await;
    let mut gw = gateway(&config(&format!(
        "upstreams: [{{ name: u, targets: [{{ addr: {} }}] }}]\nroutes: [{{ name: r, upstream: u }}]\n",
        slow.addr
    )))
    .await;
    let addr = gw.addr;
    let in_flight = {
        let client = gw.client.clone();
        let req = http::Request::get(gw.url("/")).body(Default::default()).unwrap();
        tokio::spawn(async move { client.request(req).await.map(|r| r.status()) })
    };
    eventually(Duration::from_secs(2), "the request to reach the upstream", || async { slow.hits() == 1 }).await;

    let gateway = gw.gateway.take().unwrap();
    let stopping = tokio::task::spawn_blocking(move || gateway.shutdown());
    let status = in_flight.await.unwrap().expect("the request in flight is answered");
    assert_eq!(status, 200);
    stopping.await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_start_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("barbican.yaml");
    std::fs::write(&path, format!("listeners: [{{ name: public, bind: '127.0.0.1:{port}' }}]\n")).unwrap();
    let error = crate::harness::start(path).await.err().expect("must not start");
    let text = error.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")) && text.contains("public"), "{text}");
}

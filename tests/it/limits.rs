//! Header and body size limits, answered with the contract's JSON errors.

use bytes::Bytes;
use http_body_util::{Full, StreamBody};

use crate::harness::{config, gateway, upstream};

async fn limited() -> (crate::harness::TestGateway, crate::harness::TestUpstream) {
    crate::harness::proxy_with_limits("{ max_header_bytes: 4KiB, max_body_bytes: 1KiB }").await
}

#[tokio::test]
async fn an_oversized_head_gets_431() {
    let (gw, up) = limited().await;
    let big = "x".repeat(6 * 1024);
    let answer = gw.get_with("/", &[("x-big", &big)]).await;
    assert_eq!(answer.status, 431);
    assert_eq!(answer.json()["error"], "headers_too_large");
    // Just under the limit passes.
    let fits = "x".repeat(3 * 1024);
    assert_eq!(gw.get_with("/", &[("x-fits", &fits)]).await.status, 200);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_head_far_past_the_limit_is_refused_without_reaching_the_upstream() {
    let (gw, up) = limited().await;
    let huge = "x".repeat(64 * 1024);
    let req = http::Request::get(gw.url("/")).header("x-huge", huge).body(Full::<Bytes>::default()).unwrap();
    // The server refuses a head this size before the pipeline sees it; it must still be 431.
    match gw.client.request(req).await {
        Ok(response) => assert_eq!(response.status(), 431),
        Err(error) => panic!("expected a 431 answer, got {error}"),
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let (gw, up) = limited().await;
    let post = http::Request::post("/").body(Full::new(Bytes::from(vec![b'a'; 2048]))).unwrap();
    let answer = gw.send(post).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["error"], "body_too_large");
    assert_eq!(up.hits(), 0, "a declared oversized body never reaches the upstream");
    let post = http::Request::post("/").body(Full::new(Bytes::from(vec![b'a'; 1000]))).unwrap();
    assert_eq!(gw.send(post).await.status, 200);
}

#[tokio::test]
async fn an_oversized_chunked_body_gets_413() {
    let (gw, _up) = limited().await;
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> =
        (0..4).map(|_| Ok(http_body::Frame::data(Bytes::from(vec![b'a'; 512])))).collect();
    let body = StreamBody::new(futures_stream(chunks));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::post(gw.url("/")).body(body).unwrap();
    let response = client.request(req).await.expect("an answer");
    assert_eq!(response.status(), 413);
}

/// A stream of ready items, without pulling in a streams crate.
fn futures_stream<T: Unpin>(items: Vec<T>) -> impl futures_core::Stream<Item = T> + Unpin {
    struct Ready<T>(std::collections::VecDeque<T>);
    impl<T: Unpin> futures_core::Stream for Ready<T> {
        type Item = T;
        fn poll_next(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
            std::task::Poll::Ready(self.0.pop_front())
        }
    }
    Ready(items.into())
}

#[tokio::test]
async fn the_limits_default_generously() {
    let up = upstream("a").run().await;
    let gw = gateway(&config(&format!(
        "upstreams: [{{ name: a, targets: [{{ addr: {} }}] }}]\nroutes: [{{ name: r, upstream: a }}]\n",
        up.addr
    )))
    .await;
    let body = vec![b'a'; 512 * 1024];
    let post = http::Request::post("/").body(Full::new(Bytes::from(body))).unwrap();
    let answer = gw.send(post).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["body_len"], 512 * 1024);
}

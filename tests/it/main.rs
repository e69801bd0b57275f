//! Integration tests: real sockets on ephemeral ports, real upstream servers, one gateway per
//! test. Run with `cargo test`.

mod harness;

mod admin;
mod balancing;
mod health;
mod http1;
mod lifecycle;
mod limits;
mod reload;
mod routing;
mod tls;
mod upgrade;
mod validate;
mod waf;
mod websocket;

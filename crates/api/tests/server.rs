//! The services' HTTP server under clients that hold it: raw sockets that send nothing, drip
//! their headers, stop halfway through a body, or stay open after a response; and more
//! connections than it serves at once. Limits of one second keep the test short.

#![allow(clippy::unwrap_used)] // Test code: a failed setup should panic loudly.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vigie_api::server::{Limits, run};

const LIMITS: Limits = Limits {
    idle: Duration::from_secs(1),
    body: Duration::from_secs(1),
    max_connections: 2,
};

/// A server whose one route reads its body whole, on a free port: its address.
async fn start() -> String {
    let app = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .layer(axum::middleware::from_fn(vigie_api::layers::json_errors));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(run(listener, app, LIMITS, std::future::pending()));
    address
}

/// Reads until the server closes the connection (or `cap` passes): what it sent, and when it
/// closed.
async fn read_to_close(stream: &mut TcpStream, cap: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(cap.saturating_sub(start.elapsed()), stream.read(&mut buf)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&got).into(), Some(start.elapsed()));
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), None),
        }
    }
}

fn request(body: &str) -> String {
    format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let address = start().await;
    let mut idle = TcpStream::connect(&address).await.unwrap();
    let (_, closed) = read_to_close(&mut idle, Duration::from_secs(10)).await;
    let closed = closed.expect("the server keeps an idle connection open");
    assert!(closed < Duration::from_secs(3), "{closed:?}");
}

#[tokio::test]
async fn headers_dripped_a_byte_at_a_time_are_cut() {
    let address = start().await;
    let mut slow = TcpStream::connect(&address).await.unwrap();
    let start = Instant::now();
    for byte in request("hello").bytes() {
        if slow.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if start.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let (answer, closed) = read_to_close(&mut slow, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "still open after {:?}", start.elapsed());
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_once_idle() {
    let address = start().await;
    let mut client = TcpStream::connect(&address).await.unwrap();
    client.write_all(request("hello").as_bytes()).await.unwrap();
    let (answer, closed) = read_to_close(&mut client, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    let closed = closed.expect("the kept-alive connection stays open");
    assert!(closed < Duration::from_secs(3), "{closed:?}");
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408() {
    let address = start().await;
    let mut client = TcpStream::connect(&address).await.unwrap();
    client
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nfirst ten.")
        .await
        .unwrap();
    let (answer, closed) = read_to_close(&mut client, Duration::from_secs(10)).await;
    assert!(closed.is_some());
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
    assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");
}

#[tokio::test]
async fn past_the_connection_cap_clients_wait_for_a_free_slot() {
    let address = start().await;
    // Two idle connections take both slots.
    let _first = TcpStream::connect(&address).await.unwrap();
    let _second = TcpStream::connect(&address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let mut third = TcpStream::connect(&address).await.unwrap();
    third.write_all(request("third").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).ends_with("third") {
        let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    // Served once an idle one was closed (after about a second), not before.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "served at once: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

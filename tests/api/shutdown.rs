//! Graceful shutdown of the real binary.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use crate::common::{Process, TestDb};

/// A request that is in flight when SIGTERM arrives is answered before the process exits.
///
/// The request is held open by its body: headers and half the body are sent, the server logs
/// that it started on the request, SIGTERM is sent, the server logs that it is draining, and
/// only then does the rest of the body go out. Each step waits on the server's own log line.
#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() {
    let db = TestDb::create().await;
    let (mut server, addr) = Process::serve(&db, &[("RUST_LOG", "info,tower_http=debug")]);

    let body = r#"{"query":"{ apiVersion }"}"#;
    let (first, rest) = body.split_at(10);
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first}",
        body.len()
    )
    .expect("send the start of the request");
    server.wait_for_line(Duration::from_secs(30), |line| {
        line.contains("started processing request")
    });

    server.signal("TERM");
    server.wait_for_line(Duration::from_secs(30), |line| {
        line.contains("shutdown signal received")
    });

    stream
        .write_all(rest.as_bytes())
        .expect("send the rest of the body");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#"{"data":{"apiVersion":"#), "{response}");

    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(
        server
            .seen
            .iter()
            .any(|line| line.contains("shutdown complete"))
    );
}

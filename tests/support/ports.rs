//! Free TCP ports on 127.0.0.1 for test servers.

use std::net::TcpListener;

/// A port that was free a moment ago on 127.0.0.1 (the OS picks it). A process started
/// on it may still lose a race to another one: callers that can, bind to port 0 directly
/// and keep the listener instead.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("bound socket has no local address: {e}"))
        .port()
}

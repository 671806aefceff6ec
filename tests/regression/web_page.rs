//! Regression tests of issue "operate" §8: a web status page.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::support::demo_process::{page_url, Demo};

/// One plain HTTP/1.1 GET: the status line, the headers and the body.
fn get(url: &str, path: &str) -> String {
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// `shiftgate demo` was a scrolling log only: a newcomer had no page to watch the
/// weight move on. Now its first line is the URL of a page it serves on 127.0.0.1,
/// with a Content-Security-Policy, and the page's JSON answers.
#[test]
fn demo_has_no_page_to_watch() {
    let mut demo = Demo::spawn();
    let first = demo.next_line(Duration::from_secs(20)).unwrap_or_default();
    let url = page_url(&first)
        .unwrap_or_else(|| panic!("the demo's first line is not its page URL: {first:?}"));
    let page = get(&url, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{page}"
    );
    assert!(page.contains("/assets/app.js"), "{page}");
    let api = get(&url, "/api/rollouts");
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    assert!(api.contains("\"rollouts\":["), "{api}");
    assert_eq!(demo.interrupt(), Some(130), "{}", demo.log_text());
}

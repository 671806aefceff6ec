//! A tiny metrics exporter for Prometheus to scrape: axum on 127.0.0.1:0 serving
//! exposition text the test controls. The text is a function of the scrape number, so
//! counters can grow by a known amount per scrape without reading a clock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Render = Box<dyn Fn(u64) -> String + Send + Sync>;

struct State {
    render: Mutex<Render>,
    scrapes: AtomicU64,
}

/// A running exporter; stopped on drop.
pub struct Exporter {
    address: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Serves `render(n)` on `/metrics` for the n-th scrape (n = 1, 2, …).
    pub async fn start(render: impl Fn(u64) -> String + Send + Sync + 'static) -> Exporter {
        let state = Arc::new(State {
            render: Mutex::new(Box::new(render)),
            scrapes: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind the exporter: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("exporter has no address: {e}"));
        let shared = Arc::clone(&state);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let state = Arc::clone(&shared);
                async move {
                    let n = state.scrapes.fetch_add(1, Ordering::SeqCst) + 1;
                    let body = {
                        let render = state.render.lock().unwrap_or_else(|e| e.into_inner());
                        render(n)
                    };
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        body,
                    )
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Exporter {
            address,
            state,
            task,
        }
    }

    /// `127.0.0.1:<port>`, as a Prometheus scrape target.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// How many times it was scraped.
    pub fn scrapes(&self) -> u64 {
        self.state.scrapes.load(Ordering::SeqCst)
    }

    /// Serves `render` from the next scrape on.
    pub fn set(&self, render: impl Fn(u64) -> String + Send + Sync + 'static) {
        *self.state.render.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(render);
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

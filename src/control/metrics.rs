//! The Prometheus endpoint (`[metrics] listen`): `GET /metrics` answers with the exposition of
//! [`crate::telemetry::prometheus`]. A minimal HTTP/1.1 server: one request per connection,
//! its head bounded (8 KiB) and read within a deadline, so a slow or hostile scraper costs one
//! task and nothing else.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::commands::Control;
use crate::telemetry::prometheus::{self, SinkView, SourceView, View};

const HEAD_MAX: usize = 8192;
const DEADLINE: Duration = Duration::from_secs(10);

impl Control {
    /// The metrics endpoint's body: every counter and histogram, Prometheus-named.
    pub fn metrics_text(&self) -> String {
        let streams = self.topology.streams.lock().unwrap().clone();
        prometheus::render(View {
            uptime_s: self.started.elapsed().as_secs_f64(),
            counters: &self.topology.counters,
            histograms: self.topology.counters.histograms(),
            sources: streams
                .iter()
                .map(|(m, _)| SourceView {
                    name: &m.name,
                    kind: m.kind.as_str(),
                    counters: &m.counters,
                    paused: m.pause.is_paused(),
                    lane: self.topology.lanes.depth(m.stream),
                })
                .collect(),
            sinks: self
                .topology
                .sinks
                .iter()
                .map(|s| SinkView {
                    name: &s.cfg.name,
                    kind: s.cfg.kind.type_name(),
                    counters: &s.counters,
                    spool: s.spool.as_ref().map(|sp| sp.depth()),
                })
                .collect(),
        })
    }
}

/// Serve scrapes until the runtime stops.
pub async fn serve(listener: std::net::TcpListener, control: Arc<Control>) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics endpoint: {e}; it is not served");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(DEADLINE, scrape(stream, &control)).await;
        });
    }
}

async fn scrape(mut stream: tokio::net::TcpStream, control: &Control) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > HEAD_MAX {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            let body = control.metrics_text();
            respond(
                &mut stream,
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &body,
            )
            .await
        }
        ("GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n").await,
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "GET /metrics\n",
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

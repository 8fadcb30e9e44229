//! The control socket's listener and connections: who may talk, how a request is read (framed by
//! the data path's [`Framer`], bounded, with a deadline), and how each gets its one-line answer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{watch, Semaphore};

use std::collections::VecDeque;

use super::commands::Control;
use super::protocol::Request;
use crate::config::ControlConfig;
use crate::framing::{Frame, Framer, FramingConfig, Oversized};
use crate::telemetry::RateLimit;

/// How long a response may take to be written before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Accept control connections until `stop` says so.
pub async fn serve(
    listener: std::os::unix::net::UnixListener,
    cfg: ControlConfig,
    control: Arc<Control>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("control socket: {e}; it is not served");
            return;
        }
    };
    let cfg = Arc::new(cfg);
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let me = crate::config::current_uid();
    let mut warn = RateLimit::new(5);
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    if let Some(suppressed) = warn.allow() {
                        tracing::warn!(error = %e, suppressed, "control socket: accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (cfg, control, slots) = (Arc::clone(&cfg), Arc::clone(&control), Arc::clone(&slots));
        tokio::spawn(async move {
            let Ok(_slot) = slots.clone().try_acquire_owned() else {
                let mut stream = stream;
                let _ = refuse(
                    &mut stream,
                    &format!(
                        "too many control connections (max_connections = {}); try again later",
                        cfg.max_connections
                    ),
                )
                .await;
                return;
            };
            connection(stream, &cfg, &control, me).await;
        });
    }
}

async fn refuse(stream: &mut UnixStream, why: &str) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(&json!({"status": "error", "error": why}))?;
    line.push(b'\n');
    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&line))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)?
}

/// Serve one connection: requests in, one response line each, until EOF or an error.
async fn connection(mut stream: UnixStream, cfg: &ControlConfig, control: &Control, me: u32) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            let _ = refuse(
                &mut stream,
                &format!("cannot read the peer's credentials: {e}"),
            )
            .await;
            return;
        }
    };
    if uid != me && uid != 0 && !cfg.allow_uids.contains(&uid) {
        tracing::warn!(uid, "control socket: refused a client (uid not allowed)");
        let _ = refuse(
            &mut stream,
            &format!("permission denied: uid {uid} may not use this control socket (allowed: uid {me}, root, and [control] allow_uids)"),
        )
        .await;
        return;
    }
    let mut reader = Lines::new(cfg.max_request_bytes);
    loop {
        let response = match reader.next(&mut stream, cfg.request_timeout).await {
            Next::Eof => return,
            Next::Failed(why) => {
                let _ = refuse(&mut stream, &why).await;
                return;
            }
            Next::TooLong => error(format!(
                "request too long: more than {} bytes (max_request_bytes); it was skipped",
                cfg.max_request_bytes
            )),
            Next::Line(line) => match Request::parse(&line) {
                Ok(req) => match control.run(&req).await {
                    Ok(payload) => json!({"status": "ok", "payload": payload}),
                    Err(e) => error(e),
                },
                Err(e) => error(e),
            },
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&out)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

fn error(why: impl Into<String>) -> Value {
    json!({"status": "error", "error": why.into()})
}

enum Next {
    Line(Vec<u8>),
    /// A line over the limit, skipped to its end.
    TooLong,
    Eof,
    /// Read error or deadline: answer why and close.
    Failed(String),
}

/// Reads request lines of at most `max` bytes, framed by the data path's [`Framer`]: a longer
/// line is never held (only its first byte, to know one is pending), its bytes are dropped as
/// they arrive, up to its newline. Blank lines are not requests.
struct Lines {
    cfg: FramingConfig,
    framer: Framer,
    /// Requests framed and not yet answered (a client may pipeline several in one write).
    ready: VecDeque<Next>,
}

impl Lines {
    fn new(max: usize) -> Lines {
        Lines {
            cfg: FramingConfig {
                max_length: max,
                oversized: Oversized::Drop,
                emit_incomplete: false,
                keep_head: 1,
                ..FramingConfig::default()
            },
            framer: Framer::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next request; a request must arrive whole within `deadline` of its first byte.
    async fn next(&mut self, stream: &mut UnixStream, deadline: Duration) -> Next {
        let mut chunk = [0u8; 8192];
        let mut started: Option<tokio::time::Instant> = None;
        loop {
            if let Some(next) = self.ready.pop_front() {
                return next;
            }
            if self.framer.carried() == 0 {
                started = None;
            } else if started.is_none() {
                started = Some(tokio::time::Instant::now());
            }
            let wait = match started {
                Some(t) => (t + deadline).saturating_duration_since(tokio::time::Instant::now()),
                None => IDLE_TIMEOUT,
            };
            let n = match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
                Err(_) if started.is_some() => {
                    return Next::Failed(format!(
                        "request deadline: a request must arrive whole within {deadline:?}"
                    ))
                }
                Err(_) => return Next::Eof, // idle for too long
                Ok(Err(e)) => return Next::Failed(format!("read failed: {e}")),
                Ok(Ok(0)) => {
                    let mut cut = false;
                    self.framer.finish(&self.cfg, &mut |_| cut = true);
                    if cut {
                        return Next::Failed(
                            "the request was cut off (no newline before EOF)".into(),
                        );
                    }
                    return Next::Eof;
                }
                Ok(Ok(n)) => n,
            };
            let ready = &mut self.ready;
            self.framer.feed(&self.cfg, &chunk[..n], &mut |f| match f {
                Frame::Line { bytes, .. } if bytes.iter().all(u8::is_ascii_whitespace) => {}
                Frame::Line { bytes, .. } => ready.push_back(Next::Line(bytes.to_vec())),
                _ => ready.push_back(Next::TooLong),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Everything `Lines` hands out for `input`, written in pieces of `piece` bytes.
    async fn frames(input: &[u8], piece: usize, max: usize) -> Vec<String> {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            for p in input.chunks(piece) {
                a.write_all(p).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut lines = Lines::new(max);
        let mut out = Vec::new();
        loop {
            match lines.next(&mut b, Duration::from_secs(5)).await {
                Next::Line(l) => out.push(String::from_utf8(l).unwrap()),
                Next::TooLong => out.push("<too long>".into()),
                Next::Eof => break,
                Next::Failed(why) => {
                    out.push(format!("<failed: {why}>"));
                    break;
                }
            }
        }
        writer.await.unwrap();
        out
    }

    /// (A `\r` before the newline counts toward the bound, as on the data path.)
    #[tokio::test]
    async fn requests_are_framed_bounded_and_blank_lines_skipped() {
        let input = b"{\"cmd\":\"ping\"}\n\n   \r\n0123456789abcdefg\n{\"cmd\":\"stats\"}\r\n";
        for piece in [1, 3, 7, input.len()] {
            assert_eq!(
                frames(input, piece, 16).await,
                ["{\"cmd\":\"ping\"}", "<too long>", "{\"cmd\":\"stats\"}"],
                "in pieces of {piece}"
            );
        }
    }

    #[tokio::test]
    async fn a_request_cut_by_eof_is_reported() {
        let out = frames(b"{\"cmd\":\"ping\"}\n{\"cmd\"", 4, 100).await;
        assert_eq!(out[0], "{\"cmd\":\"ping\"}");
        assert!(out[1].contains("cut off"), "{out:?}");
    }
}

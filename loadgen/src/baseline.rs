//! The naive baseline the performance table compares ringway with: what a first tokio version
//! of this gateway looks like (the pattern of tokio's MPSR examples). A `UnixListener`, a task
//! per connection reading `BufReader::lines()` (a `String` per line), `serde_json::Value` per
//! line, and one channel send per event to one consumer that counts.
//!
//! On SIGTERM/SIGINT it stops accepting, lets open connections finish (10 s at most), and
//! prints `baseline events=N invalid=M` on stdout.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

pub fn run(path: &Path) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(path))
}

async fn serve(path: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    eprintln!("baseline: listening on {}", path.display());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<serde_json::Value>(1024);
    let consumer = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(v) = rx.recv().await {
            std::hint::black_box(&v);
            n += 1;
        }
        n
    });
    let invalid = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicU64::new(0));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (tx, invalid, open) = (tx.clone(), Arc::clone(&invalid), Arc::clone(&open));
                open.fetch_add(1, Relaxed);
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stream).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        match serde_json::from_str::<serde_json::Value>(&line) {
                            Ok(v) => {
                                if tx.send(v).await.is_err() {
                                    break;
                                }
                            }
                            Err(_) => {
                                invalid.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    open.fetch_sub(1, Relaxed);
                });
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(path);
    for _ in 0..1000 {
        if open.load(Relaxed) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tx);
    let events = tokio::time::timeout(Duration::from_secs(5), consumer)
        .await
        .map_or(0, |r| r.unwrap_or(0));
    println!("baseline events={events} invalid={}", invalid.load(Relaxed));
    Ok(())
}

//! The `file` source: an NDJSON file read once, or followed as it grows (`follow = true`, like
//! `tail -F`: a file that is replaced or truncated is read again from its start).
//!
//! Stage: source. In: the file's bytes. Out: batches on the channel, with the same framing and
//! codec options as the socket sources. One thread per file source, blocking reads; a full lane
//! stops the reads (backpressure). Each opening of the file is one "connection" (its own id and
//! line numbers). At shutdown the file is read on to its end, until the shutdown deadline.
//! What it does not do: remember an offset across restarts (a restart reads the file again).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::SourceRt;
use crate::config::{ChannelConfig, FileSourceConfig, SourceConfig};
use crate::event::Shutdown;
use crate::ingest::Feeder;
use crate::telemetry::Counters;

/// How often a followed file is looked at when there is nothing new.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
#[error("source {name}: cannot open {path}: {err}")]
pub struct Error {
    name: String,
    path: std::path::PathBuf,
    err: io::Error,
}

pub struct Args {
    pub src: Arc<SourceRt>,
    pub counters: Arc<Counters>,
    pub channel: ChannelConfig,
    /// This source's own: requested at shutdown, or when `reload` removes the source.
    pub shutdown: Arc<Shutdown>,
    /// Dropped when the thread ends (shutdown waits for it).
    pub done: crate::event::Guard,
}

/// Open the file at start, so a missing or unreadable file stops the gateway before anything
/// runs. A missing file is fine when followed (it is waited for): `None`.
pub fn open(cfg: &FileSourceConfig) -> Result<Option<File>, Error> {
    match File::open(&cfg.path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if cfg.follow && e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error {
            name: cfg.name.clone(),
            path: cfg.path.clone(),
            err,
        }),
    }
}

/// Start the reading thread on the file [`open`] gave.
pub fn start(args: Args, first: Option<File>) -> JoinHandle<()> {
    let SourceConfig::File(cfg) = &args.src.cfg else {
        unreachable!("file::start is only given file sources");
    };
    let cfg = cfg.clone();
    std::thread::Builder::new()
        .name(format!("ringway-file-{}", cfg.name))
        .spawn(move || run(args, cfg, first))
        .expect("spawning a file source thread")
}

fn run(args: Args, cfg: FileSourceConfig, mut file: Option<File>) {
    let mut buf = vec![0u8; cfg.buf_size.get()];
    loop {
        let Some(mut f) = file.take() else {
            // Followed and not there (yet, or between a rename and the new file).
            if args.shutdown.is_requested() {
                return;
            }
            std::thread::sleep(POLL);
            file = File::open(&cfg.path).ok();
            continue;
        };
        let ino = f.metadata().map(|m| (m.dev(), m.ino())).ok();
        let meta = args.src.conn_meta(None, None, None);
        let id = meta.id;
        let mut feeder = Feeder::new(
            meta,
            cfg.framing.clone(),
            args.channel.clone(),
            Arc::clone(&args.counters),
            args.src.sender.clone(),
        );
        let mut offset = 0u64;
        // Read this opening of the file; Some(next) when it was replaced or truncated.
        let next = loop {
            if args.shutdown.past_deadline() {
                break None;
            }
            match f.read(&mut buf) {
                Ok(0) => {
                    if !feeder.flush() {
                        return;
                    }
                    if !cfg.follow || args.shutdown.is_requested() {
                        break None;
                    }
                    std::thread::sleep(POLL);
                    match replaced(&cfg, ino, offset) {
                        Change::None => {}
                        Change::Truncated => {
                            // copytruncate: the same file, emptied in place; read it again from
                            // the start, through the descriptor we hold.
                            tracing::info!(source = %cfg.name, path = %cfg.path.display(),
                                "file truncated; reading it again from its start");
                            match f.seek(SeekFrom::Start(0)) {
                                Ok(_) => break Some(f),
                                Err(e) => {
                                    tracing::warn!(source = %cfg.name, error = %e,
                                        "cannot seek the truncated file; opening it again");
                                    break None;
                                }
                            }
                        }
                        Change::Replaced(new) => {
                            // Whatever was appended to the old file before it went is read
                            // first, a buffer at a time, waiting for room like any read.
                            loop {
                                match f.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => {
                                        if !feeder.feed(&buf[..n]) {
                                            return;
                                        }
                                    }
                                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                    Err(e) => {
                                        tracing::warn!(source = %cfg.name, error = %e,
                                            "reading the rest of the replaced file failed");
                                        break;
                                    }
                                }
                            }
                            tracing::info!(source = %cfg.name, path = %cfg.path.display(),
                                "file replaced; following the new one");
                            break new;
                        }
                    }
                }
                Ok(n) => {
                    offset += n as u64;
                    if !feeder.feed(&buf[..n]) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(source = %cfg.name, path = %cfg.path.display(), error = %e,
                        "read failed; the file is closed");
                    break None;
                }
            }
        };
        let sent = feeder.finish();
        args.src.closed(id); // this opening of the file is done
        if !sent {
            return;
        }
        match next {
            Some(n) => file = Some(n),
            None if cfg.follow && !args.shutdown.is_requested() => file = None,
            None => {
                if !cfg.follow {
                    tracing::info!(source = %cfg.name, path = %cfg.path.display(),
                        "file read to its end");
                }
                return;
            }
        }
    }
}

enum Change {
    None,
    Truncated,
    /// Another file is at the path now (None: nothing is, yet).
    Replaced(Option<File>),
}

fn replaced(cfg: &FileSourceConfig, ino: Option<(u64, u64)>, offset: u64) -> Change {
    match std::fs::metadata(&cfg.path) {
        Ok(m) if Some((m.dev(), m.ino())) != ino => Change::Replaced(File::open(&cfg.path).ok()),
        Ok(m) if m.len() < offset => Change::Truncated,
        Ok(_) => Change::None,
        Err(_) => Change::Replaced(None),
    }
}

//! Where a sink's bytes go: a file, stdout, nowhere, (dead letters only) the log, or (in-process
//! use) a buffer in memory.
//!
//! In: byte slices. Out: `write(2)`/`writev(2)` calls on one file descriptor. File and stdout are
//! the same thing here, a `File`, so they share every line of code. What it does not do: retry
//! (the sink does) or encode.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::OpenOptionsExt;

use super::Error;
use crate::config::{FileMode, Memory, SinkConfig, SinkKind};
use crate::event::{ConnMeta, DeadLetter};
use crate::telemetry::RateLimit;

pub enum Output {
    Fd { file: File, name: String },
    Null,
    Log { limit: RateLimit },
    Memory(Memory),
}

impl Output {
    pub fn open(cfg: &SinkConfig, name: &str) -> Result<Output, Error> {
        Ok(match &cfg.kind {
            SinkKind::File { path, mode } => {
                let mut o = OpenOptions::new();
                o.create(true).custom_flags(libc::O_CLOEXEC);
                match mode {
                    FileMode::Append => o.append(true),
                    FileMode::Truncate => o.write(true).truncate(true),
                };
                let file = o.open(path).map_err(|err| Error::Open {
                    name: name.to_string(),
                    path: path.clone(),
                    err,
                })?;
                Output::Fd {
                    file,
                    name: format!("{name} ({})", path.display()),
                }
            }
            SinkKind::Stdout => {
                let fd = rustix::io::dup(std::io::stdout()).map_err(|err| Error::Open {
                    name: name.to_string(),
                    path: "<stdout>".into(),
                    err: err.into(),
                })?;
                Output::Fd {
                    file: File::from(fd),
                    name: format!("{name} (stdout)"),
                }
            }
            // These two are not written through an Output (see `client` and `reply`).
            SinkKind::Null | SinkKind::Client(_) | SinkKind::Reply(_) => Output::Null,
            SinkKind::Log => Output::Log {
                limit: RateLimit::new(10),
            },
            SinkKind::Memory(m) => Output::Memory(m.clone()),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Output::Fd { name, .. } => name,
            Output::Null => "null",
            Output::Log { .. } => "log",
            Output::Memory(_) => "memory",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Output::Null)
    }

    pub fn is_log(&self) -> bool {
        matches!(self, Output::Log { .. })
    }

    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Output::Fd { file, .. } => file.write_vectored(bufs),
            Output::Memory(m) => {
                let mut out = m.0.lock().unwrap_or_else(|e| e.into_inner());
                for b in bufs {
                    out.extend_from_slice(b);
                }
                Ok(bufs.iter().map(|b| b.len()).sum())
            }
            Output::Null | Output::Log { .. } => Ok(bufs.iter().map(|b| b.len()).sum()),
        }
    }

    /// fsync a file; a pipe or terminal (EINVAL) has nothing to sync.
    pub fn sync(&mut self) -> io::Result<()> {
        match self {
            Output::Fd { file, .. } => match file.sync_all() {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
                r => r,
            },
            _ => Ok(()),
        }
    }

    /// The default dead-letter sink: one rate-limited warning per record.
    pub fn log_dead_letter(&mut self, conn: &ConnMeta, d: &DeadLetter) {
        if let Output::Log { limit } = self {
            if let Some(suppressed) = limit.allow() {
                let mut raw = Vec::new();
                super::encode::json_str(&mut raw, &d.raw[..d.raw.len().min(256)]);
                tracing::warn!(
                    source = %conn.source.name, peer = conn.id, pid = conn.pid, line = d.line,
                    len = d.len, suppressed, raw = %String::from_utf8_lossy(&raw),
                    "dead letter: {}: {}", d.kind, d.detail
                );
            }
        }
    }
}

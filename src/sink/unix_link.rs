//! The UNIX socket connection of a `unix_socket_client` sink (a [`Link`]): events are written
//! with `writev` on the client's thread (each write waits at most a slice, then the shutdown
//! clock is looked at); the peer's replies are read by a thread of the connection's own.
//! What it does not do: retry or count (see `client`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use super::link::{is_timeout, Link, Outbox};
use crate::ingest::Feeder;

/// How long the writer sleeps while waiting for the peer to close at the end.
const CLOSE_POLL: Duration = Duration::from_millis(10);

pub struct UnixLink {
    stream: UnixStream,
    /// None once it has ended at the peer's EOF (the peer may still read: we write on).
    reader: Option<JoinHandle<ReadEnd>>,
    write_slice: Duration,
}

/// How a reply reader ended.
enum ReadEnd {
    /// The peer shut down its writing side (or closed: then the next write fails), or the
    /// replies' lane is gone (shutdown). Not by itself a broken connection.
    Eof,
    /// Reading failed (ECONNRESET: the peer closed with our bytes unread): the connection is
    /// broken.
    Failed(std::io::Error),
}

impl UnixLink {
    /// Connect and start the reply reader (`name` names its thread). A reader that cannot be
    /// spawned (out of threads or memory) is a failed connect, not a panic.
    pub fn connect(
        path: &Path,
        write_slice: Duration,
        replies: Feeder,
        buf_size: usize,
        name: &str,
    ) -> std::io::Result<UnixLink> {
        let stream = UnixStream::connect(path)?;
        let _ = stream.set_write_timeout(Some(write_slice));
        let read_half = stream.try_clone()?;
        let reader = std::thread::Builder::new()
            .name(format!("ringway-replies-{name}"))
            .spawn(move || read_replies(read_half, replies, buf_size))?;
        Ok(UnixLink {
            stream,
            reader: Some(reader),
            write_slice,
        })
    }
}

impl Link for UnixLink {
    fn idle_wait(&self) -> Duration {
        self.write_slice
    }

    fn read_failed(&mut self) -> Option<std::io::Error> {
        if !self.reader.as_ref()?.is_finished() {
            return None;
        }
        match self.reader.take()?.join() {
            Ok(ReadEnd::Eof) => None,
            Ok(ReadEnd::Failed(e)) => Some(e),
            Err(_) => Some(std::io::Error::other("the reply reader panicked")),
        }
    }

    fn write(&mut self, out: &mut Outbox, give_up: &dyn Fn() -> bool) -> std::io::Result<()> {
        while !out.is_empty() {
            let written = self.stream.write_vectored(&out.slices());
            match written {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => out.advance(n),
                Err(e) if is_timeout(&e) => {
                    if give_up() {
                        return Ok(()); // the core sees it and gives up
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Shut down our writing side and wait for the peer to close (its last replies are read
    /// meanwhile), until the give-up point.
    ///
    /// A peer that has already shut down its writing side cannot show us its close (its EOF has
    /// been read): what we wrote is in its socket, so we close at once and it reads on.
    fn finish(self: Box<Self>, give_up: &dyn Fn() -> bool) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        while self.reader.as_ref().is_some_and(|r| !r.is_finished()) && !give_up() {
            std::thread::sleep(CLOSE_POLL);
        }
        self.close();
    }

    fn close(self: Box<Self>) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader {
            let _ = r.join();
        }
    }
}

/// Read the peer's replies until EOF or an error; the writer looks at how it ended.
fn read_replies(mut stream: UnixStream, mut feeder: Feeder, buf_size: usize) -> ReadEnd {
    let mut buf = vec![0u8; buf_size];
    let end = loop {
        match stream.read(&mut buf) {
            Ok(0) => break ReadEnd::Eof,
            Ok(n) => {
                if !feeder.feed(&buf[..n]) || !feeder.flush() {
                    return ReadEnd::Eof; // the lane is gone: shutdown
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break ReadEnd::Failed(e),
        }
    };
    feeder.finish();
    end
}

//! Real peers and pipes: [`Client`] runs `tests/clients/*.py` under python3, or socat;
//! [`LineReader`] and [`Fifo`] read what a stdout or FIFO sink writes.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{clients_dir, wait_until, PATIENCE};

/// A peer process (python3 client or socat). Its stdout lines are collected by a
/// thread; it is killed on drop.
pub struct Client {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<thread::JoinHandle<()>>,
}

/// What a client reported on its first stdout line: its own pid/uid/gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creds {
    pub pid: u64,
    pub uid: u64,
    pub gid: u64,
}

impl Client {
    /// `python3 tests/clients/<script> <args>`.
    pub fn python(script: &str, args: &[&str]) -> Client {
        let mut cmd = Command::new("python3");
        cmd.arg(clients_dir().join(script)).args(args);
        Client::spawn(format!("{script} {}", args.join(" ")), cmd)
    }

    /// `produce.py <target> <args>`: see tests/clients/produce.py. `target` is a UNIX socket
    /// path or `tcp:HOST:PORT` (as [`Gateway::target`](super::Gateway::target) gives it).
    pub fn produce(target: impl AsRef<OsStr>, args: &[&str]) -> Client {
        let target = target.as_ref();
        let mut cmd = Command::new("python3");
        cmd.arg(clients_dir().join("produce.py"))
            .arg(target)
            .args(args);
        Client::spawn(
            format!("produce.py {} {}", target.to_string_lossy(), args.join(" ")),
            cmd,
        )
    }

    /// `socat -u -b <block> <file> UNIX-CONNECT:<path>` (or `TCP:<host>:<port>,nodelay` for a
    /// `tcp:HOST:PORT` target): the file's bytes in `block`-sized reads, each its own write.
    pub fn socat_file(target: impl AsRef<OsStr>, file: &Path, block: usize) -> Client {
        let target = target.as_ref().to_str().expect("UTF-8 target");
        let address = match target.strip_prefix("tcp:") {
            Some(host_port) => format!("TCP:{host_port},nodelay"),
            None => format!(
                "UNIX-CONNECT:{}",
                target.strip_prefix("unix:").unwrap_or(target)
            ),
        };
        let mut cmd = Command::new("socat");
        cmd.arg("-u")
            .arg("-b")
            .arg(block.to_string())
            .arg(file)
            .arg(address);
        Client::spawn(format!("socat {} {target}", file.display()), cmd)
    }

    pub fn spawn(name: String, mut cmd: Command) -> Client {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => sink.lock().unwrap().push(line),
                    Err(_) => break,
                }
            }
        });
        Client {
            name,
            child,
            lines,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stdout lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The latest `{"bytes":n}` progress report (0 before the first).
    pub fn progress(&self) -> u64 {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()?
                    .get("bytes")?
                    .as_u64()
            })
            .unwrap_or(0)
    }

    /// The client's own pid/uid/gid (its first stdout line).
    pub fn creds(&self) -> Creds {
        wait_until(
            PATIENCE,
            &format!("{} to report its credentials", self.name),
            || !self.lines.lock().unwrap().is_empty(),
        );
        let v: serde_json::Value = serde_json::from_str(&self.lines.lock().unwrap()[0]).unwrap();
        Creds {
            pid: v["pid"].as_u64().unwrap(),
            uid: v["uid"].as_u64().unwrap(),
            gid: v["gid"].as_u64().unwrap(),
        }
    }

    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits (up to `timeout`) for the client to exit; returns its status and last stdout line.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > timeout {
                panic!("client `{}` still running after {timeout:?}", self.name);
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.reader.take().unwrap().join().unwrap();
        let last = self
            .lines
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default();
        (status, last)
    }

    /// Waits for a successful exit and returns the final `{"sent":..}` report as JSON
    /// (Null for clients such as socat that print nothing).
    pub fn finish(self) -> serde_json::Value {
        let name = self.name.clone();
        let (status, last) = self.wait(Duration::from_secs(180));
        assert!(
            status.success(),
            "client `{name}` failed: {status}; last output: {last}"
        );
        serde_json::from_str(&last).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a pipe (the gateway's stdout, or a FIFO) in a thread, handing back lines.
pub struct LineReader {
    lines: Arc<Mutex<Vec<Vec<u8>>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl LineReader {
    pub fn spawn(mut r: impl Read + Send + 'static) -> LineReader {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let handle = thread::spawn(move || {
            let mut carry = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        carry.extend_from_slice(&buf[..n]);
                        let mut start = 0;
                        let mut got = Vec::new();
                        while let Some(pos) = carry[start..].iter().position(|b| *b == b'\n') {
                            got.push(carry[start..start + pos].to_vec());
                            start += pos + 1;
                        }
                        carry.drain(..start);
                        sink.lock().unwrap().extend(got);
                    }
                }
            }
            if !carry.is_empty() {
                sink.lock().unwrap().push(carry);
            }
        });
        LineReader {
            lines,
            handle: Some(handle),
        }
    }

    pub fn lines(&self) -> Vec<Vec<u8>> {
        self.lines.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Waits for EOF and returns every line.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.handle.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

/// mkfifo(3).
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// The read end of a FIFO sink, plus a write end the test holds so that reads block
/// for data (instead of seeing EOF) until the gateway has opened its own write end.
/// Drop `keeper` once the gateway has exited: then reads reach EOF after the last byte.
pub struct Fifo {
    pub reader: fs::File,
    pub keeper: Option<fs::File>,
}

impl Fifo {
    /// mkfifo at `path` and open both ends without blocking; reads are blocking.
    pub fn create(path: &Path) -> Fifo {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        mkfifo(path);
        let reader = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap();
        let keeper = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap();
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(reader.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
        Fifo {
            reader,
            keeper: Some(keeper),
        }
    }

    /// Reads until `check` has taken `lines` lines (each checked as it comes), calling
    /// `each_read` after every read; returns the bytes read past the last whole line. Panics
    /// when nothing arrives for `idle`, with `context()`.
    pub fn read_checked(
        &mut self,
        check: &mut super::SeqChecker,
        lines: u64,
        idle: Duration,
        mut each_read: impl FnMut(),
        context: impl Fn() -> String,
    ) -> Vec<u8> {
        let (mut carry, mut buf) = (Vec::new(), vec![0u8; 1 << 16]);
        let mut idle_since = std::time::Instant::now();
        while check.lines < lines {
            let n = self
                .read_timeout(&mut buf, Duration::from_millis(200))
                .unwrap();
            if n == 0 {
                assert!(
                    idle_since.elapsed() < idle,
                    "sink stalled at {} of {lines} events; {}",
                    check.lines,
                    context()
                );
                continue;
            }
            idle_since = std::time::Instant::now();
            carry.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let Some(pos) = carry[start..].iter().position(|b| *b == b'\n') {
                check.push(&carry[start..start + pos]);
                start += pos + 1;
            }
            carry.drain(..start);
            each_read();
        }
        carry
    }

    /// Reads what is there, waiting up to `timeout` for something; Ok(0) on timeout or EOF.
    pub fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
        use std::os::unix::io::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if rc <= 0 {
            return Ok(0);
        }
        self.reader.read(buf)
    }
}

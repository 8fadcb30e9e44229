//! io_mode under a seccomp filter that refuses io_uring, as container runtimes do:
//! `auto` warns once and runs the same pipeline on epoll; `uring` fails with a clear error.

mod util;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use util::{bin, standard_config, wait_until, PATIENCE};

/// Install a seccomp filter making io_uring_setup(2) fail with ENOSYS (x86_64 and aarch64).
fn deny_io_uring(cmd: &mut Command) {
    const IO_URING_SETUP: u32 = 425; // the same number on x86_64 and aarch64
                                     // SAFETY: prctl is async-signal-safe; the filter program lives on this stack frame for
                                     // the duration of the call, and nothing else is touched between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let filter = [
                // A = seccomp_data.nr
                libc::sock_filter {
                    code: 0x20,
                    jt: 0,
                    jf: 0,
                    k: 0,
                },
                // if A == io_uring_setup: return ERRNO(ENOSYS), else ALLOW
                libc::sock_filter {
                    code: 0x15,
                    jt: 0,
                    jf: 1,
                    k: IO_URING_SETUP,
                },
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x0005_0000 | libc::ENOSYS as u32,
                },
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x7fff_0000,
                },
            ];
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut _,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const _,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn config(dir: &std::path::Path, mode: &str) -> std::path::PathBuf {
    let text = standard_config(mode).replace("{dir}", dir.to_str().unwrap());
    let path = dir.join("ringway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn auto_falls_back_to_epoll_when_io_uring_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "auto");
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stderr(stderr);
    deny_io_uring(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let sock = dir.path().join("in.sock");
    wait_until(PATIENCE, "the socket to accept", || {
        UnixStream::connect(&sock).is_ok()
    });
    let mut c = UnixStream::connect(&sock).unwrap();
    c.write_all(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
    drop(c);
    let out = dir.path().join("out.ndjson");
    wait_until(PATIENCE, "events in the sink", || {
        std::fs::read_to_string(&out)
            .map(|s| s.lines().count() == 2)
            .unwrap_or(false)
    });
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let err = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    let warnings: Vec<_> = err
        .lines()
        .filter(|l| l.contains("io_uring is not available"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "exactly one clear warning expected:\n{err}"
    );
    assert!(warnings[0].contains("epoll"), "{}", warnings[0]);
    assert!(
        err.contains("io_mode epoll"),
        "the listening line names the loop in use:\n{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "{\"n\":1}\n{\"n\":2}\n"
    );
}

#[test]
fn uring_mode_fails_clearly_when_io_uring_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "uring");
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    deny_io_uring(&mut cmd);
    let child = cmd.spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("io_uring is not available") && err.contains("io_mode"),
        "{err}"
    );
    assert!(
        !dir.path().join("in.sock").exists(),
        "no socket is left behind"
    );
}

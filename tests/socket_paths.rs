//! Socket path rules: replace a stale socket, refuse a live one, never touch what is not
//! a socket, apply the configured permissions, unlink on clean exit.

mod util;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};

use util::*;

fn config_at(socket: &str, permissions: Option<&str>) -> String {
    let perms = permissions
        .map(|p| format!("permissions = \"{p}\"\n"))
        .unwrap_or_default();
    format!(
        r#"
io_mode = "epoll"
workers = 1

[[sources]]
type = "unix_socket_server"
name = "in"
path = "{socket}"
{perms}
[[sinks]]
type = "file"
path = "{{dir}}/out.ndjson"
"#
    )
}

/// Sends one line over a fresh connection.
fn send_line(socket: &std::path::Path, line: &str) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
}

#[test]
fn stale_socket_is_replaced() {
    let launch = Gateway::configure(&config_at("{dir}/in.sock", None));
    let path = launch.path("in.sock");
    drop(UnixListener::bind(&path).unwrap()); // leaves a socket file nobody listens on
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());

    let mut gw = launch.start();
    assert_eq!(gw.socket(), path);
    send_line(gw.socket(), r#"{"after":"stale"}"#);
    wait_until(PATIENCE, "the event in the sink", || {
        count_lines(&gw.path("out.ndjson")) == 1
    });
    let summary = gw.stop();
    assert_eq!(
        read_lines(&gw.path("out.ndjson")),
        [br#"{"after":"stale"}"#.to_vec()]
    );
    assert_eq!(summary.events_out, 1);
    assert!(!path.exists(), "socket unlinked on clean exit");
}

#[test]
fn live_socket_is_refused() {
    let mut first = Gateway::start(&config_at("{dir}/in.sock", None));
    let path = first.socket().to_path_buf();

    let refusal = Gateway::configure(&config_at(path.to_str().unwrap(), None)).expect_failure();
    let (status, stderr) = (refusal.status, &refusal.stderr);
    assert!(
        !status.success(),
        "second gateway on a live socket must fail; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(path.to_str().unwrap()),
        "error names the path {}:\n{stderr}",
        path.display()
    );

    // The first gateway still owns the path and still works.
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    send_line(&path, r#"{"still":"alive"}"#);
    wait_until(PATIENCE, "the event in the first gateway's sink", || {
        count_lines(&first.path("out.ndjson")) == 1
    });
    assert_eq!(first.stop().events_out, 1);
}

#[test]
fn live_foreign_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken.sock");
    let listener = UnixListener::bind(&path).unwrap();

    let refusal = Gateway::configure(&config_at(path.to_str().unwrap(), None)).expect_failure();
    let (status, stderr) = (refusal.status, &refusal.stderr);
    assert!(!status.success(), "stderr:\n{stderr}");
    assert!(
        stderr.contains(path.to_str().unwrap()),
        "error names the path:\n{stderr}"
    );
    // Our listener is untouched: a new connection still reaches it.
    let _c = UnixStream::connect(&path).expect("the listener's socket file is still there");
    listener.accept().expect("the listener still accepts");
}

#[test]
fn regular_file_is_refused_and_untouched() {
    let launch = Gateway::configure(&config_at("{dir}/in.sock", None));
    let path = launch.path("in.sock");
    fs::write(&path, b"precious data").unwrap();

    let refusal = launch.expect_failure();
    let (status, stderr) = (refusal.status, &refusal.stderr);
    assert_eq!(
        fs::read(&path).unwrap(),
        b"precious data",
        "content untouched"
    );
    assert!(fs::symlink_metadata(&path).unwrap().is_file());
    assert!(!status.success(), "stderr:\n{stderr}");
    assert!(
        stderr.contains(path.to_str().unwrap()),
        "error names the path:\n{stderr}"
    );
}

#[test]
fn directory_and_symlink_are_refused_and_untouched() {
    // A directory.
    let launch = Gateway::configure(&config_at("{dir}/in.sock", None));
    let path = launch.path("in.sock");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("inside"), b"x").unwrap();
    let refusal = launch.expect_failure();
    let (status, stderr) = (refusal.status, &refusal.stderr);
    assert!(fs::symlink_metadata(&path).unwrap().is_dir());
    assert_eq!(fs::read(path.join("inside")).unwrap(), b"x");
    assert!(!status.success(), "directory: stderr:\n{stderr}");
    assert!(
        stderr.contains(path.to_str().unwrap()),
        "error names the path:\n{stderr}"
    );

    // A symlink (to a stale socket, even: a symlink is never followed nor replaced).
    let launch = Gateway::configure(&config_at("{dir}/in.sock", None));
    let path = launch.path("in.sock");
    let target = launch.path("target.sock");
    drop(UnixListener::bind(&target).unwrap());
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let refusal = launch.expect_failure();
    let (status, stderr) = (refusal.status, &refusal.stderr);
    assert!(fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_link(&path).unwrap(), target);
    assert!(fs::symlink_metadata(&target)
        .unwrap()
        .file_type()
        .is_socket());
    assert!(!status.success(), "symlink: stderr:\n{stderr}");
    assert!(
        stderr.contains(path.to_str().unwrap()),
        "error names the path:\n{stderr}"
    );
}

#[test]
fn permissions_are_applied() {
    for (spec, mode) in [
        (None, 0o600),
        (Some("=600"), 0o600),
        (Some("0640"), 0o640),
        (Some("640"), 0o640),
        (Some("u=rw,g=r"), 0o640),
    ] {
        let mut gw = Gateway::start(&config_at("{dir}/in.sock", spec));
        let meta = fs::symlink_metadata(gw.socket()).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            mode,
            "permissions {spec:?}: got {:o}",
            meta.permissions().mode() & 0o777
        );
        let socket = gw.socket().to_path_buf();
        gw.stop();
        assert!(!socket.exists(), "socket unlinked on clean exit");
    }
}

#[test]
fn owner_and_group_are_applied() {
    use std::os::unix::fs::MetadataExt;
    if !is_root() {
        eprintln!("SKIPPED owner_and_group_are_applied: needs root to chown");
        return;
    }
    let config = config_at("{dir}/in.sock", Some("0660")).replace(
        "permissions = \"0660\"",
        "permissions = \"0660\"\nowner = \"4242\"\ngroup = \"4343\"",
    );
    let mut gw = Gateway::start(&config);
    let meta = fs::symlink_metadata(gw.socket()).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (4242, 4343, 0o660)
    );
    gw.stop();

    // By name: root's uid and group are 0 on any system.
    let config = config_at("{dir}/in.sock", None).replace(
        "path = \"{dir}/in.sock\"",
        "path = \"{dir}/in.sock\"\nowner = \"root\"\ngroup = \"root\"",
    );
    let mut gw = Gateway::start(&config);
    let meta = fs::symlink_metadata(gw.socket()).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    gw.stop();
}

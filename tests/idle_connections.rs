//! 10,000 idle connections must not cost 10,000 read buffers: the io_uring loop reads into a
//! per-worker ring of provided buffers, the epoll loop into a per-thread scratch buffer.
//! Measured as the gateway's RSS growth per connection, then every connection still works.

mod util;

use std::io::Write;
use std::os::unix::net::UnixStream;

use util::*;

const CONNS: usize = 10_000;
/// A 64 KiB buffer per connection would be 16× this.
const MAX_BYTES_PER_CONN: u64 = 4096;

fn raise_own_fd_limit() {
    // SAFETY: plain get/setrlimit on this process.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[test]
fn ten_thousand_idle_connections_cost_no_buffers() {
    raise_own_fd_limit();
    for mode in MODES {
        let mut gw = Gateway::start(&standard_config(mode));
        // Let start-up allocations settle, and touch the read path once.
        let mut first = UnixStream::connect(gw.socket()).unwrap();
        first.write_all(b"{\"warm\":1}\n").unwrap();
        drop(first);
        wait_until(PATIENCE, "the warm-up event", || {
            count_lines(&gw.path("out.ndjson")) == 1
        });
        let before = gw.rss_kib();
        let mut conns = Vec::with_capacity(CONNS);
        for _ in 0..CONNS {
            conns.push(UnixStream::connect(gw.socket()).expect("connect"));
        }
        // The accept queue is worked through in order: an event from the last connection shows
        // it is empty; the pause lets hand-overs between io_uring workers finish.
        conns
            .last_mut()
            .unwrap()
            .write_all(b"{\"probe\":1}\n")
            .unwrap();
        wait_until(PATIENCE, "the probe event", || {
            count_lines(&gw.path("out.ndjson")) == 2
        });
        // Settling time before a memory measurement: nothing to wait on but time.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let after = gw.rss_kib();
        let per_conn = (after.saturating_sub(before) * 1024) / CONNS as u64;
        eprintln!("{mode}: RSS {before} KiB → {after} KiB with {CONNS} idle connections: {per_conn} B each");
        assert!(
            per_conn <= MAX_BYTES_PER_CONN,
            "{mode}: {per_conn} bytes of RSS per idle connection"
        );
        // Every one of them is still served.
        for (k, c) in conns.iter_mut().enumerate().step_by(97) {
            writeln!(c, "{{\"idle\":{k}}}").unwrap();
        }
        drop(conns);
        let summary = gw.stop();
        let expected = 2 + CONNS.div_ceil(97) as u64;
        assert_eq!(summary.events_out, expected, "{mode}: {summary:?}");
    }
}

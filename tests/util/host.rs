//! Facts about the machine the tests run on: a free loopback port, whether we are root, the
//! kernel's TCP memory limits.

/// A loopback TCP port free a moment ago (for a peer the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The maximum of `/proc/sys/net/ipv4/<name>` ("min default max"), in bytes.
pub fn tcp_mem_max(name: &str) -> u64 {
    let path = format!("/proc/sys/net/ipv4/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{path}: {text:?} is not \"min default max\""))
}

//! Encoding for sinks: events (raw, JSON string, or in an envelope) and dead-letter records.
//!
//! In: event bytes as they were received and their connection's metadata. Out: bytes appended to
//! a sink's output buffer. A JSON event goes out as its raw bytes, never re-serialised. Invalid
//! UTF-8 inside a JSON string is written as Python's `backslashreplace` would (`\xff` as the four
//! characters `\`, `x`, `f`, `f`). What it does not do: any I/O.

use std::io::Write;

use crate::codec::Codec;
use crate::config::{Format, MetadataMode, SourceKind};
use crate::event::{Batch, ConnMeta, DeadLetter};

/// Append `bytes` as a quoted JSON string.
pub fn json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                escape_into(out, s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // SAFETY-free: from_utf8 said these bytes are valid.
                escape_into(out, std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    let _ = write!(out, "\\\\x{b:02x}");
                }
                rest = &bad[n..];
            }
        }
    }
    out.push(b'"');
}

fn escape_into(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{c:04x}");
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

/// The connection's envelope prefix, rendered the first time a sink needs it.
fn envelope(conn: &ConnMeta) -> &[u8] {
    conn.envelope
        .get_or_init(|| envelope_prefix(conn).into_boxed_slice())
}

/// `{"meta":{"source":…,"<kind>":{…}},"event":`, rendered once per connection. The inner object is
/// `{"path","peer":id,"pid","uid","gid"}` for a UNIX server, `{"url","conn":id,"peer":{"host","port"}}`
/// for TCP, `{"path"}` for a file, `{"peer":path,"conn":id}` for a client sink's replies.
fn envelope_prefix(conn: &ConnMeta) -> Vec<u8> {
    let (src, id, peer_addr) = (&*conn.source, conn.id, conn.peer_addr);
    let (pid, uid, gid) = (conn.pid, conn.uid, conn.gid);
    let mut v = Vec::with_capacity(128 + src.path.len());
    v.extend_from_slice(b"{\"meta\":{\"source\":");
    json_str(&mut v, src.name.as_bytes());
    let _ = write!(v, ",\"{}\":{{", src.kind);
    match src.kind {
        SourceKind::TcpServer => {
            v.extend_from_slice(b"\"url\":");
            json_str(&mut v, src.path.as_bytes());
            let _ = write!(v, ",\"conn\":{id}");
            if let Some(a) = peer_addr {
                v.extend_from_slice(b",\"peer\":{\"host\":");
                json_str(&mut v, a.ip().to_string().as_bytes());
                let _ = write!(v, ",\"port\":{}}}", a.port());
            }
        }
        SourceKind::WsServer => {
            // tremor's `$ws_server`: { tls, peer: { host, port } }, and the connection id.
            v.extend_from_slice(b"\"url\":");
            json_str(&mut v, src.path.as_bytes());
            let tls = src.path.starts_with("wss://");
            let _ = write!(v, ",\"conn\":{id},\"tls\":{tls}");
            if let Some(a) = peer_addr {
                v.extend_from_slice(b",\"peer\":{\"host\":");
                json_str(&mut v, a.ip().to_string().as_bytes());
                let _ = write!(v, ",\"port\":{}}}", a.port());
            }
        }
        SourceKind::File => {
            v.extend_from_slice(b"\"path\":");
            json_str(&mut v, src.path.as_bytes());
        }
        SourceKind::UnixSocketClient | SourceKind::WsClient => {
            v.extend_from_slice(b"\"peer\":");
            json_str(&mut v, src.path.as_bytes());
            let _ = write!(v, ",\"conn\":{id}");
        }
        SourceKind::UnixSocketServer => {
            v.extend_from_slice(b"\"path\":");
            json_str(&mut v, src.path.as_bytes());
            let _ = write!(
                v,
                ",\"peer\":{id},\"pid\":{pid},\"uid\":{uid},\"gid\":{gid}"
            );
        }
    }
    v.extend_from_slice(b"}},\"event\":");
    v
}

/// Can this format write a batch's `data` as it is (raw events, `\n` after each)?
pub fn is_passthrough(format: &Format, source_codec: Codec) -> bool {
    format.separator == Some(b'\n')
        && format.metadata == MetadataMode::None
        && !needs_quoting(format, source_codec)
}

fn needs_quoting(format: &Format, source_codec: Codec) -> bool {
    format.codec == Codec::Json && source_codec != Codec::Json
}

/// Append every event of `batch` in `format`.
pub fn batch(out: &mut Vec<u8>, format: &Format, batch: &Batch) {
    let conn = &batch.conn;
    if is_passthrough(format, conn.source.codec) {
        out.extend_from_slice(&batch.data);
        return;
    }
    for e in batch.iter() {
        event(out, format, conn, e);
    }
}

/// Append one event of connection `conn` in `format`.
pub fn event(out: &mut Vec<u8>, format: &Format, conn: &ConnMeta, e: &[u8]) {
    if format.metadata == MetadataMode::Envelope {
        out.extend_from_slice(envelope(conn));
    }
    if needs_quoting(format, conn.source.codec) {
        json_str(out, e);
    } else {
        out.extend_from_slice(e);
    }
    if format.metadata == MetadataMode::Envelope {
        out.push(b'}');
    }
    if let Some(sep) = format.separator {
        out.push(sep);
    }
}

/// Append one dead-letter record as a JSON line.
pub fn dead_letter(out: &mut Vec<u8>, conn: &ConnMeta, d: &DeadLetter) {
    out.extend_from_slice(b"{\"error\":");
    json_str(out, d.kind.as_str().as_bytes());
    out.extend_from_slice(b",\"detail\":");
    json_str(out, d.detail.as_bytes());
    out.extend_from_slice(b",\"source\":");
    json_str(out, conn.source.name.as_bytes());
    out.extend_from_slice(b",\"path\":");
    json_str(out, conn.source.path.as_bytes());
    // `peer` is the connection id (as in a UNIX envelope); the credentials are SO_PEERCRED's,
    // which only a UNIX peer has; a TCP peer's address is `remote`.
    let _ = write!(out, ",\"peer\":{}", conn.id);
    if conn.source.kind == SourceKind::UnixSocketServer {
        let _ = write!(
            out,
            ",\"pid\":{},\"uid\":{},\"gid\":{}",
            conn.pid, conn.uid, conn.gid
        );
    }
    if let Some(a) = conn.peer_addr {
        out.extend_from_slice(b",\"remote\":{\"host\":");
        json_str(out, a.ip().to_string().as_bytes());
        let _ = write!(out, ",\"port\":{}}}", a.port());
    }
    let _ = write!(
        out,
        ",\"line\":{},\"len\":{},\"truncated\":{},\"raw\":",
        d.line,
        d.len,
        (d.raw.len() as u64) < d.len
    );
    json_str(out, &d.raw);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8]) -> String {
        let mut v = Vec::new();
        json_str(&mut v, b);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn json_strings_round_trip_through_serde() {
        for input in [
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\nand\ttab",
            "\u{1}ctl",
            "üñí",
        ] {
            let back: String = serde_json::from_str(&s(input.as_bytes())).unwrap();
            assert_eq!(back, input);
        }
    }

    #[test]
    fn invalid_utf8_is_backslash_replaced() {
        let back: String = serde_json::from_str(&s(b"a\xffb\xc3")).unwrap();
        assert_eq!(back, "a\\xffb\\xc3");
    }
}

//! Framing: the stage between a source and the codec.
//!
//! **In:** the raw bytes of one connection, in whatever pieces the kernel
//! hands them over (`Framer::feed`), then the end of the stream
//! (`Framer::finish`).
//!
//! **Out:** [`Frame`]s, one per line: a [`Frame::Line`] for each complete,
//! non-empty line, and a [`Frame::Oversized`], [`Frame::Truncated`] or
//! [`Frame::Incomplete`] for the lines a sink must not see as they are (the
//! caller dead-letters them). Every frame carries its 1-based line number,
//! which counts *every* line of the stream, empty ones included, so it matches
//! the line number in the user's file.
//!
//! **How:** `memchr` finds the separators. A line that lies entirely inside
//! one fed buffer is handed out as a slice of that buffer, never copied. Only
//! the unterminated tail of a buffer is copied, into a per-connection carry,
//! and the carry is emitted once a later buffer completes the line. The carry
//! never holds more than `max(max_length, keep_head)` bytes: once a line is
//! longer than `max_length` the framer keeps only its head and counts, then
//! discards, the rest up to the next separator, so neighbouring lines are
//! never affected. In steady state framing does not allocate: the carry grows
//! lazily and keeps its capacity (it is released only after a line that
//! needed more than 64 KiB of it).
//!
//! **Rules, exactly** (the naive [`split_naive`] is the executable spec; the
//! property test `tests/framing_prop.rs` checks `Framer` against it at every
//! split offset):
//! - The length checked against `max_length` is the line's length without
//!   its separator. When the separator is `\n`, a trailing `\r` is still part
//!   of that length (`"abc\r\n"` is 4 bytes long); it is stripped only from
//!   lines that fit, before they are emitted.
//! - A line of exactly `max_length` bytes fits.
//! - A line that is empty after the `\r` strip is counted but not emitted.
//! - `Oversized::head` is the first `min(keep_head, len)` bytes of the line;
//!   `Truncated::bytes` the first `max_length` bytes. Neither has its `\r`
//!   stripped (an oversized line is reported as it came).
//! - At EOF a non-empty unterminated last line is a line like any other,
//!   except that with `emit_incomplete == false` a line that fits is
//!   reported as [`Frame::Incomplete`] instead of [`Frame::Line`].
//! - `buffered == false`: every fed buffer is framed on its own; its
//!   unterminated tail is emitted at once as a line (or as an oversized
//!   line), nothing is carried, and `emit_incomplete` has no effect.
//!
//! **Not here:** reading sockets (the sources), validating the bytes of a
//! line (`codec`), counting or dead-lettering rejected lines (the caller
//! decides what to do with each [`Frame`]). One [`FramingConfig`] is meant to
//! be used for every call on a given [`Framer`]; changing it mid-stream is
//! memory-safe but its framing is unspecified.

use memchr::{memchr, memchr_iter};

/// A carry that grew beyond this many bytes is released (not just cleared)
/// once the line it held has been emitted, so that one huge line does not pin
/// up to `max_length` bytes for the rest of a connection's life. Lines that
/// big cost a copy of that size anyway, so the extra allocation is noise.
const CARRY_RELEASE_ABOVE: usize = 64 * 1024;

/// What to do with a line longer than [`FramingConfig::max_length`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversized {
    /// Discard the line up to its separator; report its head and length as a
    /// [`Frame::Oversized`].
    Drop,
    /// Keep its first `max_length` bytes as a [`Frame::Truncated`]; discard the
    /// rest up to its separator.
    Truncate,
}

/// How a connection's byte stream is cut into lines. Validated by `config`;
/// here every value is taken as it is.
#[derive(Debug, Clone)]
pub struct FramingConfig {
    /// The byte that ends a line. Default `b'\n'`, which also accepts `\r\n`.
    pub separator: u8,
    /// The longest line accepted, in bytes, separator excluded (a `\r` before
    /// a `\n` separator counts). Default 1 MiB.
    pub max_length: usize,
    /// What to do with a longer line. Default [`Oversized::Drop`].
    pub oversized: Oversized,
    /// `true` (default): a line may span several fed buffers. `false`: every
    /// fed buffer (one datagram, one packet) is framed on its own.
    pub buffered: bool,
    /// What an unterminated last line at EOF becomes: a [`Frame::Line`] when
    /// `true` (default), a [`Frame::Incomplete`] when `false`.
    pub emit_incomplete: bool,
    /// How many leading bytes of a dropped oversized line are kept for its
    /// dead-letter record. Default 4096.
    pub keep_head: usize,
}

impl Default for FramingConfig {
    fn default() -> Self {
        Self {
            separator: b'\n',
            max_length: 1_048_576,
            oversized: Oversized::Drop,
            buffered: true,
            emit_incomplete: true,
            keep_head: 4096,
        }
    }
}

impl FramingConfig {
    /// How many leading bytes of an oversized line its frame carries.
    fn head_limit(&self) -> usize {
        match self.oversized {
            Oversized::Drop => self.keep_head,
            Oversized::Truncate => self.max_length,
        }
    }
}

/// One line of a connection, or the report of one that cannot be passed on.
///
/// The bytes borrow either the buffer just fed or the framer's carry, so a
/// frame lives only for the duration of the callback it is passed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete, non-empty line, separator removed (and, when the separator
    /// is `b'\n'`, one trailing `b'\r'` removed).
    Line { bytes: &'a [u8], line: u64 },
    /// Drop mode: a line longer than `max_length`, discarded up to its
    /// separator. `head` is its first `min(keep_head, len)` bytes.
    Oversized { head: &'a [u8], len: u64, line: u64 },
    /// Truncate mode: a line longer than `max_length`; `bytes` is its first
    /// `max_length` bytes, `len` its full length.
    Truncated {
        bytes: &'a [u8],
        len: u64,
        line: u64,
    },
    /// EOF reached with an unterminated, non-empty last line while
    /// `emit_incomplete` is `false` (the caller dead-letters it).
    Incomplete { bytes: &'a [u8], line: u64 },
}

impl Frame<'_> {
    /// The 1-based line number of this frame in its connection's stream.
    #[must_use]
    pub fn line(&self) -> u64 {
        match *self {
            Frame::Line { line, .. }
            | Frame::Oversized { line, .. }
            | Frame::Truncated { line, .. }
            | Frame::Incomplete { line, .. } => line,
        }
    }
}

/// The per-connection framing state: the partial line carried between feeds,
/// whether that line is already known to be oversized, and the line counter.
#[derive(Debug, Default)]
pub struct Framer {
    /// The partial line (or, once it is oversized, only its head).
    carry: Vec<u8>,
    /// Full length of the partial line so far; `0` when there is none.
    partial_len: u64,
    /// The partial line is longer than `max_length`: `carry` holds its head.
    discarding: bool,
    /// Lines completed so far, empty and rejected ones included.
    lines: u64,
}

impl Framer {
    /// A framer at the start of a stream. Does not allocate.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames `data`, the next bytes of the stream, calling `out` once per
    /// frame, in stream order.
    pub fn feed(&mut self, cfg: &FramingConfig, data: &[u8], out: &mut impl FnMut(Frame<'_>)) {
        if !cfg.buffered {
            let tail = self.frame_complete_lines(cfg, data, out);
            if tail < data.len() {
                self.lines += 1;
                emit_piece(cfg, &data[tail..], self.lines, out);
            }
            return;
        }
        let mut rest = data;
        if self.partial_len > 0 {
            let Some(end) = memchr(cfg.separator, rest) else {
                self.extend_partial(cfg, rest);
                return;
            };
            self.extend_partial(cfg, &rest[..end]);
            self.emit_partial(cfg, false, out);
            rest = &rest[end + 1..];
        }
        let tail = self.frame_complete_lines(cfg, rest, out);
        if tail < rest.len() {
            self.extend_partial(cfg, &rest[tail..]);
        }
    }

    /// The stream has ended: emits the unterminated last line, if any, as a
    /// [`Frame::Line`] or [`Frame::Incomplete`] (per `emit_incomplete`), or as
    /// a [`Frame::Oversized`] / [`Frame::Truncated`] if it is too long.
    pub fn finish(&mut self, cfg: &FramingConfig, out: &mut impl FnMut(Frame<'_>)) {
        if self.partial_len > 0 {
            self.emit_partial(cfg, true, out);
        }
    }

    /// The end of a message (a WebSocket message through `separate`): its unterminated last
    /// line is a whole line, not an incomplete one.
    pub fn end_message(&mut self, cfg: &FramingConfig, out: &mut impl FnMut(Frame<'_>)) {
        if self.partial_len > 0 {
            self.emit_partial(cfg, false, out);
        }
    }

    /// One whole message as one line (no `separate` preprocessor): its trailing separators
    /// are dropped; an empty message is no line.
    pub fn whole(&mut self, cfg: &FramingConfig, data: &[u8], out: &mut impl FnMut(Frame<'_>)) {
        self.lines += 1;
        let mut end = data.len();
        while end > 0 && (data[end - 1] == cfg.separator || data[end - 1] == b'\r') {
            end -= 1;
        }
        if end > 0 {
            out(Frame::Line {
                bytes: &data[..end],
                line: self.lines,
            });
        }
    }

    /// Bytes currently held in the carry (the partial line, or its head).
    #[must_use]
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// Lines completed so far, empty and rejected ones included; also the
    /// line number of the last frame emitted.
    #[must_use]
    pub fn lines_seen(&self) -> u64 {
        self.lines
    }

    /// Emits every separator-terminated line of `data` as a slice of `data`;
    /// returns where the unterminated tail starts.
    #[inline]
    fn frame_complete_lines(
        &mut self,
        cfg: &FramingConfig,
        data: &[u8],
        out: &mut impl FnMut(Frame<'_>),
    ) -> usize {
        let mut start = 0;
        for end in memchr_iter(cfg.separator, data) {
            self.lines += 1;
            emit_piece(cfg, &data[start..end], self.lines, out);
            start = end + 1;
        }
        start
    }

    /// Appends `bytes` to the partial line, switching to discarding once it
    /// exceeds `max_length`.
    fn extend_partial(&mut self, cfg: &FramingConfig, bytes: &[u8]) {
        let new_len = self.partial_len + bytes.len() as u64;
        if !self.discarding {
            if new_len <= cfg.max_length as u64 {
                self.carry.extend_from_slice(bytes);
                self.partial_len = new_len;
                return;
            }
            self.discarding = true;
            self.carry.truncate(cfg.head_limit());
        }
        let room = cfg.head_limit().saturating_sub(self.carry.len());
        self.carry
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.partial_len = new_len;
    }

    /// Emits the carried line (now terminated, or ended by EOF) and resets the
    /// partial-line state.
    fn emit_partial(&mut self, cfg: &FramingConfig, at_eof: bool, out: &mut impl FnMut(Frame<'_>)) {
        self.lines += 1;
        let line = self.lines;
        if self.discarding {
            out(oversized_frame(cfg, &self.carry, self.partial_len, line));
        } else {
            let bytes = strip_cr(cfg.separator, &self.carry);
            if !bytes.is_empty() {
                out(if at_eof && !cfg.emit_incomplete {
                    Frame::Incomplete { bytes, line }
                } else {
                    Frame::Line { bytes, line }
                });
            }
        }
        self.partial_len = 0;
        self.discarding = false;
        if self.carry.capacity() > CARRY_RELEASE_ABOVE {
            self.carry = Vec::new();
        } else {
            self.carry.clear();
        }
    }
}

/// Emits one whole line (separator already removed) that needs no carry.
#[inline]
fn emit_piece(cfg: &FramingConfig, piece: &[u8], line: u64, out: &mut impl FnMut(Frame<'_>)) {
    if piece.len() > cfg.max_length {
        let head = &piece[..cfg.head_limit().min(piece.len())];
        out(oversized_frame(cfg, head, piece.len() as u64, line));
        return;
    }
    let bytes = strip_cr(cfg.separator, piece);
    if !bytes.is_empty() {
        out(Frame::Line { bytes, line });
    }
}

/// The frame reporting an oversized line of full length `len`, given its head.
#[inline]
fn oversized_frame<'a>(cfg: &FramingConfig, head: &'a [u8], len: u64, line: u64) -> Frame<'a> {
    match cfg.oversized {
        Oversized::Drop => Frame::Oversized { head, len, line },
        Oversized::Truncate => Frame::Truncated {
            bytes: head,
            len,
            line,
        },
    }
}

/// Removes one trailing `\r` when the separator is `\n`.
#[inline]
fn strip_cr(separator: u8, bytes: &[u8]) -> &[u8] {
    match bytes {
        [rest @ .., b'\r'] if separator == b'\n' => rest,
        _ => bytes,
    }
}

/// An owned [`Frame`], for tests, benches and the reference implementation.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedFrame {
    Line { bytes: Vec<u8>, line: u64 },
    Oversized { head: Vec<u8>, len: u64, line: u64 },
    Truncated { bytes: Vec<u8>, len: u64, line: u64 },
    Incomplete { bytes: Vec<u8>, line: u64 },
}

impl From<Frame<'_>> for OwnedFrame {
    fn from(frame: Frame<'_>) -> Self {
        match frame {
            Frame::Line { bytes, line } => OwnedFrame::Line {
                bytes: bytes.to_vec(),
                line,
            },
            Frame::Oversized { head, len, line } => OwnedFrame::Oversized {
                head: head.to_vec(),
                len,
                line,
            },
            Frame::Truncated { bytes, len, line } => OwnedFrame::Truncated {
                bytes: bytes.to_vec(),
                len,
                line,
            },
            Frame::Incomplete { bytes, line } => OwnedFrame::Incomplete {
                bytes: bytes.to_vec(),
                line,
            },
        }
    }
}

/// Feeds `chunks` through `framer` (then [`Framer::finish`] if `at_eof`) and
/// returns the frames, owned.
#[doc(hidden)]
pub fn collect<'c>(
    framer: &mut Framer,
    cfg: &FramingConfig,
    chunks: impl IntoIterator<Item = &'c [u8]>,
    at_eof: bool,
) -> Vec<OwnedFrame> {
    let mut frames = Vec::new();
    let mut out = |frame: Frame<'_>| frames.push(OwnedFrame::from(frame));
    for chunk in chunks {
        framer.feed(cfg, chunk, &mut out);
    }
    if at_eof {
        framer.finish(cfg, &mut out);
    }
    frames
}

/// The reference implementation: frames the whole of `input` at once with
/// `split`, obviously correct and slow (it copies every line). `at_eof` says
/// whether `input` is the whole stream (`true`) or only what has arrived so
/// far (`false`: a buffered framer would still carry the unterminated tail).
/// With `buffered == false`, `input` is one fed buffer and `at_eof` is ignored.
#[doc(hidden)]
#[must_use]
pub fn split_naive(cfg: &FramingConfig, input: &[u8], at_eof: bool) -> Vec<OwnedFrame> {
    let pieces: Vec<&[u8]> = input.split(|b| *b == cfg.separator).collect();
    let (last, terminated) = pieces
        .split_last()
        .expect("split yields at least one piece");
    let mut frames = Vec::new();
    let mut line = 0;
    for piece in terminated {
        line += 1;
        naive_line(cfg, piece, line, false, &mut frames);
    }
    if !last.is_empty() && (at_eof || !cfg.buffered) {
        line += 1;
        let incomplete = cfg.buffered && !cfg.emit_incomplete;
        naive_line(cfg, last, line, incomplete, &mut frames);
    }
    frames
}

fn naive_line(
    cfg: &FramingConfig,
    piece: &[u8],
    line: u64,
    incomplete: bool,
    frames: &mut Vec<OwnedFrame>,
) {
    let len = piece.len() as u64;
    if piece.len() > cfg.max_length {
        frames.push(match cfg.oversized {
            Oversized::Drop => OwnedFrame::Oversized {
                head: piece.iter().take(cfg.keep_head).copied().collect(),
                len,
                line,
            },
            Oversized::Truncate => OwnedFrame::Truncated {
                bytes: piece[..cfg.max_length].to_vec(),
                len,
                line,
            },
        });
        return;
    }
    let content = if cfg.separator == b'\n' {
        piece.strip_suffix(b"\r").unwrap_or(piece)
    } else {
        piece
    };
    if content.is_empty() {
        return;
    }
    let bytes = content.to_vec();
    frames.push(if incomplete {
        OwnedFrame::Incomplete { bytes, line }
    } else {
        OwnedFrame::Line { bytes, line }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FramingConfig {
        FramingConfig::default()
    }

    fn small(max_length: usize, oversized: Oversized) -> FramingConfig {
        FramingConfig {
            max_length,
            oversized,
            keep_head: 2,
            ..FramingConfig::default()
        }
    }

    fn line(bytes: &[u8], line: u64) -> OwnedFrame {
        OwnedFrame::Line {
            bytes: bytes.to_vec(),
            line,
        }
    }

    /// Frames `chunks` and checks the result against the reference first.
    fn frame(cfg: &FramingConfig, chunks: &[&[u8]], at_eof: bool) -> Vec<OwnedFrame> {
        let got = collect(&mut Framer::new(), cfg, chunks.iter().copied(), at_eof);
        if cfg.buffered {
            assert_eq!(got, split_naive(cfg, &chunks.concat(), at_eof), "vs naive");
        }
        got
    }

    #[test]
    fn crlf_is_stripped_when_separator_is_newline() {
        let got = frame(&cfg(), &[b"a\r\nb\n\r\n"], true);
        assert_eq!(got, vec![line(b"a", 1), line(b"b", 2)]);
    }

    #[test]
    fn crlf_split_across_feeds() {
        let got = frame(&cfg(), &[b"ab\r", b"\ncd", b"\r", b"\n"], true);
        assert_eq!(got, vec![line(b"ab", 1), line(b"cd", 2)]);
    }

    #[test]
    fn only_one_cr_is_stripped() {
        let got = frame(&cfg(), &[b"a\r\r\n"], true);
        assert_eq!(got, vec![line(b"a\r", 1)]);
    }

    #[test]
    fn empty_lines_are_counted_not_emitted() {
        let mut framer = Framer::new();
        let got = collect(&mut framer, &cfg(), [&b"\n\na\n\n\nb\n"[..]], true);
        assert_eq!(got, vec![line(b"a", 3), line(b"b", 6)]);
        assert_eq!(framer.lines_seen(), 6);
    }

    #[test]
    fn line_of_exactly_max_length_fits() {
        let c = small(3, Oversized::Drop);
        let got = frame(&c, &[b"abc\nabcd\n"], true);
        assert_eq!(
            got,
            vec![
                line(b"abc", 1),
                OwnedFrame::Oversized {
                    head: b"ab".to_vec(),
                    len: 4,
                    line: 2
                }
            ]
        );
    }

    #[test]
    fn cr_counts_toward_length() {
        let c = small(3, Oversized::Truncate);
        let got = frame(&c, &[b"ab\r\nabc\r\n"], true);
        assert_eq!(
            got,
            vec![
                line(b"ab", 1),
                OwnedFrame::Truncated {
                    bytes: b"abc".to_vec(),
                    len: 4,
                    line: 2
                }
            ]
        );
    }

    #[test]
    fn oversized_across_many_feeds_keeps_neighbours_and_bounds_carry() {
        for oversized in [Oversized::Drop, Oversized::Truncate] {
            let c = small(4, oversized);
            let input = b"one\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\ntwo\n";
            let mut framer = Framer::new();
            let mut frames = Vec::new();
            for byte in input.chunks(1) {
                framer.feed(&c, byte, &mut |f| frames.push(OwnedFrame::from(f)));
                assert!(framer.carried() <= 4, "carry grew to {}", framer.carried());
            }
            framer.finish(&c, &mut |f| frames.push(OwnedFrame::from(f)));
            let middle = match oversized {
                Oversized::Drop => OwnedFrame::Oversized {
                    head: b"xx".to_vec(),
                    len: 37,
                    line: 2,
                },
                Oversized::Truncate => OwnedFrame::Truncated {
                    bytes: b"xxxx".to_vec(),
                    len: 37,
                    line: 2,
                },
            };
            assert_eq!(frames, vec![line(b"one", 1), middle, line(b"two", 3)]);
            assert_eq!(frames, split_naive(&c, input, true));
        }
    }

    #[test]
    fn oversized_line_inside_one_feed() {
        let c = small(2, Oversized::Drop);
        let got = frame(&c, &[b"a\nbbbbb\nc\n"], true);
        assert_eq!(
            got,
            vec![
                line(b"a", 1),
                OwnedFrame::Oversized {
                    head: b"bb".to_vec(),
                    len: 5,
                    line: 2
                },
                line(b"c", 3)
            ]
        );
    }

    #[test]
    fn oversized_at_eof_is_reported_whatever_emit_incomplete() {
        for emit_incomplete in [true, false] {
            let c = FramingConfig {
                emit_incomplete,
                ..small(3, Oversized::Truncate)
            };
            let got = frame(&c, &[b"ok\nabc", b"defg"], true);
            let truncated = OwnedFrame::Truncated {
                bytes: b"abc".to_vec(),
                len: 7,
                line: 2,
            };
            assert_eq!(got, vec![line(b"ok", 1), truncated]);
        }
    }

    #[test]
    fn keep_head_larger_than_max_length() {
        let c = FramingConfig {
            keep_head: 6,
            ..small(3, Oversized::Drop)
        };
        let got = frame(&c, &[b"ab", b"cdefghij", b"\n"], true);
        let oversized = OwnedFrame::Oversized {
            head: b"abcdef".to_vec(),
            len: 10,
            line: 1,
        };
        assert_eq!(got, vec![oversized]);
    }

    #[test]
    fn unterminated_last_line_at_eof() {
        let got = frame(&cfg(), &[b"a\nb", b"c\r"], true);
        assert_eq!(got, vec![line(b"a", 1), line(b"bc", 2)]);

        let c = FramingConfig {
            emit_incomplete: false,
            ..cfg()
        };
        let got = frame(&c, &[b"a\nb", b"c\r"], true);
        let incomplete = OwnedFrame::Incomplete {
            bytes: b"bc".to_vec(),
            line: 2,
        };
        assert_eq!(got, vec![line(b"a", 1), incomplete]);
    }

    #[test]
    fn unterminated_tail_waits_for_more_bytes() {
        let mut framer = Framer::new();
        let got = collect(&mut framer, &cfg(), [&b"a\nbc"[..]], false);
        assert_eq!(got, vec![line(b"a", 1)]);
        assert_eq!(framer.carried(), 2);
        let got = collect(&mut framer, &cfg(), [&b"d\n"[..]], false);
        assert_eq!(got, vec![line(b"bcd", 2)]);
        assert_eq!(framer.carried(), 0);
    }

    #[test]
    fn unbuffered_frames_each_feed_alone() {
        let c = FramingConfig {
            buffered: false,
            emit_incomplete: false,
            ..small(3, Oversized::Drop)
        };
        let mut framer = Framer::new();
        let got = collect(&mut framer, &c, [&b"a\nbc"[..], b"d\n\n", b"efgh"], true);
        let expect = vec![
            line(b"a", 1),
            line(b"bc", 2),
            line(b"d", 3),
            OwnedFrame::Oversized {
                head: b"ef".to_vec(),
                len: 4,
                line: 5,
            },
        ];
        assert_eq!(got, expect);
        assert_eq!(framer.carried(), 0);
        assert_eq!(framer.lines_seen(), 5);
    }

    #[test]
    fn other_separator_keeps_cr_and_newline() {
        let c = FramingConfig {
            separator: b'\0',
            ..cfg()
        };
        let got = frame(&c, &[b"a\r\0b\nc\0\0d"], true);
        assert_eq!(got, vec![line(b"a\r", 1), line(b"b\nc", 2), line(b"d", 4)]);
    }

    #[test]
    fn lines_inside_a_feed_are_not_copied() {
        let data = b"first\nsecond\nthird";
        let range = data.as_ptr_range();
        let mut framer = Framer::new();
        let mut seen = 0;
        framer.feed(&cfg(), data, &mut |f| {
            let Frame::Line { bytes, .. } = f else {
                panic!("unexpected {f:?}")
            };
            assert!(range.contains(&bytes.as_ptr()));
            seen += 1;
        });
        assert_eq!((seen, framer.carried()), (2, 5));
    }

    #[test]
    fn new_framer_has_not_allocated() {
        assert_eq!(Framer::new().carry.capacity(), 0);
    }

    #[test]
    fn carry_is_released_after_a_huge_line() {
        let c = cfg();
        let big = vec![b'x'; 2 * CARRY_RELEASE_ABOVE];
        let mut framer = Framer::new();
        let mut lens = Vec::new();
        let mut out = |f: Frame<'_>| {
            let Frame::Line { bytes, .. } = f else {
                panic!("unexpected {f:?}")
            };
            lens.push(bytes.len());
        };
        framer.feed(&c, b"start", &mut out);
        framer.feed(&c, &big, &mut out);
        assert!(framer.carry.capacity() > CARRY_RELEASE_ABOVE);
        framer.feed(&c, b"\n", &mut out);
        assert_eq!(framer.carry.capacity(), 0);
        assert_eq!(lens, vec![5 + big.len()]);
    }

    #[test]
    fn max_length_zero_rejects_every_non_empty_line() {
        let c = small(0, Oversized::Truncate);
        let got = frame(&c, &[b"\na", b"b\n"], true);
        let truncated = OwnedFrame::Truncated {
            bytes: vec![],
            len: 2,
            line: 2,
        };
        assert_eq!(got, vec![truncated]);
    }

    #[test]
    fn frame_line_accessor() {
        let frame = Frame::Truncated {
            bytes: b"x",
            len: 9,
            line: 7,
        };
        assert_eq!(frame.line(), 7);
    }
}

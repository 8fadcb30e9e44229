//! Codec: the stage between framing and the channel.
//!
//! **In:** one line at a time (the bytes of a `framing::Frame::Line`), and the
//! codec configured for its source.
//!
//! **Out:** `Ok(())` if the line is valid for that codec, else an [`Error`]
//! saying why (the caller dead-letters the line, labelled with
//! [`Error::kind`]). A line is never modified.
//!
//! - [`Codec::Json`]: the line must be exactly one JSON document (any JSON
//!   value; surrounding whitespace allowed), as simd-json parses it: valid
//!   UTF-8 throughout, nesting at most [`simd_json::DEFAULT_MAX_DEPTH`] (1024)
//!   levels deep.
//! - [`Codec::String`]: the line must be valid UTF-8.
//! - [`Codec::Binary`]: every line is valid.
//!
//! **How:** simd-json unescapes strings in place, so [`Decoder::check`] copies
//! the line into a reusable, padded scratch buffer and parses it there with
//! [`simd_json::fill_tape_padded`], reusing simd-json's [`simd_json::Buffers`]
//! and its [`simd_json::Tape`] from line to line. Once these have grown to the
//! longest line seen, validating a line allocates nothing. Rejecting one
//! allocates nothing either: an [`Error`] holds only static text and offsets.
//!
//! **Big integers:** simd-json rejects integers outside the `i64`/`u64` range
//! unless its `big-int-as-float` feature is enabled; Cargo.toml enables it, so
//! `123456789012345678901234567890` is valid here, as it is for `serde_json`
//! (test `big_integers_are_valid`). The raw bytes are kept either way.
//!
//! **Not here:** splitting lines (`framing`), parsing into a value or
//! re-serialising (lines go to sinks as the bytes that arrived), schema checks.

use simd_json::tape::Node;
use simd_json::{Buffers, ErrorType, StaticNode, Tape, INPUT_PADDING};

use crate::event::{DeadLetterKind, NO_STAMP};

pub use crate::event::Codec;

/// Why a line was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not a single JSON document. `reason` is simd-json's error, `at` the
    /// byte offset in the line where simd-json reported it (0 when the error
    /// is about the line as a whole, e.g. an empty line).
    #[error("invalid JSON: {reason} at byte {at}")]
    InvalidJson { reason: &'static str, at: usize },
    /// Not UTF-8 (with the json codec: not UTF-8 outside escapes);
    /// `valid_up_to` is the length of the longest valid prefix.
    #[error("invalid UTF-8 at byte {valid_up_to}")]
    InvalidUtf8 { valid_up_to: usize },
}

impl Error {
    /// A stable, `snake_case` label for dead-letter records and metrics.
    #[must_use]
    pub fn kind(&self) -> DeadLetterKind {
        match self {
            Error::InvalidJson { .. } => DeadLetterKind::InvalidJson,
            Error::InvalidUtf8 { .. } => DeadLetterKind::InvalidUtf8,
        }
    }
}

/// Validates lines for one codec; one per worker, reused for every line.
pub struct Decoder {
    codec: Codec,
    /// simd-json's stage-1/stage-2 working memory.
    buffers: Buffers,
    /// A copy of the line being checked, followed by `INPUT_PADDING` bytes.
    scratch: Vec<u8>,
    /// Always empty between calls; kept for its allocation.
    tape: Tape<'static>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("codec", &self.codec)
            .field("scratch_capacity", &self.scratch.capacity())
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder for `codec`.
    #[must_use]
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            buffers: Buffers::default(),
            scratch: Vec::new(),
            tape: Tape(Vec::new()),
        }
    }

    /// The codec this decoder validates.
    #[must_use]
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Validates one line (separator already removed). Never modifies `line`;
    /// allocates only while its reusable buffers grow to the longest line
    /// seen so far.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidJson`] or [`Error::InvalidUtf8`] if `line` is not valid
    /// for this decoder's codec.
    pub fn check(&mut self, line: &[u8]) -> Result<(), Error> {
        match self.codec {
            Codec::Json => self.check_json(line),
            Codec::String => match std::str::from_utf8(line) {
                Ok(_) => Ok(()),
                Err(e) => Err(Error::InvalidUtf8 {
                    valid_up_to: e.valid_up_to(),
                }),
            },
            Codec::Binary => Ok(()),
        }
    }

    /// As [`Decoder::check`], and also returns the value of the top-level integer field
    /// `field` (the event's send time, for the latency histogram), or
    /// [`crate::event::NO_STAMP`] if the line is not an object with such a field
    /// holding a non-negative integer. Codecs other than json never carry a stamp.
    ///
    /// # Errors
    ///
    /// As [`Decoder::check`].
    pub fn check_stamped(&mut self, line: &[u8], field: &str) -> Result<u64, Error> {
        match self.codec {
            Codec::Json => self.parse_json(line, Some(field)),
            _ => self.check(line).map(|()| NO_STAMP),
        }
    }

    fn check_json(&mut self, line: &[u8]) -> Result<(), Error> {
        self.parse_json(line, None).map(|_| ())
    }

    fn parse_json(&mut self, line: &[u8], field: Option<&str>) -> Result<u64, Error> {
        let len = line.len();
        self.scratch.clear();
        self.scratch.extend_from_slice(line);
        // The padding's content is irrelevant to simd-json; spaces keep it readable.
        self.scratch.resize(len + INPUT_PADDING, b' ');
        // Borrow the tape's allocation for the lifetime of this parse; it goes
        // back, emptied, before `scratch` is touched again.
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let parsed =
            simd_json::fill_tape_padded(&mut self.scratch, len, &mut self.buffers, &mut tape);
        let stamp = match (&parsed, field) {
            (Ok(()), Some(f)) => top_level_uint(&tape.0, f),
            _ => NO_STAMP,
        };
        self.tape = tape.reset();
        parsed.map(|()| stamp).map_err(|e| json_error(&e, line))
    }
}

/// The value of `key` in a tape whose root is an object, if it is a non-negative integer.
fn top_level_uint(tape: &[Node<'_>], key: &str) -> u64 {
    let Some(Node::Object { len, .. }) = tape.first() else {
        return NO_STAMP;
    };
    let mut i = 1;
    for _ in 0..*len {
        let is_key = matches!(tape.get(i), Some(Node::String(k)) if *k == key);
        i += 1;
        let Some(value) = tape.get(i) else {
            return NO_STAMP;
        };
        if is_key {
            return match value {
                Node::Static(StaticNode::U64(v)) if *v != NO_STAMP => *v,
                Node::Static(StaticNode::I64(v)) if *v >= 0 => *v as u64,
                _ => NO_STAMP,
            };
        }
        i += match value {
            Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
            _ => 1,
        };
    }
    NO_STAMP
}

/// Turns a simd-json error into ours. Cold: only rejected lines get here.
#[cold]
#[inline(never)]
fn json_error(e: &simd_json::Error, line: &[u8]) -> Error {
    if matches!(e.error(), ErrorType::InvalidUtf8) {
        // simd-json's stage 1 validates UTF-8 for the whole line but does not
        // say where; std does.
        if let Err(utf8) = std::str::from_utf8(line) {
            return Error::InvalidUtf8 {
                valid_up_to: utf8.valid_up_to(),
            };
        }
    }
    Error::InvalidJson {
        reason: describe(e.error()),
        at: e.index(),
    }
}

/// A short, static description of a simd-json error type.
fn describe(error: &ErrorType) -> &'static str {
    match error {
        ErrorType::Eof => "unexpected end of input",
        ErrorType::TrailingData => "trailing data after the document",
        ErrorType::DepthLimitExceeded => "nested too deeply",
        ErrorType::InvalidEscape => "invalid escape sequence",
        ErrorType::InvalidUnicodeEscape => "invalid \\u escape",
        ErrorType::InvalidUnicodeCodepoint => "invalid unicode code point",
        ErrorType::InvalidUtf8 => "invalid UTF-8",
        ErrorType::InvalidNumber => "invalid number",
        ErrorType::InvalidExponent => "invalid exponent",
        ErrorType::UnterminatedString => "unterminated string",
        ErrorType::UnexpectedCharacter => "unexpected character",
        ErrorType::ExpectedArrayComma => "expected ',' or ']'",
        ErrorType::ExpectedMapComma => "expected ',' or '}'",
        ErrorType::ExpectedObjectColon => "expected ':'",
        ErrorType::ExpectedObjectKey | ErrorType::KeyMustBeAString => "expected a string key",
        ErrorType::ExpectedArrayContent => "expected a value or ']'",
        ErrorType::ExpectedObjectContent => "expected a key or '}'",
        ErrorType::ExpectedMapEnd => "expected '}'",
        ErrorType::ExpectedNull | ErrorType::ExpectedTrue | ErrorType::ExpectedFalse => {
            "invalid literal"
        }
        ErrorType::NoStructure => "no JSON value",
        ErrorType::InputTooLarge => "line too large to parse (over 4 GiB)",
        ErrorType::SimdUnsupported => "no SIMD support on this CPU",
        _ => "malformed JSON",
    }
}

/// One reusable [`Decoder`] per codec: what a read loop (a worker thread) keeps.
#[derive(Debug)]
pub struct Decoders([Decoder; 3]);

impl Default for Decoders {
    fn default() -> Self {
        Decoders([
            Decoder::new(Codec::Json),
            Decoder::new(Codec::String),
            Decoder::new(Codec::Binary),
        ])
    }
}

impl Decoders {
    /// The decoder for `codec`.
    pub fn get(&mut self, codec: Codec) -> &mut Decoder {
        &mut self.0[match codec {
            Codec::Json => 0,
            Codec::String => 1,
            Codec::Binary => 2,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(line: &[u8]) -> Result<(), Error> {
        Decoder::new(Codec::Json).check(line)
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut doc = vec![b'['; depth];
        doc.extend(std::iter::repeat_n(b']', depth));
        doc
    }

    #[test]
    fn stamps_are_read_from_top_level_integer_fields() {
        let mut d = Decoder::new(Codec::Json);
        let f = "sent_ns";
        let cases: &[(&[u8], u64)] = &[
            (br#"{"sent_ns":123,"msg":"x"}"#, 123),
            (br#"{"a":{"sent_ns":1},"b":[1,{"c":2}],"sent_ns":77}"#, 77),
            (
                br#"{"msg":"x", "sent_ns" : 18446744073709551614 }"#,
                18446744073709551614,
            ),
            (br#"{"a":{"sent_ns":1}}"#, NO_STAMP),
            (br#"{"sent_ns":-5}"#, NO_STAMP),
            (br#"{"sent_ns":1.5}"#, NO_STAMP),
            (br#"{"sent_ns":"12"}"#, NO_STAMP),
            (br#"{"sent\u005fns":9}"#, 9),
            (br#"[{"sent_ns":1}]"#, NO_STAMP),
            (br#"{}"#, NO_STAMP),
            (b"42", NO_STAMP),
        ];
        for (line, want) in cases {
            assert_eq!(
                d.check_stamped(line, f),
                Ok(*want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(d.check_stamped(br#"{"sent_ns":1"#, f).is_err());
        let mut s = Decoder::new(Codec::String);
        assert_eq!(s.check_stamped(br#"{"sent_ns":1}"#, f), Ok(NO_STAMP));
    }

    #[test]
    fn valid_json_documents() {
        let docs: &[&[u8]] = &[
            br#"{"a":1}"#,
            br#"{"a":{"b":[1,2,{"c":null}]},"d":true,"e":false}"#,
            br#"[]"#,
            br#"{}"#,
            br#""just a string""#,
            b"42",
            b"-0.5e-3",
            b"1.7976931348623157e308",
            b"18446744073709551615",
            b"-9223372036854775808",
            b"true",
            b"null",
            br#"{"emoji":"\ud83d\ude00"}"#,
            b"{\"raw\":\"h\xc3\xa9 \xe2\x82\xac\"}",
            b"  {\"a\": [1, 2]}  \t\r",
            br#"{"a":"x\"y\\n","b":"\/\b\f\n\r\t\u0000"}"#,
        ];
        let mut decoder = Decoder::new(Codec::Json);
        for doc in docs {
            assert_eq!(
                decoder.check(doc),
                Ok(()),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn escapes_do_not_modify_the_input() {
        let line = br#"{"a":"x\"y\\n","b":"\u00e9\n"}"#.to_vec();
        let before = line.clone();
        let mut decoder = Decoder::new(Codec::Json);
        assert_eq!(decoder.check(&line), Ok(()));
        assert_eq!(line, before);
        // and the reused scratch does not leak into the next line
        assert_eq!(decoder.check(br#"{"a":"short"}"#), Ok(()));
        assert_eq!(decoder.check(&line), Ok(()));
    }

    #[test]
    fn invalid_json_documents() {
        let docs: &[&[u8]] = &[
            br#"{"a":1"#,
            br#"{"a":1,}"#,
            br#"{a:1}"#,
            br#"{"a" 1}"#,
            br#"[1 2]"#,
            br#"{"a":"unterminated}"#,
            br#"{"a":"bad \x escape"}"#,
            br#"{"a":"\u12"}"#,
            br#"{'a':1}"#,
            b"01",
            b"1.",
            b"-",
            b"tru",
            b"nul",
            b"NaN",
            b"{\"a\":\"tab\tinside\"}",
        ];
        for doc in docs {
            let err = json(doc).expect_err(&String::from_utf8_lossy(doc));
            assert_eq!(
                err.kind(),
                DeadLetterKind::InvalidJson,
                "{}: {err}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn big_integers_are_valid() {
        assert_eq!(json(b"123456789012345678901234567890"), Ok(()));
        assert_eq!(json(br#"{"id":-99999999999999999999}"#), Ok(()));
    }

    #[test]
    fn out_of_range_floats_are_rejected() {
        // like serde_json::Value (IgnoredAny accepts them)
        assert!(json(b"1e400").is_err());
        assert!(json(b"[-1e400]").is_err());
    }

    #[test]
    fn lone_surrogate_escapes_are_rejected() {
        // like serde_json::Value (IgnoredAny accepts them)
        assert!(json(br#""\ud800""#).is_err());
        assert!(json(br#""\udc00x""#).is_err());
        assert_eq!(json(br#""\ud83d\ude00""#), Ok(()));
    }

    #[test]
    fn trailing_data_is_rejected() {
        let err = json(br#"{"a":1} x"#).unwrap_err();
        assert_eq!(err.kind(), DeadLetterKind::InvalidJson);
        assert!(json(br#"{"a":1}{"b":2}"#).is_err());
        assert!(json(b"1 2").is_err());
    }

    #[test]
    fn empty_and_blank_lines_are_rejected() {
        for doc in [&b""[..], b" ", b" \t \r"] {
            let err = json(doc).unwrap_err();
            assert_eq!(err.kind(), DeadLetterKind::InvalidJson);
        }
    }

    #[test]
    fn invalid_utf8_in_a_json_string_is_rejected() {
        let err = json(b"{\"a\":\"caf\xe9\"}").unwrap_err();
        assert_eq!(err, Error::InvalidUtf8 { valid_up_to: 9 });
        assert_eq!(err.kind(), DeadLetterKind::InvalidUtf8);
        // an encoded surrogate is not UTF-8 either
        assert!(json(b"\"\xed\xa0\x80\"").is_err());
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_rejected() {
        assert_eq!(json(&nested(1000)), Ok(()));
        let err = json(&nested(simd_json::DEFAULT_MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(
            err,
            Error::InvalidJson {
                reason: "nested too deeply",
                at: simd_json::DEFAULT_MAX_DEPTH,
            },
            "{err}"
        );
    }

    #[test]
    fn decoder_recovers_after_errors_and_long_lines() {
        let mut decoder = Decoder::new(Codec::Json);
        let long = format!("[{}1]", "\"xxxxxxxxxxxxxxxx\",".repeat(10_000));
        assert!(decoder.check(b"{").is_err());
        assert_eq!(decoder.check(long.as_bytes()), Ok(()));
        assert!(decoder.check(b"[1,]").is_err());
        assert_eq!(decoder.check(b"{}"), Ok(()));
        assert_eq!(decoder.check(long.as_bytes()), Ok(()));
    }

    #[test]
    fn string_codec_checks_utf8_only() {
        let mut decoder = Decoder::new(Codec::String);
        assert_eq!(decoder.codec(), Codec::String);
        assert_eq!(decoder.check(b"not json at all, caf\xc3\xa9"), Ok(()));
        assert_eq!(decoder.check(b""), Ok(()));
        let err = decoder.check(b"ab\xff").unwrap_err();
        assert_eq!(err, Error::InvalidUtf8 { valid_up_to: 2 });
        assert_eq!(err.to_string(), "invalid UTF-8 at byte 2");
    }

    #[test]
    fn binary_codec_accepts_anything() {
        let mut decoder = Decoder::new(Codec::Binary);
        assert_eq!(decoder.check(b"\xff\x00{"), Ok(()));
    }

    #[test]
    fn error_display_is_short_and_static() {
        let err = json(b"[1,2").unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON: "), "{err}");
    }

    #[test]
    fn decoder_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Decoder>();
    }
}

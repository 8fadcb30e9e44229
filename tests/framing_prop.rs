//! Property tests: `framing::Framer` against its reference, `split_naive`.
//!
//! Inputs are short and dense in the bytes that matter (both separators, `\r`)
//! and `max_length`/`keep_head` are tiny, so every rule (carry, `\r\n` across
//! a boundary, oversized across feeds, EOF handling) is hit constantly. Each
//! input is split at every offset, and at random multi-way cuts, and the
//! framed result must equal framing the whole input at once with `split`.

use proptest::prelude::*;
use ringway::framing::{collect, split_naive, Framer, FramingConfig, Oversized, OwnedFrame};

/// Bytes drawn mostly from the interesting ones.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b'\n'),
        2 => Just(b'\r'),
        2 => Just(b';'),
        6 => Just(b'a'),
        2 => Just(b'b'),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..120)
}

fn config(buffered: bool) -> impl Strategy<Value = FramingConfig> {
    (
        prop_oneof![3 => Just(b'\n'), 1 => Just(b';')],
        0usize..20,
        prop_oneof![Just(Oversized::Drop), Just(Oversized::Truncate)],
        any::<bool>(),
        0usize..25,
    )
        .prop_map(
            move |(separator, max_length, oversized, emit_incomplete, keep_head)| FramingConfig {
                separator,
                max_length,
                oversized,
                buffered,
                emit_incomplete,
                keep_head,
            },
        )
}

/// Cuts `input` at the given offsets (any order, duplicates give empty chunks).
fn chunks<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut start = 0;
    let mut out = Vec::with_capacity(cuts.len() + 1);
    for cut in cuts {
        out.push(&input[start..cut]);
        start = cut;
    }
    out.push(&input[start..]);
    out
}

/// The largest carry the framer may ever hold.
fn carry_bound(cfg: &FramingConfig) -> usize {
    cfg.max_length.max(cfg.keep_head)
}

/// Frames `chunks` with one framer, checking the carry bound after every feed;
/// returns the frames before and after `finish`, and the final line count.
fn frame_chunks(cfg: &FramingConfig, chunks: &[&[u8]]) -> (Vec<OwnedFrame>, Vec<OwnedFrame>, u64) {
    let mut framer = Framer::new();
    let mut fed = Vec::new();
    for chunk in chunks {
        fed.extend(collect(&mut framer, cfg, [*chunk], false));
        assert!(
            framer.carried() <= carry_bound(cfg),
            "carry {} > bound",
            framer.carried()
        );
    }
    let mut finished = fed.clone();
    finished.extend(collect(&mut framer, cfg, [], true));
    assert_eq!(framer.carried(), 0, "carry left after finish");
    (fed, finished, framer.lines_seen())
}

/// Lines in a whole stream: separators, plus a non-empty unterminated tail.
fn line_count(cfg: &FramingConfig, input: &[u8]) -> u64 {
    let seps = input.iter().filter(|b| **b == cfg.separator).count() as u64;
    let tail = input.last().is_some_and(|b| *b != cfg.separator);
    seps + u64::from(tail)
}

fn renumber(frame: OwnedFrame, offset: u64) -> OwnedFrame {
    match frame {
        OwnedFrame::Line { bytes, line } => OwnedFrame::Line {
            bytes,
            line: line + offset,
        },
        OwnedFrame::Oversized { head, len, line } => OwnedFrame::Oversized {
            head,
            len,
            line: line + offset,
        },
        OwnedFrame::Truncated { bytes, len, line } => OwnedFrame::Truncated {
            bytes,
            len,
            line: line + offset,
        },
        OwnedFrame::Incomplete { bytes, line } => OwnedFrame::Incomplete {
            bytes,
            line: line + offset,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_split_offset_matches_naive(cfg in config(true), input in input()) {
        let at_eof = split_naive(&cfg, &input, true);
        let so_far = split_naive(&cfg, &input, false);
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            let (fed, finished, lines) = frame_chunks(&cfg, &[a, b]);
            prop_assert_eq!(&fed, &so_far, "split at {} before finish", split);
            prop_assert_eq!(&finished, &at_eof, "split at {} after finish", split);
            prop_assert_eq!(lines, line_count(&cfg, &input));
        }
    }

    #[test]
    fn random_chunkings_match_naive(
        cfg in config(true),
        input in input(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let (fed, finished, lines) = frame_chunks(&cfg, &chunks(&input, &cuts));
        prop_assert_eq!(fed, split_naive(&cfg, &input, false));
        prop_assert_eq!(finished, split_naive(&cfg, &input, true));
        prop_assert_eq!(lines, line_count(&cfg, &input));
    }

    #[test]
    fn byte_at_a_time_matches_naive(cfg in config(true), input in input()) {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let (_, finished, _) = frame_chunks(&cfg, &bytes);
        prop_assert_eq!(finished, split_naive(&cfg, &input, true));
    }

    #[test]
    fn unbuffered_frames_each_chunk_alone(
        cfg in config(false),
        input in input(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let pieces = chunks(&input, &cuts);
        let mut expect = Vec::new();
        let mut offset = 0;
        for piece in &pieces {
            expect.extend(split_naive(&cfg, piece, false).into_iter().map(|f| renumber(f, offset)));
            offset += line_count(&cfg, piece);
        }
        let (fed, finished, lines) = frame_chunks(&cfg, &pieces);
        prop_assert_eq!(&fed, &expect);
        prop_assert_eq!(&finished, &expect);
        prop_assert_eq!(lines, offset);
    }
}

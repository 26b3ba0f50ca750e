//! Decode: one line of Cowrie's JSON log → the three fields tjfwd uses.
//!
//! Only `eventid`, `src_ip` and `timestamp` are read; every other field is
//! skipped by the JSON parser without being kept, because it holds
//! attacker-controlled text (usernames, passwords, commands). A line that is
//! not valid is reported with a [`SkipReason`] and never panics.
//!
//! # Two decoders, one answer
//!
//! [`decode_serde`] is the reference: UTF-8 validation, then serde_json
//! into a borrowed struct of the three fields. [`decode`] first tries
//! [`decode_fast`], a hand-written, validating scanner for a strict subset
//! of JSON that covers Cowrie's lines, and asks [`decode_serde`] about the
//! rest. The contract: when the fast path answers, its event is the one
//! serde_json returns (same `eventid`, `src_ip` and `timestamp_ms`, the
//! strings borrowed from the line); when it is in any doubt it answers
//! nothing. So `decode` answers exactly as `decode_serde` does, every skip
//! reason included: `not_utf8`, `not_json`, `invalid_field` and
//! `missing_*` only ever come from serde_json. It is about three times as
//! fast on a login line (~150 against ~470 ns for 450 bytes, README
//! "Benchmarks").
//!
//! ## The subset
//!
//! - Every byte is printable ASCII, 0x20..=0x7e. One SSE2 pass checks it
//!   (`classify`; no early exit, 64 bytes a step) and notes where the
//!   quotes of the first 512 bytes are and whether the line has a
//!   backslash. Hence no UTF-8 to validate, no control character (which
//!   serde_json refuses in strings), no whitespace but the space: a tab, a
//!   CR or a non-ASCII character, valid JSON or not, defers.
//! - Spaces, one object, spaces, the end (serde_json refuses anything
//!   after the value; a top-level array, which serde's derive reads as the
//!   struct's fields in order, defers).
//! - Members `"key": value`, spaces wherever JSON allows whitespace, commas
//!   between them and none after the last.
//! - Strings: the escapes `\" \\ \/ \b \f \n \r \t` are accepted, as
//!   serde_json does; any other is an error it reports (defer); `\u`
//!   defers too (serde_json checks surrogates in the strings it decodes
//!   and not in those it skips). Python's `json.dumps` writes `\u` only for
//!   characters outside printable ASCII, rare in Cowrie's lines: user
//!   names and passwords are escaped byte by byte first (`\xd0`).
//! - Keys are compared as written. One with an escape cannot spell
//!   `eventid`, `src_ip` or `timestamp` without `\u`: it is another key.
//! - The values of other keys are validated as serde_json's `ignore_value`
//!   validates them, no more, no less: strings as above, numbers by the
//!   JSON grammar `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` (their
//!   value is not computed, so `1e999999` is fine for both), `true`,
//!   `false`, `null`, and arrays and objects nested to any depth
//!   (`ignore_value` keeps its own stack and has no recursion limit; past
//!   64 levels the fast path defers). A duplicate of such a key is fine.
//! - `eventid`, `src_ip` and `timestamp`: each at most once (twice is
//!   serde_json's duplicate-field error: defer), each a string without an
//!   escape, so that its bytes are its value (a number, `null`, an array
//!   or an escape defers); `eventid` and `src_ip` present (else serde_json
//!   tells which is missing). Without `timestamp`, `timestamp_ms` is
//!   `None`, as from serde_json.
//!
//! ## Why it is exact
//!
//! For a line in the subset, each rule above is one check of the path
//! serde_json takes through it (`deserialize_struct` → `MapAccess`, the
//! derive's field visitor on the key, `deserialize_option` and
//! `deserialize_str` for the three fields, `deserialize_ignored_any` →
//! `ignore_value` for the others, then `end`), so serde_json accepts the
//! line too; and a string serde_json reads without an escape is borrowed
//! from the line between its quotes, the slice the fast path returns.
//! `timestamp_ms` is computed from that same string by the same function.
//! Everything the fast path is unsure of goes to serde_json, so an error
//! can only come from there. Checked by the unit tests below (attacker
//! text spelling the fields, escaped quotes and backslash runs before a
//! closing quote, `\u`, duplicates, nesting, numbers of every shape,
//! trailing bytes, spaces, every prefix and every one-byte change of two
//! lines), by `tests/decode_props.rs` (arbitrary bytes, random objects,
//! mutated generated lines; and the fast path must take nearly all
//! generated Cowrie lines) and by the fuzz target `decode_line`, all
//! against [`decode_serde`].
//!
//! ## How it goes fast
//!
//! Where strings end comes from the masks of quotes and backslashes, 64
//! bytes at a time: finding the end of a string costs a few instructions
//! whatever its length. On a line without a backslash ("plain", nearly
//! every Cowrie line) every quote opens or closes a string, and they are
//! consumed in order by popping bits; the parser checks that the next one
//! is where a string must start. On a line with backslashes the closing
//! quote is the first quote not preceded by an escape (escapes are
//! validated on the way). Nothing is copied; the scanner is passed by
//! value, so that it stays in registers. The only `unsafe` code is the
//! SSE2 loads (16 bytes, in bounds) and `str::from_utf8_unchecked` on
//! parts of a line checked to be ASCII.
//!
//! The pipeline's `select_lines` gives lines of up to 1 KiB to the fast path
//! before the prefilter (below): on such a line the two cost about the
//! same, and a selected line then needs nothing else.
//!
//! # The prefilter
//!
//! Most lines of a Cowrie log are events tjfwd does not select (connections,
//! client versions, the 1.5–2.3 KB `cowrie.client.kex` lines, commands...).
//! [`cannot_select`] rejects most of them with a few byte scans, before the
//! JSON parser, and says "in doubt" (full decode) otherwise. It never rejects
//! a line that [`decode`] + [`Rules::selects`] would select:
//!
//! 1. A line is selected only if it is valid JSON whose top-level object
//!    has one `eventid`, a string whose decoded value starts with
//!    `cowrie.login.` or `cowrie.session.`. In a JSON string a letter or a
//!    dot is written either literally or as a `\uXXXX` escape (`\"`, `\\`,
//!    `\n`... stand for other characters). So in a line without the two
//!    bytes `\u`, that key is written literally as `"eventid"`, and if this
//!    byte string occurs only once in the line, no other key of the line is
//!    `eventid` (a duplicate would be a second occurrence).
//! 2. Its value is read up to the next `"`; if no `\` stands before that
//!    quote, the bytes in between are the decoded value itself, and
//!    [`Rules::selects`] is asked about exactly them.
//! 3. That one occurrence is the top-level key, not a key of a nested
//!    object (`{"x":{"eventid":...}}`) nor the end of another key
//!    (`{"x\"eventid":...}`), when no `\` stands just before it and either
//!    no `{` or `[` stands before it but the line's first byte, or no
//!    bracket at all stands after it but the line's last byte. In valid
//!    JSON, an unescaped quote followed by `eventid":` opens a key; with
//!    no opening bracket before it, the key is in the outermost object;
//!    with no bracket after it, only the outermost object closes after it
//!    (the brackets of valid JSON balance). Cowrie writes no bracket before
//!    `eventid` but in the kex lines' lists, and none after it in those
//!    lines. When neither holds (brackets in attacker text on both sides),
//!    the fast path ([`decode_fast`]) answers, or the line is in doubt.
//!
//! Anything else — a `\u` anywhere, zero or two `"eventid"`, other spacing
//! than Cowrie's `:` or the socket output's `: `, a backslash in the value —
//! is sent to the full decoder. Lines that do not look well-formed also are,
//! so that the skip counters stay as they were ([`SkipReason`]): a line is
//! only rejected when it is printable ASCII (no byte ≥ 0x80, no control
//! character), starts with `{`, ends with `}`, and has exactly one
//! `"src_ip"` (the top-level key, as in step 3) and at most one
//! `"timestamp"`, each with a string value. So a valid line the prefilter
//! rejects is one the decoder reads without an error, and what the
//! prefilter no longer counts is only a line of that shape that is broken
//! elsewhere in its JSON syntax (a missing comma, an unbalanced bracket):
//! such a line, which cannot hold a selected event, now counts as read
//! (`lines_read`) instead of `not_json`.

use serde::Deserialize;
use std::borrow::Cow;

use crate::filter::Rules;
use crate::stats::SkipReason;

/// The fields of one event that tjfwd needs, borrowed from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// e.g. `cowrie.login.failed`.
    pub eventid: Cow<'a, str>,
    /// The peer address as Cowrie wrote it (not yet validated).
    pub src_ip: Cow<'a, str>,
    /// Event time in ms since the epoch, when present and well-formed.
    pub timestamp_ms: Option<u64>,
}

/// The three fields, as serde_json reads them from an object.
///
/// Written out rather than derived: a derived struct also accepts a JSON
/// array (`["cowrie.login.failed","192.0.2.1"]` would have been an event,
/// its elements taken as the fields in declaration order). Only an object
/// is an event; anything else is `invalid_field` (valid JSON of the wrong
/// shape). Otherwise it does what the derive did: a duplicate field is an
/// error, a `null` field is absent, unknown fields are skipped unread, and
/// the strings are borrowed from the line unless they hold an escape.
struct Raw<'a> {
    eventid: Option<Cow<'a, str>>,
    src_ip: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> serde::de::Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Cowrie event (a JSON object)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        let mut raw = Raw {
            eventid: None,
            src_ip: None,
            timestamp: None,
        };
        // Whether each field was seen, `null` or not: a second one is a
        // duplicate either way, as with the derive.
        let mut seen = [false; 3];
        while let Some(key) = map.next_key::<Field>()? {
            let (slot, i, name) = match key {
                Field::Eventid => (&mut raw.eventid, 0, "eventid"),
                Field::SrcIp => (&mut raw.src_ip, 1, "src_ip"),
                Field::Timestamp => (&mut raw.timestamp, 2, "timestamp"),
                Field::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err(serde::de::Error::duplicate_field(name));
            }
            *slot = map.next_value::<Option<BorrowedStr<'de>>>()?.map(|s| s.0);
        }
        Ok(raw)
    }
}

/// A key of the event object: one of the three fields, or any other.
enum Field {
    Eventid,
    SrcIp,
    Timestamp,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Field, E> {
                Ok(match key {
                    "eventid" => Field::Eventid,
                    "src_ip" => Field::SrcIp,
                    "timestamp" => Field::Timestamp,
                    _ => Field::Other,
                })
            }
        }
        deserializer.deserialize_identifier(V)
    }
}

/// A string value, borrowed from the line when it has no escape (what
/// `#[serde(borrow)]` did for a `Cow<str>`).
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// Decodes one line (without its newline): the fast path when the line is
/// in its subset (see the module doc), else serde_json ([`decode_serde`]).
/// Either way the answer is the one [`decode_serde`] gives.
pub fn decode(line: &[u8]) -> Result<Event<'_>, SkipReason> {
    match decode_fast(line) {
        Some(event) => Ok(event),
        None => decode_serde(line),
    }
}

/// The reference decoder: UTF-8 validation, then serde_json into a
/// borrowed struct of the three fields. [`decode`] answers what this
/// answers, for every input; the tests, the fuzzer and the benches compare
/// the two.
pub fn decode_serde(line: &[u8]) -> Result<Event<'_>, SkipReason> {
    let text = std::str::from_utf8(line).map_err(|_| SkipReason::NotUtf8)?;
    let raw: Raw<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        // Valid JSON, wrong shape: a field of the wrong type, a duplicate
        // field, or not an object at all.
        serde_json::error::Category::Data => SkipReason::InvalidField,
        _ => SkipReason::NotJson,
    })?;
    let eventid = raw.eventid.ok_or(SkipReason::MissingEventid)?;
    let src_ip = raw.src_ip.ok_or(SkipReason::MissingSrcIp)?;
    let timestamp_ms = raw.timestamp.as_deref().and_then(parse_timestamp_ms);
    Ok(Event {
        eventid,
        src_ip,
        timestamp_ms,
    })
}

/// The fast path: `Some(event)` when `line` is in the subset of JSON the
/// module doc describes, with the same event [`decode_serde`] returns for
/// it; `None` ("in doubt") for anything else, which [`decode`] then hands
/// to serde_json. Never a different answer, only none.
pub fn decode_fast(line: &[u8]) -> Option<Event<'_>> {
    // One vectorized pass. From here on every byte is in 0x20..=0x7e: no
    // UTF-8 can be invalid, no whitespace but the space can occur; and
    // where the quotes of the first 512 bytes are is known.
    let classified = classify(line)?;
    parse(line, &classified)
}

/// The fast path as it runs on a line with a backslash, on any line: the
/// tests and the fuzzer hold it to serde_json's answers on plain lines too,
/// and to the plain path's.
#[doc(hidden)]
pub fn decode_fast_general(line: &[u8]) -> Option<Event<'_>> {
    let mut classified = classify(line)?;
    classified.plain = false;
    parse(line, &classified)
}

/// The parser of the fast path, on a line [`classify`] accepted.
// Unsafe: `str::from_utf8_unchecked` on parts of a line checked to be
// ASCII (validating them again cost a tenth of the fast path).
#[allow(unsafe_code)]
#[inline(always)]
fn parse<'a>(line: &'a [u8], classified: &Classified) -> Option<Event<'a>> {
    let mut s = Scanner::new(line, classified);
    s.spaces();
    s.eat(b'{')?;
    s.spaces();
    // Value spans of `eventid`, `src_ip`, `timestamp`.
    let (mut eventid, mut src_ip, mut timestamp) = (None, None, None);
    loop {
        let (start, end, escaped) = s.string()?;
        s.colon()?;
        // A key with an escape other than \u (which `string` refuses)
        // cannot decode to one of the three names: it is ignored.
        let field = match field_index(&line[start..end]) {
            Some(0) if !escaped => &mut eventid,
            Some(1) if !escaped => &mut src_ip,
            Some(2) if !escaped => &mut timestamp,
            _ => {
                s.skip_value()?;
                if s.comma()? {
                    continue;
                }
                break;
            }
        };
        // A duplicate (serde_json: an error) or anything but a plain string
        // (null, a number, escapes): in doubt.
        if field.is_some() {
            return None;
        }
        let (vs, ve, escaped) = s.string()?;
        if escaped {
            return None;
        }
        *field = Some((vs, ve));
        if !s.comma()? {
            break;
        }
    }
    s.spaces();
    if s.i != line.len() {
        return None;
    }
    let text = |(a, b): (usize, usize)| {
        let bytes = &line[a..b];
        debug_assert!(bytes.is_ascii());
        // SAFETY: every byte of `line` is ASCII (`classify` above), so any part of it is UTF-8. (`std::str::from_utf8` here
        // cost a tenth of the fast path.)
        unsafe { std::str::from_utf8_unchecked(bytes) }
    };
    // Missing fields: serde_json's answer carries the reason.
    Some(Event {
        eventid: Cow::Borrowed(text(eventid?)),
        src_ip: Cow::Borrowed(text(src_ip?)),
        timestamp_ms: timestamp.and_then(|t| parse_timestamp_ms(text(t))),
    })
}

/// Which of the three fields a key (as written) names: 0 `eventid`,
/// 1 `src_ip`, 2 `timestamp`. Compared a word at a time.
#[inline(always)]
fn field_index(key: &[u8]) -> Option<usize> {
    let word = |at: usize| u32::from_le_bytes([key[at], key[at + 1], key[at + 2], key[at + 3]]);
    let le = |w: &[u8; 4]| u32::from_le_bytes(*w);
    match key.len() {
        7 if word(0) == le(b"even") && word(3) == le(b"ntid") => Some(0),
        6 if word(0) == le(b"src_") && word(2) == le(b"c_ip") => Some(1),
        9 if word(0) == le(b"time") && word(4) == le(b"stam") && key[8] == b'p' => Some(2),
        _ => None,
    }
}

/// What one pass over a line finds, before it is parsed.
#[derive(Debug, PartialEq, Eq)]
struct Classified {
    /// No backslash in the line: every quote opens or closes a string.
    plain: bool,
    /// Bit `j` of `quotes[k]` is set iff byte `64 k + j` is `"`, for the
    /// first [`HEAD_BLOCKS`] blocks of 64 bytes (those of the others are
    /// computed again when the parser gets there).
    quotes: [u64; HEAD_BLOCKS],
}

/// 512 bytes: login lines are shorter (99.99% of them in the generated
/// 2M-line log).
const HEAD_BLOCKS: usize = 8;

/// Reads the whole line once: `None` unless every byte is printable
/// ASCII, 0x20..=0x7e (no control character, so no whitespace but the
/// space; no DEL; nothing that is not ASCII, so no invalid UTF-8). SSE2,
/// 16 bytes at a time, no branch but the loop's.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
// Unsafe: the SSE2 loads (`_mm_loadu_si128` reads through a pointer).
#[allow(unsafe_code)]
#[inline(always)]
fn classify(line: &[u8]) -> Option<Classified> {
    if line.len() < 64 {
        return classify_short(line);
    }
    use std::arch::x86_64::{
        _mm_add_epi8, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128,
    };
    let mut c = Classified {
        plain: true,
        quotes: [0; HEAD_BLOCKS],
    };
    let n = line.len();
    // SAFETY: SSE2 is enabled (the cfg above; every x86_64 target has it),
    // and every load reads one of the four 16-byte chunks of a 64-byte
    // slice of `line`.
    unsafe {
        let (mut bad, mut backslash) = (_mm_setzero_si128(), _mm_setzero_si128());
        for (k, start) in (0..n).step_by(64).enumerate() {
            // The last block, when short, is the last 64 bytes of the line
            // (it overlaps the one before), its quotes shifted into place.
            let (at, shift) = if start + 64 <= n {
                (start, 0)
            } else {
                (n - 64, 64 - (n - start))
            };
            let mut quotes = 0u64;
            for (j, chunk) in line[at..at + 64].chunks_exact(16).enumerate() {
                let v = _mm_loadu_si128(chunk.as_ptr().cast());
                // 0x20..=0x7e + 1 is 0x21..=0x7f, the bytes that are
                // 0x21 or more as signed bytes; every other byte + 1 is
                // below (0x7f + 1 and 0x80..=0xff + 1 are negative).
                let low = _mm_cmplt_epi8(_mm_add_epi8(v, _mm_set1_epi8(1)), _mm_set1_epi8(0x21));
                bad = _mm_or_si128(bad, low);
                backslash = _mm_or_si128(backslash, _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)));
                let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)));
                quotes |= u64::from(q as u16) << (16 * j);
            }
            if let Some(slot) = c.quotes.get_mut(k) {
                *slot = quotes >> shift;
            }
        }
        if _mm_movemask_epi8(bad) != 0 {
            return None;
        }
        c.plain = _mm_movemask_epi8(backslash) == 0;
    }
    Some(c)
}

/// [`classify`] of a line shorter than a block: on a copy padded with
/// spaces (neither quotes nor bad bytes).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[cold]
#[inline(never)]
fn classify_short(line: &[u8]) -> Option<Classified> {
    let mut padded = [b' '; 64];
    padded[..line.len()].copy_from_slice(line);
    classify(&padded)
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn classify(line: &[u8]) -> Option<Classified> {
    classify_scalar(line)
}

/// The same a byte at a time: the other architectures' way, and the
/// reference the SSE2 one is tested against.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn classify_scalar(line: &[u8]) -> Option<Classified> {
    let mut c = Classified {
        plain: !line.contains(&b'\\'),
        quotes: [0; HEAD_BLOCKS],
    };
    for (i, &b) in line.iter().enumerate() {
        if !(0x20..=0x7e).contains(&b) {
            return None;
        }
        if let Some(q) = c.quotes.get_mut(i / 64) {
            *q |= u64::from(b == b'"') << (i % 64);
        }
    }
    Some(c)
}

/// Where the quotes and the backslashes are in the 64 bytes of `line`
/// from `start` (below its length; past the end, none), for the parser
/// where [`classify`] did not keep them: bit `j` of the first mask is set
/// iff byte `start + j` is `"`, of the second iff it is `\`.
#[inline(never)]
fn block_masks(line: &[u8], start: usize) -> (u64, u64) {
    match line.get(start..start + 64) {
        Some(block) => block_masks_64(block.try_into().expect("64 bytes")),
        None => block_masks_scalar(&line[start..]),
    }
}

/// [`block_masks`] of 64 bytes, SSE2.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
// Unsafe: the SSE2 loads (`_mm_loadu_si128` reads through a pointer).
#[allow(unsafe_code)]
fn block_masks_64(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let (mut quotes, mut backslashes) = (0u64, 0u64);
    for (j, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is enabled (the cfg above; every x86_64 target has
        // it), and `chunk` is 16 bytes in bounds, which the load reads.
        let (q, b) = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            (
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))),
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))),
            )
        };
        quotes |= u64::from(q as u16) << (16 * j);
        backslashes |= u64::from(b as u16) << (16 * j);
    }
    (quotes, backslashes)
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn block_masks_64(block: &[u8; 64]) -> (u64, u64) {
    block_masks_scalar(block)
}

/// [`block_masks`] of up to 64 bytes, a byte at a time (and the
/// reference the SSE2 one is tested against).
fn block_masks_scalar(bytes: &[u8]) -> (u64, u64) {
    let (mut quotes, mut backslashes) = (0u64, 0u64);
    for (j, &c) in bytes.iter().take(64).enumerate() {
        quotes |= u64::from(c == b'"') << j;
        backslashes |= u64::from(c == b'\\') << j;
    }
    (quotes, backslashes)
}

/// A cursor over a line that [`classify`] accepted.
///
/// Passed by value to what is not inlined, so that it stays in registers.
#[derive(Clone, Copy)]
struct Scanner<'a> {
    b: &'a [u8],
    /// The next byte to read.
    i: usize,
    /// What [`classify`] found: whether the line is plain (no backslash:
    /// every quote opens or closes a string, and they are consumed in
    /// order), the masks of its first blocks.
    pre: &'a Classified,
    /// The 64-byte block of `b` (its offset) that `quotes` and
    /// `backslashes` are about ([`block_masks`]).
    block: usize,
    /// Plain: the quotes of that block not consumed yet. Otherwise all its
    /// quotes.
    quotes: u64,
    backslashes: u64,
}

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8], pre: &'a Classified) -> Scanner<'a> {
        Scanner {
            b,
            i: 0,
            pre,
            // Plain lines go through the blocks in order from the first.
            block: if pre.plain {
                0usize.wrapping_sub(64)
            } else {
                usize::MAX
            },
            quotes: 0,
            backslashes: 0,
        }
    }

    /// The quotes of the block at `start` (a multiple of 64 below the
    /// length) of a plain line.
    #[inline(always)]
    fn quotes_at(&self, start: usize) -> u64 {
        match self.pre.quotes.get(start / 64) {
            Some(&q) => q,
            None => block_masks(self.b, start).0,
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// JSON whitespace; the space is the only kind left in the subset.
    #[inline(always)]
    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// `:` between spaces, after a key.
    #[inline(always)]
    fn colon(&mut self) -> Option<()> {
        if self.peek() == Some(b':') && self.b.get(self.i + 1) != Some(&b' ') {
            self.i += 1;
            return Some(());
        }
        self.spaces();
        self.eat(b':')?;
        self.spaces();
        Some(())
    }

    /// After a member of the top-level object: `true` after a `,` (with the
    /// spaces after it), `false` after the closing `}`.
    #[inline(always)]
    fn comma(&mut self) -> Option<bool> {
        self.spaces();
        match self.next()? {
            b',' => {
                self.spaces();
                Some(true)
            }
            b'}' => Some(false),
            _ => None,
        }
    }

    /// In a plain line, the next quote not consumed yet.
    #[inline(always)]
    fn next_quote(&mut self) -> Option<usize> {
        while self.quotes == 0 {
            self.block = self.block.wrapping_add(64);
            if self.block >= self.b.len() {
                return None;
            }
            self.quotes = self.quotes_at(self.block);
        }
        let p = self.block + self.quotes.trailing_zeros() as usize;
        self.quotes &= self.quotes - 1;
        Some(p)
    }

    /// Otherwise: the block of `i` and its quotes and backslashes at or
    /// after `i`; `None` past the end of the line.
    #[inline(always)]
    fn masks_from(&mut self, i: usize) -> Option<(usize, u64, u64)> {
        let block = i & !63;
        if block >= self.b.len() {
            return None;
        }
        if block != self.block {
            (self.quotes, self.backslashes) = block_masks(self.b, block);
            self.block = block;
        }
        let from = u64::MAX << (i & 63);
        Some((block, self.quotes & from, self.backslashes & from))
    }

    /// A string, the cursor on its opening quote: its content's span
    /// (escapes not undone) and whether it has escapes, the cursor after
    /// its closing quote. `None` if there is no string there, for `\u`
    /// (serde_json checks surrogates in some strings and not in others:
    /// not worth repeating), for an escape serde_json rejects, and for a
    /// string the line does not close.
    #[inline(always)]
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        if self.pre.plain {
            // The quotes are consumed in order: the next one must be here
            // (any quote before it would have stopped the parser), and
            // the one after it closes the string.
            if self.next_quote()? != self.i {
                return None;
            }
            let end = self.next_quote()?;
            let start = self.i + 1;
            self.i = end + 1;
            return Some((start, end, false));
        }
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        let mut at = start;
        loop {
            let (block, quotes, backslashes) = self.masks_from(at)?;
            if quotes != 0
                && (backslashes == 0 || quotes.trailing_zeros() < backslashes.trailing_zeros())
            {
                let end = block + quotes.trailing_zeros() as usize;
                self.i = end + 1;
                return Some((start, end, escaped));
            }
            if backslashes == 0 {
                // Neither in the rest of this block.
                at = block + 64;
                continue;
            }
            let p = block + backslashes.trailing_zeros() as usize;
            match self.b.get(p + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                _ => return None,
            }
            escaped = true;
            at = p + 2;
        }
    }

    /// A number, by the JSON grammar (serde_json's `ignore_integer`,
    /// `ignore_decimal`, `ignore_exponent`): `-`? (`0` | [1-9][0-9]*)
    /// (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?. Its value is not needed.
    #[inline(always)]
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        // What follows (`,`, `}`, `]`, a space; a digit after a leading 0
        // is none of them) is checked by the caller.
        Some(())
    }

    #[inline(always)]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    #[inline(always)]
    fn some_digits(&mut self) -> Option<()> {
        let from = self.i;
        self.digits();
        (self.i > from).then_some(())
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A value tjfwd does not read, validated as serde_json's
    /// `ignore_value` does.
    #[inline(always)]
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'-' | b'0'..=b'9' => self.number()?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'[' | b'{' => *self = self.skip_container()?,
            _ => return None,
        }
        Some(())
    }

    /// An object member's key and colon, in an ignored value.
    #[inline(always)]
    fn key(&mut self) -> Option<()> {
        self.string()?;
        self.colon()
    }

    /// An array or an object that tjfwd does not read (the cursor on its
    /// `[` or `{`): strings, numbers, literals, and arrays and objects
    /// nested to any depth, as `ignore_value` accepts them (it keeps its
    /// own stack, with no recursion limit; more than 64 levels are left to
    /// it here).
    #[inline(never)]
    fn skip_container(mut self) -> Option<Self> {
        // The open containers, innermost in bit 0: 1 for an object.
        let mut stack = 0u64;
        let mut depth = 0u32;
        loop {
            // A value, or the start of a container.
            let mut opened = false;
            match self.peek()? {
                c @ (b'[' | b'{') => {
                    if depth == 64 {
                        return None;
                    }
                    self.i += 1;
                    self.spaces();
                    stack = stack << 1 | u64::from(c == b'{');
                    depth += 1;
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek() != Some(close) {
                        // Not empty (else it is closed below).
                        if c == b'{' {
                            self.key()?;
                        }
                        opened = true;
                    }
                }
                _ => self.skip_value()?,
            }
            if opened {
                continue;
            }
            // After a value: close containers until a comma or the end.
            loop {
                if depth == 0 {
                    return Some(self);
                }
                self.spaces();
                let object = stack & 1 == 1;
                match self.next()? {
                    b',' => {
                        self.spaces();
                        if object {
                            self.key()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                stack >>= 1;
                depth -= 1;
            }
        }
    }
}

/// True when `line` certainly holds no event that `rules` select, so that
/// it need not be decoded; false when in doubt. See the module doc for why
/// this is exact for selection and almost exact for the skip counters.
pub fn cannot_select(line: &[u8], rules: &Rules) -> bool {
    if !rules.track_login && !rules.track_session {
        // Nothing is selected; the decoder still counts broken lines.
        return false;
    }
    if line.first() != Some(&b'{') || line.last() != Some(&b'}') {
        return false;
    }
    // The event id as written (steps 1 and 2 of the module doc). A selected
    // line, the most common kind, is let through after this one scan.
    let key = &KEYS[0];
    let Some(at) = key.find(line) else {
        return false;
    };
    let Some(eventid) = key.string_at(line, at) else {
        return false;
    };
    if eventid.contains(&b'\\') {
        return false;
    }
    let Ok(eventid) = std::str::from_utf8(eventid) else {
        return false;
    };
    if rules.selects(eventid) {
        return false;
    }
    // What was read is the event id if this is the only `"eventid"` and no
    // \u escape stands anywhere.
    if !key.only_at(line, at)
        || memchr::memchr_iter(b'\\', line).any(|i| line.get(i + 1) == Some(&b'u'))
    {
        return false;
    }
    // Only for the skip counters: what the decoder would count (bytes that
    // are not UTF-8, control characters; `src_ip` missing, not a string or
    // duplicated; `timestamp` not a string or duplicated) sends the line to it.
    if !printable_ascii(line) || KEYS[2].unique_string(line).is_err() {
        return false;
    }
    let Ok(Some(src_ip)) = KEYS[1].unique_string(line) else {
        return false;
    };
    // Both keys are the top-level ones (step 3), or the decoder would count
    // the line as missing one. When brackets on both sides leave it open,
    // the fast path's answer is the decoder's.
    if top_level_key(line, at) && top_level_key(line, src_ip) {
        return true;
    }
    decode_fast(line).is_some_and(|e| !rules.selects(&e.eventid))
}

/// Whether the quoted key that starts at `at` (a `"`, after the line's
/// first byte, a `{`) is a key of the outermost object when the line is
/// valid JSON; false when unsure. See step 3 of the module doc.
fn top_level_key(line: &[u8], at: usize) -> bool {
    if line[at - 1] == b'\\' {
        return false;
    }
    let before = &line[1..at];
    let after = &line[at..line.len() - 1];
    memchr::memchr2(b'{', b'[', before).is_none()
        || (memchr::memchr3(b'{', b'[', b'}', after).is_none()
            && memchr::memchr(b']', after).is_none())
}

/// A quoted key, searched for with SIMD (memchr's memmem).
struct Key(memchr::memmem::Finder<'static>);

/// `"eventid"`, `"src_ip"`, `"timestamp"`.
static KEYS: std::sync::LazyLock<[Key; 3]> = std::sync::LazyLock::new(|| {
    [
        Key(memchr::memmem::Finder::new(b"\"eventid\"")),
        Key(memchr::memmem::Finder::new(b"\"src_ip\"")),
        Key(memchr::memmem::Finder::new(b"\"timestamp\"")),
    ]
});

impl Key {
    /// Where the key first occurs in `line`.
    fn find(&self, line: &[u8]) -> Option<usize> {
        self.0.find(line)
    }

    /// Whether the first occurrence, at `at`, is the only one: no other
    /// starts after it (overlapping it or not).
    fn only_at(&self, line: &[u8], at: usize) -> bool {
        self.0.find(&line[at + 1..]).is_none()
    }

    /// The string value of the occurrence at `at`: after `:` or `: `, the
    /// bytes from the opening quote to the next `"` (escapes not undone).
    fn string_at<'a>(&self, line: &'a [u8], at: usize) -> Option<&'a [u8]> {
        let rest = &line[at + self.0.needle().len()..];
        let value = rest
            .strip_prefix(b": \"")
            .or_else(|| rest.strip_prefix(b":\""))?;
        let end = memchr::memchr(b'"', value)?;
        Some(&value[..end])
    }

    /// `Ok(None)` when the key does not occur, `Ok(Some(at))` when it
    /// occurs once, at `at`, with a string value, `Err(())` otherwise.
    fn unique_string(&self, line: &[u8]) -> Result<Option<usize>, ()> {
        let Some(at) = self.find(line) else {
            return Ok(None);
        };
        match self.string_at(line, at) {
            Some(_) if self.only_at(line, at) => Ok(Some(at)),
            _ => Err(()),
        }
    }
}

/// Every byte in 0x20..=0x7f (printable ASCII and DEL). No early exit, so
/// that the compiler vectorizes it.
fn printable_ascii(b: &[u8]) -> bool {
    b.iter().fold(true, |ok, &c| ok & (0x20..0x80).contains(&c))
}

/// Parses Cowrie's timestamps: `2026-11-22T12:02:37.839685Z`, or with a
/// numeric offset `+0100` / `+01:00`. Returns ms since the Unix epoch, or
/// None for anything else (the caller then uses the time it read the line).
pub fn parse_timestamp_ms(s: &str) -> Option<u64> {
    parse_cowrie_utc_ms(s.as_bytes()).or_else(|| parse_timestamp_ms_general(s))
}

/// The shape Cowrie writes with its default (UTC) timezone,
/// `2026-11-22T12:02:37.839685Z`, read without loops: `Some` only where
/// [`parse_timestamp_ms_general`] gives the same (tested), `None` to let it
/// decide.
fn parse_cowrie_utc_ms(b: &[u8]) -> Option<u64> {
    let b: &[u8; 27] = b.try_into().ok()?;
    if b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[26] != b'Z'
    {
        return None;
    }
    // The 20 digits, 8 bytes at a time: in each word, the bytes that must
    // be digits (0xff in `m`) are in 0x30..=0x39: high nibble 3, and still
    // 3 after adding 6 (no carry leaves a byte whose high nibble is 3).
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let digits = |w: u64, m: u64| {
        let (high, three) = (m & 0xf0f0_f0f0_f0f0_f0f0, m & 0x3030_3030_3030_3030);
        let w = w & m;
        w & high == three && w.wrapping_add(m & 0x0606_0606_0606_0606) & high == three
    };
    // Bytes 0..8 `2026-11-`, 8..16 `22T12:02`, 16..24 `:37.8396`, 19..27
    // `.839685Z`; the masks as read (byte 0 first), hence the swap.
    if !(digits(word(0), 0xffff_ffff_00ff_ff00_u64.swap_bytes())
        & digits(word(8), 0xffff_00ff_ff00_ffff_u64.swap_bytes())
        & digits(word(16), 0x00ff_ff00_ffff_ffff_u64.swap_bytes())
        & digits(word(19), 0x00ff_ffff_ffff_ff00_u64.swap_bytes()))
    {
        return None;
    }
    let digit = |i: usize| b[i] - b'0';
    let two = |i: usize| i64::from(digit(i)) * 10 + i64::from(digit(i + 1));
    let (year, month, day) = (two(0) * 100 + two(2), two(5), two(8));
    let (hour, min, sec) = (two(11), two(14), two(17));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    // The days since the epoch from a table (no divisions), for the years
    // it covers.
    let first_of_month = *DAYS_TO_MONTH
        .get(usize::try_from(year - 1970).ok()?)?
        .get(month as usize - 1)?;
    let days = u64::from(first_of_month) + day as u64 - 1;
    let secs = days * 86_400 + (hour * 3600 + min * 60 + sec) as u64;
    Some(secs * 1000 + (two(20) * 10 + i64::from(digit(22))) as u64)
}

/// `DAYS_TO_MONTH[y - 1970][m - 1]`: [`days_from_civil`]`(y, m, 1)`, the
/// days from 1970-01-01 to the first of month `m` of year `y`, for the
/// years 1970..2200 (so `days_from_civil(y, m, d)` is that plus `d - 1`,
/// for any `d`).
static DAYS_TO_MONTH: [[u32; 12]; 230] = {
    let mut table = [[0u32; 12]; 230];
    let mut y = 0;
    while y < 230 {
        let mut m = 0;
        while m < 12 {
            table[y][m] = days_from_civil(1970 + y as i64, m as i64 + 1, 1) as u32;
            m += 1;
        }
        y += 1;
    }
    table
};

/// Every form [`parse_timestamp_ms`] reads.
fn parse_timestamp_ms_general(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            Some(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_s = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2, m1, m2] | [h1, h2, b':', m1, m2] => {
                    let d = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
                    (d(h1)? * 10 + d(h2)?, d(m1)? * 10 + d(m2)?)
                }
                _ => return None,
            };
            let off = h * 3600 + m * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    u64::try_from(secs * 1000 + millis).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_real_cowrie_line() {
        let line = br#"{"eventid":"cowrie.login.failed","username":"root","password":"x\"y","message":"login attempt [root/x] failed","sensor":"s","uuid":"u","timestamp":"2026-11-22T12:02:37.839685Z","src_ip":"1.2.3.4","session":"a1"}"#;
        let e = decode(line).unwrap();
        assert_eq!(e.eventid, "cowrie.login.failed");
        assert_eq!(e.src_ip, "1.2.3.4");
        assert_eq!(e.timestamp_ms, Some(1_795_348_957_839));
    }

    #[test]
    fn socketlog_separators_are_fine() {
        let line = br#"{"eventid": "cowrie.login.success", "src_ip": "::ffff:5.6.7.8", "timestamp": "2026-11-22T12:02:37Z"}"#;
        let e = decode(line).unwrap();
        assert_eq!(e.src_ip, "::ffff:5.6.7.8");
        assert_eq!(e.timestamp_ms, Some(1_795_348_957_000));
    }

    #[test]
    fn bad_lines_get_a_reason() {
        let cases: &[(&[u8], SkipReason)] = &[
            (b"\xff\xfe{}", SkipReason::NotUtf8),
            (b"not json", SkipReason::NotJson),
            (b"{\"eventid\":\"cowrie.login.failed\"", SkipReason::NotJson),
            (b"", SkipReason::NotJson),
            (b"[1,2]", SkipReason::InvalidField),
            (
                b"{\"eventid\":5,\"src_ip\":\"1.2.3.4\"}",
                SkipReason::InvalidField,
            ),
            (
                b"{\"eventid\":\"x\",\"src_ip\":null}",
                SkipReason::MissingSrcIp,
            ),
            (b"{\"src_ip\":\"1.2.3.4\"}", SkipReason::MissingEventid),
            (
                b"{\"eventid\":\"cowrie.login.failed\"}",
                SkipReason::MissingSrcIp,
            ),
            (
                b"{\"eventid\":\"a\",\"eventid\":\"b\",\"src_ip\":\"1.2.3.4\"}",
                SkipReason::InvalidField,
            ),
            (
                b"{\"eventid\":\"a\x00\",\"src_ip\":\"1\"} ",
                SkipReason::NotJson,
            ),
        ];
        for (line, reason) in cases {
            assert_eq!(decode(line).unwrap_err(), *reason, "{line:?}");
        }
    }

    #[test]
    fn only_an_object_is_an_event() {
        // A derived struct would read an array's elements as its fields,
        // in order: these were events, and queued 192.0.2.1.
        for line in [
            &br#"["cowrie.login.failed","192.0.2.1","2026-11-22T12:02:37Z"]"#[..],
            br#"["cowrie.login.failed","192.0.2.1"]"#,
            br#" ["cowrie.login.failed", "192.0.2.1"] "#,
            br#"[["cowrie.login.failed"],"192.0.2.1"]"#,
        ] {
            assert_eq!(
                decode(line).unwrap_err(),
                SkipReason::InvalidField,
                "{line:?}"
            );
            assert_eq!(decode_serde(line).unwrap_err(), SkipReason::InvalidField);
            assert!(decode_fast(line).is_none());
        }
        // Still: a null field is absent, a duplicate one is an error even
        // when the first was null, unknown and nested fields are skipped,
        // escaped keys and values are read, unescaped values borrowed.
        let ok = br#"{"x":[{"eventid":"no"}],"event\u0069d":"cowrie.login.failed","timestamp":null,"src_ip":"192.0.2.1"}"#;
        let e = decode_serde(ok).unwrap();
        assert_eq!(
            (&*e.eventid, &*e.src_ip, e.timestamp_ms),
            ("cowrie.login.failed", "192.0.2.1", None)
        );
        assert!(matches!(e.src_ip, Cow::Borrowed(_)));
        let dup = br#"{"src_ip":null,"eventid":"cowrie.login.failed","src_ip":"192.0.2.1"}"#;
        assert_eq!(decode_serde(dup).unwrap_err(), SkipReason::InvalidField);
        let esc = br#"{"eventid":"cowrie.login.\u0066ailed","src_ip":"192.0.2.1"}"#;
        assert!(matches!(decode_serde(esc).unwrap().eventid, Cow::Owned(_)));
    }

    #[test]
    fn escaped_fields_decode() {
        let e = decode(br#"{"eventid":"cowrie.login.\u0066ailed","src_ip":"1.2.3.4"}"#).unwrap();
        assert_eq!(e.eventid, "cowrie.login.failed");
        assert_eq!(e.timestamp_ms, None);
    }

    /// The loop-free reading of Cowrie's UTC shape answers as the general
    /// one wherever it answers: every byte of a timestamp replaced by every
    /// other, and dates across leap years, centuries and the epoch.
    #[test]
    fn cowrie_utc_timestamps_read_as_the_general_code_does() {
        let check = |t: &[u8]| {
            if let Some(ms) = parse_cowrie_utc_ms(t) {
                let t = std::str::from_utf8(t).unwrap();
                assert_eq!(parse_timestamp_ms_general(t), Some(ms), "{t}");
            }
        };
        let base = b"2026-11-22T12:02:37.839685Z";
        assert!(parse_cowrie_utc_ms(base).is_some());
        for i in 0..base.len() {
            for c in 0..=255u8 {
                let mut t = *base;
                t[i] = c;
                check(&t);
            }
        }
        let mut taken = 0;
        for year in [
            0, 1, 399, 400, 1600, 1900, 1969, 1970, 1971, 1999, 2000, 2024, 2100, 2400, 9999,
        ] {
            for month in 0..=13 {
                for day in [0, 1, 28, 29, 30, 31, 32] {
                    for (h, m, s) in [
                        (0, 0, 0),
                        (23, 59, 59),
                        (23, 59, 60),
                        (24, 0, 0),
                        (0, 60, 0),
                        (0, 0, 61),
                    ] {
                        let t =
                            format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.999999Z");
                        check(t.as_bytes());
                        taken += usize::from(parse_cowrie_utc_ms(t.as_bytes()).is_some());
                    }
                }
            }
        }
        assert!(taken > 1000, "{taken}");
        // Every year of the tables and around them, every month and day
        // number (valid or not).
        for year in 1960..2210 {
            for month in 0..=13 {
                for day in 0..=32 {
                    let t = format!("{year:04}-{month:02}-{day:02}T23:59:60.123456Z");
                    check(t.as_bytes());
                }
            }
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_timestamp_ms("2026-11-22T13:02:37.839685+0100"),
            parse_timestamp_ms("2026-11-22T12:02:37.839685Z")
        );
        assert_eq!(
            parse_timestamp_ms("2026-11-22T11:02:37.839685-01:00"),
            parse_timestamp_ms("2026-11-22T12:02:37.839685Z")
        );
        assert_eq!(
            parse_timestamp_ms("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T12:02:37",
            "2026-13-22T12:02:37Z",
            "2026-11-22T12:02:37.Z",
            "2026-11-22T12:02:37+01",
            "2026-11-22T12:02:37Zjunk",
            "1969-12-31T23:59:59Z",
            "2026-11-22T12:02:3xZ",
        ] {
            assert_eq!(parse_timestamp_ms(bad), None, "{bad}");
        }
    }

    fn login_rules() -> Rules {
        Rules {
            track_login: true,
            track_session: false,
            report_non_public: false,
            allowlist: vec![],
        }
    }

    /// What the daemon did before the prefilter: selected by the full decode.
    fn selected(line: &[u8], rules: &Rules) -> bool {
        decode(line).is_ok_and(|e| rules.selects(&e.eventid))
    }

    const CONNECT: &str = r#"{"session":"ccb09c63f749","protocol":"ssh","src_ip":"1.2.3.4","src_port":42078,"dst_ip":"10.0.0.1","dst_port":2222,"eventid":"cowrie.session.connect","sensor":"s","uuid":"u","timestamp":"2026-11-25T10:58:47.245969Z","message":"New connection: 1.2.3.4:42078 (10.0.0.1:2222) [session: ccb09c63f749]"}"#;
    const KEX: &str = r#"{"session":"c0","protocol":"ssh","src_ip":"1.2.3.4","src_port":1,"dst_ip":"10.0.0.1","dst_port":2222,"hassh":"4c94","hasshAlgorithms":"curve25519-sha256;aes128-ctr;hmac-sha2-256;none","kexAlgs":["curve25519-sha256","ext-info-c"],"keyAlgs":["ssh-ed25519"],"encCS":["aes128-ctr"],"macCS":["hmac-sha2-256"],"compCS":["none"],"langCS":[""],"eventid":"cowrie.client.kex","sensor":"s","uuid":"u","timestamp":"2026-11-25T10:58:49.734383Z","message":"SSH client hassh fingerprint: 4c94"}"#;
    const LOGIN: &str = r#"{"session":"c0","protocol":"ssh","src_ip":"1.2.3.4","src_port":1,"dst_ip":"10.0.0.1","dst_port":2222,"username":"root","password":"123456","eventid":"cowrie.login.failed","sensor":"s","uuid":"u","timestamp":"2026-11-25T10:58:49.737329Z","message":"login attempt [root/123456] failed"}"#;

    #[test]
    fn prefilter_skips_unselected_cowrie_lines_in_both_spacings() {
        let r = login_rules();
        for line in [CONNECT, KEX] {
            assert!(cannot_select(line.as_bytes(), &r), "{line}");
            // Cowrie's socket output: ", " and ": ".
            let spaced = line.replace("\",\"", "\", \"").replace("\":", "\": ");
            assert!(cannot_select(spaced.as_bytes(), &r), "{spaced}");
            assert!(decode(spaced.as_bytes()).is_ok());
        }
    }

    #[test]
    fn prefilter_never_skips_a_selected_line() {
        let mut r = login_rules();
        for line in [
            LOGIN.to_string(),
            LOGIN.replace("login.failed", "login.success"),
            LOGIN.replace("\",\"", "\", \"").replace("\":", "\": "),
        ] {
            assert!(!cannot_select(line.as_bytes(), &r), "{line}");
            assert!(selected(line.as_bytes(), &r));
        }
        assert!(cannot_select(CONNECT.as_bytes(), &r));
        r.track_session = true;
        assert!(!cannot_select(CONNECT.as_bytes(), &r));
        r.track_login = false;
        assert!(cannot_select(LOGIN.as_bytes(), &r));
        // Nothing tracked: nothing to skip for, the decoder sees every line.
        r.track_session = false;
        assert!(!cannot_select(CONNECT.as_bytes(), &r));
    }

    /// Attacker text that spells the fields, as Cowrie writes it (escaped):
    /// never taken for the real ones, either way.
    #[test]
    fn prefilter_is_not_fooled_by_attacker_text() {
        let r = login_rules();
        let tricks = [
            r#""eventid":"cowrie.login.failed""#,
            r#"","eventid":"cowrie.login.success","src_ip":"6.6.6.6"#,
            r#""eventid": "cowrie.login.failed", "src_ip": "6.6.6.6""#,
            "}\n{\"eventid\":\"cowrie.login.failed\",\"src_ip\":\"6.6.6.6\"}",
            r#"\u0063owrie.login.failed"#,
            "cowrie.login.failed",
        ];
        for t in tricks {
            let esc = serde_json::to_string(t).unwrap();
            let esc = &esc[1..esc.len() - 1];
            // In a command, a client version, a user name: still not selected,
            // and (except where a \u appears) skipped by the prefilter.
            for (field, line) in [
                ("input", CONNECT),
                ("version", CONNECT),
                ("username", CONNECT),
            ] {
                let line = line.replacen(
                    "\"eventid\"",
                    &format!("\"{field}\":\"{esc}\",\"eventid\""),
                    1,
                );
                assert!(decode(line.as_bytes()).is_ok(), "{line}");
                assert!(!selected(line.as_bytes(), &r), "{line}");
                let has_u = line.contains("\\u");
                assert_eq!(cannot_select(line.as_bytes(), &r), !has_u, "{line}");
            }
            // In the password of a login: still selected, never skipped.
            let line = LOGIN.replace("\"123456\"", &format!("\"{esc}\""));
            assert!(selected(line.as_bytes(), &r), "{line}");
            assert!(!cannot_select(line.as_bytes(), &r), "{line}");
            // An unselected event whose password names a selected one.
            let line = CONNECT.replacen(
                "\"eventid\"",
                &format!("\"password\":\"{esc}\",\"eventid\""),
                1,
            );
            assert!(!selected(line.as_bytes(), &r), "{line}");
        }
    }

    #[test]
    fn prefilter_is_in_doubt_about_escapes_duplicates_and_nesting() {
        let r = login_rules();
        for line in [
            // Escaped value or key: decoded, they are a selected event.
            CONNECT.replace("cowrie.session.connect", r"cowrie.\u006cogin.failed"),
            CONNECT.replace("\"eventid\"", r#""\u0065ventid""#),
            // A \u anywhere (here it is harmless): in doubt.
            CONNECT.replace("\"sensor\":\"s\"", r#""sensor":"\u0073""#),
            // Escapes other than \u in the value: in doubt.
            CONNECT.replace("cowrie.session.connect", r"cowrie.session.connect\/x"),
            // Two "eventid": duplicate (an error) or nested (not the real one).
            CONNECT.replacen("{", r#"{"eventid":"cowrie.command.input","#, 1),
            CONNECT.replacen("{", r#"{"x":{"eventid":"cowrie.command.input"},"#, 1),
            // Other spacing than Cowrie's.
            CONNECT.replace("\"eventid\":", "\"eventid\"  :"),
            CONNECT.replace("\"eventid\":", "\"eventid\":\t"),
        ] {
            assert!(!cannot_select(line.as_bytes(), &r), "{line}");
        }
        let selected_escaped =
            CONNECT.replace("cowrie.session.connect", r"cowrie.\u006cogin.failed");
        assert!(selected(selected_escaped.as_bytes(), &r));
    }

    /// Broken lines still reach the decoder, which counts them by reason.
    #[test]
    fn prefilter_leaves_broken_lines_to_the_decoder() {
        let r = login_rules();
        let cases: Vec<(Vec<u8>, SkipReason)> = vec![
            (CONNECT.as_bytes()[..200].to_vec(), SkipReason::NotJson),
            (
                CONNECT
                    .replace("ccb09c63f749\"", "ccb09c63f749\u{1}\"")
                    .into_bytes(),
                SkipReason::NotJson,
            ),
            (
                {
                    let mut b = CONNECT.as_bytes().to_vec();
                    b[20] = 0xff;
                    b
                },
                SkipReason::NotUtf8,
            ),
            (
                CONNECT.replace("\"src_ip\":\"1.2.3.4\",", "").into_bytes(),
                SkipReason::MissingSrcIp,
            ),
            (
                CONNECT
                    .replace("\"src_ip\":\"1.2.3.4\"", "\"src_ip\":1234")
                    .into_bytes(),
                SkipReason::InvalidField,
            ),
            (
                CONNECT
                    .replace("\"src_ip\":\"1.2.3.4\"", "\"src_ip\":null")
                    .into_bytes(),
                SkipReason::MissingSrcIp,
            ),
            (
                CONNECT
                    .replacen("{", "{\"src_ip\":\"1.2.3.4\",", 1)
                    .into_bytes(),
                SkipReason::InvalidField,
            ),
            (
                CONNECT
                    .replace(
                        "\"timestamp\":\"2026-11-25T10:58:47.245969Z\"",
                        "\"timestamp\":5",
                    )
                    .into_bytes(),
                SkipReason::InvalidField,
            ),
            (
                CONNECT
                    .replacen("{", "{\"timestamp\":\"x\",", 1)
                    .into_bytes(),
                SkipReason::InvalidField,
            ),
            (
                CONNECT
                    .replace("\"eventid\":\"cowrie.session.connect\",", "")
                    .into_bytes(),
                SkipReason::MissingEventid,
            ),
            (
                CONNECT
                    .replace("\"eventid\":\"cowrie.session.connect\"", "\"eventid\":7")
                    .into_bytes(),
                SkipReason::InvalidField,
            ),
        ];
        for (line, reason) in cases {
            let shown = String::from_utf8_lossy(&line).into_owned();
            assert_eq!(decode(&line).unwrap_err(), reason, "{shown}");
            assert!(!cannot_select(&line, &r), "{shown}");
        }
        // Not Cowrie's shape (trailing space, CRLF): in doubt, though valid.
        for line in [
            format!("{CONNECT} "),
            format!("{CONNECT}\r"),
            format!(" {CONNECT}"),
        ] {
            assert!(!cannot_select(line.as_bytes(), &r), "{line}");
        }
        // The documented exception: broken JSON syntax elsewhere in a line
        // of the right shape is no longer counted as not_json.
        let broken = CONNECT.replace(",\"dst_ip\"", "\"dst_ip\"");
        assert_eq!(decode(broken.as_bytes()).unwrap_err(), SkipReason::NotJson);
        assert!(cannot_select(broken.as_bytes(), &r));
    }

    /// Regression (issue 15): the prefilter skipped a valid line whose only
    /// `"eventid"` (or `"src_ip"`) was not the top-level key — in a nested
    /// object, or the end of another key — which the decoder counts as
    /// `missing_eventid` (`missing_src_ip`). The first line is the one
    /// `tests/decode_props.rs` shrank to (its top-level key mangled to
    /// `"eve tid"`).
    #[test]
    fn prefilter_skipped_a_line_whose_only_eventid_is_not_top_level() {
        let r = login_rules();
        let nested_eventid = r#"{"src_ip": "::ffff:0.0.100.10", "x0": {"eventid": "cowrie.session.file_download.failed"}, "eve tid": "cowrie.login.failed", "password": 1, "timestamp": "2026-11-22T12:02:37.839685Z", "password": "cowrie.login.failed"}"#;
        let cases = [
            (nested_eventid.to_string(), SkipReason::MissingEventid),
            // In a list, or in an object in a list.
            (
                CONNECT.replace(
                    r#""eventid":"cowrie.session.connect""#,
                    r#""x":[{"eventid":"cowrie.session.connect"}]"#,
                ),
                SkipReason::MissingEventid,
            ),
            // The end of a key with an escaped quote: `x"eventid`.
            (
                CONNECT.replace(r#""eventid""#, r#""x\"eventid""#),
                SkipReason::MissingEventid,
            ),
            // The same of `src_ip`.
            (
                CONNECT.replace(r#""src_ip":"1.2.3.4""#, r#""x":{"src_ip":"1.2.3.4"}"#),
                SkipReason::MissingSrcIp,
            ),
            (
                CONNECT.replace(r#""src_ip""#, r#""x\"src_ip""#),
                SkipReason::MissingSrcIp,
            ),
            // Brackets on both sides of the nested key (so that neither
            // side alone tells): the fast path defers, in doubt.
            (
                KEX.replace(
                    r#""eventid":"cowrie.client.kex""#,
                    r#""x":{"eventid":"cowrie.client.kex"}"#,
                )
                .replace("fingerprint: 4c94", "fingerprint: [4c94]"),
                SkipReason::MissingEventid,
            ),
        ];
        for (line, reason) in cases {
            assert_eq!(decode(line.as_bytes()).unwrap_err(), reason, "{line}");
            assert!(!cannot_select(line.as_bytes(), &r), "{line}");
        }
        // The top-level keys with brackets on both sides are still
        // skipped: the fast path reads the line.
        let both = KEX.replace("fingerprint: 4c94", "fingerprint: [4c94]");
        assert!(decode(both.as_bytes()).is_ok());
        assert!(cannot_select(both.as_bytes(), &r), "{both}");
    }

    /// The fast path's answer on `line`, checked: when it answers, serde_json
    /// answers the same; and `decode` always answers what serde_json does.
    ///
    /// The parser's general mode (for lines with a backslash) is held to
    /// the same on every line, and to the plain mode's answer on lines
    /// without one.
    fn fast(line: &[u8]) -> Option<Event<'_>> {
        let shown = String::from_utf8_lossy(line).into_owned();
        let f = decode_fast(line);
        let general = decode_fast_general(line);
        for e in [&f, &general].into_iter().flatten() {
            assert_eq!(decode_serde(line).as_ref(), Ok(e), "{shown}");
        }
        if !line.contains(&b'\\') {
            assert_eq!(f, general, "{shown}");
        }
        assert_eq!(decode(line), decode_serde(line), "{shown}");
        f
    }

    /// The SSE2 scans against their byte-at-a-time references, on every
    /// length up to 600 and bytes of all kinds.
    #[test]
    fn vector_scans_match_the_scalar_ones() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut byte = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Mostly printable, with quotes, backslashes, bounds and others.
            match rng % 16 {
                0 => b'"',
                1 => b'\\',
                2 => [0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xff, 0x00, 0x21][(rng >> 8) as usize % 8],
                _ => 0x20 + (rng >> 8) as u8 % 0x5f,
            }
        };
        for len in 0..600 {
            for _ in 0..4 {
                let line: Vec<u8> = (0..len).map(|_| byte()).collect();
                assert_eq!(classify(&line), classify_scalar(&line), "{line:?}");
                let printable: Vec<u8> = line
                    .iter()
                    .map(|&c| if (0x20..0x7f).contains(&c) { c } else { b'x' })
                    .collect();
                assert_eq!(
                    classify(&printable),
                    classify_scalar(&printable),
                    "{printable:?}"
                );
                assert!(classify(&printable).is_some());
                for start in (0..len).step_by(64) {
                    assert_eq!(
                        block_masks(&line, start),
                        block_masks_scalar(&line[start..])
                    );
                }
            }
        }
    }

    fn taken(line: &str) -> Event<'_> {
        fast(line.as_bytes()).unwrap_or_else(|| panic!("deferred: {line}"))
    }

    fn deferred(line: &str) {
        assert_eq!(fast(line.as_bytes()), None, "taken: {line}");
    }

    /// `LOGIN` with its password's JSON token (quotes included) replaced.
    fn login_with_password(token: &str) -> String {
        LOGIN.replace("\"password\":\"123456\"", &format!("\"password\":{token}"))
    }

    #[test]
    fn fast_path_takes_cowrie_lines() {
        for line in [LOGIN, CONNECT, KEX] {
            assert!(decode_fast(line.as_bytes()).is_some(), "{line}");
            let spaced = line.replace("\",\"", "\", \"").replace("\":", "\": ");
            taken(&spaced);
            taken(&format!("  {line}   "));
        }
        let e = taken(LOGIN);
        assert_eq!(e.eventid, "cowrie.login.failed");
        assert_eq!(e.src_ip, "1.2.3.4");
        assert_eq!(e.timestamp_ms, Some(1_795_604_329_737));
        assert!(matches!(e.eventid, Cow::Borrowed(_)));
        assert!(matches!(e.src_ip, Cow::Borrowed(_)));
        // No timestamp, or one tjfwd cannot read: taken, None as before.
        let e = taken(r#"{"eventid":"cowrie.login.failed","src_ip":"1.2.3.4"}"#);
        assert_eq!(e.timestamp_ms, None);
        let e = taken(r#"{"eventid":"e","src_ip":"1.2.3.4","timestamp":"yesterday"}"#);
        assert_eq!(e.timestamp_ms, None);
    }

    /// Attacker text that spells the fields, JSON-escaped as Cowrie writes
    /// it, in each of the fields it controls: taken, and the real fields read.
    #[test]
    fn fast_path_is_not_fooled_by_attacker_text() {
        let tricks = [
            r#""eventid":"cowrie.login.success""#,
            r#"","src_ip":"6.6.6.6"#,
            r#"","eventid":"cowrie.login.success","src_ip":"6.6.6.6"#,
            "}\n{\"eventid\":\"cowrie.login.failed\",\"src_ip\":\"6.6.6.6\"}",
            r#"\"#,
            r#"\\"#,
            r#"\""#,
            r#"\\""#,
            r#"x\"#,
            r#"x\\\"#,
            r#"{"a":[1,{"b":"}"}]}"#,
            "\t\r\u{8}\u{c}/",
            r#"\xd0\xbf"#,
        ];
        for t in tricks {
            let token = serde_json::to_string(t).unwrap();
            for (field, line) in [
                ("password", LOGIN),
                ("username", LOGIN),
                ("input", CONNECT),
                ("version", CONNECT),
            ] {
                let line = line.replacen(
                    "\"eventid\"",
                    &format!("\"{field}\":{token},\"eventid\""),
                    1,
                );
                let e = taken(&line);
                assert!(
                    e.eventid == "cowrie.login.failed" || e.eventid == "cowrie.session.connect"
                );
                assert_eq!(e.src_ip, "1.2.3.4", "{line}");
            }
        }
        // Non-ASCII text, as json.dumps writes it (\uXXXX): left to serde_json.
        let token = serde_json::to_string("\u{0}").unwrap();
        deferred(&login_with_password(&token));
        deferred(&login_with_password(r#""\u0070assword""#));
    }

    /// Runs of backslashes right before a quote: an even run ends the
    /// string, an odd one escapes the quote. Written raw, not by an encoder.
    #[test]
    fn backslash_runs_before_a_quote() {
        for n in 0..8 {
            let run = "\\".repeat(n);
            for token in [format!("\"{run}\""), format!("\"x{run}\"")] {
                let line = login_with_password(&token);
                let f = fast(line.as_bytes());
                if n % 2 == 0 {
                    assert_eq!(f.unwrap().src_ip, "1.2.3.4", "{line}");
                } else {
                    // The string swallows `,"eventid":` ...: never taken
                    // as the real fields (here it is not even an object).
                    assert_eq!(f, None, "{line}");
                }
            }
            // In the middle of the value, with another quote after it.
            let line = login_with_password(&format!("\"a{run}\\\"b\""));
            let f = fast(line.as_bytes());
            assert_eq!(f.is_some(), n % 2 == 0, "{line}");
        }
        // An odd run that leaves valid JSON: the key after it is text.
        let line = r#"{"password":"a\",\"src_ip\":\"6.6.6.6","eventid":"cowrie.login.failed","src_ip":"1.2.3.4"}"#;
        assert_eq!(taken(line).src_ip, "1.2.3.4");
    }

    #[test]
    fn escapes_in_strings() {
        // Every escape serde_json accepts besides \u: taken in ignored
        // values and keys.
        taken(&login_with_password(r#""\"\\\/\b\f\n\r\t""#));
        let line = LOGIN.replace("\"username\"", r#""user\"name""#);
        assert_eq!(taken(&line).eventid, "cowrie.login.failed");
        // An escaped key is never one of the three ("event\/id" is "event/id").
        let line = r#"{"event\/id":"x","eventid":"cowrie.login.failed","src_ip":"1.2.3.4"}"#;
        assert_eq!(taken(line).eventid, "cowrie.login.failed");
        // Others are errors: left to serde_json, which says not_json.
        for bad in [r#""\x41""#, r#""\a""#, r#""\'""#, r#""\ ""#, r#""\U0041""#] {
            let line = login_with_password(bad);
            deferred(&line);
            assert_eq!(decode(line.as_bytes()), Err(SkipReason::NotJson), "{line}");
        }
        // \u anywhere: deferred, decoded by serde_json.
        for line in [
            login_with_password(r#""\u0041""#),
            login_with_password(r#""\ud800""#),
            login_with_password(r#""\u12""#),
            LOGIN.replace("\"eventid\"", r#""\u0065ventid""#),
            LOGIN.replace("cowrie.login.failed", r"cowrie.login.\u0066ailed"),
        ] {
            deferred(&line);
        }
        // Other escapes in the three fields: deferred (the value is not
        // the bytes as written), and serde_json decodes them.
        for line in [
            LOGIN.replace("cowrie.login.failed", r"cowrie.login\/failed"),
            LOGIN.replace("\"1.2.3.4\"", r#""1.2.3.4\n""#),
            LOGIN.replace(
                "2026-11-25T10:58:49.737329Z",
                r"2026-11-25T10:58:49.737329Z\t",
            ),
        ] {
            deferred(&line);
            assert!(decode(line.as_bytes()).is_ok(), "{line}");
        }
    }

    #[test]
    fn duplicates() {
        for dup in [
            r#""eventid":"cowrie.login.success""#,
            r#""src_ip":"6.6.6.6""#,
            r#""timestamp":"2026-11-25T10:58:49Z""#,
            r#""eventid":null"#,
        ] {
            for line in [
                LOGIN.replacen('{', &format!("{{{dup},"), 1),
                LOGIN.replacen('}', &format!(",{dup}}}"), 1),
            ] {
                deferred(&line);
                assert_eq!(
                    decode(line.as_bytes()),
                    Err(SkipReason::InvalidField),
                    "{line}"
                );
            }
        }
        // An ignored key twice is fine for serde_json, and for the fast path.
        taken(&LOGIN.replacen('{', r#"{"session":"x","#, 1));
    }

    #[test]
    fn nesting() {
        // Nested objects with the three names inside: not the real ones.
        let line = LOGIN.replacen(
            '{',
            r#"{"x":{"eventid":"cowrie.session.connect","src_ip":"6.6.6.6"},"#,
            1,
        );
        assert_eq!(taken(&line).src_ip, "1.2.3.4");
        for value in [
            "[]",
            "{}",
            "[ ]",
            "{ }",
            "[[],{}]",
            r#"[1,"a",true,false,null,-2.5e3,{"k":[{"l":{}}]}]"#,
            r#"{ "a" : [ 1 , 2 ] , "b" : { } }"#,
            &"[".repeat(64).to_string(),
        ] {
            let value = if value.chars().all(|c| c == '[') {
                format!("{value}{}", "]".repeat(value.len()))
            } else {
                value.to_string()
            };
            taken(&login_with_password(&value));
        }
        // Deeper than 64: serde_json takes it (its ignore has no limit).
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        deferred(&login_with_password(&deep));
        let deep = format!("{}1{}", "[{\"a\":".repeat(200), "}]".repeat(200));
        deferred(&login_with_password(&deep));
        for bad in [
            "[",
            "]",
            "[1,]",
            "[,1]",
            "[,]",
            "{,}",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{1:2}"#,
            "[1 2]",
            "[1:2]",
            "[}",
            "{]",
            r#"{"a":1]"#,
            "[[]",
            "[]]",
        ] {
            let line = login_with_password(bad);
            deferred(&line);
            assert_eq!(decode(line.as_bytes()), Err(SkipReason::NotJson), "{line}");
        }
        // A container as one of the three: a type error, left to serde_json.
        for line in [
            LOGIN.replace("\"1.2.3.4\"", r#"["1.2.3.4"]"#),
            LOGIN.replace("\"cowrie.login.failed\"", r#"{"a":"b"}"#),
        ] {
            deferred(&line);
            assert_eq!(
                decode(line.as_bytes()),
                Err(SkipReason::InvalidField),
                "{line}"
            );
        }
    }

    #[test]
    fn numbers_and_literals() {
        for good in [
            "0",
            "-0",
            "7",
            "-7",
            "1e5",
            "1E5",
            "1e+5",
            "1e-5",
            "1.5E+3",
            "-1.5e-3",
            "0.0",
            "0e0",
            "10",
            "123456789012345678901234567890",
            "1e999999",
            "-0.000001",
            "true",
            "false",
            "null",
        ] {
            taken(&LOGIN.replace("\"src_port\":1", &format!("\"src_port\":{good}")));
            taken(&LOGIN.replace("\"src_port\":1", &format!("\"src_port\": {good} ")));
        }
        for bad in [
            "",
            "-",
            "--1",
            "+1",
            "01",
            "-01",
            "00",
            "1.",
            "1.e5",
            ".5",
            "1e",
            "1e+",
            "1E-",
            "1.5.3",
            "0x10",
            "1f",
            "Infinity",
            "NaN",
            "-a",
            "1 2",
            "nul",
            "nulll",
            "True",
            "falsey",
            "tru",
            "undefined",
        ] {
            let line = LOGIN.replace("\"src_port\":1", &format!("\"src_port\":{bad}"));
            deferred(&line);
            assert_eq!(decode(line.as_bytes()), Err(SkipReason::NotJson), "{line}");
        }
        // The three fields must be strings: other types are left to serde_json.
        for (value, reason) in [
            ("null", SkipReason::MissingSrcIp),
            ("1234", SkipReason::InvalidField),
            ("true", SkipReason::InvalidField),
        ] {
            let line = LOGIN.replace("\"1.2.3.4\"", value);
            deferred(&line);
            assert_eq!(decode(line.as_bytes()), Err(reason), "{line}");
        }
        let line = LOGIN.replace("\"2026-11-25T10:58:49.737329Z\"", "null");
        deferred(&line);
        assert_eq!(decode(line.as_bytes()).unwrap().timestamp_ms, None);
    }

    #[test]
    fn the_shape_of_the_line() {
        // Spaces anywhere JSON allows them: taken.
        let spaced = r#"  {  "eventid"  :  "cowrie.login.failed"  ,  "src_ip"  :  "1.2.3.4"  }  "#;
        assert_eq!(taken(spaced).eventid, "cowrie.login.failed");
        // Other whitespace is valid JSON, but outside the subset: deferred.
        for ws in ["\t", "\r", "\n"] {
            for line in [
                format!("{LOGIN}{ws}"),
                format!("{ws}{LOGIN}"),
                LOGIN.replace(":\"root\"", &format!(":{ws}\"root\"")),
            ] {
                deferred(&line);
                assert!(decode(line.as_bytes()).is_ok(), "{line:?}");
            }
        }
        // Trailing characters, missing or extra punctuation, no object.
        for (line, reason) in [
            (format!("{LOGIN}x"), SkipReason::NotJson),
            (format!("{LOGIN}}}"), SkipReason::NotJson),
            (format!("{LOGIN},"), SkipReason::NotJson),
            (format!("{LOGIN}{LOGIN}"), SkipReason::NotJson),
            (format!("x{LOGIN}"), SkipReason::NotJson),
            (
                LOGIN.replace(",\"sensor\"", "\"sensor\""),
                SkipReason::NotJson,
            ),
            (
                LOGIN.replace(",\"sensor\"", ",,\"sensor\""),
                SkipReason::NotJson,
            ),
            (
                LOGIN.replace("\"sensor\":", "\"sensor\""),
                SkipReason::NotJson,
            ),
            (
                LOGIN.replace("\"sensor\":", "\"sensor\"::"),
                SkipReason::NotJson,
            ),
            (LOGIN.replace("\"sensor\":", "sensor:"), SkipReason::NotJson),
            (
                LOGIN.replace("\"sensor\":", "'sensor':"),
                SkipReason::NotJson,
            ),
            (LOGIN.replacen('}', ",}", 1), SkipReason::NotJson),
            ("{}".to_string(), SkipReason::MissingEventid),
            ("  { }  ".to_string(), SkipReason::MissingEventid),
            ("{".to_string(), SkipReason::NotJson),
            ("}".to_string(), SkipReason::NotJson),
            ("".to_string(), SkipReason::NotJson),
            ("   ".to_string(), SkipReason::NotJson),
            ("[1,2]".to_string(), SkipReason::InvalidField),
            ("\"x\"".to_string(), SkipReason::InvalidField),
            ("null".to_string(), SkipReason::InvalidField),
            (
                r#"{"src_ip":"1.2.3.4"}"#.to_string(),
                SkipReason::MissingEventid,
            ),
            (
                r#"{"eventid":"cowrie.login.failed"}"#.to_string(),
                SkipReason::MissingSrcIp,
            ),
        ] {
            deferred(&line);
            assert_eq!(decode(line.as_bytes()), Err(reason), "{line}");
        }
        // An array is not an event (`only_an_object_is_an_event`): left
        // to serde_json, which says so.
        let line = r#"["cowrie.login.failed","1.2.3.4"]"#;
        deferred(line);
        assert_eq!(decode(line.as_bytes()), Err(SkipReason::InvalidField));
        // Not printable ASCII: deferred (serde_json says not_utf8, not_json,
        // or decodes it).
        for bad in [&b"\x7f"[..], b"\x00", b"\x1b", b"\xc3\xa9", b"\xff"] {
            let mut line = LOGIN.as_bytes().to_vec();
            line.splice(30..30, bad.iter().copied());
            assert_eq!(fast(&line), None);
            let mut line = login_with_password("\"\"").into_bytes();
            let at = line.windows(2).position(|w| w == b"\"\"").unwrap() + 1;
            line.splice(at..at, bad.iter().copied());
            assert_eq!(fast(&line), None);
        }
    }

    /// Every prefix of a line, and every line with one byte removed: the
    /// fast path answers as serde_json or defers, and only the whole line
    /// (or a removal inside ignored text) is taken.
    #[test]
    fn truncated_and_damaged_lines() {
        for line in [LOGIN, KEX] {
            let b = line.as_bytes();
            for n in 0..b.len() {
                assert_eq!(fast(&b[..n]), None, "{}", &line[..n]);
            }
            for i in 0..b.len() {
                let mut d = b.to_vec();
                d.remove(i);
                fast(&d);
                for c in [
                    b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', b' ', b'e', b'-',
                ] {
                    let mut d = b.to_vec();
                    d.insert(i, c);
                    fast(&d);
                    d.remove(i);
                    d[i] = c;
                    fast(&d);
                }
            }
        }
    }
}

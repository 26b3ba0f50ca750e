//! Decode: one line of Cowrie's JSON log → the three fields tjfwd uses.
//!
//! Only `eventid`, `src_ip` and `timestamp` are read; every other field is
//! skipped by the JSON parser without being kept, because it holds
//! attacker-controlled text (usernames, passwords, commands). A line that is
//! not valid is reported with a [`SkipReason`] and never panics.
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
//!    bytes `\u`, that key is written literally as `"eventid"`; if this byte
//!    string occurs only once in the line, that occurrence is the key (a
//!    nested or a duplicate key would be a second occurrence, and attacker
//!    text cannot make one: its quotes are escaped, `\"eventid\"`).
//! 2. Its value is read up to the next `"`; if no `\` stands before that
//!    quote, the bytes in between are the decoded value itself, and
//!    [`Rules::selects`] is asked about exactly them.
//!
//! Anything else — a `\u` anywhere, zero or two `"eventid"`, other spacing
//! than Cowrie's `:` or the socket output's `: `, a backslash in the value —
//! is sent to the full decoder. Lines that do not look well-formed also are,
//! so that the skip counters stay as they were ([`SkipReason`]): a line is
//! only rejected when it is printable ASCII (no byte ≥ 0x80, no control
//! character), starts with `{`, ends with `}`, and has exactly one
//! `"src_ip"` and at most one `"timestamp"`, each with a string value. What
//! the prefilter no longer counts is a line of that shape that is broken
//! elsewhere in its JSON syntax (a missing comma, an unbalanced bracket):
//! such a line, which cannot hold a selected event, now counts as read
//! (`lines_read`) instead of `not_json` (as does a valid line whose only
//! `"eventid"` is in a nested object, which Cowrie never writes, instead of
//! `missing_eventid`).

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

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow, default)]
    eventid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    src_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
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
    // One vectorized pass; from here on every byte is in 0x20..=0x7e, which
    // the word scans below rely on, and no UTF-8 can be invalid.
    if !strict_ascii(line) {
        return None;
    }
    let mut s = Scanner::new(line);
    s.spaces();
    s.eat(b'{')?;
    s.spaces();
    // Value spans of `eventid`, `src_ip`, `timestamp`.
    let mut fields: [Option<(usize, usize)>; 3] = [None; 3];
    loop {
        s.eat(b'"')?;
        let (start, end, escaped) = s.string()?;
        s.spaces();
        s.eat(b':')?;
        s.spaces();
        // A key with an escape other than \u (which `string` refuses)
        // cannot decode to one of the three names: it is ignored.
        let known = if escaped {
            None
        } else {
            field_index(&line[start..end])
        };
        match known {
            Some(k) => {
                // A duplicate (serde_json: an error) or anything but a plain
                // string (null, a number, escapes): in doubt.
                if fields[k].is_some() {
                    return None;
                }
                s.eat(b'"')?;
                let (vs, ve, escaped) = s.string()?;
                if escaped {
                    return None;
                }
                fields[k] = Some((vs, ve));
            }
            None => s.skip_value()?,
        }
        s.spaces();
        match s.next()? {
            b',' => s.spaces(),
            b'}' => break,
            _ => return None,
        }
    }
    s.spaces();
    if s.i != line.len() {
        return None;
    }
    let text = |(a, b): (usize, usize)| {
        let bytes = &line[a..b];
        debug_assert!(bytes.is_ascii());
        // SAFETY: `strict_ascii(line)` holds: every byte of it is ASCII, so
        // any part of it is UTF-8 (`std::str::from_utf8` here cost more than
        // a tenth of the fast path).
        unsafe { std::str::from_utf8_unchecked(bytes) }
    };
    // Missing fields: serde_json's answer carries the reason.
    let eventid = text(fields[0]?);
    let src_ip = text(fields[1]?);
    let timestamp_ms = fields[2].and_then(|t| parse_timestamp_ms(text(t)));
    Some(Event {
        eventid: Cow::Borrowed(eventid),
        src_ip: Cow::Borrowed(src_ip),
        timestamp_ms,
    })
}

/// Which of the three fields a key (as written, without escapes) names.
fn field_index(key: &[u8]) -> Option<usize> {
    match key {
        b"eventid" => Some(0),
        b"src_ip" => Some(1),
        b"timestamp" => Some(2),
        _ => None,
    }
}

/// Every byte printable ASCII, 0x20..=0x7e: no control character (which
/// also rules out the whitespace other than the space), no DEL, nothing
/// that is not ASCII. No early exit, so that the compiler vectorizes it.
fn strict_ascii(b: &[u8]) -> bool {
    b.iter()
        .fold(true, |ok, &c| ok & (c.wrapping_sub(0x20) < 0x5f))
}

/// Bit `j` set iff `block[j]` is `"` or `\`: where strings end or have an
/// escape. Computed once per 64 bytes of the line, so that finding the end
/// of a string costs a few instructions whatever its length.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn quote_or_backslash_mask(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut mask = 0u64;
    for (k, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is enabled (the cfg above; every x86_64 target has
        // it), and `chunk` is 16 bytes in bounds, which the unaligned load
        // reads.
        let hits = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(quote, backslash))
        };
        mask |= u64::from(hits as u16) << (16 * k);
    }
    mask
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn quote_or_backslash_mask(block: &[u8; 64]) -> u64 {
    quote_or_backslash_mask_swar(block)
}

/// The same, 8 bytes at a time in a `u64` (the other architectures' way,
/// tested against the SSE2 one on x86_64). Exact for bytes below 0x80,
/// which are all a line [`strict_ascii`] accepted holds (the padding of the
/// last block is zeros): a byte xor the target is 0 only where it matches,
/// and adding 0x7f to a byte below 0x80 sets its top bit, without a carry
/// into the next byte, iff the byte is not 0.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn quote_or_backslash_mask_swar(block: &[u8; 64]) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    let mut mask = 0u64;
    for (k, word) in block.chunks_exact(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        let q = (w ^ (ONES * u64::from(b'"'))).wrapping_add(ONES * 0x7f);
        let s = (w ^ (ONES * u64::from(b'\\'))).wrapping_add(ONES * 0x7f);
        let high = !(q & s) & (ONES * 0x80);
        // The top bit of byte j to bit j.
        let bits = (high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= bits << (8 * k);
    }
    mask
}

/// A cursor over a line that [`strict_ascii`] accepted.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    /// The 64-byte block of `b` (its offset) whose mask `mask` is.
    block: usize,
    /// [`quote_or_backslash_mask`] of that block (zero-padded at the end).
    mask: u64,
}

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8]) -> Scanner<'a> {
        Scanner {
            b,
            i: 0,
            block: usize::MAX,
            mask: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// JSON whitespace; the space is the only kind left in the subset.
    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// The mask of the block at `block` (a multiple of 64 below the length).
    #[inline(always)]
    fn mask_at(&mut self, block: usize) -> u64 {
        if block != self.block {
            self.load_mask(block);
        }
        self.mask
    }

    #[inline(never)]
    fn load_mask(&mut self, block: usize) {
        self.block = block;
        self.mask = match self.b.get(block..block + 64) {
            Some(full) => quote_or_backslash_mask(full.try_into().expect("64 bytes")),
            None => {
                let mut last = [0u8; 64];
                let rest = &self.b[block..];
                last[..rest.len()].copy_from_slice(rest);
                quote_or_backslash_mask(&last)
            }
        };
    }

    /// The first `"` or `\` at or after `i`.
    fn find_quote_or_backslash(&mut self, i: usize) -> Option<usize> {
        let mut block = i & !63;
        if block >= self.b.len() {
            return None;
        }
        let mut m = self.mask_at(block) & (u64::MAX << (i & 63));
        while m == 0 {
            block += 64;
            if block >= self.b.len() {
                return None;
            }
            m = self.mask_at(block);
        }
        Some(block + m.trailing_zeros() as usize)
    }

    /// A string whose opening quote was just eaten: its content's span
    /// (escapes not undone) and whether it has escapes, the cursor after
    /// its closing quote. `None` for `\u` (serde_json checks surrogates in
    /// some strings and not in others: not worth repeating), for an escape
    /// serde_json rejects, and for a string the line does not close.
    #[inline(always)]
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        let start = self.i;
        let mut escaped = false;
        let mut at = start;
        loop {
            let p = self.find_quote_or_backslash(at)?;
            if self.b[p] == b'"' {
                self.i = p + 1;
                return Some((start, p, escaped));
            }
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

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let from = self.i;
        self.digits();
        (self.i > from).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// An object member's key and colon, in an ignored value.
    fn key(&mut self) -> Option<()> {
        self.eat(b'"')?;
        self.string()?;
        self.spaces();
        self.eat(b':')?;
        self.spaces();
        Some(())
    }

    /// Skips one value that tjfwd does not read, validating it as
    /// serde_json's `ignore_value` does: strings, numbers, literals, and
    /// arrays and objects nested to any depth (`ignore_value` keeps its
    /// own stack and has no recursion limit; here more than 64 levels are
    /// left to it).
    fn skip_value(&mut self) -> Option<()> {
        // The open containers, innermost in bit 0: 1 for an object.
        let mut stack = 0u64;
        let mut depth = 0u32;
        loop {
            // A value, or the start of a container.
            let mut opened = false;
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                c @ (b'[' | b'{') => {
                    if depth == 64 {
                        return None;
                    }
                    self.i += 1;
                    self.spaces();
                    stack = stack << 1 | u64::from(c == b'{');
                    depth += 1;
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        // Empty: closed at once, below.
                    } else {
                        if c == b'{' {
                            self.key()?;
                        }
                        opened = true;
                    }
                }
                _ => return None,
            }
            if opened {
                continue;
            }
            // After a value: close containers until a comma or the end.
            loop {
                if depth == 0 {
                    return Some(());
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
    printable_ascii(line)
        && matches!(KEYS[1].unique_string(line), Ok(Some(_)))
        && KEYS[2].unique_string(line).is_ok()
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

    /// `Ok(None)` when the key does not occur, `Ok(Some(raw))` when it
    /// occurs once with a string value, `Err(())` otherwise.
    fn unique_string<'a>(&self, line: &'a [u8]) -> Result<Option<&'a [u8]>, ()> {
        let Some(at) = self.find(line) else {
            return Ok(None);
        };
        match self.string_at(line, at) {
            Some(v) if self.only_at(line, at) => Ok(Some(v)),
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
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
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
    fn escaped_fields_decode() {
        let e = decode(br#"{"eventid":"cowrie.login.\u0066ailed","src_ip":"1.2.3.4"}"#).unwrap();
        assert_eq!(e.eventid, "cowrie.login.failed");
        assert_eq!(e.timestamp_ms, None);
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

    /// The fast path's answer on `line`, checked: when it answers, serde_json
    /// answers the same; and `decode` always answers what serde_json does.
    fn fast(line: &[u8]) -> Option<Event<'_>> {
        let shown = String::from_utf8_lossy(line).into_owned();
        let f = decode_fast(line);
        if let Some(e) = &f {
            assert_eq!(decode_serde(line).as_ref(), Ok(e), "{shown}");
        }
        assert_eq!(decode(line), decode_serde(line), "{shown}");
        f
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
        // serde's derived struct also reads an array, field by field: left
        // to serde_json, which does.
        let line = r#"["cowrie.login.failed","1.2.3.4"]"#;
        deferred(line);
        assert_eq!(decode(line.as_bytes()).unwrap().src_ip, "1.2.3.4");
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

//! Hand-written scanners for the fixed detectors. Each `find_*` returns the leftmost finding that starts
//! at or after `from`, as a byte range. They look at the bytes around a candidate so that digits inside
//! longer digit runs (or letters inside longer words, for IBANs) do not match.

use std::ops::Range;

/// Fewest and most digits of a payment card number.
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;

fn is_digit_at(text: &[u8], i: usize) -> bool {
    text.get(i).is_some_and(u8::is_ascii_digit)
}

/// Payment card numbers: 13-19 digits, optionally in groups joined by single spaces or dashes, passing
/// the Luhn check. A match starts and ends at a group boundary; the longest valid span from the leftmost
/// start wins.
pub(crate) fn find_card(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut i = from;
    while i < text.len() {
        if !text[i].is_ascii_digit() || (i > 0 && text[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        if let Some(end) = card_from(text, i) {
            return Some(i..end);
        }
        // Skip the rest of this group.
        while is_digit_at(text, i) {
            i += 1;
        }
    }
    None
}

/// The end of the longest valid card number starting at the group start `start`.
fn card_from(text: &[u8], start: usize) -> Option<usize> {
    let mut digits = [0u8; 19];
    let mut count = 0;
    let mut best = None;
    let mut i = start;
    loop {
        // One group of digits.
        while let Some(&b) = text.get(i).filter(|b| b.is_ascii_digit()) {
            if count == digits.len() {
                return best;
            }
            digits[count] = b - b'0';
            count += 1;
            i += 1;
        }
        if CARD_DIGITS.contains(&count) && luhn(&digits[..count]) {
            best = Some(i);
        }
        // A single separator followed by another group continues the number.
        match text.get(i) {
            Some(b' ' | b'-') if is_digit_at(text, i + 1) => i += 1,
            _ => return best,
        }
    }
}

/// The Luhn check over decimal digits.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (n, &d) in digits.iter().rev().enumerate() {
        let d = u32::from(d);
        sum += if n % 2 == 1 {
            if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
        } else {
            d
        };
    }
    sum.is_multiple_of(10)
}

/// US social security numbers written `ddd-dd-dddd`, by the SSA's rules: the area is not 000, 666 or
/// 900-999, the group not 00, the serial not 0000.
pub(crate) fn find_ssn(text: &[u8], from: usize) -> Option<Range<usize>> {
    // The first dash of a candidate is 3 bytes after its start and 8 before its end.
    let mut d = from + 3;
    while d + 8 <= text.len() {
        let offset = text[d..text.len() - 7].iter().position(|&b| b == b'-')?;
        let dash = d + offset;
        if is_ssn(text, dash - 3) {
            return Some(dash - 3..dash + 8);
        }
        d = dash + 1;
    }
    None
}

fn is_ssn(text: &[u8], s: usize) -> bool {
    let c = &text[s..s + 11];
    let shape = c.iter().enumerate().all(|(n, b)| {
        if n == 3 || n == 6 {
            *b == b'-'
        } else {
            b.is_ascii_digit()
        }
    });
    if !shape || (s > 0 && text[s - 1].is_ascii_digit()) || is_digit_at(text, s + 11) {
        return false;
    }
    let num = |r: Range<usize>| c[r].iter().fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    let (area, group, serial) = (num(0..3), num(4..6), num(7..11));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Characters allowed in the local part of an address we detect (the common, unquoted ones).
fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// E-mail addresses: `local@domain.tld` with a dotted domain whose last label has two or more letters.
pub(crate) fn find_email(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut i = from;
    while let Some(offset) = text.get(i..)?.iter().position(|&b| b == b'@') {
        let at = i + offset;
        let mut start = at;
        while start > from && is_local_char(text[start - 1]) {
            start -= 1;
        }
        // A local part does not start with a dot.
        while start < at && text[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < text.len() && is_domain_char(text[end]) {
            end += 1;
        }
        // Trailing punctuation ends a sentence, not the domain.
        while end > at + 1 && matches!(text[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if start < at && valid_domain(&text[at + 1..end]) {
            return Some(start..end);
        }
        i = at + 1;
    }
    None
}

fn valid_domain(domain: &[u8]) -> bool {
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in domain.split(|&b| b == b'.') {
        if label.is_empty() || label.len() > 63 {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

/// IBAN lengths by country (ISO 13616 registry); countries not listed accept 15-34 characters.
const IBAN_LENGTHS: &[(&[u8; 2], u8)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// The value of an IBAN character in the mod-97 check (`0`-`9` -> 0-9, `A`-`Z` -> 10-35).
fn iban_value(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'A'..=b'Z' => Some(u32::from(b - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 10),
        _ => None,
    }
}

/// Append one IBAN character to a running mod-97 remainder.
fn mod97_push(rem: u32, v: u32) -> u32 {
    if v >= 10 {
        (rem * 100 + v) % 97
    } else {
        (rem * 10 + v) % 97
    }
}

/// International bank account numbers: a country code, two check digits and the account (BBAN),
/// optionally in groups joined by single spaces, with `mod 97 == 1`.
pub(crate) fn find_iban(text: &[u8], from: usize) -> Option<Range<usize>> {
    let mut i = from;
    while i + 15 <= text.len() {
        let start_ok = text[i].is_ascii_uppercase()
            && text[i + 1].is_ascii_uppercase()
            && text[i + 2].is_ascii_digit()
            && text[i + 3].is_ascii_digit()
            && (i == 0 || !text[i - 1].is_ascii_alphanumeric());
        if start_ok && let Some(end) = iban_from(text, i) {
            return Some(i..end);
        }
        i += 1;
    }
    None
}

fn iban_from(text: &[u8], start: usize) -> Option<usize> {
    let country = [text[start], text[start + 1]];
    let want = IBAN_LENGTHS
        .iter()
        .find(|(c, _)| **c == country)
        .map(|&(_, n)| usize::from(n));
    // The four leading characters move to the end: their contribution, appended after the BBAN.
    let mut rem = 0u32;
    let mut count = 4usize;
    let mut best = None;
    let mut i = start + 4;
    loop {
        while let Some(v) = text.get(i).and_then(|&b| iban_value(b)) {
            if count == 34 {
                return best;
            }
            rem = mod97_push(rem, v);
            count += 1;
            i += 1;
        }
        // A candidate ends at a group end that is not followed by more letters or digits.
        let length_ok = match want {
            Some(n) => count == n,
            None => (15..=34).contains(&count),
        };
        if length_ok && check_iban(rem, &text[start..start + 4]) {
            best = Some(i);
        }
        if want.is_some_and(|n| count >= n) {
            return best;
        }
        match text.get(i) {
            Some(b' ') if text.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) => i += 1,
            _ => return best,
        }
    }
}

fn check_iban(bban_rem: u32, head: &[u8]) -> bool {
    let mut rem = bban_rem;
    for &b in head {
        match iban_value(b) {
            Some(v) => rem = mod97_push(rem, v),
            None => return false,
        }
    }
    rem == 1
}

//! Reading a frame of events without a JSON parse: one forward pass over the fixed field
//! order of DESIGN §5.

pub(crate) const KIND_KEY: &[u8] = b"{\"kind\":\"";

pub(crate) const STATE_KEY: &[u8] = b"\"state\":\"";

/// Searchers built once per watcher. Frames are read in one forward pass over the fixed
/// field order of DESIGN §5 (protocol serialises events by hand for that), instead of a
/// JSON parse that would leave less of the 2 cores to the gateway; every 128th frame is
/// still checked against serde_json.
pub(crate) struct Scanner {
    pub(crate) kind: memchr::memmem::Finder<'static>,
    pub(crate) state: memchr::memmem::Finder<'static>,
}

impl Scanner {
    pub(crate) fn new() -> Self {
        Scanner {
            kind: memchr::memmem::Finder::new(KIND_KEY),
            state: memchr::memmem::Finder::new(STATE_KEY),
        }
    }
}

/// A position in a frame's bytes, moving forward only.
pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Cursor<'a> {
    /// Steps over `literal` if the bytes continue with it.
    pub(crate) fn expect(&mut self, literal: &[u8]) -> Option<()> {
        self.bytes[self.at..].starts_with(literal).then(|| {
            self.at += literal.len();
        })
    }

    /// An unsigned decimal number of 1 to 20 digits (a stamp has 20, zero-padded; more
    /// than 19 significant ones wrap). By hand, eight digits at a time: `str::parse`
    /// took a quarter of the load generator's CPU, a digit-by-digit loop still a fifth.
    pub(crate) fn number(&mut self) -> Option<u64> {
        let rest = &self.bytes[self.at..];
        let mut n: u64 = 0;
        let mut i = 0;
        while i + 8 <= 20 {
            let Some(chunk) = rest.get(i..i + 8).and_then(eight_digits) else {
                break;
            };
            n = n.wrapping_mul(100_000_000).wrapping_add(chunk);
            i += 8;
        }
        while let Some(d) = rest
            .get(i)
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|&d| d <= 9)
        {
            if i == 20 {
                return None;
            }
            n = n.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        self.at += i;
        (i > 0).then_some(n)
    }

    /// The rest of a string without escapes (a kind, a ts, a stream, a state); leaves
    /// the cursor after its closing quote.
    pub(crate) fn string(&mut self) -> Option<&'a [u8]> {
        let len = memchr::memchr(b'"', &self.bytes[self.at..])?;
        let text = &self.bytes[self.at..self.at + len];
        self.at += len + 1;
        Some(text)
    }
}

/// The value of eight ASCII digits, or None if one of them is not a digit (SWAR: all
/// eight in a few multiplications).
pub(crate) fn eight_digits(bytes: &[u8]) -> Option<u64> {
    let chunk = u64::from_le_bytes(bytes.try_into().ok()?);
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // Every byte 0x30..=0x39: its high nibble is 3, and still 3 after adding 6.
    if chunk & HIGH != ZEROS || chunk.wrapping_add(0x0606_0606_0606_0606) & HIGH != ZEROS {
        return None;
    }
    let v = chunk - ZEROS;
    // Pairs, then quads, then all eight; the first digit is the lowest byte.
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let v = ((v & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32))
        + ((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some(v)
}

/// Up to 160 bytes of a frame around `at`, for a failure report.
pub(crate) fn excerpt(bytes: &[u8], at: usize) -> String {
    let from = at.saturating_sub(80);
    let to = (at + 80).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..to]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> (Option<u64>, usize) {
        let mut c = Cursor {
            bytes: text.as_bytes(),
            at: 0,
        };
        (c.number(), c.at)
    }

    #[test]
    fn numbers_read_like_str_parse() {
        for text in [
            "0",
            "7",
            "12",
            "1234567",
            "12345678",
            "123456789",
            "0000000042",
            "9999999999",
            "01795597413915274997",
            "1795597413915274997",
            "18446744073709551615",
        ] {
            assert_eq!(number(text), (text.parse().ok(), text.len()), "{text}");
            assert_eq!(
                number(&format!("{text} x")),
                (text.parse().ok(), text.len())
            );
            assert_eq!(
                number(&format!("{text}\",")),
                (text.parse().ok(), text.len())
            );
        }
        assert_eq!(number(""), (None, 0));
        assert_eq!(number("x1"), (None, 0));
        assert_eq!(number("123456789012345678901"), (None, 0));
        assert_eq!(number("1234567/"), (Some(1_234_567), 7));
        assert_eq!(number("12345678:9"), (Some(12_345_678), 8));
    }
}

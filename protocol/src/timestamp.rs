//! [`Timestamp`]: when an event happened, as integer milliseconds, with the RFC 3339
//! text the API and watchers carry (formatted and parsed here, no date crate needed).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC. Kept as an integer so the hot path never
/// formats twice.
///
/// Serialises as RFC 3339 UTC with exactly three fractional digits
/// (`2026-11-25T04:25:31.123Z`, what [`Event`](crate::Event) and the HTTP API carry);
/// deserialises from that, from any RFC 3339 offset, or from integer milliseconds (what
/// [`RunnerEvent`](crate::RunnerEvent) carries on the wire). Years are clamped to
/// 0000..=9999 when formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// Length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
const RFC3339_LEN: usize = 24;
const MS_PER_DAY: i64 = 86_400_000;
/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

/// Text that is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 timestamp like 2026-11-25T04:25:31.123Z")]
pub struct TimestampError(pub String);

impl Timestamp {
    /// The current time; the epoch if the clock is before it.
    pub fn now() -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Formats into `buf` without allocating and returns the text.
    pub fn format_rfc3339(self, buf: &mut [u8; RFC3339_LEN]) -> &str {
        let ms = self.0.clamp(MIN_MS, MAX_MS);
        let days = ms.div_euclid(MS_PER_DAY);
        let in_day = ms.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let (secs, milli) = (in_day / 1000, in_day % 1000);
        let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
        let digits = |out: &mut [u8], mut v: i64| {
            for b in out.iter_mut().rev() {
                *b = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        *buf = *b"0000-00-00T00:00:00.000Z";
        digits(&mut buf[0..4], y);
        digits(&mut buf[5..7], m);
        digits(&mut buf[8..10], d);
        digits(&mut buf[11..13], hh);
        digits(&mut buf[14..16], mm);
        digits(&mut buf[17..19], ss);
        digits(&mut buf[20..23], milli);
        // Only ASCII digits and separators were written.
        std::str::from_utf8(buf).unwrap_or_default()
    }

    /// Parses RFC 3339 (`Z` or any `±HH:MM` offset, any number of fractional digits;
    /// beyond milliseconds they are truncated).
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, TimestampError> {
        parse_rfc3339(s.as_bytes()).ok_or_else(|| TimestampError(s.to_string()))
    }
}

fn parse_rfc3339(b: &[u8]) -> Option<Timestamp> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        part.iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let sep = |i: usize, want: &[u8]| b.get(i).is_some_and(|c| want.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 {
        return None;
    }
    // A leap second reads as the last millisecond of its minute.
    let (s, leap) = match s {
        0..=59 => (s, false),
        60 => (59, true),
        _ => return None,
    };
    let mut i = 19;
    let mut milli = 0;
    if sep(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                milli = milli * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        match i - start {
            0 => return None,
            1 => milli *= 100,
            2 => milli *= 10,
            _ => {}
        }
    }
    if leap {
        milli = 999;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if b.len() == i + 1 => 0,
        sign @ (b'+' | b'-') if b.len() == i + 6 && sep(i + 3, b":") => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 60 + om;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60;
    Some(Timestamp(secs * 1000 + milli))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.format_rfc3339(&mut [0; RFC3339_LEN]))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, TimestampError> {
        Timestamp::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.format_rfc3339(&mut [0; RFC3339_LEN]))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TsVisitor;
        impl Visitor<'_> for TsVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or integer milliseconds since the epoch")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(TsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_580_731_123).to_string(),
            "2026-11-25T04:25:31.123Z"
        );
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(Timestamp(i64::MAX).to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(i64::MIN).to_string(), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).map(|t| t.0);
        assert_eq!(t("2026-11-25T04:25:31.123Z"), Ok(1_795_580_731_123));
        assert_eq!(t("2026-11-25T05:25:31.123+01:00"), Ok(1_795_580_731_123));
        assert_eq!(
            t("2026-11-24T23:25:31.1234567-05:00"),
            Ok(1_795_580_731_123)
        );
        assert_eq!(t("2026-11-25t04:25:31z"), Ok(1_795_580_731_000));
        assert_eq!(t("2026-11-25T04:25:31.1Z"), Ok(1_795_580_731_100));
        assert_eq!(t("2016-12-31T23:59:60Z"), Ok(1_483_228_799_999));
        for bad in [
            "",
            "2026-11-25",
            "2026-11-25T04:25:31",
            "2026-02-30T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T04:25:31.Z",
            "2026-11-25T04:25:31Z ",
            "2026-11-25T04:25:31+0100",
            "２026-11-25T04:25:31Z",
        ] {
            assert!(t(bad).is_err(), "{bad:?} parsed");
        }
    }
}

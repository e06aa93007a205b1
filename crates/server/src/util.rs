//! Small helpers: OS randomness, time formatting.

use std::time::{SystemTime, UNIX_EPOCH};

use getrandom::SysRng;
use rand_core::{Rng, UnwrapErr};

/// The OS random number generator as a `rand_core` CryptoRng (panics only if the OS has no
/// randomness, in which case no key could be made safely anyway).
pub fn os_rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

/// `N` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    os_rng().fill_bytes(&mut b);
    b
}

/// A uniformly random number in [0, 1), for retry jitter.
pub fn random_unit() -> f64 {
    (os_rng().next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2026-11-22T05:07:09.123Z`.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Converts days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian
/// calendar (the well-known era-based algorithm).
// Day and month values are 1..=31 and 1..=12 by construction.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses the RFC 3339 UTC form [`rfc3339_now`] writes (`YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`)
/// into seconds since the Unix epoch and milliseconds. `None` for anything else (offsets
/// other than `Z`, leap seconds, out-of-range fields).
pub fn parse_rfc3339_utc(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter().try_fold(0i64, |acc, d| {
            acc.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            if !frac.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // The first three digits, right-padded: ".5" is 500 ms.
            let mut ms = 0u32;
            for i in 0..3 {
                ms = ms * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
            }
            ms
        }
        _ => return None,
    };
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let max_day = match mo {
        2 if leap => 29,
        1..=12 => month_days[usize::try_from(mo - 1).ok()?],
        _ => return None,
    };
    if d < 1 || d > max_day || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    Some((
        days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec,
        millis,
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of
/// [`civil_from_days`]).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::{civil_from_days, days_from_civil, parse_rfc3339_utc};

    #[test]
    fn rfc3339_parsing() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            parse_rfc3339_utc("2024-01-01T00:00:01.5Z"),
            Some((1_704_067_201, 500))
        );
        assert_eq!(
            parse_rfc3339_utc("2025-11-22T05:07:09.123456Z"),
            Some((1_763_788_029, 123))
        );
        assert_eq!(
            parse_rfc3339_utc("2024-02-29T23:59:59.999Z"),
            Some((1_709_251_199, 999))
        );
        for bad in [
            "",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00+01:00",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01T00:00:00",
            "+024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.12aZ",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
        // Round trip with the formatter's calendar.
        for days in [-1, 0, 11_016, 19_723, 20_414, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
        let now = super::rfc3339_now();
        assert!(parse_rfc3339_utc(&now).is_some(), "{now}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}

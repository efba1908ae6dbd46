//! Days since the Unix epoch and their partition names (`events_YYYYMMDD`).

/// Milliseconds in a day (UTC: partitions do not follow local time).
pub(super) const DAY_MS: i64 = 86_400_000;

/// The day of a timestamp.
pub(super) fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}

/// The partition holding the events of `day`.
pub(super) fn partition_name(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("events_{y:04}{m:02}{d:02}")
}

/// The day a partition name stands for; `None` for any other table.
pub(super) fn day_of_partition(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("events_")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = digits[..4].parse().ok()?;
    let m: u32 = digits[4..6].parse().ok()?;
    let d: u32 = digits[6..].parse().ok()?;
    Some(days_from_civil(y, m, d))
}

/// Year, month, day of a day number (proleptic Gregorian calendar; the
/// algorithm of H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(partition_name(0), "events_19700101");
        // 2026-05-20T12:00:00Z
        let day = day_of(1_779_278_400_000);
        assert_eq!(partition_name(day), "events_20260520");
        assert_eq!(
            partition_name(days_from_civil(2024, 2, 29)),
            "events_20240229"
        );
        for day in [-1, 0, 59, 365, 11_016, 20_593, 60_000] {
            assert_eq!(day_of_partition(&partition_name(day)), Some(day));
        }
        assert_eq!(day_of_partition("events"), None);
        assert_eq!(day_of_partition("events_2026052x"), None);
    }
}

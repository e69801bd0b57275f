//! Calendar dates from Unix days, for the engine's `TIME*` variables and, through the crate's
//! public API, the gateway's log timestamps: one implementation of the conversion.

/// The proleptic Gregorian (year, month 1-12, day 1-31) of `days` since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
pub fn date_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::date_from_days;

    #[test]
    fn known_dates() {
        assert_eq!(date_from_days(0), (1970, 1, 1));
        assert_eq!(date_from_days(11_016), (2000, 2, 29));
        assert_eq!(date_from_days(20_417), (2025, 11, 25));
        assert_eq!(date_from_days(-1), (1969, 12, 31));
    }
}

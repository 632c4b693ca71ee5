//! The clock seam: the store stamps rows from it, so tests can pin time when they need to.

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// DRF's datetime rendering: UTC, microseconds, `Z`.
const RFC3339_MICROS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Formats a UTC instant the way every timestamp column and API field holds it.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(RFC3339_MICROS)
        .unwrap_or_else(|_| unreachable!("a fixed format over an in-range date cannot fail"))
}

/// Reads a timestamp as [`format_timestamp`] writes it.
pub fn parse_timestamp(raw: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(raw, RFC3339_MICROS).ok().map(|at| at.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_render_in_drf_shape() {
        assert_eq!(format_timestamp(datetime!(2026-11-25 20:14:11.5 UTC)), "2026-11-25T20:14:11.500000Z");
        assert_eq!(format_timestamp(datetime!(2026-11-25 21:14:11 +1)), "2026-11-25T20:14:11.000000Z");
        assert_eq!(parse_timestamp("2026-11-25T20:14:11.500000Z"), Some(datetime!(2026-11-25 20:14:11.5 UTC)));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}

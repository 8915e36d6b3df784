//! Timestamps as the API and the tables write them: RFC 3339 in UTC.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The current time.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Formats `t` as RFC 3339 with second precision, e.g. `2026-12-03T17:00:00Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

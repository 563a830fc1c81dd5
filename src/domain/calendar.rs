//! The regulator's calendar: dates (PSEB expiry, "not in the past") are
//! Pakistan dates, whatever the server's time zone.

use time::{Date, OffsetDateTime, UtcOffset};

/// Pakistan Standard Time (no daylight saving).
pub const PKT: UtcOffset = match UtcOffset::from_hms(5, 0, 0) {
    Ok(offset) => offset,
    Err(_) => panic!("valid offset"),
};

/// Today's date in Pakistan.
pub fn today() -> Date {
    OffsetDateTime::now_utc().to_offset(PKT).date()
}

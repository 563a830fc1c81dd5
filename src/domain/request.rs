//! What every write and list request carries, as the domain sees it:
//! idempotency keys, etags, page sizes and resource ids. (Page tokens are
//! the wire's: `grpc::convert::page_token`.)

use std::str::FromStr;

use uuid::Uuid;

use super::violations::Invalid;

/// A caller-chosen idempotency key: 1 to 128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl FromStr for RequestId {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Invalid::new(
                "must be 1 to 128 printable ASCII characters (a UUID is best)",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The version a client last read; a write with an older one is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Etag(pub i64);

impl FromStr for Etag {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        s.strip_prefix('v')
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|v| *v > 0)
            .map(Self)
            .ok_or_else(|| Invalid::new("is not an etag this service issued"))
    }
}

impl Etag {
    /// The wire form: `v` and the version (`v3`), easy to pass around in JSON and shells.
    pub fn render(version: i64) -> String {
        format!("v{version}")
    }
}

/// Default and maximum page sizes for every list.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 1000;

/// Clamps a requested page size; negative sizes are refused.
pub fn page_size(requested: i32) -> Result<i64, Invalid> {
    match requested {
        n if n < 0 => Err(Invalid::new("must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok(i64::from(n).min(MAX_PAGE_SIZE)),
    }
}

/// Parses a resource id; ids are UUIDs.
pub fn parse_id(s: &str) -> Result<Uuid, Invalid> {
    if s.is_empty() {
        return Err(Invalid::new("is required"));
    }
    Uuid::try_parse(s).map_err(|_| Invalid::new("must be a UUID"))
}

//! RPCs on their way out (docs/COMPATIBILITY.md): each is marked
//! `deprecated = true` in its .proto file and listed here with the day it
//! was deprecated and the day it goes, which the HTTP surface announces on
//! every answer: `Deprecation` (RFC 9745), `Sunset` (RFC 8594) and a link
//! to the reference. A unit test keeps this list and the .proto options in
//! step.

use time::{OffsetDateTime, format_description::well_known::Rfc2822};
use tonic::codegen::http;

/// One RPC being retired.
#[derive(Debug, Clone, Copy)]
pub struct Retirement {
    /// `/package.Service/Method`.
    pub path: &'static str,
    /// When it was deprecated (Unix seconds).
    pub deprecated: i64,
    /// When it stops being served (Unix seconds): at least
    /// [`MIN_NOTICE_DAYS`] after `deprecated`.
    pub sunset: i64,
}

/// The least notice the policy gives between deprecation and removal.
pub const MIN_NOTICE_DAYS: i64 = 365;

/// Every RPC being retired. None yet: v1 is whole.
pub const RETIREMENTS: &[Retirement] = &[];

/// The headers announcing `path`'s retirement, if it is being retired.
pub fn headers(path: &str) -> Option<http::HeaderMap> {
    headers_in(RETIREMENTS, path)
}

fn headers_in(table: &[Retirement], path: &str) -> Option<http::HeaderMap> {
    let retirement = table.iter().find(|r| r.path == path)?;
    let mut headers = http::HeaderMap::new();
    // RFC 9745: a structured-field date, `@` and Unix seconds.
    let deprecation = format!("@{}", retirement.deprecated);
    headers.insert("deprecation", deprecation.parse().ok()?);
    // RFC 8594: an HTTP-date (IMF-fixdate).
    let sunset = OffsetDateTime::from_unix_timestamp(retirement.sunset).ok()?;
    let sunset = sunset.format(&Rfc2822).ok()?.replace("+0000", "GMT");
    headers.insert("sunset", sunset.parse().ok()?);
    let anchor = path.trim_start_matches('/');
    let link = format!("</api/#{anchor}>; rel=\"deprecation\"; type=\"text/html\"");
    headers.insert(http::header::LINK, link.parse().ok()?);
    Some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::schema;

    #[test]
    fn a_retiring_rpc_is_announced_with_its_dates() {
        let table = [Retirement {
            path: "/vpnregistry.v1.Example/Old",
            deprecated: 1_798_761_600, // 2027-01-01
            sunset: 1_830_297_600,     // 2028-01-01
        }];
        let headers = headers_in(&table, "/vpnregistry.v1.Example/Old").unwrap();
        assert_eq!(headers["deprecation"], "@1798761600");
        assert_eq!(headers["sunset"], "Sat, 01 Jan 2028 00:00:00 GMT");
        assert_eq!(
            headers[http::header::LINK],
            "</api/#vpnregistry.v1.Example/Old>; rel=\"deprecation\"; type=\"text/html\""
        );
        assert!(headers_in(&table, "/vpnregistry.v1.Example/New").is_none());
    }

    #[test]
    fn the_list_and_the_proto_options_agree_and_give_a_years_notice() {
        let marked: Vec<String> = schema::pool()
            .services()
            .flat_map(|s| s.methods().collect::<Vec<_>>())
            .filter(schema::is_deprecated)
            .map(|m| format!("/{}/{}", m.parent_service().full_name(), m.name()))
            .collect();
        let listed: Vec<String> = RETIREMENTS.iter().map(|r| r.path.to_owned()).collect();
        assert_eq!(
            marked, listed,
            "mark the RPC deprecated in its .proto and list it here, both"
        );
        for r in RETIREMENTS {
            assert!(
                r.sunset - r.deprecated >= MIN_NOTICE_DAYS * 86_400,
                "{} gives too little notice",
                r.path
            );
        }
    }
}

//! The registration form applicants submit and amend: every field as typed,
//! the API's violations beside the fields, the constraints `form.js` checks
//! as the user types, and what an amendment changes.

use axum::{http::StatusCode, response::Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::fields::{self, Field, FieldErrors, Kind};
use super::{Console, Visitor, page};
use crate::pb;

/// The registration form's fields, as typed (every value a string).
#[derive(Deserialize, Default, Clone)]
pub(super) struct RegistrationForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    source_prefixes: String,
    #[serde(default)]
    msisdn: String,
    #[serde(default)]
    peer_prefixes: String,
    #[serde(default)]
    isp: String,
    #[serde(default)]
    isp_subscriber_id: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    valid_until: String,
    #[serde(default)]
    large_prefix_justification: String,
    #[serde(default)]
    pub csrf: String,
    /// The idempotency key the page was rendered with (a double submit
    /// creates one registration).
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    etag: String,
}

/// The form's fields (as the API's `Registration` names them); also the
/// CSV import's columns.
pub(super) const FORM_FIELDS: &[&str] = &[
    "kind",
    "protocol",
    "source_prefixes",
    "msisdn",
    "peer_prefixes",
    "isp",
    "isp_subscriber_id",
    "purpose",
    "valid_from",
    "valid_until",
    "large_prefix_justification",
];

impl RegistrationForm {
    /// The form filled with what a registration (or its pending revision,
    /// which is what an amendment changes) declares.
    pub(super) fn of(r: &pb::Registration) -> Self {
        let enum_name = |name: &str, prefix: &str| name.strip_prefix(prefix).unwrap_or("").to_owned();
        let kind = pb::RegistrationKind::try_from(r.kind)
            .map(|k| enum_name(k.as_str_name(), "REGISTRATION_KIND_"))
            .unwrap_or_default();
        let rev = r.pending_revision.as_ref();
        let protocol = rev.map_or(r.protocol, |rev| rev.protocol);
        let protocol = pb::VpnProtocol::try_from(protocol)
            .map(|p| enum_name(p.as_str_name(), "VPN_PROTOCOL_"))
            .unwrap_or_default();
        let pick = |own: &str, revised: Option<&str>| revised.unwrap_or(own).to_owned();
        Self {
            kind,
            protocol,
            source_prefixes: rev.map_or(&r.source_prefixes, |v| &v.source_prefixes).join("\n"),
            msisdn: pick(&r.msisdn, rev.map(|v| v.msisdn.as_str())),
            peer_prefixes: rev.map_or(&r.peer_prefixes, |v| &v.peer_prefixes).join("\n"),
            isp: pick(&r.isp, rev.map(|v| v.isp.as_str())),
            isp_subscriber_id: pick(&r.isp_subscriber_id, rev.map(|v| v.isp_subscriber_id.as_str())),
            purpose: pick(&r.purpose, rev.map(|v| v.purpose.as_str())),
            valid_from: page::pkt_day(rev.map_or(r.valid_from.as_ref(), |v| v.valid_from.as_ref())),
            valid_until: page::pkt_day(rev.map_or(r.valid_until.as_ref(), |v| v.valid_until.as_ref())),
            large_prefix_justification: pick(
                &r.large_prefix_justification,
                rev.map(|v| v.large_prefix_justification.as_str()),
            ),
            etag: r.etag.clone(),
            ..Self::default()
        }
    }

    /// The declaration as the API takes it; dates the page cannot read are
    /// violations of their fields.
    pub(super) fn to_pb(&self) -> Result<pb::Registration, FieldErrors> {
        let (valid_from, valid_until) = match (page::day_start(&self.valid_from), page::day_start(&self.valid_until)) {
            (Ok(from), Ok(until)) => (from, until),
            (from, until) => {
                let mut errors = FieldErrors::default();
                for (field, result) in [("valid_from", from), ("valid_until", until)] {
                    if let Err(why) = result {
                        errors.add(field, why);
                    }
                }
                return Err(errors);
            }
        };
        let enum_value = |prefix: &str, name: &str, from: fn(&str) -> Option<i32>| {
            if name.is_empty() {
                0
            } else {
                from(&format!("{prefix}{name}")).unwrap_or(-1)
            }
        };
        Ok(pb::Registration {
            kind: enum_value("REGISTRATION_KIND_", &self.kind, |n| {
                pb::RegistrationKind::from_str_name(n).map(|k| k as i32)
            }),
            protocol: enum_value("VPN_PROTOCOL_", &self.protocol, |n| {
                pb::VpnProtocol::from_str_name(n).map(|p| p as i32)
            }),
            source_prefixes: fields::lines(&self.source_prefixes),
            msisdn: self.msisdn.trim().to_owned(),
            peer_prefixes: fields::lines(&self.peer_prefixes),
            isp: self.isp.trim().to_owned(),
            isp_subscriber_id: self.isp_subscriber_id.trim().to_owned(),
            purpose: self.purpose.trim().to_owned(),
            valid_from,
            valid_until,
            large_prefix_justification: self.large_prefix_justification.trim().to_owned(),
            etag: self.etag.clone(),
            ..Default::default()
        })
    }

    /// The fields (API names) whose values differ from `base`'s.
    pub(super) fn changed_from(&self, base: &Self) -> Vec<String> {
        let pairs: [(&str, &str, &str); 10] = [
            ("protocol", &self.protocol, &base.protocol),
            ("source_prefixes", &self.source_prefixes, &base.source_prefixes),
            ("msisdn", &self.msisdn, &base.msisdn),
            ("peer_prefixes", &self.peer_prefixes, &base.peer_prefixes),
            ("isp", &self.isp, &base.isp),
            ("isp_subscriber_id", &self.isp_subscriber_id, &base.isp_subscriber_id),
            ("purpose", &self.purpose, &base.purpose),
            ("valid_from", &self.valid_from, &base.valid_from),
            ("valid_until", &self.valid_until, &base.valid_until),
            (
                "large_prefix_justification",
                &self.large_prefix_justification,
                &base.large_prefix_justification,
            ),
        ];
        let normal = |s: &str| fields::lines(s).join("\n");
        pairs
            .iter()
            .filter(|(_, now, before)| normal(now) != normal(before))
            .map(|(name, _, _)| (*name).to_owned())
            .collect()
    }
}

/// Where the form goes and what it is for.
pub(super) struct FormPage<'a> {
    pub title: &'a str,
    pub action: String,
    /// Amending: the kind is fixed and an etag is carried.
    pub amending: bool,
    pub intro: Markup,
}

/// The registration form, with the API's violations beside the fields.
pub(super) async fn form_page(
    c: &Console,
    v: &Visitor,
    f: &FormPage<'_>,
    values: &RegistrationForm,
    errors: &FieldErrors,
) -> Response {
    let mut isps = vec![(String::new(), "Choose…".to_owned())];
    isps.extend(c.isps(v).await.into_iter().map(|(code, name)| {
        let label = format!("{name} ({code})");
        (code, label)
    }));
    let request_id = if values.request_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        values.request_id.clone()
    };
    let (kinds, protocols) = (kind_choices(), protocol_choices());
    let status = errors.status(StatusCode::UNPROCESSABLE_ENTITY);
    let body = html! {
        (f.intro)
        (errors.summary())
        form method="post" action=(f.action) data-validate novalidate {
            input type="hidden" name="csrf" value=(v.session.csrf);
            input type="hidden" name="request_id" value=(request_id);
            @if f.amending {
                input type="hidden" name="etag" value=(values.etag);
                input type="hidden" name="kind" value=(values.kind);
            } @else {
                (fields::select("kind", "What is registered (required)", &values.kind, &kinds, errors))
            }
            (fields::select("protocol", "VPN protocol (required for a VPN)", &values.protocol, &protocols, errors))
            fieldset {
                legend { "Where the traffic comes from" }
                (Field::new("source_prefixes", "Public source addresses", &values.source_prefixes).kind(Kind::Prefixes).max(4000)
                    .hint("One prefix per line, such as 203.0.113.0/24 or 2400:cb00:1::/48. Public addresses only; IPv4 no wider than /24, IPv6 no wider than /48 unless you justify it below.").render(errors))
                (Field::new("msisdn", "Mobile number instead of addresses", &values.msisdn).kind(Kind::Tel).max(20)
                    .hint("Only for a freelancer without a static address, such as +923001234567.").render(errors))
                (Field::new("large_prefix_justification", "Why a wider prefix is needed", &values.large_prefix_justification).kind(Kind::Long).max(1000)
                    .hint("Only if a prefix is wider than /24 (IPv4) or /48 (IPv6).").render(errors))
            }
            fieldset {
                legend { "Your connection" }
                (fields::select("isp", "Internet service provider (required)", &values.isp, &isps, errors))
                (Field::new("isp_subscriber_id", "Subscriber ID with that ISP", &values.isp_subscriber_id).required().max(64)
                    .hint("As printed on your ISP's bill; the ISP confirms it.").render(errors))
            }
            fieldset {
                legend { "Where the traffic goes, and why" }
                (Field::new("peer_prefixes", "Peer addresses (optional)", &values.peer_prefixes).kind(Kind::Prefixes).max(4000)
                    .hint("The VPN gateway abroad, one prefix per line. If given, only traffic towards these is covered.").render(errors))
                (Field::new("purpose", "Purpose", &values.purpose).kind(Kind::Long).required().max(1000)
                    .hint("What the connection is used for, in a sentence or two.").render(errors))
            }
            fieldset {
                legend { "Validity (Pakistan time)" }
                (Field::new("valid_from", "Valid from", &values.valid_from).kind(Kind::Date)
                    .hint("Leave empty to start as soon as it is approved.").render(errors))
                (Field::new("valid_until", "Valid until", &values.valid_until).kind(Kind::Date).required()
                    .hint("The registration ends at the start of this day.").render(errors))
            }
            button type="submit" { (if f.amending { "Send the amendment" } else { "Submit for review" }) }
        }
    };
    page::respond(status, page::frame(f.title, Some(&v.session), body))
}

/// What may be registered, as the form offers it.
fn kind_choices() -> Vec<(String, String)> {
    options(&[
        ("", "Choose…"),
        ("VPN", "VPN"),
        ("CALL_CENTER_VOIP", "Call-centre VoIP"),
        ("VIDEO_CONFERENCING", "Video conferencing"),
    ])
}

/// The VPN protocols, as the form offers them.
fn protocol_choices() -> Vec<(String, String)> {
    options(&[
        ("", "Not a VPN / choose…"),
        ("IPSEC_IKEV2", "IPsec / IKEv2"),
        ("OPENVPN", "OpenVPN"),
        ("WIREGUARD", "WireGuard"),
        ("SSL_TLS", "SSL/TLS VPN"),
        ("L2TP", "L2TP"),
        ("OTHER", "Other"),
    ])
}

fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(v, l)| ((*v).to_owned(), (*l).to_owned())).collect()
}

/// What a refused registration form says, by field.
pub(super) fn refusal_errors(status: &tonic::Status) -> FieldErrors {
    match status.code() {
        tonic::Code::Aborted => FieldErrors::message(
            "This registration changed since you opened the form (perhaps a reviewer acted on it). Open it again to see it as it is now.",
        ),
        _ => FieldErrors::from_status(status, "registration.", FORM_FIELDS),
    }
}

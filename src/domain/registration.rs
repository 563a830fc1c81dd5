//! Registrations: what an institution declares it tunnels, from where,
//! through which ISP, towards which peers, for how long.

use std::str::FromStr;

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::db_enum::db_enum;
use super::identifiers::{IspCode, Msisdn};
use super::institution::Category;
use super::prefix::{MIN_V4_LEN, MIN_V6_LEN, PublicPrefix};
use super::state::State;
use super::text::{Purpose, Reason, bounded_text};
use super::violations::Invalid;
use super::violations::Violations;

/// At most this many source (and, separately, peer) prefixes per registration.
pub const MAX_PREFIXES: usize = 64;

db_enum!(
    /// What is being registered.
    Kind {
        Vpn => "VPN",
        CallCenterVoip => "CALL_CENTER_VOIP",
        VideoConferencing => "VIDEO_CONFERENCING",
    }
);

db_enum!(
    /// The tunnel protocol of a VPN.
    Protocol {
        IpsecIkev2 => "IPSEC_IKEV2",
        OpenVpn => "OPENVPN",
        WireGuard => "WIREGUARD",
        SslTls => "SSL_TLS",
        L2tp => "L2TP",
        Other => "OTHER",
    }
);

/// The ISP's own identifier for the subscriber's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberId(String);

impl FromStr for SubscriberId {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        bounded_text(s, 64).map(Self)
    }
}

impl SubscriberId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The declared content of a registration, complete and consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub kind: Kind,
    pub protocol: Option<Protocol>,
    pub source_prefixes: Vec<PublicPrefix>,
    pub msisdn: Option<Msisdn>,
    pub peer_prefixes: Vec<PublicPrefix>,
    pub isp: IspCode,
    pub isp_subscriber_id: SubscriberId,
    pub purpose: Purpose,
    pub valid_from: OffsetDateTime,
    pub valid_until: OffsetDateTime,
    pub large_prefix_justification: Option<Reason>,
}

/// Spec fields parsed one by one from a request, before the cross-field
/// rules have been checked.
#[derive(Debug, Clone, Default)]
pub struct SpecDraft {
    pub kind: Option<Kind>,
    pub protocol: Option<Protocol>,
    pub source_prefixes: Vec<PublicPrefix>,
    pub msisdn: Option<Msisdn>,
    pub peer_prefixes: Vec<PublicPrefix>,
    pub isp: Option<IspCode>,
    pub isp_subscriber_id: Option<SubscriberId>,
    pub purpose: Option<Purpose>,
    pub valid_from: Option<OffsetDateTime>,
    pub valid_until: Option<OffsetDateTime>,
    pub large_prefix_justification: Option<Reason>,
}

db_enum!(
    /// A field of a registration's declaration, as update masks name it.
    SpecField {
        Kind => "kind",
        Protocol => "protocol",
        SourcePrefixes => "source_prefixes",
        Msisdn => "msisdn",
        PeerPrefixes => "peer_prefixes",
        Isp => "isp",
        IspSubscriberId => "isp_subscriber_id",
        Purpose => "purpose",
        ValidFrom => "valid_from",
        ValidUntil => "valid_until",
        LargePrefixJustification => "large_prefix_justification",
    }
);

impl SpecField {
    /// What an amendment may change: everything but the kind, fixed at submission.
    pub const AMENDABLE: &[SpecField] = Self::ALL.split_at(1).1;
}

/// An amendment as parsed: new values for the fields its update mask names.
#[derive(Debug, Clone, Default)]
pub struct SpecPatch {
    pub fields: Vec<SpecField>,
    pub values: SpecDraft,
}

impl SpecPatch {
    /// The declaration `base` becomes: the named fields replaced (an empty
    /// value clears an optional field), then the cross-field rules checked.
    pub fn apply(&self, base: &Spec, category: Category, now: OffsetDateTime) -> Result<Spec, Violations> {
        let mut draft = SpecDraft::from(base.clone());
        for &field in &self.fields {
            draft.take(field, &self.values);
        }
        draft.finish(category, now)
    }
}

impl SpecDraft {
    /// Replaces `field` with its value in `other`.
    fn take(&mut self, field: SpecField, other: &SpecDraft) {
        match field {
            SpecField::Kind => self.kind = other.kind,
            SpecField::Protocol => self.protocol = other.protocol,
            SpecField::SourcePrefixes => self.source_prefixes.clone_from(&other.source_prefixes),
            SpecField::Msisdn => self.msisdn.clone_from(&other.msisdn),
            SpecField::PeerPrefixes => self.peer_prefixes.clone_from(&other.peer_prefixes),
            SpecField::Isp => self.isp.clone_from(&other.isp),
            SpecField::IspSubscriberId => self.isp_subscriber_id.clone_from(&other.isp_subscriber_id),
            SpecField::Purpose => self.purpose.clone_from(&other.purpose),
            SpecField::ValidFrom => self.valid_from = other.valid_from,
            SpecField::ValidUntil => self.valid_until = other.valid_until,
            SpecField::LargePrefixJustification => self
                .large_prefix_justification
                .clone_from(&other.large_prefix_justification),
        }
    }

    /// Applies the rules that span fields. `valid_from` defaults to `now`.
    pub fn finish(self, category: Category, now: OffsetDateTime) -> Result<Spec, Violations> {
        let mut v = Violations::default();
        if self.kind.is_none() {
            v.add("kind", "is required");
        }
        match (self.kind, self.protocol) {
            (Some(Kind::Vpn), None) => v.add("protocol", "is required for a VPN"),
            (Some(k), Some(_)) if k != Kind::Vpn => v.add("protocol", format!("applies only to VPNs, not {k}")),
            _ => {}
        }
        if self.source_prefixes.is_empty() && self.msisdn.is_none() {
            v.add(
                "source_prefixes",
                if category == Category::Freelancer {
                    "at least one source prefix (or an msisdn) is required"
                } else {
                    "at least one source prefix is required"
                },
            );
        }
        if self.msisdn.is_some() && category != Category::Freelancer {
            v.add(
                "msisdn",
                "only freelancers may register a mobile number instead of a prefix",
            );
        }
        if self.large_prefix_justification.is_none()
            && let Some(large) = self.source_prefixes.iter().find(|p| !p.within_default_size())
        {
            v.add(
                "large_prefix_justification",
                format!("is required for {large}, larger than IPv4 /{MIN_V4_LEN} or IPv6 /{MIN_V6_LEN}"),
            );
        }
        if self.isp.is_none() {
            v.add("isp", "is required");
        }
        if self.isp_subscriber_id.is_none() {
            v.add("isp_subscriber_id", "is required");
        }
        if self.purpose.is_none() {
            v.add("purpose", "is required");
        }
        let valid_from = self.valid_from.unwrap_or(now);
        match self.valid_until {
            None => v.add("valid_until", "is required"),
            Some(until) if until <= valid_from => v.add("valid_until", "must be after valid_from"),
            Some(until) if until <= now => v.add("valid_until", "must be in the future"),
            Some(_) => {}
        }
        let (Some(kind), Some(isp), Some(isp_subscriber_id), Some(purpose), Some(valid_until)) = (
            self.kind,
            self.isp,
            self.isp_subscriber_id,
            self.purpose,
            self.valid_until,
        ) else {
            return Err(v);
        };
        v.into_result(|| Spec {
            kind,
            protocol: self.protocol,
            source_prefixes: self.source_prefixes,
            msisdn: self.msisdn,
            peer_prefixes: self.peer_prefixes,
            isp,
            isp_subscriber_id,
            purpose,
            valid_from,
            valid_until,
            large_prefix_justification: self.large_prefix_justification,
        })
    }
}

/// Which list a prefix list is: sources are held to the default size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixList {
    Source,
    Peer,
}

impl PrefixList {
    /// Parses a list as sent, checking each entry, the count, the size limit
    /// (sources, unless `allow_large` because the applicant justified large
    /// prefixes) and that no two entries overlap. Violations name entries by
    /// their index in `raw`.
    pub fn parse(self, field: &str, raw: &[String], allow_large: bool, v: &mut Violations) -> Vec<PublicPrefix> {
        if raw.len() > MAX_PREFIXES {
            v.add(field, format!("at most {MAX_PREFIXES} prefixes (got {})", raw.len()));
            return Vec::new();
        }
        let mut parsed: Vec<(usize, PublicPrefix)> = Vec::with_capacity(raw.len());
        for (i, s) in raw.iter().enumerate() {
            let entry = format!("{field}[{i}]");
            let Some(p) = v.check(&entry, s.parse::<PublicPrefix>()) else {
                continue;
            };
            if self == Self::Source && !allow_large && !p.within_default_size() {
                v.add(
                    &entry,
                    format!(
                        "{p} is larger than the default limit (IPv4 /{MIN_V4_LEN}, IPv6 /{MIN_V6_LEN}); \
                         give large_prefix_justification to ask a reviewer for an exception"
                    ),
                );
                continue;
            }
            if let Some((j, q)) = parsed.iter().find(|(_, q)| q.overlaps(&p)) {
                v.add(&entry, format!("{p} overlaps {field}[{j}] ({q})"));
                continue;
            }
            parsed.push((i, p));
        }
        parsed.into_iter().map(|(_, p)| p).collect()
    }
}

impl From<Spec> for SpecDraft {
    fn from(s: Spec) -> Self {
        Self {
            kind: Some(s.kind),
            protocol: s.protocol,
            source_prefixes: s.source_prefixes,
            msisdn: s.msisdn,
            peer_prefixes: s.peer_prefixes,
            isp: Some(s.isp),
            isp_subscriber_id: Some(s.isp_subscriber_id),
            purpose: Some(s.purpose),
            valid_from: Some(s.valid_from),
            valid_until: Some(s.valid_until),
            large_prefix_justification: s.large_prefix_justification,
        }
    }
}

impl Spec {
    /// Field values as the audit trail records them.
    pub fn audit_values(&self) -> Vec<(&'static str, Value)> {
        let prefixes = |ps: &[PublicPrefix]| json!(ps.iter().map(ToString::to_string).collect::<Vec<_>>());
        let ts = |t: OffsetDateTime| {
            json!(
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            )
        };
        vec![
            ("kind", json!(self.kind.as_str())),
            ("protocol", self.protocol.map_or(Value::Null, |p| json!(p.as_str()))),
            ("source_prefixes", prefixes(&self.source_prefixes)),
            (
                "msisdn",
                self.msisdn.as_ref().map_or(Value::Null, |m| json!(m.as_str())),
            ),
            ("peer_prefixes", prefixes(&self.peer_prefixes)),
            ("isp", json!(self.isp.as_str())),
            ("isp_subscriber_id", json!(self.isp_subscriber_id.as_str())),
            ("purpose", json!(self.purpose.as_str())),
            ("valid_from", ts(self.valid_from)),
            ("valid_until", ts(self.valid_until)),
            (
                "large_prefix_justification",
                self.large_prefix_justification
                    .as_ref()
                    .map_or(Value::Null, |j| json!(j.as_str())),
            ),
        ]
    }

    /// Whether a change from `self` to `other` touches what the ISP vouched
    /// for (addresses, ISP, subscriber), so that it must attest again.
    pub fn needs_reattestation(&self, other: &Spec) -> bool {
        self.source_prefixes != other.source_prefixes
            || self.msisdn != other.msisdn
            || self.isp != other.isp
            || self.isp_subscriber_id != other.isp_subscriber_id
    }

    /// The first source prefix beyond the default size limits, if any.
    pub fn oversized_prefix(&self) -> Option<&PublicPrefix> {
        self.source_prefixes.iter().find(|p| !p.within_default_size())
    }
}

/// A proposed change to an ACTIVE or EXPIRED registration, attested and
/// reviewed while the approved version stays in force.
#[derive(Debug, Clone)]
pub struct Revision {
    pub id: Uuid,
    pub is_renewal: bool,
    pub spec: Spec,
    pub state: State,
    pub state_time: OffsetDateTime,
    pub create_time: OffsetDateTime,
}

/// A registration as stored.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: Uuid,
    pub reference: String,
    pub institution_id: Uuid,
    pub spec: Spec,
    pub state: State,
    pub state_time: OffsetDateTime,
    pub pending_revision: Option<Revision>,
    pub version: i64,
    pub create_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
}

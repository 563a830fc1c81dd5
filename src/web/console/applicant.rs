//! The applicant's pages (institution role): their registrations with state,
//! reference and validity; submitting one; amending (which is also how a
//! reviewer's request for information is answered), withdrawing and renewing
//! it; and reading its history.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::fields::{self, Field, FieldErrors, Kind};
use super::{Console, Id, Visitor, history, page};
use crate::pb::{self, isp_service_server::IspService, registration_service_server::RegistrationService};

const LIST: &str = "/vpnregistry.v1.RegistrationService/ListRegistrations";
const GET: &str = "/vpnregistry.v1.RegistrationService/GetRegistration";
const EVENTS: &str = "/vpnregistry.v1.RegistrationService/ListRegistrationEvents";
const SUBMIT: &str = "/vpnregistry.v1.RegistrationService/SubmitRegistration";
const AMEND: &str = "/vpnregistry.v1.RegistrationService/AmendRegistration";
const WITHDRAW: &str = "/vpnregistry.v1.RegistrationService/WithdrawRegistration";
const RENEW: &str = "/vpnregistry.v1.RegistrationService/RenewRegistration";
const ISPS: &str = "/vpnregistry.v1.IspService/ListIsps";

/// Shorthand for a handler's early return.
type Page<T> = Result<T, Box<Response>>;

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    after: String,
}

pub(super) async fn list(State(c): State<Console>, v: Visitor, Query(q): Query<ListQuery>) -> Response {
    let msg = pb::ListRegistrationsRequest {
        page_size: page::PAGE_SIZE,
        page_token: q.after,
        ..Default::default()
    };
    let list = match call_list(&c, &v, msg).await {
        Ok(list) => list,
        Err(refusal) => return *refusal,
    };
    let body = html! {
        p { a href="/console/registrations/new" { "Register a VPN or service" } }
        @if list.registrations.is_empty() {
            p { "You have no registrations yet." }
        } @else {
            table {
                thead { tr { th { "Reference" } th { "Kind" } th { "State" } th { "Addresses" } th { "Valid" } } }
                tbody {
                    @for r in &list.registrations {
                        tr {
                            td { a href={ "/console/registrations/" (r.id) } { (r.reference) } }
                            td { (page::kind(r.kind)) }
                            td {
                                (page::state(r.state))
                                @if let Some(rev) = &r.pending_revision { br; small { "revision: " (page::state(rev.state)) } }
                            }
                            td { @for p in &r.source_prefixes { (p) br; } @if !r.msisdn.is_empty() { (r.msisdn) } }
                            td { (page::pkt_of(r.valid_from.as_ref())) br; "until " (page::pkt_of(r.valid_until.as_ref())) }
                        }
                    }
                }
            }
        }
        @if !list.next_page_token.is_empty() {
            p { a href={ "/console/registrations?after=" (list.next_page_token) } { "Next page" } }
        }
    };
    page::respond(
        StatusCode::OK,
        page::frame("Your registrations", Some(&v.session), body),
    )
}

async fn call_list(c: &Console, v: &Visitor, msg: pb::ListRegistrationsRequest) -> Page<pb::ListRegistrationsResponse> {
    let req = c.request(v, LIST, msg)?;
    c.registrations
        .list_registrations(req)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| Box::new(page::failed("Your registrations", &status, &v.session)))
}

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
    csrf: String,
    /// The idempotency key the page was rendered with (a double submit
    /// creates one registration).
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    etag: String,
}

/// The form's fields (as the API's `Registration` names them).
const FORM_FIELDS: &[&str] = &[
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
    fn of(r: &pb::Registration) -> Self {
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
    fn to_pb(&self) -> Result<pb::Registration, FieldErrors> {
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
    fn changed_from(&self, base: &Self) -> Vec<String> {
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
struct FormPage<'a> {
    title: &'a str,
    action: String,
    /// Amending: the kind is fixed and an etag is carried.
    amending: bool,
    intro: Markup,
}

/// The registration form, with the API's violations beside the fields.
async fn form_page(
    c: &Console,
    v: &Visitor,
    f: &FormPage<'_>,
    values: &RegistrationForm,
    errors: &FieldErrors,
) -> Response {
    let isps = isp_options(c, v).await;
    let request_id = if values.request_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        values.request_id.clone()
    };
    let kinds = options(&[
        ("", "Choose…"),
        ("VPN", "VPN"),
        ("CALL_CENTER_VOIP", "Call-centre VoIP"),
        ("VIDEO_CONFERENCING", "Video conferencing"),
    ]);
    let protocols = options(&[
        ("", "Not a VPN / choose…"),
        ("IPSEC_IKEV2", "IPsec / IKEv2"),
        ("OPENVPN", "OpenVPN"),
        ("WIREGUARD", "WireGuard"),
        ("SSL_TLS", "SSL/TLS VPN"),
        ("L2TP", "L2TP"),
        ("OTHER", "Other"),
    ]);
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
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

fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(v, l)| ((*v).to_owned(), (*l).to_owned())).collect()
}

/// The ISPs to choose from (the first page of ListIsps, which is all of
/// them in practice: a country has dozens).
async fn isp_options(c: &Console, v: &Visitor) -> Vec<(String, String)> {
    let mut choices = vec![(String::new(), "Choose…".to_owned())];
    let msg = pb::ListIspsRequest {
        page_size: 1000,
        page_token: String::new(),
    };
    if let Ok(req) = c.request(v, ISPS, msg)
        && let Ok(list) = c.isp.list_isps(req).await
    {
        choices.extend(
            list.into_inner()
                .isps
                .into_iter()
                .map(|i| (i.code.clone(), format!("{} ({})", i.name, i.code))),
        );
    }
    choices
}

fn new_page() -> FormPage<'static> {
    FormPage {
        title: "Register a VPN or service",
        action: "/console/registrations/new".to_owned(),
        amending: false,
        intro: html! {
            p { "Your ISP confirms the subscriber ID and addresses, then the regulator reviews the registration. "
                "You can follow it, and answer questions, under " a href="/console/registrations" { "your registrations" } "." }
        },
    }
}

pub(super) async fn new_form(State(c): State<Console>, v: Visitor) -> Response {
    form_page(
        &c,
        &v,
        &new_page(),
        &RegistrationForm::default(),
        &FieldErrors::default(),
    )
    .await
}

pub(super) async fn submit(
    State(c): State<Console>,
    v: Visitor,
    axum::Form(form): axum::Form<RegistrationForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let registration = match form.to_pb() {
        Ok(r) => r,
        Err(errors) => return form_page(&c, &v, &new_page(), &form, &errors).await,
    };
    let msg = pb::SubmitRegistrationRequest {
        registration: Some(registration),
        request_id: form.request_id.clone(),
    };
    let req = match c.request(&v, SUBMIT, msg) {
        Ok(req) => req,
        Err(refusal) => return *refusal,
    };
    match c.registrations.submit_registration(req).await {
        Ok(created) => Redirect::to(&format!(
            "/console/registrations/{}?done=submitted",
            created.into_inner().id
        ))
        .into_response(),
        Err(status) => form_page(&c, &v, &new_page(), &form, &refusal_errors(&status)).await,
    }
}

/// What a refused registration form says, by field.
fn refusal_errors(status: &tonic::Status) -> FieldErrors {
    match status.code() {
        tonic::Code::Aborted => FieldErrors::message(
            "This registration changed since you opened the form (perhaps a reviewer acted on it). Open it again to see it as it is now.",
        ),
        _ => FieldErrors::from_status(status, "registration.", FORM_FIELDS),
    }
}

/// A registration and (a page of) its history, as its reader may see them.
pub(super) async fn load(
    c: &Console,
    v: &Visitor,
    id: &str,
    events_after: String,
) -> Page<(pb::Registration, pb::ListRegistrationEventsResponse)> {
    let title = "Registration";
    let req = c.request(v, GET, pb::GetRegistrationRequest { id: id.to_owned() })?;
    let registration = c
        .registrations
        .get_registration(req)
        .await
        .map_err(|s| Box::new(page::failed(title, &s, &v.session)))?
        .into_inner();
    let msg = pb::ListRegistrationEventsRequest {
        id: id.to_owned(),
        page_size: 100,
        page_token: events_after,
    };
    let req = c.request(v, EVENTS, msg)?;
    let events = c
        .registrations
        .list_registration_events(req)
        .await
        .map_err(|s| Box::new(page::failed(title, &s, &v.session)))?
        .into_inner();
    Ok((registration, events))
}

#[derive(Deserialize, Default)]
pub(super) struct DetailQuery {
    /// What was just done (one of a few words; nothing else is said back).
    #[serde(default)]
    done: String,
    #[serde(default)]
    events_after: String,
}

pub(super) async fn detail(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let notice = match q.done.as_str() {
        "submitted" => Some("Submitted. Your ISP confirms it next, then a reviewer decides."),
        "amended" => Some("Amendment sent. A reviewer looks at it again."),
        "withdrawn" => Some("Withdrawn."),
        "renewed" => Some("Renewal requested. A reviewer decides on it; the registration stays in force meanwhile."),
        _ => None,
    };
    show(&c, &v, &id, q.events_after, notice, &FieldErrors::default()).await
}

/// The registration page, with a notice or the refusal of an action on it.
async fn show(
    c: &Console,
    v: &Visitor,
    id: &str,
    events_after: String,
    notice: Option<&str>,
    errors: &FieldErrors,
) -> Response {
    let (r, events) = match load(c, v, id, events_after).await {
        Ok(loaded) => loaded,
        Err(refusal) => return *refusal,
    };
    let state = pb::RegistrationState::try_from(r.state).unwrap_or_default();
    let revision_state = r
        .pending_revision
        .as_ref()
        .and_then(|rev| pb::RegistrationState::try_from(rev.state).ok());
    use pb::RegistrationState as S;
    let needs_info = state == S::NeedsInfo || revision_state == Some(S::NeedsInfo);
    let question = needs_info
        .then(|| {
            events
                .events
                .iter()
                .rev()
                .find(|e| e.action == pb::RegistrationAction::InformationRequested as i32)
        })
        .flatten();
    let withdrawable = matches!(state, S::Submitted | S::IspVerification | S::UnderReview | S::NeedsInfo);
    let amendable = matches!(
        state,
        S::Submitted | S::IspVerification | S::UnderReview | S::NeedsInfo | S::Active
    );
    let renewable = matches!(state, S::Active | S::Expired) && r.pending_revision.is_none();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    let body = html! {
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        (errors.summary())
        @if needs_info {
            div class="notice" role="note" {
                h2 { "The reviewer asks for more information" }
                @if let Some(q) = question {
                    p { strong { (history::reason_code(q.reason_code)) } ": " (q.reason) }
                    p { small { "Asked " (page::pkt_of(q.create_time.as_ref())) } }
                }
                p { "Answer by amending the registration: correct or add what is asked. It then goes back to the reviewer." }
                p { a href={ "/console/registrations/" (r.id) "/amend" } { "Answer the request" } }
            }
        }
        (summary(&r))
        @if let Some(rev) = &r.pending_revision {
            h2 { (if rev.is_renewal { "Renewal waiting for a decision" } else { "Amendment waiting for a decision" }) }
            p { "State: " (page::state(rev.state)) ". The version above stays in force until it is approved." }
            (revision_summary(rev))
        }
        h2 { "What you can do" }
        @if amendable && !needs_info {
            p { a href={ "/console/registrations/" (r.id) "/amend" } { "Amend this registration" } }
        }
        @if renewable {
            form method="post" action={ "/console/registrations/" (r.id) "/renew" } {
                input type="hidden" name="csrf" value=(v.session.csrf);
                input type="hidden" name="etag" value=(r.etag);
                label for="renew-until" { "Renew: new end of validity (Pakistan time)" }
                input type="date" id="renew-until" name="valid_until" required;
                button type="submit" { "Request renewal" }
            }
        }
        @if withdrawable {
            form method="post" action={ "/console/registrations/" (r.id) "/withdraw" } {
                input type="hidden" name="csrf" value=(v.session.csrf);
                input type="hidden" name="etag" value=(r.etag);
                label for="withdraw-reason" { "Withdraw: why (optional)" }
                input type="text" id="withdraw-reason" name="reason" maxlength="500";
                button type="submit" { "Withdraw this registration" }
            }
        }
        @if !amendable && !renewable && !withdrawable { p { "Nothing: this registration is " (page::state(r.state).to_lowercase()) "." } }
        h2 { "History" }
        (history::table(&events.events))
        @if !events.next_page_token.is_empty() {
            p { a href={ "/console/registrations/" (r.id) "?events_after=" (events.next_page_token) } { "Later events" } }
        }
    };
    page::respond(
        status,
        page::frame(&format!("Registration {}", r.reference), Some(&v.session), body),
    )
}

/// What a registration declares, as a description list.
pub(super) fn summary(r: &pb::Registration) -> Markup {
    html! {
        dl {
            dt { "Reference" } dd { (r.reference) }
            dt { "State" } dd { strong { (page::state(r.state)) } " since " (page::pkt_of(r.state_time.as_ref())) }
            dt { "Kind" } dd { (page::kind(r.kind)) @if r.protocol != 0 { " · " (protocol(r.protocol)) } }
            dt { "Source addresses" } dd { @for p in &r.source_prefixes { (p) br; } @if !r.msisdn.is_empty() { (r.msisdn) } }
            dt { "Peers" } dd { @if r.peer_prefixes.is_empty() { "any" } @for p in &r.peer_prefixes { (p) br; } }
            dt { "ISP" } dd { (r.isp) ", subscriber " (r.isp_subscriber_id) }
            dt { "Purpose" } dd { (r.purpose) }
            @if !r.large_prefix_justification.is_empty() { dt { "Wider prefix because" } dd { (r.large_prefix_justification) } }
            dt { "Valid" } dd { (page::pkt_of(r.valid_from.as_ref())) " until " (page::pkt_of(r.valid_until.as_ref())) }
            dt { "Submitted" } dd { (page::pkt_of(r.create_time.as_ref())) }
        }
    }
}

fn revision_summary(rev: &pb::RegistrationRevision) -> Markup {
    html! {
        dl {
            dt { "Source addresses" } dd { @for p in &rev.source_prefixes { (p) br; } @if !rev.msisdn.is_empty() { (rev.msisdn) } }
            dt { "Peers" } dd { @if rev.peer_prefixes.is_empty() { "any" } @for p in &rev.peer_prefixes { (p) br; } }
            dt { "ISP" } dd { (rev.isp) ", subscriber " (rev.isp_subscriber_id) }
            dt { "Purpose" } dd { (rev.purpose) }
            dt { "Valid" } dd { (page::pkt_of(rev.valid_from.as_ref())) " until " (page::pkt_of(rev.valid_until.as_ref())) }
        }
    }
}

pub(super) fn protocol(p: i32) -> String {
    pb::VpnProtocol::try_from(p)
        .map(|p| match p {
            pb::VpnProtocol::IpsecIkev2 => "IPsec / IKEv2".to_owned(),
            pb::VpnProtocol::Openvpn => "OpenVPN".to_owned(),
            pb::VpnProtocol::Wireguard => "WireGuard".to_owned(),
            pb::VpnProtocol::SslTls => "SSL/TLS".to_owned(),
            pb::VpnProtocol::L2tp => "L2TP".to_owned(),
            other => page::words(other.as_str_name(), "VPN_PROTOCOL_"),
        })
        .unwrap_or_default()
}

fn amend_page(r: &pb::Registration) -> FormPage<'static> {
    let answering = r.state == pb::RegistrationState::NeedsInfo as i32
        || r.pending_revision
            .as_ref()
            .is_some_and(|rev| rev.state == pb::RegistrationState::NeedsInfo as i32);
    FormPage {
        title: if answering {
            "Answer the reviewer"
        } else {
            "Amend a registration"
        },
        action: format!("/console/registrations/{}/amend", r.id),
        amending: true,
        intro: html! {
            p { "Amending " strong { (r.reference) } ". Change what needs changing; only changed fields are sent."
                @if r.state == pb::RegistrationState::Active as i32 { " The version in force stays in force until a reviewer approves the amendment." } }
        },
    }
}

pub(super) async fn amend_form(State(c): State<Console>, v: Visitor, Path(Id { id }): Path<Id>) -> Response {
    let r = match current(&c, &v, &id).await {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    form_page(
        &c,
        &v,
        &amend_page(&r),
        &RegistrationForm::of(&r),
        &FieldErrors::default(),
    )
    .await
}

async fn current(c: &Console, v: &Visitor, id: &str) -> Page<pb::Registration> {
    let req = c.request(v, GET, pb::GetRegistrationRequest { id: id.to_owned() })?;
    c.registrations
        .get_registration(req)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| Box::new(page::failed("Registration", &s, &v.session)))
}

pub(super) async fn amend(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    axum::Form(form): axum::Form<RegistrationForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let r = match current(&c, &v, &id).await {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    let f = amend_page(&r);
    // Changes are measured against the version the page showed; if it has
    // changed since, the etag refuses the amendment below.
    let paths = form.changed_from(&RegistrationForm::of(&r));
    if paths.is_empty() {
        let errors = FieldErrors::message("Nothing was changed: change a field, or go back.");
        return form_page(&c, &v, &f, &form, &errors).await;
    }
    let mut registration = match form.to_pb() {
        Ok(reg) => reg,
        Err(errors) => return form_page(&c, &v, &f, &form, &errors).await,
    };
    registration.id = r.id.clone();
    let msg = pb::AmendRegistrationRequest {
        registration: Some(registration),
        update_mask: Some(prost_types::FieldMask { paths }),
        request_id: form.request_id.clone(),
    };
    let req = match c.request(&v, AMEND, msg) {
        Ok(req) => req,
        Err(refusal) => return *refusal,
    };
    match c.registrations.amend_registration(req).await {
        Ok(_) => Redirect::to(&format!("/console/registrations/{}?done=amended", r.id)).into_response(),
        Err(status) => form_page(&c, &v, &f, &form, &refusal_errors(&status)).await,
    }
}

#[derive(Deserialize)]
pub(super) struct WithdrawForm {
    csrf: String,
    etag: String,
    #[serde(default)]
    reason: String,
}

pub(super) async fn withdraw(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    axum::Form(form): axum::Form<WithdrawForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let msg = pb::WithdrawRegistrationRequest {
        id: id.clone(),
        etag: form.etag,
        reason: form.reason,
        request_id: String::new(),
    };
    let req = match c.request(&v, WITHDRAW, msg) {
        Ok(req) => req,
        Err(refusal) => return *refusal,
    };
    match c.registrations.withdraw_registration(req).await {
        Ok(_) => Redirect::to(&format!("/console/registrations/{id}?done=withdrawn")).into_response(),
        Err(status) => show(&c, &v, &id, String::new(), None, &action_errors("withdrawn", &status)).await,
    }
}

/// Why an action on the registration page was refused, in words.
fn action_errors(what: &str, status: &tonic::Status) -> FieldErrors {
    match status.code() {
        tonic::Code::Aborted | tonic::Code::FailedPrecondition => FieldErrors::message(format!(
            "Not {what}: the registration changed since the page was loaded, or no longer allows it. It is shown as it is now. ({})",
            status.message()
        )),
        _ => {
            let mut errors = FieldErrors::from_status(status, "", &[]);
            errors.other.insert(0, format!("Not {what}:"));
            errors
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RenewForm {
    csrf: String,
    etag: String,
    valid_until: String,
}

pub(super) async fn renew(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    axum::Form(form): axum::Form<RenewForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let valid_until = match page::day_start(&form.valid_until) {
        Ok(until) => until,
        Err(why) => {
            return show(
                &c,
                &v,
                &id,
                String::new(),
                None,
                &FieldErrors::message(format!("Not renewed: {why}")),
            )
            .await;
        }
    };
    let msg = pb::RenewRegistrationRequest {
        id: id.clone(),
        etag: form.etag,
        valid_until,
        request_id: String::new(),
    };
    let req = match c.request(&v, RENEW, msg) {
        Ok(req) => req,
        Err(refusal) => return *refusal,
    };
    match c.registrations.renew_registration(req).await {
        Ok(_) => Redirect::to(&format!("/console/registrations/{id}?done=renewed")).into_response(),
        Err(status) => show(&c, &v, &id, String::new(), None, &action_errors("renewed", &status)).await,
    }
}

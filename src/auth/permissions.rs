//! Who may call what: one table, every RPC and the roles allowed to call it.
//! The auth layer enforces it before any handler runs; handlers only narrow
//! further by tenant (an institution's own records, an ISP's own subscribers).

use crate::domain::decision::Decision;
use crate::domain::principal::RoleKind::{self, Admin, Institution, Isp, Lookup, Payments, Reviewer};

/// Paths that answer without credentials: health checks and reflection.
/// (RDAP is HTTP: it answers refusals as RDAP errors, so it authorises
/// itself, through the same gate, as `CheckAddress`: `AuthLayer::admit_as`.)
/// The console likewise admits each action through the gate as its RPC.
pub const PUBLIC_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
    "/rdap/",
    "/console",
    // The API reference: it describes the API, it holds no one's data.
    "/api/",
];

/// Staff and applicants read records (institutions only their own).
const READERS: &[RoleKind] = &[Admin, Reviewer, Institution];
/// Lookups: the regulator's services, ISPs (their own subscribers),
/// reviewers, and institutions (their own addresses).
const LOOKERS: &[RoleKind] = &[Lookup, Isp, Reviewer, Institution];

/// Who takes review decisions (each decision's RPC is in `domain::decision`).
const DECIDERS: &[RoleKind] = &[Reviewer];

/// Every RPC of the API (`/package.Service/Method`) but the review
/// decisions, and the roles allowed.
pub const PERMISSIONS: &[(&str, &[RoleKind])] = &[
    ("/vpnregistry.v1.InstitutionService/CreateInstitution", &[Admin]),
    ("/vpnregistry.v1.InstitutionService/GetInstitution", READERS),
    ("/vpnregistry.v1.InstitutionService/ListInstitutions", READERS),
    (
        "/vpnregistry.v1.InstitutionService/UpdateInstitution",
        &[Admin, Institution],
    ),
    ("/vpnregistry.v1.RegistrationService/SubmitRegistration", &[Institution]),
    (
        "/vpnregistry.v1.RegistrationService/BatchSubmitRegistrations",
        &[Institution],
    ),
    ("/vpnregistry.v1.RegistrationService/GetRegistration", READERS),
    ("/vpnregistry.v1.RegistrationService/ListRegistrations", READERS),
    ("/vpnregistry.v1.RegistrationService/AmendRegistration", &[Institution]),
    (
        "/vpnregistry.v1.RegistrationService/WithdrawRegistration",
        &[Institution],
    ),
    ("/vpnregistry.v1.RegistrationService/RenewRegistration", &[Institution]),
    ("/vpnregistry.v1.RegistrationService/ListRegistrationEvents", READERS),
    ("/vpnregistry.v1.IspService/CreateIsp", &[Admin]),
    (
        "/vpnregistry.v1.IspService/ListIsps",
        &[Admin, Reviewer, Isp, Lookup, Institution],
    ),
    ("/vpnregistry.v1.IspService/ListPendingAttestations", &[Isp]),
    ("/vpnregistry.v1.IspService/AttestRegistration", &[Isp]),
    ("/vpnregistry.v1.ReviewService/ListReviewQueue", &[Reviewer]),
    ("/vpnregistry.v1.LookupService/CheckAddress", LOOKERS),
    ("/vpnregistry.v1.LookupService/CheckFlow", LOOKERS),
    ("/vpnregistry.v1.LookupService/CheckAddresses", LOOKERS),
    // The whole active set: not for institutions.
    ("/vpnregistry.v1.LookupService/WatchChanges", &[Lookup, Isp, Reviewer]),
    ("/vpnregistry.v1.EventService/ListInstitutionEvents", EVENT_READERS),
    ("/vpnregistry.v1.EventService/WatchInstitutionEvents", EVENT_READERS),
    ("/vpnregistry.v1.EventService/ListNotifications", &[Admin]),
    ("/vpnregistry.v1.WebhookService/CreateWebhook", WEBHOOK_OWNERS),
    ("/vpnregistry.v1.WebhookService/ListWebhooks", WEBHOOK_READERS),
    ("/vpnregistry.v1.WebhookService/DeleteWebhook", WEBHOOK_READERS),
    ("/vpnregistry.v1.WebhookService/RotateWebhookSecret", WEBHOOK_OWNERS),
    ("/vpnregistry.v1.WebhookService/TestWebhook", WEBHOOK_OWNERS),
    ("/vpnregistry.v1.WebhookService/ListWebhookDeliveries", WEBHOOK_READERS),
    ("/vpnregistry.v1.WebhookService/RedeliverWebhook", WEBHOOK_READERS),
    ("/vpnregistry.v1.ApiKeyService/CreateApiKey", KEY_OWNERS),
    ("/vpnregistry.v1.ApiKeyService/ListApiKeys", KEY_OWNERS),
    ("/vpnregistry.v1.ApiKeyService/RotateApiKey", KEY_OWNERS),
    ("/vpnregistry.v1.ApiKeyService/RevokeApiKey", KEY_OWNERS),
    // Documents: the institution's own, reviewers all, administrators an
    // institution's own papers; never ISPs or lookup services.
    ("/vpnregistry.v1.DocumentService/UploadDocument", &[Institution]),
    ("/vpnregistry.v1.DocumentService/ListDocuments", READERS),
    ("/vpnregistry.v1.DocumentService/DownloadDocument", READERS),
    ("/vpnregistry.v1.DocumentService/DeleteDocument", &[Institution]),
    ("/vpnregistry.v1.DocumentService/VerifyDocument", &[Reviewer]),
    ("/vpnregistry.v1.DocumentService/ListDocumentViews", READERS),
    // Fees: applicants and staff read challans, the collecting banks'
    // systems look them up and confirm payments and refunds.
    ("/vpnregistry.v1.PaymentService/ListChallans", READERS),
    (
        "/vpnregistry.v1.PaymentService/GetChallan",
        &[Payments, Admin, Reviewer, Institution],
    ),
    ("/vpnregistry.v1.PaymentService/ConfirmPayment", &[Payments]),
    ("/vpnregistry.v1.PaymentService/ConfirmRefund", &[Payments]),
];

/// Whose API keys are self-service: institutions' and ISPs' (the
/// regulator's own services keep the operator's CLI).
const KEY_OWNERS: &[RoleKind] = &[Institution, Isp];

/// Console actions that are no RPC, admitted by the gate like one.
pub const CONSOLE_ACTIONS: &[(&str, &[RoleKind])] = &[
    // An institution's owners manage its members.
    (CONSOLE_MEMBERS, &[Institution]),
    // Administrators invite regulator staff, ISP desks and institutions'
    // first owners.
    (CONSOLE_PEOPLE, &[Admin]),
];
/// Managing an institution's members (key managers only, as for keys).
pub const CONSOLE_MEMBERS: &str = "/console/members";
/// Inviting staff, ISP desk users and first owners.
pub const CONSOLE_PEOPLE: &str = "/console/people";

/// Methods only key managers of their role may call (a member acts as the
/// institution, but does not manage its keys or members).
pub fn for_key_managers(path: &str) -> bool {
    path.starts_with("/vpnregistry.v1.ApiKeyService/") || path == CONSOLE_MEMBERS
}

/// Who reads the event feed: institutions and ISP desks their own, staff all.
const EVENT_READERS: &[RoleKind] = &[Admin, Reviewer, Institution, Isp];
/// Who owns webhooks: institutions and ISP desks, each its own.
const WEBHOOK_OWNERS: &[RoleKind] = &[Institution, Isp];
/// Owners, and administrators (every endpoint: to see, stop and redeliver).
const WEBHOOK_READERS: &[RoleKind] = &[Admin, Institution, Isp];

/// Whether `path` answers without credentials.
pub fn is_public(path: &str) -> bool {
    PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// The roles allowed to call `path`; `None` for a path that is no RPC of ours.
pub fn allowed(path: &str) -> Option<&'static [RoleKind]> {
    PERMISSIONS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, roles)| *roles)
        .or_else(|| Decision::by_rpc(path).map(|_| DECIDERS))
        .or_else(|| {
            CONSOLE_ACTIONS
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, roles)| *roles)
        })
}

/// Every RPC of the API with the roles allowed: [`PERMISSIONS`] and the
/// review decisions.
pub fn rows() -> impl Iterator<Item = (&'static str, &'static [RoleKind])> {
    let decisions = Decision::ALL.into_iter().map(|d| (d.about().rpc, DECIDERS));
    PERMISSIONS.iter().copied().chain(decisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_api_has_exactly_one_row() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut rpcs: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| {
                f.service.iter().flat_map(move |s| {
                    s.method
                        .iter()
                        .map(move |m| format!("/{}.{}/{}", f.package(), s.name(), m.name()))
                })
            })
            .collect();
        rpcs.sort();
        let mut listed: Vec<String> = rows().map(|(p, _)| p.to_owned()).collect();
        listed.sort();
        assert_eq!(listed, rpcs);
    }
}

//! What tests do with a server: real gRPC clients, credentials issued the
//! way the CLI issues them, and the common steps (enrol, submit, attest,
//! decide). Starting servers is `harness`; building requests `requests`.

use prost::Message as _;
use std::time::Duration;
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use uuid::Uuid;
use vpn_registry::{
    auth::token,
    db::tokens,
    domain::{
        decision::Decision,
        principal::{Actor, Role},
    },
    grpc::review::{self, DecisionFields},
    pb::{
        self, api_key_service_client::ApiKeyServiceClient, document_service_client::DocumentServiceClient,
        event_service_client::EventServiceClient, institution_service_client::InstitutionServiceClient,
        isp_service_client::IspServiceClient, lookup_service_client::LookupServiceClient,
        payment_service_client::PaymentServiceClient, registration_service_client::RegistrationServiceClient,
        review_service_client::ReviewServiceClient, webhook_service_client::WebhookServiceClient,
    },
    registry::Registry,
};

pub use crate::harness::*;
pub use crate::requests::*;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Institutions = InstitutionServiceClient<InterceptedService<Channel, Bearer>>;
pub type Registrations = RegistrationServiceClient<InterceptedService<Channel, Bearer>>;
pub type Reviews = ReviewServiceClient<InterceptedService<Channel, Bearer>>;
pub type Isps = IspServiceClient<InterceptedService<Channel, Bearer>>;
pub type Lookups = LookupServiceClient<InterceptedService<Channel, Bearer>>;
pub type Webhooks = WebhookServiceClient<InterceptedService<Channel, Bearer>>;
pub type ApiKeys = ApiKeyServiceClient<InterceptedService<Channel, Bearer>>;
pub type Documents = DocumentServiceClient<InterceptedService<Channel, Bearer>>;
pub type Events = EventServiceClient<InterceptedService<Channel, Bearer>>;
pub type Payments = PaymentServiceClient<InterceptedService<Channel, Bearer>>;

pub fn bearer(token: Option<&str>) -> Bearer {
    Bearer(token.map(|t| format!("Bearer {t}").parse().unwrap()))
}

impl TestApp {
    pub fn institutions(&self, token: Option<&str>) -> Institutions {
        InstitutionServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn registrations(&self, token: Option<&str>) -> Registrations {
        RegistrationServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn review(&self, token: Option<&str>) -> Reviews {
        ReviewServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn isps(&self, token: Option<&str>) -> Isps {
        IspServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn documents(&self, token: Option<&str>) -> Documents {
        DocumentServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn payments(&self, token: Option<&str>) -> Payments {
        PaymentServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn api_keys(&self, token: Option<&str>) -> ApiKeys {
        ApiKeyServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn webhooks(&self, token: Option<&str>) -> Webhooks {
        WebhookServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn event_feed(&self, token: Option<&str>) -> Events {
        EventServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn lookups(&self, token: Option<&str>) -> Lookups {
        LookupServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    /// A lookup client on its own connection (HTTP/2 flow control is per
    /// connection: an unread stream must not stall other calls).
    pub fn lookups_on_new_connection(&self, token: Option<&str>) -> Lookups {
        LookupServiceClient::with_interceptor(self.new_connection(), bearer(token))
    }

    /// A `WatchChanges` stream from scratch (reset, snapshot, deltas) on a
    /// connection of its own.
    pub async fn watch(&self, token: &str) -> tonic::Streaming<pb::WatchChangesResponse> {
        self.lookups_on_new_connection(Some(token))
            .watch_changes(pb::WatchChangesRequest::default())
            .await
            .unwrap()
            .into_inner()
    }

    /// Submits `prefixes` for the institution behind `token`.
    pub async fn submit(&self, token: &str, prefixes: &[&str]) -> pb::Registration {
        self.submit_as(token, submit_request(prefixes)).await
    }

    /// Submits `request` for the institution behind `token`.
    pub async fn submit_as(&self, token: &str, request: pb::SubmitRegistrationRequest) -> pb::Registration {
        self.registrations(Some(token))
            .submit_registration(request)
            .await
            .unwrap()
            .into_inner()
    }

    /// Asks CheckAddress `request` as `token`.
    pub async fn lookup_as(&self, token: &str, request: pb::CheckAddressRequest) -> pb::CheckResult {
        self.lookups(Some(token))
            .check_address(request)
            .await
            .unwrap()
            .into_inner()
    }

    /// Submits `prefixes` for the institution behind `token` and approves them.
    pub async fn active(&self, token: &str, prefixes: &[&str]) -> pb::Registration {
        let r = self.submit(token, prefixes).await;
        self.approve(&r).await.unwrap()
    }

    /// Issues a credential straight into the store, as `vpn-registry token
    /// issue` does, and waits until this server knows it.
    /// CheckAddress of `address` for `token`, once this server has applied
    /// `min_serial` (0: now).
    pub async fn check_address(&self, token: &str, address: &str, min_serial: i64) -> pb::CheckResult {
        self.lookups(Some(token))
            .check_address(pb::CheckAddressRequest {
                address: address.into(),
                min_serial,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn token(&self, role: Role) -> String {
        self.token_with(role, std::time::Duration::from_secs(3600), None)
            .await
            .1
    }

    /// Issues a credential valid for `lifetime` (bound to the certificate
    /// with that SHA-256, if given); returns its id and secret once the
    /// server knows it (a bound or already expired one: once it is stored).
    pub async fn token_with(
        &self,
        role: Role,
        lifetime: std::time::Duration,
        cert_sha256: Option<[u8; 32]>,
    ) -> (Uuid, String) {
        let (id, secret) = self.issue(role, lifetime, cert_sha256).await;
        if cert_sha256.is_none() && !lifetime.is_zero() {
            self.wait_until_known(&secret).await;
        }
        (id, secret)
    }

    /// Stores a credential as `vpn-registry token issue` does, without
    /// waiting for the server to learn of it.
    pub async fn issue(
        &self,
        role: Role,
        lifetime: std::time::Duration,
        cert_sha256: Option<[u8; 32]>,
    ) -> (Uuid, String) {
        self.issue_as(role, lifetime, cert_sha256, false).await
    }

    /// A token of an institution or ISP that may manage its organisation's
    /// keys (`token issue --manages-keys`), once the server knows it.
    pub async fn key_manager(&self, role: Role) -> String {
        let (_, secret) = self
            .issue_as(role, std::time::Duration::from_secs(3600), None, true)
            .await;
        self.wait_until_known(&secret).await;
        secret
    }

    async fn issue_as(
        &self,
        role: Role,
        lifetime: std::time::Duration,
        cert_sha256: Option<[u8; 32]>,
        manages_keys: bool,
    ) -> (Uuid, String) {
        let (secret, hash) = token::generate().unwrap();
        let name = format!("test-{}", role.as_str());
        let new = tokens::NewToken {
            id: Uuid::now_v7(),
            role: &role,
            name: &name,
            hash,
            expire_time: time::OffsetDateTime::now_utc() + lifetime,
            cert_sha256,
            manages_keys,
        };
        tokens::insert(&self.pool, &new, &Actor::operator("test"))
            .await
            .unwrap();
        (new.id, secret)
    }

    /// Waits until this server accepts `token` (credentials follow the
    /// database by notification, a moment after the write).
    pub async fn wait_until_known(&self, token: &str) {
        eventually("the server learns the token", Duration::from_secs(5), || async {
            let answer = self.isps(Some(token)).list_isps(pb::ListIspsRequest::default()).await;
            (!matches!(&answer, Err(s) if s.code() == tonic::Code::Unauthenticated)).then_some(())
        })
        .await
    }

    /// Waits until this server holds `n` credentials (as its /status says),
    /// without presenting any: for tests that count failed attempts.
    pub async fn wait_until_holding(&self, n: u64) {
        eventually("the server holds the credentials", Duration::from_secs(5), || async {
            let (_, body) = self.http("/status").await;
            let status: serde_json::Value = serde_json::from_str(&body).ok()?;
            (status["credentials"].as_u64() == Some(n)).then_some(())
        })
        .await
    }

    /// Waits until this server's replica has applied every change the feed
    /// holds now (as its /status says): for reads without a `min_serial`,
    /// such as RDAP.
    pub async fn wait_until_applied(&self) {
        let serial = self.last_serial().await;
        eventually("the replica applies the feed", Duration::from_secs(5), || async {
            let (_, body) = self.http("/status").await;
            let status: serde_json::Value = serde_json::from_str(&body).ok()?;
            (status["feed"]["applied_serial"].as_i64() >= Some(serial)).then_some(())
        })
        .await
    }

    /// Adds a licensed ISP (as `vpn-registry isp add` does).
    pub async fn add_isp(&self, code: &str) {
        vpn_registry::db::isps::create(&self.pool, &code.parse().unwrap(), code, &Actor::operator("test"))
            .await
            .unwrap();
    }

    pub async fn admin(&self) -> String {
        self.token(Role::Admin).await
    }

    /// Enrols an institution of `category` and returns it with a token for it.
    pub async fn enrol(&self, category: pb::InstitutionCategory) -> (pb::Institution, String) {
        let admin = self.admin().await;
        let created = self
            .institutions(Some(&admin))
            .create_institution(pb::CreateInstitutionRequest {
                institution: Some(valid_institution(category)),
                request_id: Uuid::new_v4().to_string(),
                validate_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        let token = self.token(Role::Institution(created.id.parse().unwrap())).await;
        (created, token)
    }

    /// The app's reviewer token (one principal per app).
    pub async fn reviewer_token(&self) -> &str {
        self.reviewer_token.get_or_init(|| self.token(Role::Reviewer)).await
    }

    /// The app's `ptcl` attestation desk token.
    pub async fn isp_token(&self) -> &str {
        self.isp_token
            .get_or_init(|| self.token(Role::Isp("ptcl".parse().unwrap())))
            .await
    }

    /// The review service as the app's reviewer.
    pub async fn reviewer(&self) -> Reviews {
        self.review(Some(self.reviewer_token().await))
    }

    /// The ISP service as the app's `ptcl` desk.
    pub async fn isp_desk(&self) -> Isps {
        self.isps(Some(self.isp_token().await))
    }

    /// The ISP confirms (or, saying "Subscriber unknown", denies) what it was
    /// asked to attest about `on`.
    pub async fn attest(&self, on: &impl Versioned, confirmed: bool) -> Result<pb::Attestation, Status> {
        let reason = if confirmed { "" } else { "Subscriber unknown" };
        self.isp_desk()
            .await
            .attest_registration(pb::AttestRegistrationRequest {
                reason: reason.into(),
                ..attest_request(on, confirmed)
            })
            .await
            .map(|a| a.into_inner())
    }

    /// The app's reviewer takes decision `d` on the version `on` names.
    pub async fn decide(
        &self,
        d: Decision,
        on: &impl Versioned,
        code: pb::ReasonCode,
        reason: &str,
    ) -> Result<pb::Registration, Status> {
        let reviewer = self.reviewer_token().await.to_owned();
        self.decide_as(&reviewer, d, on, code, reason).await
    }

    /// Decision `d` on the version `on` names, sent as `token` (any
    /// principal) to the decision's own RPC.
    pub async fn decide_as(
        &self,
        token: &str,
        d: Decision,
        on: &impl Versioned,
        code: pb::ReasonCode,
        reason: &str,
    ) -> Result<pb::Registration, Status> {
        if d == Decision::Approve {
            self.verified_evidence(on.id()).await;
        }
        self.decide_as_is(token, d, on, code, reason).await
    }

    /// [`Self::decide_as`] on the evidence as it stands (no fixtures).
    pub async fn decide_as_is(
        &self,
        token: &str,
        d: Decision,
        on: &impl Versioned,
        code: pb::ReasonCode,
        reason: &str,
    ) -> Result<pb::Registration, Status> {
        let fields = DecisionFields {
            id: on.id().into(),
            etag: on.etag().into(),
            reason_code: code as i32,
            reason: reason.into(),
            ..DecisionFields::default()
        };
        let answer = crate::raw::call(&self.channel, d.about().rpc, Some(token), review::encode(d, fields)).await?;
        Ok(pb::Registration::decode(&answer[..]).expect("a Registration"))
    }

    /// Records, as a reviewer's verdicts and a collecting bank would, a
    /// verified document for every requirement of the registration
    /// (whatever kind it is amended to) and its fees paid: approvals need
    /// them. Records only (no content): the tests of documents and fees
    /// themselves upload real ones and pay through PaymentService.
    pub async fn verified_evidence(&self, registration: &str) {
        self.verified_documents(registration).await;
        sqlx::query(
            "UPDATE challans SET status = 'PAID', pay_time = now(), transaction_reference = 'fixture-' || psid
              WHERE registration_id = $1 AND status = 'UNPAID'",
        )
        .bind(registration.parse::<Uuid>().unwrap())
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Verified documents only (see [`Self::verified_evidence`]).
    pub async fn verified_documents(&self, registration: &str) {
        use vpn_registry::domain::{evidence, institution::Category, registration::Kind};
        let id: Uuid = registration.parse().unwrap();
        let (category, institution): (String, Uuid) = sqlx::query_as(
            "SELECT i.category, i.id FROM registrations r JOIN institutions i ON i.id = r.institution_id WHERE r.id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        let category = Category::from_db(&category).unwrap();
        let mut types: Vec<&str> = Kind::ALL
            .iter()
            .flat_map(|k| evidence::required(category, *k))
            .map(|need| need.0[0].as_str())
            .collect();
        types.sort_unstable();
        types.dedup();
        sqlx::query(
            "INSERT INTO documents (id, institution_id, registration_id, type, file_name, media_type, size_bytes, sha256,
                                    key_id, wrapped_key, nonce_prefix, status, decide_time, request_id)
             SELECT gen_random_uuid(), $1, $2, t, 'fixture.pdf', 'application/pdf', 1, sha256('fixture'),
                    'fixture', '\\x00', '\\x00000000000000', 'VERIFIED', now(), gen_random_uuid()::text
               FROM unnest($3::text[]) AS t
              WHERE NOT EXISTS (SELECT FROM documents d WHERE d.registration_id = $2 AND d.type = t
                                   AND d.status = 'VERIFIED' AND d.delete_time IS NULL AND d.supersede_time IS NULL)",
        )
        .bind(institution)
        .bind(id)
        .bind(types)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Takes a submitted registration through ISP attestation (as `ptcl`) and
    /// approval by a reviewer, returning the approval's answer.
    pub async fn approve(&self, registration: &pb::Registration) -> Result<pb::Registration, Status> {
        let attested = self.attest(registration, true).await?;
        self.decide(
            Decision::Approve,
            &attested,
            pb::ReasonCode::Compliant,
            "Documents in order",
        )
        .await
    }

    /// A registration as the app's reviewer reads it.
    pub async fn get(&self, id: &str) -> pb::Registration {
        self.registrations(Some(self.reviewer_token().await))
            .get_registration(pb::GetRegistrationRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
    }

    /// A registration's whole history, as the app's reviewer reads it.
    pub async fn events(&self, id: &str) -> Vec<pb::RegistrationEvent> {
        events_of(&mut self.registrations(Some(self.reviewer_token().await)), id).await
    }

    /// One pass of the expiry task (as the `test` system actor).
    pub async fn expire_due(&self) -> usize {
        Registry::new(self.pool.clone())
            .expire_due(time::OffsetDateTime::now_utc().date(), 100, &Actor::system("test"))
            .await
            .unwrap()
    }

    /// Ends `reference`'s validity a second ago and runs one expiry pass;
    /// returns how many registrations expired.
    pub async fn expire_now(&self, reference: &str) -> usize {
        sqlx::query(
            "UPDATE registrations SET valid_from = least(valid_from, now() - interval '2 days'),
                                      valid_until = now() - interval '1 second'
              WHERE reference = $1",
        )
        .bind(reference)
        .execute(&self.pool)
        .await
        .unwrap();
        self.expire_due().await
    }

    /// A serial the registry has handed out whose change no replica can
    /// see yet (the feed's counter moved on without its rows, as while the
    /// commit that took it is still under way): a lookup at it waits.
    pub async fn unapplied_serial(&self) -> i64 {
        sqlx::query_scalar("UPDATE feed_state SET last_serial = last_serial + 1000 RETURNING last_serial")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The feed's last serial.
    pub async fn last_serial(&self) -> i64 {
        last_serial(&self.pool).await
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// CheckAddress of `address` now, through `client`.
pub async fn check(client: &mut Lookups, address: &str) -> pb::CheckResult {
    client
        .check_address(pb::CheckAddressRequest {
            address: address.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// A registration's whole history, as `client`'s principal reads it.
pub async fn events_of(client: &mut Registrations, id: &str) -> Vec<pb::RegistrationEvent> {
    client
        .list_registration_events(pb::ListRegistrationEventsRequest {
            id: id.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

/// The feed's last serial in `pool`'s database.
pub async fn last_serial(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT last_serial FROM feed_state")
        .fetch_one(pool)
        .await
        .unwrap()
}

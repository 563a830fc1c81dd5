//! An organisation's API keys, for its owners (and ISP desks): made,
//! rotated and revoked through ApiKeyService's own handlers, admitted by the
//! gate as those RPCs. A secret is shown once, on the page that made it.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use super::fields::{Field, FieldErrors};
use super::{Console, Id, Refused, Visitor, page};
use crate::pb::{self, api_key_service_server::ApiKeyService};

const LIST: &str = "/vpnregistry.v1.ApiKeyService/ListApiKeys";
const CREATE: &str = "/vpnregistry.v1.ApiKeyService/CreateApiKey";
const ROTATE: &str = "/vpnregistry.v1.ApiKeyService/RotateApiKey";
const REVOKE: &str = "/vpnregistry.v1.ApiKeyService/RevokeApiKey";

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    after: String,
    #[serde(default)]
    done: String,
}

pub(super) async fn list(State(c): State<Console>, v: Visitor, Query(q): Query<ListQuery>) -> Response {
    keys_page(&c, &v, &q, &FieldErrors::default(), StatusCode::OK).await
}

async fn keys_page(c: &Console, v: &Visitor, q: &ListQuery, errors: &FieldErrors, status: StatusCode) -> Response {
    let msg = pb::ListApiKeysRequest {
        page_size: page::PAGE_SIZE,
        page_token: q.after.clone(),
    };
    let list = match c.call(v, LIST, msg, |req| c.api_keys.list_api_keys(req)).await {
        Ok(list) => list,
        Err(refused) => return refused.page("API keys", v),
    };
    let body = html! {
        @if q.done == "revoked" { p class="notice" role="status" { "The key is revoked: every server refuses it within a second." } }
        p { "Your back-office systems call the registry's API with these keys (" code { "authorization: Bearer vpr_…" } "). "
            "A key acts for your organisation, lives at most a year, and its secret is shown once." }
        h2 { "Make a key" }
        (errors.summary())
        form method="post" action="/console/keys" {
            input type="hidden" name="csrf" value=(v.session.csrf);
            (Field::new("name", "What it is for", "").required().max(100).hint("Such as core-banking-prod.").render(errors))
            (Field::new("days", "Days it works (at most 365)", "365").max(3).pattern("[0-9]{1,3}").render(errors))
            label { input type="checkbox" name="manages_keys" value="true"; " It may manage keys itself (for automation that rotates them)" }
            button type="submit" { "Make the key" }
        }
        h2 { "Keys" }
        @if list.api_keys.is_empty() { p { "No keys yet." } } @else {
            table {
                thead { tr { th { "Name" } th { "Made" } th { "Last used" } th { "Expires" } th { "State" } th { "" } } }
                tbody {
                    @for k in &list.api_keys {
                        tr {
                            td { (k.name) @if k.manages_keys { " (manages keys)" } }
                            td { (page::pkt_of(k.create_time.as_ref())) }
                            td { (page::pkt_of(k.last_use_time.as_ref())) }
                            td { (page::pkt_of(k.expire_time.as_ref())) }
                            td { @if k.revoke_time.is_some() { "Revoked " (page::pkt_of(k.revoke_time.as_ref())) } @else { "Active" } }
                            td {
                                @if k.revoke_time.is_none() {
                                    form method="post" action={ "/console/keys/" (k.id) } {
                                        input type="hidden" name="csrf" value=(v.session.csrf);
                                        button type="submit" name="action" value="rotate" { "Rotate" }
                                        button type="submit" name="action" value="revoke" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !list.next_page_token.is_empty() {
            p { a href={ "/console/keys?after=" (list.next_page_token) } { "Older keys" } }
        }
    };
    page::respond(status, page::frame("API keys", Some(&v.session), body))
}

/// The page that shows a new secret, once.
fn secret_page(v: &Visitor, title: &str, key: &pb::ApiKey, note: &str) -> Response {
    let body = html! {
        p class="notice" role="status" { (note) }
        p { "Copy the secret now: it is never shown again." }
        p { code id="api-key-secret" { (key.secret) } }
        dl {
            dt { "Name" } dd { (key.name) }
            dt { "Expires" } dd { (page::pkt_of(key.expire_time.as_ref())) }
        }
        p { a href="/console/keys" { "Back to the keys" } }
    };
    page::respond(StatusCode::OK, page::frame(title, Some(&v.session), body))
}

#[derive(Deserialize)]
pub(super) struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    manages_keys: String,
}

pub(super) async fn create(State(c): State<Console>, v: Visitor, axum::Form(form): axum::Form<CreateForm>) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    let days = match form.days.trim() {
        "" => 365,
        d => match d.parse::<u64>() {
            Ok(d) if d > 0 => d,
            _ => {
                let mut errors = FieldErrors::default();
                errors.add("days", "a whole number of days, 1 to 365");
                return keys_page(&c, &v, &ListQuery::default(), &errors, StatusCode::UNPROCESSABLE_ENTITY).await;
            }
        },
    };
    let msg = pb::CreateApiKeyRequest {
        api_key: Some(pb::ApiKey {
            name: form.name.clone(),
            manages_keys: form.manages_keys == "true",
            ..Default::default()
        }),
        ttl: std::time::Duration::from_secs(days.saturating_mul(86_400))
            .try_into()
            .ok(),
    };
    match c.call(&v, CREATE, msg, |req| c.api_keys.create_api_key(req)).await {
        Ok(key) => secret_page(
            &v,
            "Key made",
            &key,
            "The key is made; every server accepts it within a second.",
        ),
        Err(Refused::Page(page)) => *page,
        Err(Refused::Status(status)) => {
            let mut errors = FieldErrors::from_status(&status, "api_key.", &["name"]);
            for e in FieldErrors::from_status(&status, "", &["ttl"]).of("ttl").to_vec() {
                errors.add("days", e);
            }
            keys_page(&c, &v, &ListQuery::default(), &errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

#[derive(Deserialize)]
pub(super) struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
}

pub(super) async fn change(
    State(c): State<Console>,
    v: Visitor,
    Path(Id { id }): Path<Id>,
    axum::Form(form): axum::Form<ChangeForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    match form.action.as_str() {
        "rotate" => {
            let msg = pb::RotateApiKeyRequest { id, grace: None };
            match c.call(&v, ROTATE, msg, |req| c.api_keys.rotate_api_key(req)).await {
                Ok(key) => secret_page(
                    &v,
                    "Key rotated",
                    &key,
                    "A new secret; the old one keeps working for an hour, while your systems switch.",
                ),
                Err(refused) => refused.page("API keys", &v),
            }
        }
        "revoke" => {
            let msg = pb::RevokeApiKeyRequest { id };
            match c.call(&v, REVOKE, msg, |req| c.api_keys.revoke_api_key(req)).await {
                Ok(_) => Redirect::to("/console/keys?done=revoked").into_response(),
                Err(refused) => refused.page("API keys", &v),
            }
        }
        _ => page::not_found(),
    }
}

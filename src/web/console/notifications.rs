//! What the registry told people: administrators see the outbox (waiting,
//! dead-lettered, kept e-mail); institutions and ISP desks their webhooks
//! and what became of each delivery. Read through the RPCs, as elsewhere.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Console, Visitor, page};
use crate::pb::{self, event_service_server::EventService, webhook_service_server::WebhookService};

const NOTIFICATIONS: &str = "/vpnregistry.v1.EventService/ListNotifications";
const WEBHOOKS: &str = "/vpnregistry.v1.WebhookService/ListWebhooks";
const DELIVERIES: &str = "/vpnregistry.v1.WebhookService/ListWebhookDeliveries";
/// Deliveries shown per webhook.
const RECENT: i32 = 10;

#[derive(Deserialize, Default)]
pub(super) struct OutboxQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    after: String,
}

/// The statuses an administrator filters by, with their labels.
const STATUSES: &[(&str, &str)] = &[
    ("", "Not delivered"),
    ("PENDING", "Waiting"),
    ("DEAD", "Dead letters"),
    ("KEPT", "Kept e-mail"),
    ("DELIVERED", "Delivered"),
];

pub(super) async fn outbox(State(c): State<Console>, v: Visitor, Query(q): Query<OutboxQuery>) -> Response {
    let msg = pb::ListNotificationsRequest {
        status: q.status.clone(),
        page_size: page::PAGE_SIZE,
        page_token: q.after,
    };
    let list = match c
        .call(&v, NOTIFICATIONS, msg, |req| c.events.list_notifications(req))
        .await
    {
        Ok(list) => list,
        Err(refused) => return refused.page("Notifications", &v),
    };
    let body: Markup = html! {
        p { "Every change someone must hear about is written with the change itself and delivered from here: "
            "e-mail to the institution's contact, and to the webhooks that asked for it. Failed deliveries are retried "
            "for about three days, then dead-lettered." }
        nav aria-label="Filter" {
            @for (status, label) in STATUSES {
                @if *status == q.status { strong { (label) } " " } @else { a href={ "/console/notifications?status=" (status) } { (label) } " " }
            }
        }
        @if list.notifications.is_empty() {
            p { "Nothing here." }
        } @else {
            table {
                thead { tr { th { "Registration" } th { "Event" } th { "To" } th { "Status" } th { "Attempts" } th { "Last answer" } th { "Next attempt" } } }
                tbody {
                    @for n in &list.notifications {
                        tr {
                            td { (n.reference) }
                            td { code { (n.event_type) } }
                            td { (n.channel) ": " (n.recipient) }
                            td { (n.status) }
                            td { (n.attempts) }
                            td { @if n.last_code != 0 { (n.last_code) " " } (n.last_error) }
                            td { (page::pkt_of(n.next_attempt_time.as_ref())) }
                        }
                    }
                }
            }
        }
        @if !list.next_page_token.is_empty() {
            p { a href={ "/console/notifications?status=" (q.status) "&after=" (list.next_page_token) } { "Next page" } }
        }
    };
    page::respond(StatusCode::OK, page::frame("Notifications", Some(&v.session), body))
}

pub(super) async fn webhooks(State(c): State<Console>, v: Visitor) -> Response {
    let msg = pb::ListWebhooksRequest {
        page_size: page::PAGE_SIZE,
        page_token: String::new(),
    };
    let hooks = match c.call(&v, WEBHOOKS, msg, |req| c.webhooks.list_webhooks(req)).await {
        Ok(list) => list.webhooks,
        Err(refused) => return refused.page("Webhooks", &v),
    };
    let mut sections = Vec::new();
    for hook in hooks {
        let msg = pb::ListWebhookDeliveriesRequest {
            webhook_id: hook.id.clone(),
            page_size: RECENT,
            ..Default::default()
        };
        let deliveries = match c
            .call(&v, DELIVERIES, msg, |req| c.webhooks.list_webhook_deliveries(req))
            .await
        {
            Ok(list) => list.deliveries,
            Err(refused) => return refused.page("Webhooks", &v),
        };
        sections.push((hook, deliveries));
    }
    let body: Markup = html! {
        p { "Webhooks are registered through the API (" code { "WebhookService" } "); each delivery is signed as the "
            "Standard Webhooks specification says. The latest deliveries of each:" }
        @if sections.is_empty() {
            p { "No webhooks yet." }
        }
        @for (hook, deliveries) in &sections {
            section {
                h2 { code { (hook.url) } }
                @if hook.disable_time.is_some() {
                    p class="error" { "Deliveries stopped: " (hook.disable_reason) }
                }
                p { "Events: " @for t in &hook.event_types { code { (t) } " " } }
                @if deliveries.is_empty() {
                    p { "No deliveries yet." }
                } @else {
                    table {
                        thead { tr { th { "Registration" } th { "Event" } th { "Status" } th { "Attempts" } th { "Last answer" } th { "Next attempt" } } }
                        tbody {
                            @for d in deliveries {
                                tr {
                                    td { (d.reference) }
                                    td { code { (d.event_type) } }
                                    td { (d.status) }
                                    td { (d.attempts) }
                                    td { @if d.last_status_code != 0 { (d.last_status_code) " " } (d.last_error) }
                                    td { (page::pkt_of(d.next_attempt_time.as_ref())) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page::respond(StatusCode::OK, page::frame("Webhooks", Some(&v.session), body))
}

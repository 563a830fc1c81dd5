//! The console's CSV import: a template to download, every line checked
//! (by the batch's dry run) and shown with its violations before anything is
//! submitted, then submitted in batches; sending the page twice submits
//! nothing twice.

use sqlx::PgPool;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;
use crate::web::*;

const HEADER: &str = "kind,protocol,source_prefixes,msisdn,peer_prefixes,isp,isp_subscriber_id,purpose,valid_from,valid_until,large_prefix_justification";

fn line(prefix: &str, purpose: &str) -> String {
    format!("VPN,WIREGUARD,{prefix},,185.60.216.0/24,ptcl,SUB-1,{purpose},,2030-12-31,")
}

async fn registrations(app: &TestApp, token: &str) -> Vec<pb::Registration> {
    app.registrations(Some(token))
        .list_registrations(pb::ListRegistrationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .registrations
}

#[sqlx::test]
async fn a_spreadsheet_is_checked_line_by_line_then_submitted_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::ItCompany).await;
    let cookie = sign_in(&app, &token).await;

    let template = call(
        &app,
        "GET",
        "/console/registrations/import/template.csv",
        Some(&cookie),
        &[],
    )
    .await;
    assert_eq!(template.status, 200);
    assert!(template.body.starts_with(HEADER), "{}", template.body);

    let page = call(&app, "GET", "/console/registrations/import", Some(&cookie), &[]).await;
    assert_eq!(page.status, 200);
    let csrf = input(&page.body, "csrf");

    // Line 3 is private space, line 5 has no purpose, line 6's date does
    // not read: each shown (the others in its batch checked all the same),
    // nothing submitted.
    let bad = [
        HEADER.to_owned(),
        line("81.2.69.0/24", "Payroll"),
        line("10.0.0.0/24", "Office"),
        line("81.2.70.0/24 81.2.71.0/24", "Branches"),
        line("81.2.72.0/24", ""),
        line("81.2.74.0/24", "Depot").replace("2030-12-31", "next year"),
    ]
    .join("\n");
    let form = [
        ("csrf", csrf.as_str()),
        ("csv", bad.as_str()),
        ("action", "check"),
        ("key", ""),
    ];
    let checked = call(&app, "POST", "/console/registrations/import", Some(&cookie), &form).await;
    assert_eq!(checked.status, 422, "{}", checked.body);
    let row = |n: usize| {
        let at = checked
            .body
            .find(&format!("<tr><td>{n}</td>"))
            .unwrap_or_else(|| panic!("no line {n}"));
        let rest = &checked.body[at..];
        rest[..rest.find("</tr>").unwrap()].to_owned()
    };
    assert!(row(2).contains("Ready"), "{}", row(2));
    assert!(row(3).contains("source_prefixes[0]"), "{}", row(3));
    assert!(row(4).contains("Ready"), "{}", row(4));
    assert!(row(5).contains("purpose"), "{}", row(5));
    assert!(row(6).contains("valid_until"), "{}", row(6));
    assert!(
        !checked.body.contains("value=\"submit\""),
        "offered to submit a file with errors"
    );
    assert!(registrations(&app, &token).await.is_empty());

    // Mended: every line ready, still nothing submitted, then submitted.
    let good = [
        HEADER.to_owned(),
        line("81.2.69.0/24", "Payroll"),
        line("81.2.73.0/24", "Office"),
        line("81.2.70.0/24 81.2.71.0/24", "Branches"),
        line("81.2.72.0/24", "Warehouse"),
    ]
    .join("\n");
    let key = input(&checked.body, "key");
    let form = [
        ("csrf", csrf.as_str()),
        ("csv", good.as_str()),
        ("action", "check"),
        ("key", key.as_str()),
    ];
    let checked = call(&app, "POST", "/console/registrations/import", Some(&cookie), &form).await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert!(checked.body.contains("Submit 4 registrations"));
    assert!(registrations(&app, &token).await.is_empty(), "checking submitted");

    let form = [
        ("csrf", csrf.as_str()),
        ("csv", good.as_str()),
        ("action", "submit"),
        ("key", key.as_str()),
    ];
    let done = call(&app, "POST", "/console/registrations/import", Some(&cookie), &form).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("4 registrations submitted"), "{}", done.body);
    let submitted = registrations(&app, &token).await;
    assert_eq!(submitted.len(), 4);
    for r in &submitted {
        assert!(done.body.contains(&r.reference), "{} is not shown", r.reference);
    }
    // The same page sent again: the same four, nothing new.
    let again = call(&app, "POST", "/console/registrations/import", Some(&cookie), &form).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(registrations(&app, &token).await.len(), 4);
}

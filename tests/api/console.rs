//! The web console over real HTTP on the gRPC port: people sign in, the ISP
//! desk lists and attests through the same gate and handlers as the RPCs,
//! refusals are shown plainly.

use sqlx::PgPool;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;
use crate::web::*;

#[sqlx::test]
async fn the_isp_desk_signs_in_lists_and_attests_through_the_api(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (bank, applicant) = app.enrol(C::Bank).await;
    let submitted = app.submit(&applicant, &["8.8.8.0/24"]).await;
    let isp = app.isp_token().await.to_owned();
    app.wait_until_known(&isp).await;

    let start = call(&app, "GET", "/console/sign-in", None, &[]).await;
    assert_eq!(start.status, 200, "{}", start.body);
    assert!(
        start.body.contains("<label for=\"email\">") && start.body.contains("<label for=\"password\">"),
        "{}",
        start.body
    );
    assert!(!start.body.contains("name=\"token\""), "tokens are for machines");
    let person = app.person_like(&isp).await;
    let wrong = try_sign_in(&app, &person.email, "not the password", &person.code()).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Not signed in"), "{}", wrong.body);
    // Login CSRF: a form posted from elsewhere (no cookie, or another form's
    // value) does not sign the browser in, even with the right password.
    let (form_cookie, csrf) = public_form(&app, "/console/sign-in").await;
    let code = person.code();
    let form = [
        ("email", person.email.as_str()),
        ("password", person.password.as_str()),
        ("code", code.as_str()),
        ("csrf", csrf.as_str()),
    ];
    let elsewhere = call(&app, "POST", "/console/sign-in", None, &form).await;
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.body);
    assert!(elsewhere.set_cookie.is_none_or(|c| !c.starts_with("vpnr_console=")));
    let (other_cookie, _) = public_form(&app, "/console/sign-in").await;
    let mismatched = call(&app, "POST", "/console/sign-in", Some(&other_cookie), &form).await;
    assert_eq!(mismatched.status, 403, "{}", mismatched.body);
    drop(form_cookie);

    let cookie = sign_in_person(&app, &person).await;
    let desk = call(&app, "GET", "/console/isp", Some(&cookie), &[]).await;
    assert_eq!(desk.status, 200, "{}", desk.body);
    assert!(desk.body.contains(&submitted.reference) && desk.body.contains(&bank.legal_name));
    assert!(desk.body.contains("PKT"), "dates in Pakistan time");
    assert!(!desk.body.contains(&isp), "the token is never sent back");
    let (etag, csrf) = (input(&desk.body, "etag"), input(&desk.body, "csrf"));
    let attest = |csrf: String, etag: String, decision: &'static str, reason: &'static str| {
        let (app, cookie, id) = (&app, cookie.clone(), submitted.id.clone());
        async move {
            let form = [
                ("id", id.as_str()),
                ("etag", etag.as_str()),
                ("reference", "VPN-x"),
                ("csrf", csrf.as_str()),
                ("decision", decision),
                ("reason", reason),
            ];
            call(app, "POST", "/console/isp/attest", Some(&cookie), &form).await
        }
    };

    let forged = attest("forged".into(), etag.clone(), "confirm", "").await;
    assert_eq!(forged.status, 403, "a form not from the page is refused");
    let no_reason = attest(csrf.clone(), etag.clone(), "deny", "").await;
    assert!(
        alert(&no_reason.body).contains("reason"),
        "the API's violation is shown: {}",
        no_reason.body
    );
    let malformed = attest(csrf.clone(), "W/\"stale\"".into(), "confirm", "").await;
    assert!(alert(&malformed.body).contains("etag"), "{}", malformed.body);
    let confirmed = attest(csrf.clone(), etag.clone(), "confirm", "").await;
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
    let back = confirmed.location.unwrap();
    assert!(back.contains(&submitted.reference), "{back}");
    // A second desk user still holding the page: the registration changed.
    let stale = attest(csrf.clone(), etag, "confirm", "").await;
    assert!(
        alert(&stale.body).contains("changed since this page was loaded"),
        "{}",
        stale.body
    );
    let after = call(&app, "GET", &back, Some(&cookie), &[]).await;
    assert!(
        after.body.contains(&format!("{} confirmed.", submitted.reference)),
        "{}",
        after.body
    );
    assert_eq!(
        app.get(&submitted.id).await.state,
        pb::RegistrationState::UnderReview as i32
    );
    let crafted = call(
        &app,
        "GET",
        "/console/isp?done=Call+0300+now&confirmed=true",
        Some(&cookie),
        &[],
    )
    .await;
    assert!(!crafted.body.contains("Call 0300"), "only references are said back");
    let history = app.events(&submitted.id).await;
    assert!(
        history
            .iter()
            .any(|e| e.actor.as_ref().is_some_and(|a| a.role == pb::Role::Isp as i32)),
        "audited as the ISP: {history:?}"
    );

    // Another role's token: the same permission table refuses the desk.
    let institution_cookie = sign_in(&app, &applicant).await;
    let refused = call(&app, "GET", "/console/isp", Some(&institution_cookie), &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);

    // Signing out ends the session on the server.
    let out = call(&app, "POST", "/console/sign-out", Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    let gone = call(&app, "GET", "/console/isp", Some(&cookie), &[]).await;
    assert_eq!((gone.status, gone.location.as_deref()), (303, Some("/console/sign-in")));
}

#[sqlx::test]
async fn applicants_see_only_their_own_and_withdraw_and_renew(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let (_, other) = app.enrol(C::Company).await;
    let pending = app.submit(&bank, &["8.8.8.0/24"]).await;
    let active = app.active(&bank, &["8.8.4.0/24"]).await;
    let cookie = sign_in(&app, &bank).await;

    let list = call(&app, "GET", "/console/registrations", Some(&cookie), &[]).await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains(&pending.reference) && list.body.contains(&active.reference));
    assert!(list.body.contains("PKT"), "dates in Pakistan time");
    let others = sign_in(&app, &other).await;
    let theirs = call(&app, "GET", "/console/registrations", Some(&others), &[]).await;
    assert!(!theirs.body.contains(&pending.reference), "tenant isolation");
    let peek = call(
        &app,
        "GET",
        &format!("/console/registrations/{}", pending.id),
        Some(&others),
        &[],
    )
    .await;
    assert_eq!(peek.status, 404, "{}", peek.body);

    // Withdraw, and a second withdrawal from the same (now stale) page.
    let page = call(
        &app,
        "GET",
        &format!("/console/registrations/{}", pending.id),
        Some(&cookie),
        &[],
    )
    .await;
    let (etag, csrf) = (input(&page.body, "etag"), input(&page.body, "csrf"));
    let path = format!("/console/registrations/{}/withdraw", pending.id);
    let form = [
        ("csrf", csrf.as_str()),
        ("etag", etag.as_str()),
        ("reason", "Project cancelled"),
    ];
    let done = call(&app, "POST", &path, Some(&cookie), &form).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let shown = call(&app, "GET", &done.location.unwrap(), Some(&cookie), &[]).await;
    assert!(shown.body.contains("Withdrawn.") && shown.body.contains("Project cancelled"));
    assert_eq!(
        app.get(&pending.id).await.state,
        pb::RegistrationState::Withdrawn as i32
    );
    let again = call(&app, "POST", &path, Some(&cookie), &form).await;
    assert_eq!(again.status, 409);
    assert!(alert(&again.body).contains("Not withdrawn"), "{}", again.body);

    // Renew an active registration: a renewal revision goes to review.
    let page = call(
        &app,
        "GET",
        &format!("/console/registrations/{}", active.id),
        Some(&cookie),
        &[],
    )
    .await;
    let etag = input(&page.body, "etag");
    let path = format!("/console/registrations/{}/renew", active.id);
    let bad = [
        ("csrf", csrf.as_str()),
        ("etag", etag.as_str()),
        ("valid_until", "next year"),
    ];
    let refused = call(&app, "POST", &path, Some(&cookie), &bad).await;
    assert!(alert(&refused.body).contains("not a date"), "{}", refused.body);
    let until = (time::OffsetDateTime::now_utc() + time::Duration::days(700))
        .date()
        .to_string();
    let form = [
        ("csrf", csrf.as_str()),
        ("etag", etag.as_str()),
        ("valid_until", until.as_str()),
    ];
    let renewed = call(&app, "POST", &path, Some(&cookie), &form).await;
    assert_eq!(renewed.status, 303, "{}", renewed.body);
    let revision = app.get(&active.id).await.pending_revision.expect("a renewal under way");
    assert!(revision.is_renewal);

    // The form: the API's violations beside their fields, values kept.
    let form_page = call(&app, "GET", "/console/registrations/new", Some(&cookie), &[]).await;
    let request_id = input(&form_page.body, "request_id");
    let submit = [
        ("csrf", csrf.as_str()),
        ("request_id", request_id.as_str()),
        ("kind", "VPN"),
        ("protocol", "OPENVPN"),
        ("source_prefixes", "1.1.1.0/24\r\n192.168.1.0/24"),
        ("isp", "ptcl"),
        ("isp_subscriber_id", "SUB-9"),
        ("purpose", ""),
        ("valid_until", until.as_str()),
    ];
    let refused = call(&app, "POST", "/console/registrations/new", Some(&cookie), &submit).await;
    assert_eq!(refused.status, 422);
    assert!(violation(&refused.body, "source_prefixes").starts_with("Line 2: 192.168.1.0/24"));
    assert_eq!(violation(&refused.body, "purpose"), "is required");
    assert_eq!(violation(&refused.body, "isp_subscriber_id"), "");
    assert!(refused.body.contains("SUB-9"), "what was typed is kept");
}

#[sqlx::test]
async fn reviewers_filter_the_queue_and_suspend_reinstate_and_revoke(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let waiting = app.submit(&bank, &["8.8.8.0/24"]).await;
    app.attest(&waiting, true).await.unwrap();
    let active = app.active(&bank, &["8.8.4.0/24"]).await;
    let reviewer = app.reviewer_token().await.to_owned();
    let cookie = sign_in(&app, &reviewer).await;

    let queue = |query: &'static str| {
        let (app, cookie) = (&app, cookie.clone());
        async move {
            call(app, "GET", &format!("/console/review{query}"), Some(&cookie), &[])
                .await
                .body
        }
    };
    let all = queue("").await;
    assert!(all.contains(&waiting.reference) && all.contains("new registration") && all.contains("minute"));
    assert!(!all.contains(&active.reference), "only what waits for review");
    assert!(
        queue("?isp=ptcl&category=BANK&kind=VPN")
            .await
            .contains(&waiting.reference)
    );
    assert!(!queue("?isp=nayatel").await.contains(&waiting.reference));
    assert!(!queue("?category=FREELANCER").await.contains(&waiting.reference));
    assert!(
        !queue("?days=3").await.contains(&waiting.reference),
        "nothing has waited 3 days"
    );
    let bad = call(&app, "GET", "/console/review?isp=Not+an+ISP", Some(&cookie), &[]).await;
    assert_eq!(
        bad.status, 400,
        "a bad filter is the API's INVALID_ARGUMENT: {}",
        bad.body
    );
    assert!(alert(&bad.body).contains("isp"), "{}", bad.body);

    // An amendment of a registration in force: a diff against that version.
    let amended = app.active(&bank, &["8.8.2.0/24"]).await;
    let changed = pb::Registration {
        purpose: "Treasury dealer terminals".into(),
        ..amended.clone()
    };
    app.registrations(Some(&bank))
        .amend_registration(amend_request(changed, &["purpose"]))
        .await
        .unwrap();
    app.attest(&app.get(&amended.id).await, true).await.unwrap();
    let in_queue = queue("").await;
    assert!(in_queue.contains(&amended.reference) && in_queue.contains("amendment of an active registration"));
    let diff = call(
        &app,
        "GET",
        &format!("/console/review/{}", amended.id),
        Some(&cookie),
        &[],
    )
    .await
    .body;
    let row = |field: &str| {
        let at = diff
            .find(&format!("<td>{field}"))
            .unwrap_or_else(|| panic!("no {field} row in {diff}"));
        diff[at..at + diff[at..].find("</tr>").unwrap()].to_owned()
    };
    let purpose = row("Purpose");
    assert!(purpose.contains("(changed)"), "{purpose}");
    assert!(
        purpose.contains(&format!("<del>{}</del>", amended.purpose)),
        "{purpose}"
    );
    assert!(purpose.contains("<ins>Treasury dealer terminals</ins>"), "{purpose}");
    assert!(!row("Source addresses").contains("(changed)"));

    let path = format!("/console/review/{}", active.id);
    let decide = |decision: &'static str, code: &'static str| {
        let (app, cookie, path) = (&app, cookie.clone(), path.clone());
        async move {
            let page = call(app, "GET", &path, Some(&cookie), &[]).await;
            let (etag, csrf, request_id) = (
                input(&page.body, "etag"),
                input(&page.body, "csrf"),
                input(&page.body, "request_id"),
            );
            let form = [
                ("csrf", csrf.as_str()),
                ("etag", etag.as_str()),
                ("request_id", request_id.as_str()),
                ("decision", decision),
                ("reason_code", code),
                ("reason", "Seen in an abuse report"),
            ];
            (page.body.clone(), call(app, "POST", &path, Some(&cookie), &form).await)
        }
    };
    let (page, no_code) = decide("suspend", "").await;
    assert!(
        page.contains("value=\"suspend\"") && !page.contains("value=\"approve\""),
        "only open decisions"
    );
    assert!(alert(&no_code.body).contains("Not suspended"), "{}", no_code.body);
    assert!(
        alert(&no_code.body).contains("reason_code"),
        "the API's violation: {}",
        no_code.body
    );
    for (decision, code, state) in [
        ("suspend", "SECURITY_CONCERN", pb::RegistrationState::Suspended),
        ("reinstate", "COMPLIANT", pb::RegistrationState::Active),
        ("revoke", "POLICY_VIOLATION", pb::RegistrationState::Revoked),
    ] {
        let (_, done) = decide(decision, code).await;
        assert_eq!(done.status, 303, "{decision}: {}", done.body);
        assert_eq!(app.get(&active.id).await.state, state as i32, "{decision}");
    }
    let history = call(&app, "GET", &path, Some(&cookie), &[]).await.body;
    for shown in [
        "Suspended",
        "Reinstated",
        "Revoked",
        "Security concern",
        "Seen in an abuse report",
    ] {
        assert!(history.contains(shown), "{shown} in the history");
    }
    assert!(history.contains("No decision is open"));
}

#[sqlx::test]
async fn administrators_enrol_and_edit_institutions_and_list_isps(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin().await;
    let cookie = sign_in(&app, &admin).await;
    let blank = call(&app, "GET", "/console/institutions/new", Some(&cookie), &[]).await;
    let (csrf, request_id) = (input(&blank.body, "csrf"), input(&blank.body, "request_id"));
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("request_id", request_id.as_str()),
        ("category", "BANK"),
        ("legal_name", "Bank of the Indus"),
        ("cnic", "35202-1234567-1"),
        ("sbp_licence", "SBP/BPRD/9"),
        ("contact_email", "it@indus.example.pk"),
        ("contact_phone", "0300 1234567"),
    ];
    let refused = call(&app, "POST", "/console/institutions/new", Some(&cookie), &form).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(violation(&refused.body, "ntn").contains("required"), "{}", refused.body);
    form.push(("ntn", "1234567-8"));
    let created = call(&app, "POST", "/console/institutions/new", Some(&cookie), &form).await;
    assert_eq!(created.status, 303, "{}", created.body);
    let list = call(&app, "GET", "/console/institutions?category=BANK", Some(&cookie), &[]).await;
    assert!(list.body.contains("Bank of the Indus"), "{}", list.body);
    let id = {
        let at = list
            .body
            .find("/console/institutions/0")
            .expect("a link to the institution");
        list.body[at + 22..at + 22 + 36].to_owned()
    };

    let edit = call(&app, "GET", &format!("/console/institutions/{id}"), Some(&cookie), &[]).await;
    let etag = input(&edit.body, "etag");
    let changed = [
        ("csrf", csrf.as_str()),
        ("etag", etag.as_str()),
        ("category", "BANK"),
        ("legal_name", "Bank of the Indus"),
        ("cnic", "3520212345671"),
        ("ntn", "1234567-8"),
        ("sbp_licence", "SBP/BPRD/9"),
        ("contact_email", "noc@indus.example.pk"),
        ("contact_phone", "+923001234567"),
    ];
    let path = format!("/console/institutions/{id}");
    let saved = call(&app, "POST", &path, Some(&cookie), &changed).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let stored = app
        .institutions(Some(&admin))
        .get_institution(pb::GetInstitutionRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.contact_email, "noc@indus.example.pk");
    let unchanged = call(&app, "POST", &path, Some(&cookie), &changed).await;
    assert!(
        alert(&unchanged.body).contains("Nothing was changed"),
        "{}",
        unchanged.body
    );
    let mut moved = changed.to_vec();
    moved[7] = ("contact_email", "desk@indus.example.pk");
    let stale = call(&app, "POST", &path, Some(&cookie), &moved).await;
    assert!(
        alert(&stale.body).contains("changed since you opened the form"),
        "{}",
        stale.body
    );

    let isps = call(&app, "GET", "/console/isps", Some(&cookie), &[]).await;
    assert!(isps.body.contains("<code>ptcl</code>"), "{}", isps.body);

    // Other roles: the permission table, through the same gate.
    let (_, bank) = app.enrol(C::Bank).await;
    let applicant = sign_in(&app, &bank).await;
    let form_page = call(&app, "GET", "/console/registrations", Some(&applicant), &[]).await;
    let their_csrf = input(&form_page.body, "csrf");
    form[0] = ("csrf", their_csrf.as_str());
    let denied = call(&app, "POST", "/console/institutions/new", Some(&applicant), &form).await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let queue = call(&app, "GET", "/console/review", Some(&applicant), &[]).await;
    assert_eq!(queue.status, 403, "{}", queue.body);
}

#[sqlx::test]
async fn a_person_signing_in_again_and_again_ends_only_their_own_oldest_session(pool: PgPool) {
    let app = spawn_app(pool).await;
    let reviewer = app.reviewer_token().await.to_owned();
    let kept = sign_in(&app, &reviewer).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let person = app.person_like(&bank).await;
    let mut sessions = Vec::new();
    for _ in 0..12 {
        let page = try_sign_in(&app, &person.email, &person.password, "").await;
        assert_eq!(page.status, 303);
        sessions.push(page.set_cookie.unwrap().split(';').next().unwrap().to_owned());
    }
    let mut open = Vec::new();
    for cookie in &sessions {
        let page = call(&app, "GET", "/console/registrations", Some(cookie), &[]).await;
        open.push(page.status == 200);
    }
    assert_eq!(
        open,
        [[false; 4].as_slice(), &[true; 8]].concat(),
        "its eight newest stay"
    );
    let review = call(&app, "GET", "/console/review", Some(&kept), &[]).await;
    assert_eq!(review.status, 200, "another principal's session stays");
}

#[sqlx::test]
async fn a_sign_in_form_whose_token_does_not_match_its_cookie_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let person = app.person_like(&bank).await;
    let (cookie, _) = public_form(&app, "/console/sign-in").await;
    let form = [
        ("email", person.email.as_str()),
        ("password", person.password.as_str()),
        ("csrf", "chosen-by-the-attacker"),
    ];
    let forged = call(&app, "POST", "/console/sign-in", Some(&cookie), &form).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let page = call(&app, "GET", "/console/sign-in", None, &[]).await;
    assert_eq!(
        page.nosniff.as_deref(),
        Some("nosniff"),
        "console pages are never sniffed"
    );
}

#[sqlx::test]
async fn long_lists_are_paged(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, company) = app.enrol(C::Company).await;
    for x in 0..26 {
        app.submit(&company, &[&format!("9.9.{x}.0/24")]).await;
    }
    let cookie = sign_in(&app, &company).await;
    let rows = |html: &str| html.matches("<td><a href=\"/console/registrations/").count();
    let first = call(&app, "GET", "/console/registrations", Some(&cookie), &[])
        .await
        .body;
    assert_eq!(rows(&first), 25);
    let at = first
        .find("/console/registrations?after=")
        .expect("a link to the next page");
    let next = &first[at..at + first[at..].find('"').unwrap()];
    let second = call(&app, "GET", next, Some(&cookie), &[]).await.body;
    assert_eq!(rows(&second), 1);
    assert!(!second.contains("Next page"));
}

#[sqlx::test]
async fn a_long_history_is_paged(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let mut r = app.submit(&bank, &["8.8.8.0/24"]).await;
    for n in 0..100 {
        let changed = pb::Registration {
            purpose: format!("Remote access, revision {n}"),
            ..r.clone()
        };
        r = app
            .registrations(Some(&bank))
            .amend_registration(amend_request(changed, &["purpose"]))
            .await
            .unwrap()
            .into_inner();
    }
    let reviewer = app.reviewer_token().await.to_owned();
    for (token, path) in [
        (bank.as_str(), format!("/console/registrations/{}", r.id)),
        (reviewer.as_str(), format!("/console/review/{}", r.id)),
    ] {
        let cookie = sign_in(&app, token).await;
        let first = call(&app, "GET", &path, Some(&cookie), &[]).await.body;
        // 101 events: the submission and 100 amendments, 100 a page.
        let last = "revision 98 → Remote access, revision 99";
        assert!(first.contains("revision 97 → Remote access, revision 98"), "{path}");
        assert!(!first.contains(last), "{path}");
        let at = first.find("?events_after=").expect("a link to later events");
        let next = format!("{path}{}", &first[at..at + first[at..].find('"').unwrap()]);
        let later = call(&app, "GET", &next, Some(&cookie), &[]).await.body;
        assert!(later.contains(last), "{next}");
        assert!(!later.contains("?events_after="));
    }
}

#[sqlx::test]
async fn administrators_see_the_outbox_and_institutions_their_webhooks(pool: PgPool) {
    let app = TestApp::builder(pool)
        .options(|o| o.webhook_allow_private = true)
        .start()
        .await;
    let (_, token) = app.enrol(C::Bank).await;
    // A webhook nobody answers (a closed port): its delivery waits for a retry.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    app.webhooks(Some(&token))
        .create_webhook(pb::CreateWebhookRequest {
            webhook: Some(pb::Webhook {
                url: format!("http://{closed}/hook"),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let r = app.submit(&token, &["8.8.8.0/24"]).await;
    eventually(
        "the webhook delivery failed once",
        std::time::Duration::from_secs(10),
        || async {
            let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM notifications WHERE channel = 'webhook'")
                .fetch_one(&app.pool)
                .await
                .ok()?;
            (attempts > 0).then_some(())
        },
    )
    .await;

    let admin = app.admin().await;
    let cookie = sign_in(&app, &admin).await;
    let outbox = call(&app, "GET", "/console/notifications", Some(&cookie), &[]).await;
    assert_eq!(outbox.status, 200, "{}", outbox.body);
    assert!(outbox.body.contains(&r.reference), "{}", outbox.body);
    assert!(outbox.body.contains("registration.submitted"));
    assert!(outbox.body.contains("KEPT"), "the e-mail, kept without a mail server");
    assert!(
        outbox.body.contains("PENDING"),
        "the webhook delivery, waiting for its retry"
    );

    let cookie = sign_in(&app, &token).await;
    let hooks = call(&app, "GET", "/console/webhooks", Some(&cookie), &[]).await;
    assert_eq!(hooks.status, 200, "{}", hooks.body);
    assert!(hooks.body.contains(&format!("http://{closed}/hook")), "{}", hooks.body);
    assert!(
        hooks.body.contains(&r.reference) && hooks.body.contains("PENDING"),
        "{}",
        hooks.body
    );
    // The outbox is for administrators only.
    let refused = call(&app, "GET", "/console/notifications", Some(&cookie), &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
}

#[sqlx::test]
async fn a_browser_at_the_front_door_is_sent_to_the_console(pool: PgPool) {
    let app = spawn_app(pool).await;
    for path in ["/", "/console", "/console/"] {
        let page = call(&app, "GET", path, None, &[]).await;
        assert_eq!(page.status, 303, "{path}: {}", page.body);
        assert_eq!(page.location.as_deref(), Some("/console/home"), "{path}");
    }
    // Followed without a session: the sign-in page.
    let home = call(&app, "GET", "/console/home", None, &[]).await;
    assert!(
        home.status == 200 || home.location.as_deref() == Some("/console/sign-in"),
        "{}",
        home.body
    );
    // gRPC is untouched (a path that names no method stays UNIMPLEMENTED).
    let odd = call(&app, "POST", "/", None, &[]).await;
    assert_ne!(odd.status, 303);
}

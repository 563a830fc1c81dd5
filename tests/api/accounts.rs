//! People: self-registration, invitations, members, password resets,
//! second factors, throttled sign-ins and shared sessions, through the
//! console over real HTTP, with the e-mails read from a real SMTP server.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use time::OffsetDateTime;
use vpn_registry::auth::totp;
use vpn_registry::pb::{self, InstitutionCategory as C};

use crate::helpers::*;
use crate::notifications::{Mailbox, app_mailing_to};
use crate::web::*;

/// The console path (and query) of the link in a message.
fn link_in(message: &serde_json::Value) -> String {
    let text = message["text"].as_str().unwrap();
    let at = text
        .find("https://registry.example.pk/")
        .expect("a link in the message");
    let url = text[at..].split_whitespace().next().unwrap();
    url.trim_start_matches("https://registry.example.pk").to_owned()
}

/// Follows a link's confirmation page: the form's token, then posts it.
async fn post_link(app: &TestApp, link: &str, extra: &[(&str, &str)]) -> Page {
    let (path, query) = link.split_once('?').unwrap();
    let token = query.trim_start_matches("token=");
    // A used or expired link's page says so; any of our forms' tokens
    // still shows what posting it does.
    let opened = call(app, "GET", link, None, &[]).await.status;
    let (cookie, csrf) = public_form(app, if opened == 200 { link } else { "/console/sign-in" }).await;
    let mut form = vec![("token", token), ("csrf", csrf.as_str())];
    form.extend_from_slice(extra);
    call(app, "POST", path, Some(&cookie), &form).await
}

/// A freelancer's sign-up form.
fn freelancer<'a>(email: &'a str, cnic: &'a str, password: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("category", "FREELANCER"),
        ("legal_name", "Ayesha Khan"),
        ("cnic", cnic),
        ("contact_phone", "+923001234567"),
        ("language", "ENGLISH"),
        ("name", "Ayesha Khan"),
        ("email", email),
        ("password", password),
    ]
}

async fn sign_up(app: &TestApp, form: &[(&str, &str)]) -> Page {
    let (cookie, csrf) = public_form(app, "/console/sign-up").await;
    let mut form = form.to_vec();
    form.push(("csrf", csrf.as_str()));
    call(app, "POST", "/console/sign-up", Some(&cookie), &form).await
}

async fn audited(app: &TestApp, action: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE subject_type IN ('user', 'institution') AND action = $1",
    )
    .bind(action)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_freelancer_signs_up_verifies_and_signs_in_and_duplicates_are_refused(pool: PgPool) {
    let mailbox = Mailbox::start(0).await;
    let app = app_mailing_to(pool, &mailbox).await;
    let weak = sign_up(
        &app,
        &freelancer("ayesha@example.pk", "35202-1234567-1", "password1234"),
    )
    .await;
    assert_eq!(weak.status, 422);
    assert!(
        violation(&weak.body, "password").contains("too easy to guess"),
        "{}",
        weak.body
    );
    let bad_cnic = sign_up(&app, &freelancer("ayesha@example.pk", "1234", GOOD_PASSWORD)).await;
    assert_eq!(bad_cnic.status, 422);
    assert!(
        !violation(&bad_cnic.body, "cnic").is_empty(),
        "validated as CreateInstitution: {}",
        bad_cnic.body
    );

    let done = sign_up(&app, &freelancer("Ayesha@Example.pk", "35202-1234567-1", GOOD_PASSWORD)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let institutions: i64 = sqlx::query_scalar("SELECT count(*) FROM institutions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(institutions, 0, "nothing is created before the address is confirmed");
    let mail = mailbox.wait_to("Ayesha@example.pk", 1).await;
    let link = link_in(&mail[0]);
    assert!(link.starts_with("/console/sign-up/verify?token="), "{link}");
    // Opening the link only asks; the button confirms, once.
    let opened = call(&app, "GET", &link, None, &[]).await;
    assert!(opened.body.contains("Confirm"), "{}", opened.body);
    let confirmed = post_link(&app, &link, &[]).await;
    assert_eq!(
        confirmed.location.as_deref(),
        Some("/console/sign-in?done=verified"),
        "{}",
        confirmed.body
    );
    let again = post_link(&app, &link, &[]).await;
    assert_eq!(again.status, 410, "a link works once");

    let page = try_sign_in(&app, "ayesha@example.pk", GOOD_PASSWORD, "").await;
    assert_eq!(
        page.location.as_deref(),
        Some("/console/registrations"),
        "{}",
        page.body
    );
    let admin = app.admin().await;
    let listed = app
        .institutions(Some(&admin))
        .list_institutions(pb::ListInstitutionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .institutions;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].self_registered, "reviewers see the mark");
    assert_eq!(listed[0].category, C::Freelancer as i32);

    // The same CNIC or address again: refused, without naming the holder.
    let (other, _) = app.enrol(C::ItCompany).await;
    let cnic_taken = sign_up(&app, &freelancer("someone@example.pk", &other.cnic, GOOD_PASSWORD)).await;
    assert_eq!(cnic_taken.status, 409, "{}", cnic_taken.body);
    assert!(alert(&cnic_taken.body).contains("already registered"));
    assert!(!cnic_taken.body.contains(&other.legal_name), "the holder is not named");
    let email_taken = sign_up(&app, &freelancer("AYESHA@example.pk", "42101-7654321-3", GOOD_PASSWORD)).await;
    assert_eq!(email_taken.status, 409, "{}", email_taken.body);
    // Banks are enrolled by the regulator.
    let mut bank = freelancer("bank@example.pk", "42101-7654321-3", GOOD_PASSWORD);
    bank[0] = ("category", "BANK");
    let refused = sign_up(&app, &bank).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(audited(&app, "SIGNED_IN").await, 1);
}

#[sqlx::test]
async fn an_owner_invites_a_member_who_sees_the_institution_but_manages_nothing(pool: PgPool) {
    let mailbox = Mailbox::start(0).await;
    let app = app_mailing_to(pool, &mailbox).await;
    let (bank, token) = app.enrol(C::Bank).await;
    let mine = app.submit(&token, &["8.8.8.0/24"]).await;
    let (_, other_token) = app.enrol(C::Company).await;
    let theirs = app.submit(&other_token, &["9.9.9.0/24"]).await;
    let owner = sign_in(&app, &token).await;

    let members = call(&app, "GET", "/console/members", Some(&owner), &[]).await;
    assert_eq!(members.status, 200, "{}", members.body);
    let csrf = input(&members.body, "csrf");
    let form = [
        ("csrf", csrf.as_str()),
        ("email", "omar@bank.example.pk"),
        ("role", "MEMBER"),
    ];
    let invited = call(&app, "POST", "/console/members/invite", Some(&owner), &form).await;
    assert_eq!(
        invited.location.as_deref(),
        Some("/console/members?done=invited"),
        "{}",
        invited.body
    );
    let mail = mailbox.wait_to("omar@bank.example.pk", 1).await;
    assert!(mail[0]["text"].as_str().unwrap().contains(&bank.legal_name));
    let link = link_in(&mail[0]);
    let joined = post_link(&app, &link, &[("name", "Omar Farooq"), ("password", GOOD_PASSWORD)]).await;
    assert_eq!(
        joined.location.as_deref(),
        Some("/console/sign-in?done=joined"),
        "{}",
        joined.body
    );
    let used = post_link(&app, &link, &[("name", "Omar"), ("password", GOOD_PASSWORD)]).await;
    assert_eq!(used.status, 410);

    let page = try_sign_in(&app, "omar@bank.example.pk", GOOD_PASSWORD, "").await;
    let member = cookie_of(&page.set_cookie.expect("signed in"));
    let list = call(&app, "GET", "/console/registrations", Some(&member), &[]).await;
    assert!(list.body.contains(&mine.reference), "{}", list.body);
    assert!(!list.body.contains(&theirs.reference), "nobody else's");
    for path in ["/console/keys", "/console/members"] {
        let refused = call(&app, "GET", path, Some(&member), &[]).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
    }
    assert!(!list.body.contains("/console/keys"), "no keys link for a member");

    // The only owner cannot step down; after handing ownership on, can.
    let owner_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE owner")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let member_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email_key = 'omar@bank.example.pk'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let change = |user: uuid::Uuid, action: &'static str| {
        let (app, owner, csrf) = (&app, owner.clone(), csrf.clone());
        async move {
            let user = user.to_string();
            let form = [("csrf", csrf.as_str()), ("user", user.as_str()), ("action", action)];
            call(app, "POST", "/console/members", Some(&owner), &form).await
        }
    };
    let last = change(owner_id, "member").await;
    assert_eq!(last.status, 409, "{}", last.body);
    assert!(alert(&last.body).contains("at least one owner"), "{}", last.body);
    assert_eq!(change(member_id, "owner").await.status, 303);
    assert_eq!(change(owner_id, "member").await.status, 303);
    assert_eq!(audited(&app, "ROLE_CHANGED").await, 2);
    assert_eq!(audited(&app, "INVITED").await, 1);
    // No longer an owner: the members page is closed to the former owner.
    let closed = call(&app, "GET", "/console/members", Some(&owner), &[]).await;
    assert_eq!(closed.status, 403);
}

#[sqlx::test]
async fn a_reset_link_works_once_and_ends_every_session(pool: PgPool) {
    let mailbox = Mailbox::start(0).await;
    let app = app_mailing_to(pool, &mailbox).await;
    let (_, token) = app.enrol(C::Company).await;
    let person = app.person_like(&token).await;
    let before = sign_in_person(&app, &person).await;

    let (cookie, csrf) = public_form(&app, "/console/password-reset").await;
    let asked = |email: &'static str| {
        let (app, cookie, csrf) = (&app, cookie.clone(), csrf.clone());
        async move {
            let form = [("csrf", csrf.as_str()), ("email", email)];
            call(app, "POST", "/console/password-reset", Some(&cookie), &form).await
        }
    };
    let unknown = asked("nobody@example.pk").await;
    let email: &'static str = Box::leak(person.email.clone().into_boxed_str());
    let known = asked(email).await;
    assert_eq!((unknown.status, known.status), (200, 200));
    assert_eq!(alert(&unknown.body), alert(&known.body), "the same answer either way");
    let mail = mailbox.wait_to(&person.email, 1).await;
    let link = link_in(&mail[0]);
    let new_password = "harbour violet copper nineteen";
    let weak = post_link(&app, &link, &[("password", "short")]).await;
    assert_eq!(weak.status, 422);
    let reset = post_link(&app, &link, &[("password", new_password)]).await;
    assert_eq!(
        reset.location.as_deref(),
        Some("/console/sign-in?done=reset"),
        "{}",
        reset.body
    );
    let again = post_link(&app, &link, &[("password", "another fine long passphrase")]).await;
    assert_eq!(again.status, 410, "a reset link works once");

    let ended = call(&app, "GET", "/console/registrations", Some(&before), &[]).await;
    assert_eq!(ended.status, 303, "the old session ended");
    let old = try_sign_in(&app, &person.email, GOOD_PASSWORD, "").await;
    assert_eq!(old.status, 401);
    let new = try_sign_in(&app, &person.email, new_password, "").await;
    assert_eq!(new.status, 303, "{}", new.body);
    assert_eq!(audited(&app, "PASSWORD_RESET").await, 1);
}

/// The page with what changes per request (form tokens, the echoed
/// address) blanked.
fn shape(page: &Page, email: &str) -> (u16, String) {
    let mut body = page.body.replace(email, "EMAIL");
    while let Some(at) = body.find("name=\"csrf\" value=\"") {
        let start = at + 19;
        let end = start + body[start..].find('"').unwrap();
        body.replace_range(at..=end, "CSRF");
    }
    (page.status, body)
}

#[sqlx::test]
async fn an_unknown_address_and_a_wrong_password_answer_alike(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;
    // A fresh account and a fresh unknown address each round: neither
    // reaches the per-address delay. Made before anything is timed.
    let rounds = 11;
    let mut people = Vec::new();
    for _ in 0..rounds {
        people.push(app.person_like(&token).await);
    }
    let mut differences = Vec::new();
    let mut durations = Vec::new();
    let mut shapes = Vec::new();
    for (round, person) in people.iter().enumerate() {
        let nobody = format!("nobody-{round}@example.pk");
        let unknown_first = round % 2 == 0;
        let mut timed = Vec::new();
        for unknown in [unknown_first, !unknown_first] {
            let email = if unknown {
                nobody.as_str()
            } else {
                person.email.as_str()
            };
            let password = if unknown {
                GOOD_PASSWORD
            } else {
                "not the right password"
            };
            let started = Instant::now();
            let page = try_sign_in(&app, email, password, "").await;
            timed.push((unknown, started.elapsed(), shape(&page, email)));
        }
        timed.sort_by_key(|(unknown, ..)| !unknown);
        let (unknown, wrong) = (&timed[0], &timed[1]);
        // Each round's difference, its order alternating: a machine busy
        // with other tests slows both sides of a round alike.
        differences.push(unknown.1.as_secs_f64() - wrong.1.as_secs_f64());
        durations.push(wrong.1.as_secs_f64());
        shapes.push((unknown.2.clone(), wrong.2.clone()));
    }
    for (unknown, wrong) in &shapes {
        assert_eq!(unknown.0, 401);
        assert_eq!(unknown, wrong, "status and body alike");
    }
    differences.sort_by(f64::total_cmp);
    durations.sort_by(f64::total_cmp);
    let median = differences[differences.len() / 2];
    let sign_in = durations[durations.len() / 2];
    // Both verify one argon2id hash (tens of milliseconds) and record one
    // failure: what differs is noise. A leak would be the hash itself
    // missing from one side (the whole of a sign-in's time), so the bound
    // is a share of it (which a machine busy with other tests stretches
    // alike, and its database writes more than its hashing): half of it,
    // as a clean-clone CI run under load measured 43% once.
    assert!(
        median.abs() < 0.010_f64.max(0.5 * sign_in),
        "median difference {median:.4} s (a sign-in: {sign_in:.4} s) over {differences:?}"
    );
}

#[sqlx::test]
async fn failed_sign_ins_slow_an_address_down_without_locking_its_owner_out(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;
    let person = app.person_like(&token).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let page = try_sign_in(&app, &person.email, "guess guess guess", "").await;
        statuses.push(page.status);
        if page.status == 429 {
            assert!(alert(&page.body).contains("try again in"), "{}", page.body);
        }
    }
    assert_eq!(statuses[..5], [401; 5], "the first failures are heard at once");
    assert!(statuses[5..].iter().all(|s| *s == 429), "then they wait: {statuses:?}");
    // Even the right password waits its turn...
    let waiting = try_sign_in(&app, &person.email, &person.password, "").await;
    assert_eq!(waiting.status, 429);
    // ...but never longer than the cap: a quarter of an hour later it works.
    sqlx::query("UPDATE sign_in_failures SET last_failure_time = now() - interval '16 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    let back = try_sign_in(&app, &person.email, &person.password, "").await;
    assert_eq!(back.status, 303, "{}", back.body);
    let failures = audited(&app, "SIGN_IN_FAILED").await;
    assert_eq!(failures, 5, "each failure heard is audited");
}

#[sqlx::test]
async fn codes_outside_their_window_or_used_twice_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let reviewer = app.reviewer_token().await.to_owned();
    let person = app.person_like(&reviewer).await;
    let secret = person.totp.clone().unwrap();
    let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    let missing = try_sign_in(&app, &person.email, &person.password, "").await;
    assert_eq!(missing.status, 401, "an enrolled second factor is required");
    let late = try_sign_in(
        &app,
        &person.email,
        &person.password,
        &totp::code_at(&secret, now - 120),
    )
    .await;
    assert_eq!(late.status, 401, "two steps old");
    let early = try_sign_in(
        &app,
        &person.email,
        &person.password,
        &totp::code_at(&secret, now + 120),
    )
    .await;
    assert_eq!(early.status, 401, "two steps ahead");
    let code = person.code();
    let first = try_sign_in(&app, &person.email, &person.password, &code).await;
    assert_eq!(first.status, 303, "{}", first.body);
    let reused = try_sign_in(&app, &person.email, &person.password, &code).await;
    assert_eq!(reused.status, 401, "a code works once");
}

#[sqlx::test]
async fn staff_enrol_a_second_factor_before_anything_else(pool: PgPool) {
    let app = spawn_app(pool).await;
    // A reviewer who accepted an invitation and has no second factor yet.
    let person = app.person_in(vpn_registry::domain::account::Membership::Reviewer).await;
    sqlx::query("UPDATE users SET totp_secret = NULL, totp_last_step = NULL WHERE id = $1")
        .bind(person.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let page = try_sign_in(&app, &person.email, &person.password, "").await;
    assert_eq!(page.location.as_deref(), Some("/console/account/second-factor"));
    let cookie = cookie_of(&page.set_cookie.unwrap());
    let queue = call(&app, "GET", "/console/review", Some(&cookie), &[]).await;
    assert_eq!(queue.location.as_deref(), Some("/console/account/second-factor"));
    let enrol = call(&app, "GET", "/console/account/second-factor", Some(&cookie), &[]).await;
    assert!(enrol.body.contains("<svg"), "a QR code");
    let (csrf, key) = (input(&enrol.body, "csrf"), input(&enrol.body, "secret"));
    let secret = totp::decode_secret(&key).unwrap();
    let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    let wrong = [("csrf", csrf.as_str()), ("secret", key.as_str()), ("code", "000000")];
    let refused = call(&app, "POST", "/console/account/second-factor", Some(&cookie), &wrong).await;
    assert_eq!(refused.status, 422);
    let code = totp::code_at(&secret, now);
    let form = [
        ("csrf", csrf.as_str()),
        ("secret", key.as_str()),
        ("code", code.as_str()),
    ];
    let enrolled = call(&app, "POST", "/console/account/second-factor", Some(&cookie), &form).await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.body);
    let codes = enrolled.body.matches("<li><code>").count();
    assert_eq!(codes, 10, "ten recovery codes, shown once");
    let queue = call(&app, "GET", "/console/review", Some(&cookie), &[]).await;
    assert_eq!(queue.status, 200, "{}", queue.body);
    // A recovery code signs in once, in place of the app's code.
    let at = enrolled.body.find("<li><code>").unwrap() + 10;
    let recovery = &enrolled.body[at..at + enrolled.body[at..].find('<').unwrap()];
    let with_recovery = try_sign_in(&app, &person.email, &person.password, recovery).await;
    assert_eq!(with_recovery.status, 303, "{}", with_recovery.body);
    let again = try_sign_in(&app, &person.email, &person.password, recovery).await;
    assert_eq!(again.status, 401);
    assert_eq!(
        audited(&app, "SECOND_FACTOR_ENROLLED").await,
        2,
        "the helper's and this one"
    );
}

#[sqlx::test]
async fn a_session_works_on_every_replica_and_ends_with_a_password_change(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let replica = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;
    let person = app.person_like(&token).await;
    let first = sign_in_person(&app, &person).await;
    let second = sign_in_person(&app, &person).await;
    let there = call(&replica, "GET", "/console/registrations", Some(&first), &[]).await;
    assert_eq!(there.status, 200, "a session made on one replica works on another");

    let account = call(&replica, "GET", "/console/account", Some(&first), &[]).await;
    assert_eq!(
        account.body.matches("Sign out there").count(),
        1,
        "the other session is listed"
    );
    assert!(account.body.contains("This browser"));
    let csrf = input(&account.body, "csrf");
    let form = [
        ("csrf", csrf.as_str()),
        ("current", person.password.as_str()),
        ("password", "harbour violet copper nineteen"),
    ];
    let changed = call(&app, "POST", "/console/account/password", Some(&first), &form).await;
    assert_eq!(
        changed.location.as_deref(),
        Some("/console/account?done=password"),
        "{}",
        changed.body
    );
    let other = call(&replica, "GET", "/console/registrations", Some(&second), &[]).await;
    assert_eq!(other.status, 303, "the other session ended");
    let this = call(&replica, "GET", "/console/registrations", Some(&first), &[]).await;
    assert_eq!(this.status, 200, "this one stays");
    let out = call(&replica, "POST", "/console/sign-out", Some(&first), &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    let gone = call(&app, "GET", "/console/registrations", Some(&first), &[]).await;
    assert_eq!(gone.status, 303, "signed out everywhere");
}

#[sqlx::test]
async fn an_owner_makes_a_key_in_the_console_that_works_until_revoked(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (bank, token) = app.enrol(C::Bank).await;
    let owner = sign_in(&app, &token).await;
    let keys = call(&app, "GET", "/console/keys", Some(&owner), &[]).await;
    assert_eq!(keys.status, 200, "{}", keys.body);
    let csrf = input(&keys.body, "csrf");
    let form = [("csrf", csrf.as_str()), ("name", "core-banking"), ("days", "30")];
    let made = call(&app, "POST", "/console/keys", Some(&owner), &form).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let marker = "id=\"api-key-secret\">";
    let at = made.body.find(marker).unwrap() + marker.len();
    let secret = made.body[at..at + made.body[at..].find('<').unwrap()].to_owned();
    assert!(secret.starts_with("vpr_"));
    app.wait_until_known(&secret).await;
    let seen = app
        .institutions(Some(&secret))
        .get_institution(pb::GetInstitutionRequest { id: bank.id.clone() })
        .await;
    assert!(seen.is_ok(), "{seen:?}");
    let listed = call(&app, "GET", "/console/keys", Some(&owner), &[]).await;
    assert!(
        listed.body.contains("core-banking") && !listed.body.contains(&secret),
        "never shown again"
    );
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_tokens WHERE name = 'core-banking'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let form = [("csrf", csrf.as_str()), ("action", "revoke")];
    let revoked = call(&app, "POST", &format!("/console/keys/{id}"), Some(&owner), &form).await;
    assert_eq!(
        revoked.location.as_deref(),
        Some("/console/keys?done=revoked"),
        "{}",
        revoked.body
    );
    eventually("the key stops working", Duration::from_secs(5), || async {
        let answer = app
            .institutions(Some(&secret))
            .get_institution(pb::GetInstitutionRequest { id: bank.id.clone() })
            .await;
        matches!(answer, Err(s) if s.code() == tonic::Code::Unauthenticated).then_some(())
    })
    .await;
    let changes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE subject_type = 'token' AND action IN ('ISSUED', 'REVOKED')
            AND actor_role = 'institution'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(changes, 2, "key changes are audited under the person");
}

#[sqlx::test]
async fn idle_sessions_end_and_pruning_forgets_them(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, token) = app.enrol(C::Company).await;
    let person = app.person_like(&token).await;
    let idle = sign_in_person(&app, &person).await;
    let fresh = sign_in_person(&app, &person).await;
    // The first one was last seen 31 minutes ago: idle too long.
    sqlx::query(
        "UPDATE console_sessions SET last_seen_time = now() - interval '31 minutes'
          WHERE create_time = (SELECT min(create_time) FROM console_sessions)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let ended = call(&app, "GET", "/console/registrations", Some(&idle), &[]).await;
    assert_eq!(ended.location.as_deref(), Some("/console/sign-in"));
    let open = call(&app, "GET", "/console/registrations", Some(&fresh), &[]).await;
    assert_eq!(open.status, 200);
    let pruned = vpn_registry::tasks::prune::prune_accounts(&app.pool).await.unwrap();
    assert_eq!(pruned, 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM console_sessions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
}

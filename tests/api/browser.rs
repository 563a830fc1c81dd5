//! The console in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver), against the real server and database. One
//! registration's whole life as its people see it, a screenshot per step
//! under `target/tmp/console-browser/` (`scripts/test` installs chromium and
//! chromium-driver when they are missing).

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use sqlx::PgPool;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::InstitutionCategory as C;

use crate::helpers::*;
use crate::web::Person;

/// chromedriver on a port it chose (`--port=0`), in a process group of its
/// own with the browsers it starts: dropping it (also when a test fails
/// before closing its sessions) kills them all.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/test installs chromium and chromium-driver)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let port = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split("started successfully on port ")
                    .nth(1)
                    .map(|p| p.trim_end_matches('.').to_owned())
            })
            .expect("chromedriver says its port");
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser (its own profile: its own cookies) on the console.
struct Browser {
    client: Client,
    base: String,
    name: &'static str,
}

/// Screenshots in step order, shared by the test's browsers.
static STEP: AtomicUsize = AtomicUsize::new(0);

fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-browser")
}

impl Browser {
    async fn open(driver: &Driver, app: &TestApp, name: &'static str) -> Self {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1100", "--lang=en-GB"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a browser session");
        // This browser's screenshots of an earlier run go (only its own:
        // the browser tests run side by side).
        let mine = format!("-{name}-");
        for shot in std::fs::read_dir(shots_dir()).into_iter().flatten().flatten() {
            if shot.file_name().to_string_lossy().contains(&mine) {
                let _ = std::fs::remove_file(shot.path());
            }
        }
        Self {
            client,
            base: format!("http://{}", app.addr),
            name,
        }
    }

    async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// Saves the whole page as the next step's screenshot.
    async fn shot(&self, what: &str) {
        self.shot_at(1280, what).await;
    }

    /// The whole page at `width` pixels (a phone is about 400).
    async fn shot_at(&self, width: u32, what: &str) {
        let unlabelled = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
                   .filter(e => e.labels.length === 0).map(e => e.name);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(unlabelled, serde_json::json!([]), "every field has a label ({what})");
        // Every page fits a phone's width (no sideways scrolling).
        self.client.set_window_size(400, 900).await.unwrap();
        let sticking_out = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll('body *'))
                   .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
                   .map(e => e.tagName + '#' + e.id);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            sticking_out,
            serde_json::json!([]),
            "{what}: these stick out of a phone's width"
        );
        self.client.set_window_size(width, 1100).await.unwrap();
        let height = self
            .client
            .execute(
                "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight;",
                vec![],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(1100)
            .clamp(600, 4000);
        self.client.set_window_size(width, height as u32).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client.set_window_size(1280, 1100).await.unwrap();
        std::fs::create_dir_all(shots_dir()).unwrap();
        let n = STEP.fetch_add(1, Ordering::SeqCst) + 1;
        std::fs::write(shots_dir().join(format!("{n:02}-{}-{what}.png", self.name)), png).unwrap();
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(found) => found,
            Err(e) => panic!(
                "no {css} on {}: {e}\n{}",
                self.path().await,
                self.client.source().await.unwrap()
            ),
        }
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    async fn body(&self) -> String {
        self.text("main").await
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks and waits for the page it leads to, which must be at `expect_path`.
    async fn click_to(&self, css: &str, expect_path: &str) {
        let old = self.find("html").await;
        self.find(css).await.click().await.unwrap();
        self.until_replaced(old, css).await;
        let path = self.path().await;
        assert!(path.starts_with(expect_path), "{css} led to {path}, not {expect_path}");
    }

    /// Waits until the page whose root is `old` has been replaced (its root
    /// goes stale) and the new one is shown.
    async fn until_replaced(&self, old: fantoccini::elements::Element, after: &str) {
        eventually(
            &format!("{after} leads to another page"),
            Duration::from_secs(10),
            || async { old.tag_name().await.is_err().then_some(()) },
        )
        .await;
        self.find("main h1").await;
    }

    /// Signs in from the keyboard alone: address, password, the app's
    /// code, then Enter.
    async fn sign_in(&self, person: &Person) {
        self.goto("/console/sign-in").await;
        let old = self.find("html").await;
        self.type_into("#email", &person.email).await;
        self.type_into("#password", &person.password).await;
        self.type_into("#code", &format!("{}\u{E007}", person.code())).await;
        self.until_replaced(old, "Enter in the code field").await;
        self.find("header nav").await;
    }

    async fn sign_out(&self) {
        self.click_to("header form button", "/console/sign-in").await;
    }

    /// Sets a date input (WebDriver types dates in the browser's locale
    /// format; the value property is the same everywhere).
    async fn set_date(&self, id: &str, day: &str) {
        self.client
            .execute(
                "document.getElementById(arguments[0]).value = arguments[1];",
                vec![id.into(), day.into()],
            )
            .await
            .unwrap();
    }
}

#[sqlx::test]
async fn a_registration_from_form_to_active_in_a_browser(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (bank, applicant) = app.enrol(C::Bank).await;
    let isp = app.isp_token().await.to_owned();
    let reviewer = app.reviewer_token().await.to_owned();
    let second_reviewer = app.token(Role::Reviewer).await;

    let driver = Driver::start();
    let one = Browser::open(&driver, &app, "first").await;
    let two = Browser::open(&driver, &app, "second").await;

    // The applicant signs in and opens the form.
    one.sign_in(&app.person_like(&applicant).await).await;
    assert!(one.body().await.contains("You have no registrations yet"));
    one.click_to(
        "header nav a[href='/console/registrations/new']",
        "/console/registrations/new",
    )
    .await;

    // Checked as they type: a prefix with host bits set.
    one.find("#f-kind").await.select_by_value("VPN").await.unwrap();
    one.find("#f-protocol")
        .await
        .select_by_value("WIREGUARD")
        .await
        .unwrap();
    one.type_into("#f-source_prefixes", "8.8.8.7/24").await;
    let typed = one.text("#f-source_prefixes-error").await;
    assert!(typed.contains("host bits"), "checked as typed: {typed:?}");
    // Not sent while a field is wrong: the page stays, the field has focus.
    let page = one.find("html").await;
    one.find("form[data-validate] button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(page.tag_name().await.is_ok(), "the form was not sent");
    assert_eq!(app.count("registrations").await, 0, "nothing reached the server");
    let focused = one
        .client
        .execute("return document.activeElement.id;", vec![])
        .await
        .unwrap();
    assert_eq!(focused, serde_json::json!("f-source_prefixes"));
    one.shot("applicant-form-checked-as-typed").await;

    // A well-formed but private prefix: the server's violation, beside the field.
    one.type_into("#f-source_prefixes", "10.20.30.0/24").await;
    assert_eq!(one.text("#f-source_prefixes-error").await, "");
    one.find("#f-isp").await.select_by_value("ptcl").await.unwrap();
    one.type_into("#f-isp_subscriber_id", "SUB-0001").await;
    one.type_into("#f-purpose", "Remote access to head office").await;
    let next_year = (time::OffsetDateTime::now_utc() + time::Duration::days(365)).date();
    one.set_date("f-valid_until", &next_year.to_string()).await;
    one.click_to("form[data-validate] button[type=submit]", "/console/registrations/new")
        .await;
    let violation = one.text("#f-source_prefixes-error").await;
    assert!(
        violation.contains("10.20.30.0/24") && violation.contains("not public"),
        "the server's violation beside the field: {violation:?}"
    );
    assert!(one.text("#form-errors").await.contains("correct the fields"));
    assert_eq!(
        one.find("#f-purpose").await.prop("value").await.unwrap().as_deref(),
        Some("Remote access to head office"),
        "what was typed is kept"
    );
    one.shot("applicant-server-violation").await;

    // Fixed, and submitted.
    one.type_into("#f-source_prefixes", "8.8.8.0/24").await;
    one.click_to("form[data-validate] button[type=submit]", "/console/registrations/")
        .await;
    let id = one.path().await.rsplit('/').next().unwrap().to_owned();
    let reference = app.get(&id).await.reference;
    assert!(one.text(".notice").await.contains("Submitted"));
    assert!(one.text("h1").await.contains(&reference));
    one.shot("applicant-submitted").await;
    one.sign_out().await;

    // The ISP desk confirms.
    one.sign_in(&app.person_like(&isp).await).await;
    assert!(one.body().await.contains(&reference) && one.body().await.contains(&bank.legal_name));
    one.click_to("button[value=confirm]", "/console/isp").await;
    assert!(one.text(".notice").await.contains("confirmed"));
    one.shot("isp-confirmed").await;
    one.sign_out().await;

    // A reviewer finds it in the queue and asks for information.
    one.sign_in(&app.person_like(&reviewer).await).await;
    assert!(one.body().await.contains(&reference) && one.body().await.contains("new registration"));
    one.shot("reviewer-queue").await;
    one.click_to(&format!("a[href='/console/review/{id}']"), "/console/review/")
        .await;
    let detail = one.body().await;
    assert!(
        detail.contains(&bank.legal_name) && detail.contains("Attested by"),
        "{detail}"
    );
    one.find("#reason_code")
        .await
        .select_by_value("INCOMPLETE_INFORMATION")
        .await
        .unwrap();
    one.type_into("#reason", "Which office uses this connection?").await;
    one.shot("reviewer-detail").await;
    one.click_to("button[value=request_information]", "/console/review")
        .await;
    assert!(one.text(".notice").await.contains("information requested"));
    one.sign_out().await;

    // The applicant reads the question and answers it by amending.
    one.sign_in(&app.person_like(&applicant).await).await;
    one.click_to(
        &format!("a[href='/console/registrations/{id}']"),
        "/console/registrations/",
    )
    .await;
    let asked = one.body().await;
    assert!(asked.contains("Which office uses this connection?"), "{asked}");
    one.shot("applicant-request-for-information").await;
    one.click_to(
        &format!("a[href='/console/registrations/{id}/amend']"),
        "/console/registrations/",
    )
    .await;
    one.type_into("#f-purpose", "Remote access for the Karachi head office treasury team")
        .await;
    one.click_to(
        "form[data-validate] button[type=submit]",
        &format!("/console/registrations/{id}"),
    )
    .await;
    assert!(one.text(".notice").await.contains("Amendment sent"));
    one.sign_out().await;

    // Two reviewers open it; the first approves; the second's approval is
    // refused as stale, and the page shows the registration as it is now.
    // (Its documents were verified meanwhile: approvals need them.)
    app.verified_evidence(&id).await;
    one.sign_in(&app.person_like(&reviewer).await).await;
    one.goto(&format!("/console/review/{id}")).await;
    two.sign_in(&app.person_like(&second_reviewer).await).await;
    two.goto(&format!("/console/review/{id}")).await;
    for b in [&one, &two] {
        b.find("#reason_code").await.select_by_value("COMPLIANT").await.unwrap();
        b.type_into("#reason", "Meets the rules for banks").await;
    }
    one.click_to("button[value=approve]", "/console/review").await;
    assert!(one.text(".notice").await.contains("approved"));
    one.shot("reviewer-approved").await;
    two.click_to("button[value=approve]", &format!("/console/review/{id}"))
        .await;
    let refused = two.text("#form-errors").await;
    assert!(
        refused.contains("Not approved") && refused.contains("changed since you opened it"),
        "{refused}"
    );
    assert!(two.body().await.contains("Active"), "reloaded as it is now");
    assert!(
        two.client.find(Locator::Css("button[value=approve]")).await.is_err(),
        "approving is no longer offered"
    );
    two.shot("second-reviewer-stale-refused").await;
    one.sign_out().await;

    // The applicant sees it ACTIVE, with its history.
    one.sign_in(&app.person_like(&applicant).await).await;
    one.goto(&format!("/console/registrations/{id}")).await;
    let active = one.body().await;
    for expected in [
        "Active",
        "Submitted",
        "Attested",
        "Information requested",
        "Amended",
        "Approved",
    ] {
        assert!(active.contains(expected), "{expected} in {active}");
    }
    assert!(active.contains("Which office uses this connection?") && active.contains("PKT"));
    one.shot("applicant-active-with-history").await;
    one.shot_at(400, "applicant-on-a-phone").await;
    assert_eq!(
        app.get(&id).await.state,
        vpn_registry::pb::RegistrationState::Active as i32
    );

    // The administrator's pages (labels and phone width checked as for the rest).
    two.sign_out().await;
    two.sign_in(&app.person_like(&app.admin().await).await).await;
    assert!(two.body().await.contains(&bank.legal_name));
    two.shot("admin-institutions").await;
    two.click_to("a[href='/console/institutions/new']", "/console/institutions/new")
        .await;
    two.shot("admin-enrol-form").await;
    two.click_to("header nav a[href='/console/isps']", "/console/isps")
        .await;
    assert!(two.body().await.contains("ptcl"));
    two.shot("admin-isps").await;

    one.client.close().await.unwrap();
    two.client.close().await.unwrap();
}

#[sqlx::test]
async fn a_freelancer_signs_up_enrols_a_second_factor_and_submits_in_a_browser(pool: PgPool) {
    let mailbox = crate::notifications::Mailbox::start(0).await;
    let mailer = mailbox.mailer();
    // No public URL: links point where the browser reached the server.
    let app = TestApp::builder(pool)
        .options(|o| o.mailer = Some(mailer))
        .start()
        .await;
    let driver = Driver::start();
    let me = Browser::open(&driver, &app, "freelancer").await;

    // A newcomer at the front door lands on the sign-in page, and signs up.
    me.goto("/").await;
    assert_eq!(me.path().await, "/console/sign-in");
    me.click_to("a[href='/console/sign-up']", "/console/sign-up").await;
    me.find("#f-category")
        .await
        .select_by_value("FREELANCER")
        .await
        .unwrap();
    me.type_into("#f-legal_name", "Ayesha Khan").await;
    me.type_into("#f-cnic", "35202-1234567-1").await;
    me.type_into("#f-contact_phone", "0300 1234567").await;
    me.type_into("#f-name", "Ayesha Khan").await;
    me.type_into("#f-email", "ayesha@example.pk").await;
    me.type_into("#f-password", "password1234").await;
    me.shot("sign-up-form").await;
    me.click_to("form[data-validate] button[type=submit]", "/console/sign-up")
        .await;
    assert!(me.text("#f-password-error").await.contains("too easy to guess"));
    me.type_into("#f-password", "lantern orbit mango seventy").await;
    me.click_to("form[data-validate] button[type=submit]", "/console/sign-up")
        .await;
    assert!(me.body().await.contains("we sent a link to ayesha@example.pk"));
    me.shot("sign-up-check-your-mail").await;

    // The e-mailed link, then the button that confirms.
    let mail = mailbox.wait_to("ayesha@example.pk", 1).await;
    let text = mail[0]["text"].as_str().unwrap();
    let at = text.find("http://").expect("a link");
    let link = text[at..].split_whitespace().next().unwrap();
    let path = &link[link.find("/console/").unwrap()..];
    me.goto(path).await;
    me.click_to("main form button[type=submit]", "/console/sign-in").await;
    assert!(me.text(".notice").await.contains("confirmed"));

    // Signs in, enrols an authenticator app, keeps the recovery codes.
    me.type_into("#email", "ayesha@example.pk").await;
    me.type_into("#password", "lantern orbit mango seventy\u{E007}").await;
    me.find("header nav").await;
    assert_eq!(me.path().await, "/console/registrations");
    me.click_to("header nav a[href='/console/account']", "/console/account")
        .await;
    me.shot("account").await;
    me.click_to(
        "a[href='/console/account/second-factor']",
        "/console/account/second-factor",
    )
    .await;
    me.find("main svg").await;
    me.shot("second-factor-enrolment").await;
    let key = me.text("#totp-secret").await;
    let secret = vpn_registry::auth::totp::decode_secret(&key).unwrap();
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    me.type_into("#code", &vpn_registry::auth::totp::code_at(&secret, now))
        .await;
    me.click_to("main form button[type=submit]", "/console/account/second-factor")
        .await;
    assert_eq!(
        me.client
            .find_all(Locator::Css("#recovery-codes li"))
            .await
            .unwrap()
            .len(),
        10
    );
    me.shot("recovery-codes").await;

    // Submits a registration as any applicant does.
    me.goto("/console/registrations/new").await;
    me.find("#f-kind").await.select_by_value("VPN").await.unwrap();
    me.find("#f-protocol").await.select_by_value("WIREGUARD").await.unwrap();
    me.type_into("#f-source_prefixes", "8.8.8.0/24").await;
    me.find("#f-isp").await.select_by_value("ptcl").await.unwrap();
    me.type_into("#f-isp_subscriber_id", "SUB-0001").await;
    me.type_into("#f-purpose", "Remote work for a client abroad").await;
    let next_year = (time::OffsetDateTime::now_utc() + time::Duration::days(365)).date();
    me.set_date("f-valid_until", &next_year.to_string()).await;
    me.click_to("form[data-validate] button[type=submit]", "/console/registrations/")
        .await;
    assert!(me.text(".notice").await.contains("Submitted"));
    let institution: (String, bool) = sqlx::query_as("SELECT category, self_registered FROM institutions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(institution, ("FREELANCER".to_owned(), true));
    me.client.close().await.unwrap();
}

#[sqlx::test]
async fn documents_are_uploaded_viewed_and_verified_in_a_browser(pool: PgPool) {
    use crate::documents::{header, pdf, upload};
    use vpn_registry::pb::DocumentType as T;
    let app = spawn_app(pool).await;
    let (_, applicant) = app.enrol(C::Freelancer).await;
    let reviewer = app.reviewer_token().await.to_owned();
    let r = app.submit(&applicant, &["8.8.8.0/24"]).await;
    let attested = app.attest(&r, true).await.unwrap();
    let files = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-documents");
    std::fs::create_dir_all(&files).unwrap();
    let scan = files.join("cnic-front.pdf");
    std::fs::write(&scan, pdf(300 * 1024, b"browser scan")).unwrap();
    let page = files.join("cnic-front.png");
    std::fs::write(&page, b"<!DOCTYPE html><html><script>alert(1)</script></html>").unwrap();
    // The other two papers arrive through the API.
    for (t, name) in [(T::CnicBack, "back.pdf"), (T::EmployerLetter, "letter.pdf")] {
        let id = uuid::Uuid::new_v4().to_string();
        upload(&app, &applicant, header(&r.id, t, name, &id), &pdf(2000, b""))
            .await
            .unwrap();
    }

    let driver = Driver::start();
    let b = Browser::open(&driver, &app, "documents").await;
    b.sign_in(&app.person_like(&applicant).await).await;
    b.goto(&format!("/console/registrations/{}", r.id)).await;
    assert!(b.body().await.contains("Missing"), "the CNIC front is missing");
    // An HTML page named .png is refused before it is sent.
    let field = b.find("form.upload input[type=file]").await;
    field.send_keys(page.to_str().unwrap()).await.unwrap();
    b.find("form.upload button").await.click().await.unwrap();
    let said = eventually("the type check answers", Duration::from_secs(10), || async {
        let text = b.text("form.upload .error").await;
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(said.contains("not a PDF, JPEG or PNG"), "{said}");
    assert_eq!(app.count("documents").await, 2, "nothing was sent");
    // The scan goes up with its progress bar; the page comes back with it.
    let old = b.find("html").await;
    let field = b.find("form.upload input[type=file]").await;
    field.send_keys(scan.to_str().unwrap()).await.unwrap();
    b.find("form.upload button").await.click().await.unwrap();
    b.until_replaced(old, "the upload").await;
    let listed = b.body().await;
    assert!(
        listed.contains("cnic-front.pdf") && !listed.contains("Missing"),
        "{listed}"
    );
    b.shot("applicant-documents").await;
    b.sign_out().await;

    // The reviewer: approval blocked and saying why; each document viewable.
    b.sign_in(&app.person_like(&reviewer).await).await;
    b.goto(&format!("/console/review/{}", attested.registration_id)).await;
    let approve = b.find("button[value=approve]").await;
    assert_eq!(approve.attr("disabled").await.unwrap().as_deref(), Some("true"));
    let why = b.text("#approve-blocked").await;
    assert!(why.contains("CNIC (front): not verified yet"), "{why}");
    b.shot("reviewer-checklist").await;
    let href = b
        .find("a[href^='/console/documents/']")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let served = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(async r => {
               const bytes = new Uint8Array(await r.arrayBuffer());
               done({status: r.status, type: r.headers.get('content-type'),
                     disposition: r.headers.get('content-disposition'),
                     nosniff: r.headers.get('x-content-type-options'),
                     policy: r.headers.get('content-security-policy'),
                     head: String.fromCharCode(...bytes.slice(0, 5)), length: bytes.length});
             });",
            vec![href.clone().into()],
        )
        .await
        .unwrap();
    assert_eq!(served["status"], 200);
    assert_eq!(served["type"], "application/pdf");
    assert!(served["disposition"].as_str().unwrap().starts_with("inline; filename="));
    assert_eq!(served["nosniff"], "nosniff");
    assert!(served["policy"].as_str().unwrap().starts_with("default-src 'none'"));
    assert_eq!(served["head"], "%PDF-");
    let views: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'VIEWED'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(views, 1, "the view is audited");
    // Verify each document, one click each; then approval opens.
    for _ in 0..3 {
        b.click_to(
            "form[action$='/verdict'] button[value=VERIFIED]",
            &format!("/console/review/{}", r.id),
        )
        .await;
    }
    assert!(b.client.find(Locator::Css("#approve-blocked")).await.is_err());
    b.find("#reason_code").await.select_by_value("COMPLIANT").await.unwrap();
    b.type_into("#reason", "Identity and employer letter verified").await;
    b.click_to("button[value=approve]", "/console/review").await;
    assert_eq!(
        app.get(&r.id).await.state,
        vpn_registry::pb::RegistrationState::Active as i32
    );
    b.client.close().await.unwrap();
}

#[sqlx::test]
async fn a_spreadsheet_is_imported_and_the_api_reference_read_in_a_browser(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, applicant) = app.enrol(C::ItCompany).await;
    let files = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-import");
    std::fs::create_dir_all(&files).unwrap();
    let header = "kind,protocol,source_prefixes,msisdn,peer_prefixes,isp,isp_subscriber_id,purpose,valid_from,valid_until,large_prefix_justification";
    let line = |prefix: &str| format!("VPN,WIREGUARD,{prefix},,185.60.216.0/24,ptcl,SUB-1,Member office,,2030-12-31,");
    let csv = files.join("members.csv");
    std::fs::write(
        &csv,
        [header.to_owned(), line("8.8.8.0/24"), line("10.0.0.0/24")].join("\n"),
    )
    .unwrap();

    let driver = Driver::start();
    let b = Browser::open(&driver, &app, "import").await;
    b.sign_in(&app.person_like(&applicant).await).await;
    b.goto("/console/registrations").await;
    b.click_to(
        "a[href='/console/registrations/import']",
        "/console/registrations/import",
    )
    .await;
    // The chosen file fills the text area; checking shows line 3's problem.
    b.find("#csv-file")
        .await
        .send_keys(csv.to_str().unwrap())
        .await
        .unwrap();
    eventually("the file is read into the page", Duration::from_secs(10), || async {
        let value = b.find("#csv").await.prop("value").await.unwrap().unwrap_or_default();
        value.contains("10.0.0.0/24").then_some(())
    })
    .await;
    b.click_to("button[value=check]", "/console/registrations/import").await;
    assert!(b.text("table").await.contains("source_prefixes[0]"));
    b.shot("import-checked").await;
    // Mended in the page, checked again, submitted.
    let mended = [header.to_owned(), line("8.8.8.0/24"), line("8.8.9.0/24")].join("\n");
    b.client
        .execute(
            "document.getElementById('csv').value = arguments[0];",
            vec![mended.into()],
        )
        .await
        .unwrap();
    b.click_to("button[value=check]", "/console/registrations/import").await;
    b.click_to("button[value=submit]", "/console/registrations/import")
        .await;
    assert!(b.text(".notice").await.contains("2 registrations submitted"));
    b.shot("import-submitted").await;

    // The API reference, as an integrator first sees it.
    b.goto("/api/").await;
    assert!(b.text("h1").await.contains("API reference"));
    b.find("a[href='/api/openapi.json']").await;
    b.shot("api-reference").await;
}

//! E-mail: a notification rendered as plain text and HTML in the
//! institution's language, sent over SMTP (lettre: plain, STARTTLS with
//! `?tls=required`, or `smtps://`; credentials in the URL).

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox, MultiPart,
        header::{HeaderName, HeaderValue},
    },
    transport::smtp::client::{Certificate, Tls, TlsParameters},
};
use maud::{DOCTYPE, html};

use super::messages::{Language, labels, text};
use crate::db::outbox::Claimed;
use crate::domain::event::EventType;

/// Why a mailer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("--smtp-url: {0}")]
    Url(lettre::transport::smtp::Error),
    #[error("--mail-from {0:?}: {1}")]
    From(String, lettre::address::AddressError),
    #[error("--smtp-ca: {0}")]
    Ca(String),
}

/// One message about one event, ready to send.
#[derive(Debug, Clone)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub language: Language,
}

/// The message for a claimed e-mail notification; `None` for an event type
/// this version does not know (written by a newer one).
pub fn compose(n: &Claimed, public_url: Option<&str>) -> Option<Composed> {
    let event = EventType::from_db(&n.event_type)?;
    let language = Language::from_db(&n.language).unwrap_or(Language::English);
    let l = labels(language);
    let (what, next) = text(event, language);
    let days = n.days_left.unwrap_or_default().to_string();
    let headline = what.replace("{ref}", &n.reference).replace("{days}", &days);
    let link = public_url.map(|u| {
        format!(
            "{}/console/registrations/{}",
            u.trim_end_matches('/'),
            n.registration_id
        )
    });
    let reason = n.reason.as_deref().filter(|r| !r.is_empty());
    let mut plain = format!(
        "{headline}.\n\n{}: {}\n{}: {}\n",
        l.reference, n.reference, l.state, n.state
    );
    if let Some(reason) = reason {
        plain.push_str(&format!("{}: {reason}\n", l.reason));
    }
    plain.push_str(&format!("\n{}: {next}\n", l.next));
    if let Some(link) = &link {
        plain.push_str(&format!("{}: {link}\n", l.open));
    }
    plain.push_str(&format!("\n-- \n{}\n", l.footer));
    let dir = if language.is_rtl() { "rtl" } else { "ltr" };
    let page = html! {
        (DOCTYPE)
        html lang=(language.as_str()) dir=(dir) {
            head { meta charset="utf-8"; title { (headline) } }
            body {
                h1 { (headline) }
                table {
                    tr { th { (l.reference) } td { (n.reference) } }
                    tr { th { (l.state) } td { (n.state) } }
                    @if let Some(reason) = reason { tr { th { (l.reason) } td { (reason) } } }
                }
                h2 { (l.next) }
                p { (next) }
                @if let Some(link) = &link { p { a href=(link) { (l.open) } } }
                hr;
                p { small { (l.footer) } }
            }
        }
    };
    Some(Composed {
        subject: format!("[{}] {headline}", n.reference),
        text: plain,
        html: page.into_string(),
        language,
    })
}

/// An account e-mail (a link to verify a sign-up, accept an invitation or
/// reset a password) from the message stored with it; `None` when the
/// message is not one this version writes.
pub fn compose_account(message: &serde_json::Value) -> Option<Composed> {
    let text = |name: &str| {
        message
            .get(name)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
    };
    let (link, name, organisation) = (text("link"), text("name"), text("organisation"));
    let (subject, lead, validity) = match text("kind") {
        "SIGN_UP" => (
            "Confirm your e-mail address to finish signing up",
            format!("You signed up {organisation} with the national VPN registry. Open this link to confirm your address and create the account:"),
            "The link works once, for 24 hours. If you did not sign up, ignore this message: nothing is created.",
        ),
        "INVITATION" => (
            "You are invited to the VPN registry",
            format!("You are invited to join {organisation} in the national VPN registry. Open this link to choose your password:"),
            "The link works once, for 7 days. If you did not expect this, ignore this message.",
        ),
        "PASSWORD_RESET" => (
            "Reset your VPN registry password",
            "Someone (we hope you) asked to reset the password of your VPN registry account. Open this link to choose a new one:".to_owned(),
            "The link works once, for 30 minutes, and signs you out everywhere. If you did not ask, ignore this message: your password stays as it is.",
        ),
        _ => return None,
    };
    let greeting = if name.is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {name},")
    };
    let l = labels(Language::English);
    let plain = format!("{greeting}\n\n{lead}\n\n{link}\n\n{validity}\n\n-- \n{}\n", l.footer);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (subject) } }
            body {
                p { (greeting) }
                p { (lead) }
                p { a href=(link) { (link) } }
                p { (validity) }
                hr;
                p { small { (l.footer) } }
            }
        }
    };
    Some(Composed {
        subject: subject.to_owned(),
        text: plain,
        html: page.into_string(),
        language: Language::English,
    })
}

/// Sends mail through one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// The TLS mode `url` asks for, trusting `ca` (PEM) for the server's
/// certificate.
fn private_ca_tls(url: &str, ca: &[u8]) -> Result<Tls, MailError> {
    let uri: tonic::codegen::http::Uri = url
        .parse()
        .map_err(|_| MailError::Ca("--smtp-url is not a URL".into()))?;
    let host = uri.host().unwrap_or_default().to_owned();
    let certificate = Certificate::from_pem(ca).map_err(|e| MailError::Ca(e.to_string()))?;
    let parameters = TlsParameters::builder(host)
        .add_root_certificate(certificate)
        .build_rustls()
        .map_err(|e| MailError::Ca(e.to_string()))?;
    let query = uri.query().unwrap_or_default();
    match uri.scheme_str() {
        Some("smtps") => Ok(Tls::Wrapper(parameters)),
        _ if query.contains("tls=required") => Ok(Tls::Required(parameters)),
        _ if query.contains("tls=opportunistic") => Ok(Tls::Opportunistic(parameters)),
        _ => Err(MailError::Ca(
            "applies to smtps:// or smtp://...?tls=required only (this URL sends in plaintext)".into(),
        )),
    }
}

/// What became of one message.
pub enum Sent {
    Ok(u16),
    /// Worth another try later (connection trouble, 4xx).
    Transient(Option<u16>, String),
    /// Will never be accepted (5xx, a malformed address).
    Permanent(Option<u16>, String),
}

impl Mailer {
    /// A mailer for `url` (`smtp://`, `smtp://...?tls=required` for
    /// STARTTLS, `smtps://`; `user:password@` for credentials). `ca` (PEM)
    /// is the authority the server's certificate must chain to instead of
    /// the public ones (a relay with a private CA).
    pub fn new(url: &str, from: &str, ca: Option<&[u8]>) -> Result<Self, MailError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(MailError::Url)?
            .timeout(Some(std::time::Duration::from_secs(15)));
        if let Some(ca) = ca {
            builder = builder.tls(private_ca_tls(url, ca)?);
        }
        let transport = builder.build();
        let from = from.parse().map_err(|e| MailError::From(from.to_owned(), e))?;
        Ok(Self { transport, from })
    }

    /// Sends `m` to `to`, with a Message-ID made from the event and the
    /// recipient, so that a redelivered message is recognisably the same.
    pub async fn send(&self, to: &str, event_id: uuid::Uuid, m: &Composed) -> Sent {
        let to: Mailbox = match to.parse() {
            Ok(to) => to,
            Err(e) => return Sent::Permanent(None, format!("recipient {to:?}: {e}")),
        };
        let domain = self.from.email.domain().to_owned();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(format!("<{event_id}@{domain}>")))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Content-Language"),
                m.language.as_str().to_owned(),
            ))
            // The event, for receivers that file messages by it.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-VPN-Registry-Event"),
                event_id.to_string(),
            ))
            .multipart(MultiPart::alternative_plain_html(m.text.clone(), m.html.clone()));
        let message = match message {
            Ok(message) => message,
            Err(e) => return Sent::Permanent(None, e.to_string()),
        };
        match self.transport.send(message).await {
            Ok(response) => Sent::Ok(u16::from(response.code())),
            Err(e) => {
                let code = e.status().map(u16::from);
                if e.is_permanent() {
                    Sent::Permanent(code, e.to_string())
                } else {
                    Sent::Transient(code, e.to_string())
                }
            }
        }
    }
}

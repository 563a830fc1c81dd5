//! People: who a user is in the registry (one organisation, one role), what
//! a password must be, how long links and sessions last, and how failed
//! sign-ins slow down. Choices follow NIST SP 800-63B and OWASP ASVS level 2.

use std::time::Duration;

use uuid::Uuid;

use super::Invalid;
use super::db_enum::db_enum;
use super::identifiers::{Email, IspCode};
use super::principal::{Principal, Role, RoleKind};

/// Shortest password accepted (800-63B asks for at least 8; a government
/// service holding national identity numbers asks more).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted: long passphrases are welcome, unbounded input is not
/// (argon2 would hash a megabyte as readily as a word).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// The strength estimator's score a password must reach (0-4): 3 is "safely
/// unguessable: moderate protection from offline slow-hash scenario".
const MIN_STRENGTH: zxcvbn::Score = zxcvbn::Score::Three;

db_enum!(
    /// What an e-mailed single-use link does when followed.
    LinkPurpose {
        SignUp => "SIGN_UP",
        Invitation => "INVITATION",
        PasswordReset => "PASSWORD_RESET",
    }
);

impl LinkPurpose {
    /// How long a link of this purpose works.
    pub fn lifetime(self) -> Duration {
        match self {
            Self::SignUp => SIGN_UP_LINK,
            Self::Invitation => INVITATION_LINK,
            Self::PasswordReset => RESET_LINK,
        }
    }

    /// The console page the link opens.
    pub fn path(self) -> &'static str {
        match self {
            Self::SignUp => "/console/sign-up/verify",
            Self::Invitation => "/console/invitation",
            Self::PasswordReset => "/console/password-reset",
        }
    }
}

/// How long an e-mailed sign-up verification link works.
pub const SIGN_UP_LINK: Duration = Duration::from_secs(24 * 3600);
/// How long an invitation works.
pub const INVITATION_LINK: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a password reset link works.
pub const RESET_LINK: Duration = Duration::from_secs(30 * 60);

/// A console session unused this long ends (ASVS 3.3.2, level 2).
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// A console session this old ends, however used (ASVS 3.3.2).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Failed sign-ins of one address heard without delay.
const FREE_FAILURES: i32 = 5;
/// The longest wait between attempts: slow enough to make guessing
/// hopeless, short enough that the owner is never locked out for long.
pub const MAX_SIGN_IN_WAIT: Duration = Duration::from_secs(15 * 60);
/// A failure this old no longer counts.
pub const FAILURES_FORGOTTEN_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How long an attempt to sign in as an address with `failures` recent
/// failures must still wait, `since_last` after the last one: nothing for
/// the first few, then a wait doubling with each failure, capped.
pub fn sign_in_wait(failures: i32, since_last: Duration) -> Option<Duration> {
    if failures < FREE_FAILURES || since_last >= FAILURES_FORGOTTEN_AFTER {
        return None;
    }
    let doublings = u32::try_from(failures - FREE_FAILURES).unwrap_or(u32::MAX).min(16);
    let wait = Duration::from_secs(1u64 << doublings).min(MAX_SIGN_IN_WAIT);
    wait.checked_sub(since_last).filter(|left| !left.is_zero())
}

/// The unique form of an address: addresses differing only in case are one
/// person's (providers treat the local part case-insensitively in practice).
pub fn email_key(email: &Email) -> String {
    email.as_str().to_lowercase()
}

/// A password that passed the policy: long enough, not too long, and not
/// guessable (common passwords, keyboard walks, dates, names and words,
/// the user's own address or name).
pub struct Password(String);

impl Password {
    /// Checks `raw` (taken as typed: spaces count, nothing is trimmed);
    /// `context` holds what an attacker knows about the user.
    pub fn parse(raw: &str, context: &[&str]) -> Result<Self, Invalid> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(Invalid(format!(
                "must be at least {MIN_PASSWORD_CHARS} characters (got {chars}); a few unrelated words make a good one"
            )));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(Invalid(format!("must be at most {MAX_PASSWORD_CHARS} characters")));
        }
        let estimate = zxcvbn::zxcvbn(raw, context);
        if estimate.score() < MIN_STRENGTH {
            let mut why = String::from("is too easy to guess");
            if let Some(feedback) = estimate.feedback() {
                if let Some(warning) = feedback.warning() {
                    why.push_str(&format!(": {warning}"));
                }
                if let Some(suggestion) = feedback.suggestions().first() {
                    why.push_str(&format!(" ({suggestion})"));
                }
            }
            return Err(Invalid(why));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Where a user belongs and in what role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// An institution's owner (manages members and keys) or member.
    Institution {
        id: Uuid,
        owner: bool,
    },
    /// An ISP's desk (manages the ISP's keys).
    Isp(IspCode),
    Reviewer,
    Admin,
}

impl Membership {
    /// The role the user acts in, with its scope: a member acts exactly as
    /// an institution token would.
    pub fn role(&self) -> Role {
        match self {
            Self::Institution { id, .. } => Role::Institution(*id),
            Self::Isp(code) => Role::Isp(code.clone()),
            Self::Reviewer => Role::Reviewer,
            Self::Admin => Role::Admin,
        }
    }

    /// Whether the user may manage the organisation's API keys: an
    /// institution's owners, every ISP desk user.
    pub fn manages_keys(&self) -> bool {
        matches!(self, Self::Institution { owner: true, .. } | Self::Isp(_))
    }

    /// Regulator staff and ISP desks enrol a second factor before their
    /// first action (applicants may).
    pub fn requires_second_factor(&self) -> bool {
        !matches!(self, Self::Institution { .. })
    }

    /// How the console names the role.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Institution { owner: true, .. } => "owner",
            Self::Institution { owner: false, .. } => "member",
            Self::Isp(_) => "ISP desk",
            Self::Reviewer => "reviewer",
            Self::Admin => "administrator",
        }
    }
}

/// A signed-in person as the gate sees them.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub membership: Membership,
    pub totp_enrolled: bool,
}

impl User {
    /// The principal this user acts as: the same the gate and handlers see
    /// for a token of that role and scope.
    pub fn principal(&self, institution_category: Option<super::institution::Category>) -> Principal {
        Principal {
            id: self.id,
            name: self.email.clone(),
            role: self.membership.role(),
            institution_category,
            manages_keys: self.membership.manages_keys(),
        }
    }

    /// Whether the user must enrol a second factor before doing anything.
    pub fn must_enrol_second_factor(&self) -> bool {
        self.membership.requires_second_factor() && !self.totp_enrolled
    }

    pub fn kind(&self) -> RoleKind {
        self.membership.role().kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_common_and_personal_passwords_are_refused() {
        assert!(Password::parse("short", &[]).is_err());
        assert!(Password::parse("password1234", &[]).is_err(), "common");
        assert!(Password::parse("qwertyuiop123", &[]).is_err(), "a keyboard walk");
        assert!(
            Password::parse("ayesha.khan@example.pk", &["ayesha.khan@example.pk"]).is_err(),
            "the user's own address"
        );
        assert!(Password::parse(&"x".repeat(MAX_PASSWORD_CHARS + 1), &[]).is_err());
        let good = Password::parse("lantern orbit mango seventy", &[]).unwrap();
        assert_eq!(good.as_str(), "lantern orbit mango seventy");
        assert_eq!(format!("{good:?}"), "Password(..)", "never logged");
    }

    #[test]
    fn failures_past_the_free_ones_double_the_wait_up_to_the_cap() {
        let now = Duration::ZERO;
        assert_eq!(sign_in_wait(4, now), None);
        assert_eq!(sign_in_wait(5, now), Some(Duration::from_secs(1)));
        assert_eq!(sign_in_wait(8, now), Some(Duration::from_secs(8)));
        assert_eq!(sign_in_wait(8, Duration::from_secs(3)), Some(Duration::from_secs(5)));
        assert_eq!(sign_in_wait(8, Duration::from_secs(8)), None);
        assert_eq!(
            sign_in_wait(20, now),
            Some(MAX_SIGN_IN_WAIT),
            "capped: never locked out"
        );
        assert_eq!(sign_in_wait(1000, MAX_SIGN_IN_WAIT), None);
        assert_eq!(sign_in_wait(20, FAILURES_FORGOTTEN_AFTER), None);
    }

    #[test]
    fn members_act_as_their_institution_and_only_owners_and_desks_manage_keys() {
        let id = Uuid::from_u128(7);
        let member = Membership::Institution { id, owner: false };
        assert_eq!(member.role(), Role::Institution(id));
        assert!(!member.manages_keys());
        assert!(Membership::Institution { id, owner: true }.manages_keys());
        assert!(Membership::Isp("ptcl".parse().unwrap()).manages_keys());
        assert!(!Membership::Reviewer.manages_keys());
        assert!(Membership::Reviewer.requires_second_factor());
        assert!(Membership::Isp("ptcl".parse().unwrap()).requires_second_factor());
        assert!(!member.requires_second_factor());
    }
}

//! Second factors: RFC 6238 codes (SHA-1, six digits, 30-second steps, as
//! every authenticator app reads them), one step of clock drift either way,
//! and each step's code accepted once; ten one-time recovery codes.

use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};

/// The issuer authenticator apps show beside the account.
const ISSUER: &str = "VPN Registry";
const STEP_SECONDS: u64 = 30;
const DIGITS: usize = 6;
/// Recovery codes given at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// A new 160-bit secret (RFC 4226's recommended length).
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 20];
    getrandom::fill(&mut secret).expect("the OS random source works");
    secret
}

fn totp(secret: &[u8], account: &str) -> Option<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECONDS,
        secret.to_vec(),
        Some(ISSUER.to_owned()),
        account.to_owned(),
    )
    .ok()
}

/// The `otpauth://` URL an authenticator app enrols from (the QR code's
/// content), and the secret in base32 for typing in by hand.
pub fn enrolment(secret: &[u8], account: &str) -> Option<(String, String)> {
    let t = totp(secret, account)?;
    Some((t.get_url(), t.get_secret_base32()))
}

/// The secret a base32 key (as [`enrolment`] shows it) holds.
pub fn decode_secret(base32: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::Encoded(base32.trim().to_uppercase()).to_bytes().ok()
}

/// The time step whose code `code` is, within one step of `unix_seconds`
/// and after `last_step` (a code once accepted is never accepted again).
pub fn check(secret: &[u8], code: &str, unix_seconds: u64, last_step: Option<i64>) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret, "-")?;
    let now = unix_seconds / STEP_SECONDS;
    [now.saturating_sub(1), now, now + 1]
        .into_iter()
        .filter_map(|step| i64::try_from(step).ok().map(|s| (step, s)))
        .filter(|(_, s)| last_step.is_none_or(|last| *s > last))
        .find(|(step, _)| {
            crate::auth::token::secrets_equal(t.generate(step * STEP_SECONDS).as_bytes(), code.as_bytes())
        })
        .map(|(_, s)| s)
}

/// The code for `unix_seconds` (tests and the bench act as an authenticator).
pub fn code_at(secret: &[u8], unix_seconds: u64) -> String {
    totp(secret, "-").map(|t| t.generate(unix_seconds)).unwrap_or_default()
}

/// Ten recovery codes (`xxxx-xxxx-xxxx`, 60 random bits each) and the
/// hashes to store.
pub fn recovery_codes() -> Vec<(String, [u8; 32])> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 12];
            getrandom::fill(&mut bytes).expect("the OS random source works");
            let chars: Vec<char> = bytes.iter().map(|b| ALPHABET[usize::from(b % 32)] as char).collect();
            let code = format!(
                "{}-{}-{}",
                chars[..4].iter().collect::<String>(),
                chars[4..8].iter().collect::<String>(),
                chars[8..].iter().collect::<String>()
            );
            let hash = recovery_hash(&code);
            (code, hash)
        })
        .collect()
}

/// The stored form of a recovery code as typed (case and spaces ignored).
pub fn recovery_hash(code: &str) -> [u8; 32] {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(normal.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_work_within_one_step_and_once() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now);
        let step = check(&secret, &code, now, None).expect("the current code");
        assert_eq!(check(&secret, &code, now, Some(step)), None, "reused");
        assert!(check(&secret, &code, now + 30, None).is_some(), "one step late");
        assert_eq!(check(&secret, &code, now + 90, None), None, "outside the window");
        assert_eq!(check(&secret, &code, now - 90, None), None, "outside the window");
        assert_eq!(check(&secret, "12345", now, None), None);
        assert_eq!(check(&secret, "abcdef", now, None), None);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert!(check(&secret, &spaced, now, None).is_some());
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_as_typed() {
        let codes = recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut unique: Vec<&String> = codes.iter().map(|(c, _)| c).collect();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODES);
        let (code, hash) = &codes[0];
        assert_eq!(recovery_hash(&code.to_uppercase().replace('-', " ")), *hash);
        let (url, base32) = enrolment(&new_secret(), "ayesha@example.pk").unwrap();
        assert!(
            url.starts_with("otpauth://totp/VPN%20Registry:ayesha%40example.pk?"),
            "{url}"
        );
        assert_eq!(base32.len(), 32);
        let secret = new_secret();
        let (_, shown) = enrolment(&secret, "a@example.pk").unwrap();
        assert_eq!(decode_secret(&shown).unwrap(), secret);
        assert_eq!(decode_secret("not base32!"), None);
    }
}

//! Personal and corporate identifiers, parsed from what people type and held
//! in the normalised form the registry stores.

use std::str::FromStr;

use super::text::echo;
use super::violations::Invalid;

/// Computerised National Identity Card number: 13 digits, the first 1 to 7.
/// Accepted bare or as `12345-1234567-1`; held bare. It has no checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cnic(String);

impl FromStr for Cnic {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        let bare: String = match s.len() {
            13 => s.to_owned(),
            15 if s.as_bytes()[5] == b'-' && s.as_bytes()[13] == b'-' => s.replace('-', ""),
            _ => {
                return Err(Invalid::new("must be 13 digits, bare or as 12345-1234567-1"));
            }
        };
        if bare.len() != 13 || !bare.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new("must be 13 digits, bare or as 12345-1234567-1"));
        }
        if !(b'1'..=b'7').contains(&bare.as_bytes()[0]) {
            return Err(Invalid::new("must start with a digit from 1 to 7"));
        }
        Ok(Self(bare))
    }
}

impl Cnic {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// National Tax Number: 7 digits with an optional check digit (held as
/// `1234567` or `1234567-8`), or an individual's 13-digit CNIC (held bare).
/// No checksum is invented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ntn(String);

impl FromStr for Ntn {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        let digits: String = s.chars().filter(|c| *c != '-').collect();
        let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let dashes = s.matches('-').count();
        let shape_ok = match (digits.len(), dashes) {
            (7, 0) | (8, 0) => true,
            (8, 1) => s.as_bytes().get(7) == Some(&b'-'),
            (13, 0) => true,
            (13, 2) => Cnic::from_str(s).is_ok(),
            _ => false,
        };
        if !all_digits || !shape_ok {
            return Err(Invalid::new(
                "must be 7 digits with an optional check digit (1234567-8) or a 13-digit CNIC",
            ));
        }
        match digits.len() {
            7 => Ok(Self(digits)),
            8 => Ok(Self(format!("{}-{}", &digits[..7], &digits[7..]))),
            _ => Cnic::from_str(&digits).map(|c| Self(c.0)),
        }
    }
}

impl Ntn {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A contact e-mail address (RFC 5322 addr-spec, at most 254 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl FromStr for Email {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.len() > 254 {
            return Err(Invalid::new("must be at most 254 characters"));
        }
        let parsed = email_address::EmailAddress::from_str(s)
            .map_err(|e| Invalid(format!("is not a valid e-mail address: {e}")))?;
        if !parsed.domain().contains('.') {
            return Err(Invalid::new("must have a fully qualified domain"));
        }
        Ok(Self(format!(
            "{}@{}",
            parsed.local_part(),
            parsed.domain().to_ascii_lowercase()
        )))
    }
}

impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164 form. Pakistani numbers (`+92`) carry 9 or 10
/// national digits; national (`0300 1234567`) and `0092` input is normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl FromStr for Phone {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let e164 = to_e164(s)?;
        Ok(Self(e164))
    }
}

impl Phone {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Normalises a typed phone number to `+<digits>`.
fn to_e164(raw: &str) -> Result<String, Invalid> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Invalid::new("must not be empty"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.')))
    {
        return Err(Invalid(format!("contains {c:?}; use digits, spaces and '+'")));
    }
    if s.rfind('+').is_some_and(|i| i > 0) {
        return Err(Invalid::new("'+' may appear only at the start"));
    }
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let international = if s.starts_with('+') {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else if let Some(rest) = digits.strip_prefix('0') {
        format!("92{rest}")
    } else {
        return Err(Invalid::new(
            "must be international (+92...) or a Pakistani national number starting with 0",
        ));
    };
    if let Some(national) = international.strip_prefix("92") {
        if !(9..=10).contains(&national.len()) || national.starts_with('0') {
            return Err(Invalid::new("a Pakistani number needs 9 or 10 digits after +92"));
        }
    } else if !(8..=15).contains(&international.len()) || international.starts_with('0') {
        return Err(Invalid::new("must be an E.164 number of 8 to 15 digits"));
    }
    Ok(format!("+{international}"))
}

/// A Pakistani mobile number (MSISDN), `+923` followed by 9 digits; what a
/// freelancer without a static address registers instead of a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msisdn(String);

impl FromStr for Msisdn {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let e164 = to_e164(s)?;
        if e164.len() != 13 || !e164.starts_with("+923") {
            return Err(Invalid::new(
                "must be a Pakistani mobile number (+923XXXXXXXXX or 03XXXXXXXXX)",
            ));
        }
        Ok(Self(e164))
    }
}

impl Msisdn {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 3166-1 alpha-2 country code, held upper-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country(isocountry::CountryCode);

impl FromStr for Country {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.len() != 2 {
            return Err(Invalid::new("must be an ISO 3166-1 alpha-2 code such as GB"));
        }
        isocountry::CountryCode::for_alpha2_caseless(s)
            .map(Self)
            .map_err(|_| Invalid(format!("{} is not an ISO 3166-1 alpha-2 country code", echo(s))))
    }
}

impl Country {
    pub fn as_str(&self) -> &'static str {
        self.0.alpha2()
    }
}

/// Code of a licensed ISP (`ptcl`, `nayatel`): lower-case letters, digits, '-'.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IspCode(String);

impl FromStr for IspCode {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim().to_ascii_lowercase();
        let ok = (2..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && s.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(Self(s))
        } else {
            Err(Invalid::new("must be an ISP code of 2 to 32 letters, digits or '-'"))
        }
    }
}

impl IspCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnic_accepts_dashed_and_bare_and_stores_bare() {
        assert_eq!(Cnic::from_str("35202-1234567-1").unwrap().as_str(), "3520212345671");
        assert_eq!(Cnic::from_str("3520212345671").unwrap().as_str(), "3520212345671");
        assert!(Cnic::from_str("85202-1234567-1").is_err());
        assert!(Cnic::from_str("35202-12345671").is_err());
        assert!(Cnic::from_str("352021234567").is_err());
    }

    #[test]
    fn ntn_normalises_check_digit_and_cnic_forms() {
        assert_eq!(Ntn::from_str("1234567").unwrap().as_str(), "1234567");
        assert_eq!(Ntn::from_str("1234567-8").unwrap().as_str(), "1234567-8");
        assert_eq!(Ntn::from_str("12345678").unwrap().as_str(), "1234567-8");
        assert_eq!(Ntn::from_str("35202-1234567-1").unwrap().as_str(), "3520212345671");
        assert!(Ntn::from_str("123456").is_err());
        assert!(Ntn::from_str("123-4567").is_err());
    }

    #[test]
    fn phone_is_normalised_to_e164() {
        assert_eq!(Phone::from_str("0300 1234567").unwrap().as_str(), "+923001234567");
        assert_eq!(Phone::from_str("+92 51 1234567").unwrap().as_str(), "+92511234567");
        assert_eq!(Phone::from_str("0092-300-1234567").unwrap().as_str(), "+923001234567");
        assert_eq!(Phone::from_str("+44 20 7946 0000").unwrap().as_str(), "+442079460000");
        assert!(Phone::from_str("+92 300 12").is_err());
        assert!(Phone::from_str("300 1234567").is_err());
        assert!(Phone::from_str("+92 300 1234567x").is_err());
    }

    #[test]
    fn msisdn_must_be_pakistani_mobile() {
        assert_eq!(Msisdn::from_str("0301-2345678").unwrap().as_str(), "+923012345678");
        assert!(Msisdn::from_str("+92511234567").is_err());
    }

    #[test]
    fn country_and_email() {
        assert_eq!(Country::from_str("gb").unwrap().as_str(), "GB");
        assert!(Country::from_str("XX").is_err());
        assert_eq!(Email::from_str(" Ops@Bank.PK ").unwrap().as_str(), "Ops@bank.pk");
        assert!(Email::from_str("ops@").is_err());
        assert!(Email::from_str("ops@localhost").is_err());
    }
}

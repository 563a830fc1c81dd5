//! Bounded free text and document references, as people type them.

use std::{fmt, str::FromStr};

use super::violations::Invalid;

/// Most characters of a caller's input a message repeats back.
pub const MAX_ECHO: usize = 64;

/// `raw` as a message quotes it: at most [`MAX_ECHO`] characters, quoted.
pub fn echo(raw: &str) -> String {
    let mut chars = raw.chars();
    let head: String = chars.by_ref().take(MAX_ECHO).collect();
    if chars.next().is_some() {
        format!("{head:?}...")
    } else {
        format!("{head:?}")
    }
}

/// Whether `c` reorders or hides text: the bidirectional controls (which can
/// make a page read otherwise than it is written, U+202E above all) and the
/// invisible format characters. The joiners U+200C and U+200D stay allowed:
/// Urdu and Persian spelling needs them.
pub fn is_deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{00AD}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206A}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Trims `raw` and checks it is 1..=max characters without control
/// characters or characters that reorder or hide text.
pub fn bounded_text(raw: &str, max: usize) -> Result<String, Invalid> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Invalid::new("must not be empty"));
    }
    let len = s.chars().count();
    if len > max {
        return Err(Invalid(format!("must be at most {max} characters (got {len})")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Invalid::new("must not contain control characters"));
    }
    if let Some(c) = s.chars().find(|c| is_deceptive(*c)) {
        return Err(Invalid(format!(
            "must not contain U+{:04X}, which reorders or hides text",
            u32::from(c)
        )));
    }
    Ok(s.to_owned())
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl FromStr for $name {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<Self, Invalid> {
                bounded_text(s, $max).map(Self)
            }
        }

        impl $name {
            pub const MAX_CHARS: usize = $max;
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_type!(
    /// An institution's registered name (or a freelancer's full name).
    LegalName,
    200
);
text_type!(
    /// A person's name, as a user account shows it.
    PersonName,
    200
);
text_type!(
    /// Why a registration is needed.
    Purpose,
    1000
);
text_type!(
    /// A reason given with a state change, recorded in the history.
    Reason,
    1000
);

/// A registry reference issued by another authority (SECP, PSEB, SBP, the
/// foreign ministry): loosely checked, stored upper-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRef(String);

impl FromStr for DocumentRef {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.is_empty() || s.len() > 40 {
            return Err(Invalid::new("must be 1 to 40 characters"));
        }
        if !s.bytes().any(|b| b.is_ascii_alphanumeric()) {
            return Err(Invalid::new("must contain letters or digits"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '.')))
        {
            return Err(Invalid(format!(
                "may contain only letters, digits, '-', '/' and '.' (found {c:?})"
            )));
        }
        Ok(Self(s.to_ascii_uppercase()))
    }
}

impl DocumentRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_reorders_or_hides_itself_is_refused() {
        let err = bounded_text("Approved \u{202E}gnp.exe", 100).unwrap_err();
        assert!(err.0.contains("U+202E"), "{err}");
        for c in ['\u{2066}', '\u{200B}', '\u{FEFF}', '\u{061C}', '\u{E0041}'] {
            assert!(bounded_text(&format!("a{c}b"), 100).is_err(), "{c:?}");
        }
        // Urdu with a zero-width non-joiner, and a line break, pass.
        assert!(bounded_text("\u{0628}\u{200C}\u{06CC}\nsecond line", 100).is_ok());
        assert!(bounded_text("a\u{7}b", 100).is_err(), "control characters too");
    }
}

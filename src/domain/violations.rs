//! Field violations: every problem found in one request, reported together so
//! a caller can fix its payload in one round trip.

use std::fmt;

/// Why a single value was refused; becomes a field violation's description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// One invalid field, named by its path in the request (`registration.source_prefixes[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

/// At most this many violations are listed; the rest are only counted (a
/// hostile request cannot make the answer large).
pub const MAX_LISTED: usize = 100;

/// The violations found while parsing one request; empty means valid.
#[derive(Debug, Default, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Violations(Vec<Violation>, usize);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for v in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}: {}", v.field, v.description)?;
        }
        if self.1 > 0 {
            write!(f, "; and {} more", self.1)?;
        }
        Ok(())
    }
}

impl Violations {
    /// A single violation, for checks that stand alone.
    pub fn one(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut v = Self::default();
        v.add(field, description);
        v
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.0.len() >= MAX_LISTED {
            self.1 += 1;
            return;
        }
        self.0.push(Violation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Violations found beyond the [`MAX_LISTED`] listed.
    pub fn omitted(&self) -> usize {
        self.1
    }

    /// Records the error of `result` under `field` and returns its value, if any.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    /// Prefixes every field name, e.g. with `institution.` for nested messages.
    pub fn nested(self, prefix: &str) -> Self {
        Self(
            self.0
                .into_iter()
                .map(|v| Violation {
                    field: format!("{prefix}.{}", v.field),
                    description: v.description,
                })
                .collect(),
            self.1,
        )
    }

    pub fn extend(&mut self, other: Violations) {
        for v in other.0 {
            self.add(v.field, v.description);
        }
        self.1 += other.1;
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Violation> {
        self.0.iter()
    }

    /// Joins these violations with the outcome of a later check: `Ok` only
    /// when neither found anything. A field already reported (itself or one
    /// of its list entries) keeps its first, more specific, description.
    pub fn and<T>(mut self, result: Result<T, Violations>) -> Result<T, Violations> {
        match result {
            Ok(value) if self.is_empty() => Ok(value),
            Ok(_) => Err(self),
            Err(more) => {
                self.1 += more.1;
                for v in more.0 {
                    let covered = self.0.iter().any(|known| {
                        known.field == v.field
                            || known
                                .field
                                .strip_prefix(v.field.as_str())
                                .is_some_and(|rest| rest.starts_with('['))
                    });
                    if !covered {
                        self.add(v.field, v.description);
                    }
                }
                Err(self)
            }
        }
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, Violations> {
        if self.0.is_empty() { Ok(value()) } else { Err(self) }
    }
}

//! Form fields that show the API's field violations beside the fields they
//! name, and carry the constraints `form.js` checks as the user types (the
//! server's rules stay the authority: what the page checks is a courtesy).

use std::collections::BTreeMap;

use maud::{Markup, html};
use tonic_types::StatusExt;

/// The field violations of a refused request, by form field.
#[derive(Default)]
pub struct FieldErrors {
    by_field: BTreeMap<String, Vec<String>>,
    /// Violations naming no field of the form (shown above it).
    pub other: Vec<String>,
}

impl FieldErrors {
    /// The violations in `status`, for a form whose fields are the API
    /// message's fields under `prefix` (`registration.`): an item of a list
    /// (`source_prefixes[1]`) belongs to the list's field. `fields` names
    /// the form's fields; violations of any other go to `other`.
    pub fn from_status(status: &tonic::Status, prefix: &str, fields: &[&str]) -> Self {
        let mut errors = Self::default();
        let Some(bad) = status.get_details_bad_request() else {
            errors.other.push(status.message().to_owned());
            return errors;
        };
        for v in bad.field_violations {
            let path = v.field.strip_prefix(prefix).unwrap_or(&v.field);
            let field = path.split(['[', '.']).next().unwrap_or(path);
            if fields.contains(&field) {
                let at = path.find('[').map(|i| &path[i..]).unwrap_or("");
                let item = at.split(']').next().and_then(|i| i.strip_prefix('['));
                let text = match item.and_then(|i| i.parse::<usize>().ok()) {
                    Some(i) => format!("Line {}: {}", i + 1, v.description),
                    None => v.description,
                };
                errors.by_field.entry(field.to_owned()).or_default().push(text);
            } else {
                errors.other.push(format!("{}: {}", v.field, v.description));
            }
        }
        errors
    }

    /// Why an action was refused: a stale etag or a state that no longer
    /// allows it is said as `stale` (the caller shows the record as it is
    /// now); anything else is the API's violations.
    pub fn refused(what: &str, status: &tonic::Status, stale: &str) -> Self {
        match status.code() {
            tonic::Code::Aborted | tonic::Code::FailedPrecondition => {
                Self::message(format!("Not {what}: {stale} ({})", status.message()))
            }
            _ => {
                let mut errors = Self::from_status(status, "", &[]);
                errors.other.insert(0, format!("Not {what}:"));
                errors
            }
        }
    }

    /// One message (no field) above the form.
    pub fn message(text: impl Into<String>) -> Self {
        Self {
            other: vec![text.into()],
            ..Self::default()
        }
    }

    /// A violation the page found itself (a date it cannot read).
    pub fn add(&mut self, field: &str, text: impl Into<String>) {
        self.by_field.entry(field.to_owned()).or_default().push(text.into());
    }

    pub fn is_empty(&self) -> bool {
        self.by_field.is_empty() && self.other.is_empty()
    }

    /// The page's status: OK without errors, else `refused`.
    pub fn status(&self, refused: axum::http::StatusCode) -> axum::http::StatusCode {
        if self.is_empty() {
            axum::http::StatusCode::OK
        } else {
            refused
        }
    }

    /// Every violation, as (field, text), fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_field
            .iter()
            .flat_map(|(field, texts)| texts.iter().map(move |t| (field.as_str(), t.as_str())))
            .chain(self.other.iter().map(|t| ("", t.as_str())))
    }

    pub fn of(&self, field: &str) -> &[String] {
        self.by_field.get(field).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The summary above a form: how many fields need attention, and the
    /// violations that belong to no field.
    pub fn summary(&self) -> Markup {
        html! {
            @if !self.is_empty() {
                div class="error" role="alert" id="form-errors" tabindex="-1" {
                    @if !self.by_field.is_empty() {
                        p { "Please correct the fields marked below." }
                    }
                    @for o in &self.other { p { (o) } }
                }
            }
        }
    }
}

/// How a field is entered.
#[derive(Clone, Copy)]
pub enum Kind {
    Text,
    Email,
    Tel,
    Date,
    /// Several lines; `form.js` checks each line as a CIDR prefix.
    Prefixes,
    /// Free text over several lines.
    Long,
    /// A new password (never echoed back into the page).
    NewPassword,
}

/// One labelled form field with its hint and its violations.
pub struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub kind: Kind,
    pub value: &'a str,
    pub hint: &'a str,
    pub required: bool,
    pub max: usize,
    /// A regular expression the browser checks (the HTML `pattern`).
    pub pattern: Option<&'a str>,
}

impl<'a> Field<'a> {
    pub fn new(name: &'a str, label: &'a str, value: &'a str) -> Self {
        Self {
            name,
            label,
            kind: Kind::Text,
            value,
            hint: "",
            required: false,
            max: 200,
            pattern: None,
        }
    }

    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    pub fn hint(mut self, hint: &'a str) -> Self {
        self.hint = hint;
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    pub fn pattern(mut self, pattern: &'a str) -> Self {
        self.pattern = Some(pattern);
        self
    }

    pub fn render(&self, errors: &FieldErrors) -> Markup {
        let id = format!("f-{}", self.name);
        let hint_id = format!("{id}-hint");
        let error_id = format!("{id}-error");
        let problems = errors.of(self.name);
        let described = if self.hint.is_empty() {
            error_id.clone()
        } else {
            format!("{hint_id} {error_id}")
        };
        let invalid = (!problems.is_empty()).then_some("true");
        html! {
            div class="field" {
                label for=(id) { (self.label) @if self.required { " (required)" } }
                @if !self.hint.is_empty() { small id=(hint_id) { (self.hint) } br; }
                @match self.kind {
                    Kind::Prefixes | Kind::Long => {
                        textarea id=(id) name=(self.name) rows="4" maxlength=(self.max)
                            required[self.required] aria-describedby=(described) aria-invalid=[invalid]
                            data-check=[matches!(self.kind, Kind::Prefixes).then_some("prefixes")] { (self.value) }
                    }
                    _ => {
                        input id=(id) name=(self.name) maxlength=(self.max)
                            value=[(!matches!(self.kind, Kind::NewPassword)).then_some(self.value)]
                            autocomplete=[matches!(self.kind, Kind::NewPassword).then_some("new-password")]
                            type=(match self.kind { Kind::Email => "email", Kind::Tel => "tel", Kind::Date => "date",
                                                    Kind::NewPassword => "password", _ => "text" })
                            required[self.required] pattern=[self.pattern]
                            aria-describedby=(described) aria-invalid=[invalid];
                    }
                }
                p class="violation" id=(error_id) aria-live="polite" {
                    @for (i, p) in problems.iter().enumerate() { @if i > 0 { br; } (p) }
                }
            }
        }
    }
}

/// A labelled choice among `options` (value, label); `value` is selected.
pub fn select(name: &str, label: &str, value: &str, options: &[(String, String)], errors: &FieldErrors) -> Markup {
    let id = format!("f-{name}");
    let error_id = format!("{id}-error");
    let problems = errors.of(name);
    html! {
        div class="field" {
            label for=(id) { (label) }
            select id=(id) name=(name) aria-describedby=(error_id) aria-invalid=[(!problems.is_empty()).then_some("true")] {
                @for (v, l) in options { option value=(v) selected[v == value] { (l) } }
            }
            p class="violation" id=(error_id) aria-live="polite" {
                @for p in problems { (p) }
            }
        }
    }
}

/// A textarea's lines as a list (blank lines dropped).
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn violations_land_on_their_form_fields() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("registration.source_prefixes[1]", "is private space");
        details.add_bad_request_violation("registration.purpose", "is required");
        details.add_bad_request_violation("request_id", "is required");
        let status = tonic::Status::with_error_details(tonic::Code::InvalidArgument, "bad", details);
        let errors = FieldErrors::from_status(&status, "registration.", &["source_prefixes", "purpose"]);
        assert_eq!(errors.of("source_prefixes"), ["Line 2: is private space"]);
        assert_eq!(errors.of("purpose"), ["is required"]);
        assert_eq!(errors.other, ["request_id: is required"]);
    }

    #[test]
    fn a_refusal_without_details_is_one_message() {
        let errors = FieldErrors::from_status(&tonic::Status::aborted("stale"), "registration.", &["purpose"]);
        assert!(errors.of("purpose").is_empty());
        assert_eq!(errors.other, ["stale"]);
    }
}

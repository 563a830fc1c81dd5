//! Importing many registrations from a spreadsheet (an association or IT
//! firm declaring its members' endpoints): a CSV template to download; the
//! file checked line by line with `BatchSubmitRegistrations`'s dry run, each
//! line shown with its violations before anything is submitted; then
//! submitted as batches of 100, each all or nothing, under keys made when the
//! file was checked (sending the page twice submits nothing twice).

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::registration_form::{FORM_FIELDS, RegistrationForm};
use super::{Console, Refused, Visitor, page};
use crate::pb::{self, registration_service_server::RegistrationService};

const BATCH: &str = "/vpnregistry.v1.RegistrationService/BatchSubmitRegistrations";
/// The most one batch holds (the RPC's own limit).
const PER_BATCH: usize = 100;
/// The most lines one file may hold.
const MAX_LINES: usize = 1000;

/// The template's columns: the registration form's fields.
const COLUMNS: &[&str] = FORM_FIELDS;
/// The template's example line.
const EXAMPLE: &str =
    "VPN,WIREGUARD,203.0.114.0/24,,185.60.216.0/24,ptcl,PTCL-778812,Branch-to-head-office VPN,,2027-12-31,";

/// `GET /console/registrations/import/template.csv`
pub(super) async fn template() -> Response {
    let csv = format!("{}\r\n{EXAMPLE}\r\n", COLUMNS.join(","));
    let mut response = csv.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"registrations.csv\""),
    );
    response
}

/// What the import page sends.
#[derive(Deserialize, Default)]
pub(super) struct ImportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    csv: String,
    /// `check`, or `submit` (once every line passed).
    #[serde(default)]
    action: String,
    /// The keys' common part, made when the file was first checked.
    #[serde(default)]
    key: String,
}

/// One line of the file and what became of it.
#[derive(Debug)]
struct Line {
    number: usize,
    registration: Option<pb::Registration>,
    problems: Vec<String>,
    reference: Option<String>,
}

/// `GET /console/registrations/import`
pub(super) async fn form(v: Visitor) -> Response {
    let form = ImportForm::default();
    let markup = page::frame("Import registrations", Some(&v.session), body(&v, &form, &[], None));
    page::respond(StatusCode::OK, markup)
}

/// `POST /console/registrations/import`: check the file, or submit it.
pub(super) async fn import(
    State(c): State<Console>,
    v: Visitor,
    axum::Form(mut form): axum::Form<ImportForm>,
) -> Response {
    if let Err(refusal) = v.check_csrf(&form.csrf) {
        return *refusal;
    }
    if Uuid::try_parse(&form.key).is_err() {
        form.key = Uuid::new_v4().to_string();
    }
    let mut lines = match parse(&form.csv) {
        Ok(lines) => lines,
        Err(problem) => {
            let markup = page::frame(
                "Import registrations",
                Some(&v.session),
                body(&v, &form, &[], Some(&problem)),
            );
            return page::respond(StatusCode::UNPROCESSABLE_ENTITY, markup);
        }
    };
    let submit = form.action == "submit" && lines.iter().all(|l| l.problems.is_empty());
    let mut failure = None;
    for (index, chunk) in lines.chunks_mut(PER_BATCH).enumerate() {
        // The lines that read as registrations are checked; one whose dates
        // do not read already says why.
        let mut readable: Vec<&mut Line> = chunk.iter_mut().filter(|l| l.registration.is_some()).collect();
        if readable.is_empty() {
            continue;
        }
        let msg = pb::BatchSubmitRegistrationsRequest {
            requests: readable
                .iter()
                .map(|l| pb::SubmitRegistrationRequest {
                    registration: l.registration.clone(),
                    ..Default::default()
                })
                .collect(),
            request_id: format!("import-{}-{index}", form.key),
            validate_only: !submit,
        };
        match c
            .call(&v, BATCH, msg, |req| c.registrations.batch_submit_registrations(req))
            .await
        {
            Ok(done) if submit => {
                for (line, r) in readable.iter_mut().zip(done.registrations) {
                    line.reference = Some(r.reference);
                }
            }
            Ok(_) => {}
            Err(Refused::Page(page)) => return *page,
            Err(Refused::Status(status)) => {
                place(&mut readable, &status);
                if submit {
                    failure = Some(status.message().to_owned());
                    break;
                }
            }
        }
    }
    let title = if submit && failure.is_none() {
        "Imported"
    } else {
        "Import registrations"
    };
    let problems = failure.is_some() || lines.iter().any(|l| !l.problems.is_empty());
    let status = if problems {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    page::respond(
        status,
        page::frame(title, Some(&v.session), body(&v, &form, &lines, failure.as_deref())),
    )
}

/// The file's lines as registrations (a line whose dates do not read has
/// its problems instead), or why the file cannot be read at all.
fn parse(text: &str) -> Result<Vec<Line>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("the file is not CSV: {e}"))?
        .clone();
    let names: Vec<&str> = headers.iter().collect();
    if names != COLUMNS {
        return Err(format!(
            "the first line must name the template's columns: {}",
            COLUMNS.join(",")
        ));
    }
    let mut lines = Vec::new();
    for (i, record) in reader.records().enumerate() {
        // Line 1 is the header.
        let number = i + 2;
        let record = record.map_err(|e| format!("line {number}: {e}"))?;
        if lines.len() == MAX_LINES {
            return Err(format!("a file holds at most {MAX_LINES} registrations; split it"));
        }
        let pairs = COLUMNS.iter().zip(record.iter()).map(|(name, value)| {
            // Several prefixes in one cell: separated by spaces or semicolons.
            let value = if name.ends_with("prefixes") {
                value
                    .split([' ', ';'])
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                value.to_owned()
            };
            (name.to_string(), value)
        });
        let encoded = serde_urlencoded::to_string(pairs.collect::<Vec<_>>()).map_err(|e| e.to_string())?;
        let form: RegistrationForm = serde_urlencoded::from_str(&encoded).map_err(|e| e.to_string())?;
        let (registration, problems) = match form.to_pb() {
            Ok(r) => (Some(r), Vec::new()),
            Err(errors) => (None, errors.iter().map(|(f, why)| format!("{f}: {why}")).collect()),
        };
        lines.push(Line {
            number,
            registration,
            problems,
            reference: None,
        });
    }
    if lines.is_empty() {
        return Err("the file has no registrations below its header".into());
    }
    Ok(lines)
}

/// Puts a refused batch's violations on the lines they name
/// (`requests[7].registration.purpose`, or a message `requests[4]: ...`);
/// `chunk` holds the batch's lines in its order.
fn place(chunk: &mut [&mut Line], status: &tonic::Status) {
    use tonic_types::StatusExt as _;
    let item = |text: &str| -> Option<(usize, String)> {
        let rest = text.strip_prefix("requests[")?;
        let (index, rest) = rest.split_once(']')?;
        let rest = rest.trim_start_matches(':').trim_start_matches('.').trim();
        let rest = rest.strip_prefix("registration.").unwrap_or(rest);
        Some((index.parse().ok()?, rest.to_owned()))
    };
    let mut placed = false;
    if let Some(bad) = status.get_details_bad_request() {
        for v in bad.field_violations {
            if let Some((i, field)) = item(&v.field)
                && let Some(line) = chunk.get_mut(i)
            {
                line.problems.push(format!("{field}: {}", v.description));
                placed = true;
            }
        }
    }
    if !placed {
        match item(status.message()).and_then(|(i, what)| chunk.get_mut(i).map(|l| (l, what))) {
            Some((line, what)) => line.problems.push(what),
            None => {
                for line in chunk.iter_mut() {
                    line.problems.push(status.message().to_owned());
                }
            }
        }
    }
}

fn body(v: &Visitor, form: &ImportForm, lines: &[Line], failure: Option<&str>) -> Markup {
    let checked = !lines.is_empty();
    let all_good = checked && lines.iter().all(|l| l.problems.is_empty());
    let submitted = lines.iter().any(|l| l.reference.is_some());
    html! {
        @if let Some(problem) = failure {
            p class="error" role="alert" { (problem) }
        }
        @if submitted && failure.is_none() {
            p class="notice" role="status" {
                (lines.len()) " registrations submitted. Your ISP confirms each next, then a reviewer decides."
            }
        } @else {
            p {
                "Declare many VPNs at once: fill in the "
                a href="/console/registrations/import/template.csv" { "CSV template" }
                " (one registration a line; several prefixes in a cell separated by spaces), paste it below "
                "or choose the file, and check it. Nothing is submitted until every line passes; then the "
                "lines go in batches of " (PER_BATCH) ", each batch all or nothing."
            }
            form method="post" action="/console/registrations/import" {
                input type="hidden" name="csrf" value=(v.session.csrf);
                input type="hidden" name="key" value=(form.key);
                label for="csv-file" { "CSV file" }
                input type="file" id="csv-file" accept=".csv,text/csv" data-fill="csv";
                label for="csv" { "Or paste its contents" }
                textarea id="csv" name="csv" rows="10" { (form.csv) }
                button type="submit" name="action" value="check" { "Check" }
                @if all_good && !submitted {
                    button type="submit" name="action" value="submit" { "Submit " (lines.len()) " registrations" }
                }
            }
        }
        @if checked {
            table {
                thead { tr { th { "Line" } th { "Addresses" } th { "Purpose" } th { "Result" } } }
                tbody {
                    @for line in lines {
                        tr {
                            td { (line.number) }
                            td { @if let Some(r) = &line.registration { (r.source_prefixes.join(" ")) } }
                            td { @if let Some(r) = &line.registration { (r.purpose) } }
                            td {
                                @if let Some(reference) = &line.reference {
                                    "Submitted: " (reference)
                                } @else if line.problems.is_empty() {
                                    "Ready"
                                } @else {
                                    @for p in &line.problems { p class="violation" { (p) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_reads_back_as_one_registration() {
        let header = COLUMNS.join(",");
        let text = format!(
            "{header}\nVPN,WIREGUARD,203.0.114.0/24 203.0.115.0/24,,185.60.216.0/24,ptcl,S-1,Payroll,,2027-12-31,\n"
        );
        let lines = parse(&text).unwrap();
        assert_eq!(lines.len(), 1);
        let example = parse(&format!("{header}\r\n{EXAMPLE}\r\n")).unwrap();
        assert!(example[0].problems.is_empty(), "{:?}", example[0].problems);
        let r = lines[0].registration.as_ref().unwrap();
        assert_eq!(r.source_prefixes, ["203.0.114.0/24", "203.0.115.0/24"]);
        assert_eq!(r.kind, pb::RegistrationKind::Vpn as i32);
        assert_eq!(lines[0].number, 2);
    }

    #[test]
    fn unreadable_files_and_lines_say_why() {
        assert!(parse("a,b\n1,2\n").unwrap_err().contains("columns"));
        let header = COLUMNS.join(",");
        assert!(parse(&format!("{header}\n")).unwrap_err().contains("no registrations"));
        assert!(
            parse(&format!("{header}\nVPN,WIREGUARD\n"))
                .unwrap_err()
                .contains("line 2")
        );
        let text = format!("{header}\nVPN,WIREGUARD,203.0.114.0/24,,,ptcl,S-1,Payroll,,next year,\n");
        let lines = parse(&text).unwrap();
        assert!(
            lines[0].problems.iter().any(|p| p.starts_with("valid_until")),
            "{:?}",
            lines[0].problems
        );
    }

    #[test]
    fn a_batchs_violations_land_on_their_lines() {
        use tonic_types::StatusExt as _;
        let mut chunk: Vec<Line> = (0..3)
            .map(|i| Line {
                number: i + 2,
                registration: Some(pb::Registration::default()),
                problems: Vec::new(),
                reference: None,
            })
            .collect();
        let mut details = tonic_types::ErrorDetails::new();
        details.add_bad_request_violation("requests[2].registration.source_prefixes[0]", "is private");
        let status = tonic::Status::with_error_details(tonic::Code::InvalidArgument, "bad", details);
        place(&mut chunk.iter_mut().collect::<Vec<_>>(), &status);
        assert!(chunk[0].problems.is_empty());
        assert_eq!(chunk[2].problems, ["source_prefixes[0]: is private"]);
        let overlap = tonic::Status::failed_precondition("requests[1]: source prefix 8.8.8.0/24 overlaps");
        place(&mut chunk.iter_mut().collect::<Vec<_>>(), &overlap);
        assert_eq!(chunk[1].problems, ["source prefix 8.8.8.0/24 overlaps"]);
    }
}

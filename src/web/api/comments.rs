//! The proto comments of the API's elements (kept in the descriptors'
//! source info), as the reference's descriptions.

use prost_reflect::{
    EnumDescriptor, FieldDescriptor, FileDescriptor, MessageDescriptor, MethodDescriptor, ServiceDescriptor,
};

/// The leading comment of the element at `path` in `file`, its lines
/// trimmed of the space after `//`; empty without one.
fn leading(file: &FileDescriptor, path: &[i32]) -> String {
    let Some(info) = &file.file_descriptor_proto().source_code_info else {
        return String::new();
    };
    info.location
        .iter()
        .find(|l| l.path == path)
        .and_then(|l| l.leading_comments.as_deref())
        .map(|c| {
            c.lines()
                .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
        .trim()
        .to_owned()
}

pub fn of_service(s: &ServiceDescriptor) -> String {
    leading(&s.parent_file(), s.path())
}

pub fn of_method(m: &MethodDescriptor) -> String {
    leading(&m.parent_file(), m.path())
}

pub fn of_message(m: &MessageDescriptor) -> String {
    leading(&m.parent_file(), m.path())
}

pub fn of_field(f: &FieldDescriptor) -> String {
    leading(&f.parent_file(), f.path())
}

pub fn of_enum(e: &EnumDescriptor) -> String {
    leading(&e.parent_file(), e.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::schema::pool;

    #[test]
    fn comments_are_read_from_the_descriptors() {
        let service = pool()
            .get_service_by_name("vpnregistry.v1.RegistrationService")
            .unwrap();
        assert!(of_service(&service).starts_with("Submission and maintenance of registrations"));
        let submit = service.methods().find(|m| m.name() == "SubmitRegistration").unwrap();
        assert!(of_method(&submit).starts_with("Submits a new registration"));
        let request = submit.input();
        let key = request.get_field_by_name("request_id").unwrap();
        assert!(
            of_field(&key).starts_with("Required idempotency key"),
            "{}",
            of_field(&key)
        );
    }
}

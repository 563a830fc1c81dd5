//! Domain types, validated once at the edge: a value of these types is valid
//! by construction, so inner code need not check again.

pub mod identifiers;
pub mod institution;
pub mod lifecycle;
pub mod prefix;
pub mod principal;
pub mod registration;
pub mod request;
pub mod state;
pub mod text;
pub mod violations;

pub use violations::{Violation, Violations};

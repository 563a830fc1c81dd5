//! Domain types, validated once at the edge: a value of these types is valid
//! by construction, so inner code need not check again.

pub mod account;
pub mod audit;
pub mod calendar;
mod db_enum;
pub mod decision;
pub mod event;
pub mod evidence;
pub mod fees;
pub mod identifiers;
pub mod institution;
pub mod lifecycle;
pub mod prefix;
pub mod principal;
pub mod refusal;
pub mod registration;
pub mod request;
pub mod state;
pub mod text;
pub mod violations;
pub mod workflow;

pub use violations::{Invalid, Violation, Violations};

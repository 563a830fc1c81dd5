//! Authentication and authorisation: bearer tokens in `authorization`
//! metadata, resolved from memory to a [`Principal`] that handlers find in
//! the request extensions, checked against the permission table and the
//! rate limits.

mod caller;
pub mod credentials;
pub mod in_flight;
mod layer;
pub mod limits;
pub mod password;
pub mod permissions;
pub mod token;
pub mod totp;

pub use caller::Caller;
pub use credentials::Credentials;
pub use layer::{AuthLayer, peer_addr};

use tonic::Status;

use crate::domain::principal::Principal;

/// The principal the auth layer (or, for RDAP and the console, the gate)
/// attached to a request.
pub fn principal<T>(req: &tonic::Request<T>) -> Result<&Principal, Status> {
    let ext = req.extensions();
    ext.get::<in_flight::Admitted>()
        .map(|a| &**a.principal())
        .or_else(|| ext.get::<std::sync::Arc<Principal>>().map(|p| &**p))
        .ok_or_else(|| Status::unauthenticated("missing credentials"))
}

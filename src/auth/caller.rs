//! Who a call turned out to be, for whoever records calls: the outermost
//! layer (`observe`) puts an empty [`Caller`] in the request's extensions,
//! the auth layer further in fills it once it has resolved the token, and
//! the outer layer reads it when the call ends.

use std::sync::{Arc, OnceLock};

use uuid::Uuid;

use crate::domain::principal::RoleKind;

/// The token and role of a call, once known.
#[derive(Clone, Default)]
pub struct Caller(Arc<OnceLock<(Uuid, RoleKind)>>);

impl Caller {
    pub fn identify(&self, token: Uuid, role: RoleKind) {
        let _ = self.0.set((token, role));
    }

    /// The token and role, if the call was authenticated.
    pub fn get(&self) -> Option<(Uuid, RoleKind)> {
        self.0.get().copied()
    }
}

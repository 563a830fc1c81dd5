//! Whether this process may write, and answer reads of its own writes: it
//! is fenced while its write database's feed is behind what its replica
//! applied, or follows another session (an old primary back, unfenced,
//! after its standby was promoted). Writes there would be given serials
//! that already name other changes; a read at such a serial would answer
//! from the other history. The health probe closes and opens the fence.

use std::sync::{Arc, RwLock};

use crate::sync::{read, write};

/// Open (`None`) or closed with the reason; shared by clones.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<RwLock<Option<String>>>);

impl Fence {
    /// Why writes are refused, if they are.
    pub fn closed(&self) -> Option<String> {
        read(&self.0).clone()
    }

    /// Closes (with `why`) or opens the fence; whether it changed.
    pub fn set(&self, why: Option<String>) -> bool {
        let mut current = write(&self.0);
        let changed = current.is_some() != why.is_some();
        *current = why;
        changed
    }
}

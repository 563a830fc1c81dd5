//! Documents encrypted at rest. Each document has its own random 256-bit
//! data key; its content is sealed with AES-256-GCM in segments (the STREAM
//! construction: a nonce prefix per document, a counter and a last-segment
//! flag per segment, so segments cannot be reordered, dropped or truncated
//! unnoticed). The data key is stored wrapped (AES-256-GCM) by a
//! key-encryption key read from a file that never enters PostgreSQL, with
//! that key's id, so `document-key rotate` can re-wrap every data key
//! without touching content. A database dump alone decrypts nothing.

mod keyring;
mod seal;

pub use keyring::{KeyError, Keyring, generate_key_file};
pub use seal::{NONCE_PREFIX_LEN, Opener, SEGMENT, Sealer};

/// A data key, as generated per document.
pub type DataKey = [u8; 32];

/// A fresh data key and nonce prefix for a new document.
pub fn new_document_key() -> (DataKey, [u8; NONCE_PREFIX_LEN]) {
    let mut key = [0u8; 32];
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    getrandom::fill(&mut key).expect("the OS random source works");
    getrandom::fill(&mut prefix).expect("the OS random source works");
    (key, prefix)
}

//! A document's content in sealed segments of [`SEGMENT`] plaintext bytes
//! (the last one shorter), so that content streams through in bounded memory
//! both ways.

use aes_gcm::{
    Aes256Gcm, KeyInit,
    aead::stream::{DecryptorBE32, EncryptorBE32},
};

use super::DataKey;

/// Plaintext bytes per sealed segment.
pub const SEGMENT: usize = 64 * 1024;
/// The per-document nonce prefix (AES-GCM's 12-byte nonce less STREAM's
/// 4-byte counter and 1-byte last flag).
pub const NONCE_PREFIX_LEN: usize = 7;

/// Seals content as it arrives: whole segments as soon as they fill, the
/// last (possibly empty) one at [`Sealer::finish`].
pub struct Sealer {
    encryptor: Option<EncryptorBE32<Aes256Gcm>>,
    pending: Vec<u8>,
}

impl Sealer {
    pub fn new(key: &DataKey, prefix: &[u8; NONCE_PREFIX_LEN]) -> Self {
        let cipher = Aes256Gcm::new(key.into());
        Self {
            encryptor: Some(EncryptorBE32::from_aead(cipher, prefix.into())),
            pending: Vec::with_capacity(SEGMENT),
        }
    }

    /// Adds content; the segments sealed by it (none until one fills).
    pub fn push(&mut self, mut content: &[u8]) -> Vec<Vec<u8>> {
        let mut sealed = Vec::new();
        while !content.is_empty() {
            let take = (SEGMENT - self.pending.len()).min(content.len());
            self.pending.extend_from_slice(&content[..take]);
            content = &content[take..];
            // A full segment is sealed only once more content follows: the
            // last segment must be sealed as the last.
            if self.pending.len() == SEGMENT && !content.is_empty() {
                sealed.push(self.seal_pending());
            }
        }
        sealed
    }

    fn seal_pending(&mut self) -> Vec<u8> {
        let encryptor = self.encryptor.as_mut().expect("not finished");
        let segment = encryptor
            .encrypt_next(self.pending.as_slice())
            .expect("AES-GCM seals any segment of this size");
        self.pending.clear();
        segment
    }

    /// Seals what remains as the last segment.
    pub fn finish(mut self) -> Vec<u8> {
        let encryptor = self.encryptor.take().expect("finished once");
        encryptor
            .encrypt_last(self.pending.as_slice())
            .expect("AES-GCM seals any segment of this size")
    }
}

/// Opens a document's sealed segments in order.
pub struct Opener {
    decryptor: Option<DecryptorBE32<Aes256Gcm>>,
}

/// The content was altered, truncated, reordered, or the key is wrong.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the document's content does not open with its key (altered, truncated or the wrong key)")]
pub struct Tampered;

impl Opener {
    pub fn new(key: &DataKey, prefix: &[u8; NONCE_PREFIX_LEN]) -> Self {
        let cipher = Aes256Gcm::new(key.into());
        Self {
            decryptor: Some(DecryptorBE32::from_aead(cipher, prefix.into())),
        }
    }

    /// Opens the next segment; `last` says whether it is the final one.
    pub fn open(&mut self, segment: &[u8], last: bool) -> Result<Vec<u8>, Tampered> {
        if last {
            let decryptor = self.decryptor.take().ok_or(Tampered)?;
            decryptor.decrypt_last(segment).map_err(|_| Tampered)
        } else {
            let decryptor = self.decryptor.as_mut().ok_or(Tampered)?;
            decryptor.decrypt_next(segment).map_err(|_| Tampered)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::new_document_key;

    fn seal(content: &[u8], pieces: usize) -> (DataKey, [u8; NONCE_PREFIX_LEN], Vec<Vec<u8>>) {
        let (key, prefix) = new_document_key();
        let mut sealer = Sealer::new(&key, &prefix);
        let mut segments = Vec::new();
        for piece in content.chunks(content.len().div_ceil(pieces).max(1)) {
            segments.extend(sealer.push(piece));
        }
        segments.push(sealer.finish());
        (key, prefix, segments)
    }

    fn open(key: &DataKey, prefix: &[u8; NONCE_PREFIX_LEN], segments: &[Vec<u8>]) -> Result<Vec<u8>, Tampered> {
        let mut opener = Opener::new(key, prefix);
        let mut out = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            out.extend(opener.open(s, i + 1 == segments.len())?);
        }
        Ok(out)
    }

    #[test]
    fn content_round_trips_whatever_the_pieces_and_exact_segment_sizes() {
        for len in [1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 3 * SEGMENT + 17] {
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for pieces in [1, 3, 1000] {
                let (key, prefix, segments) = seal(&content, pieces);
                assert_eq!(segments.len(), len.div_ceil(SEGMENT).max(1), "len {len}");
                assert_eq!(open(&key, &prefix, &segments).unwrap(), content);
            }
        }
    }

    #[test]
    fn truncated_reordered_altered_or_wrongly_keyed_content_does_not_open() {
        let content = vec![7u8; 2 * SEGMENT + 5];
        let (key, prefix, segments) = seal(&content, 1);
        assert!(open(&key, &prefix, &segments[..2]).is_err(), "truncated");
        let swapped = vec![segments[1].clone(), segments[0].clone(), segments[2].clone()];
        assert!(open(&key, &prefix, &swapped).is_err(), "reordered");
        let mut altered = segments.clone();
        altered[1][10] ^= 1;
        assert!(open(&key, &prefix, &altered).is_err(), "altered");
        let (other, _) = new_document_key();
        assert!(open(&other, &prefix, &segments).is_err(), "another key");
    }
}

//! Key-encryption keys: read from files (`--document-key-file`, the first
//! wraps new data keys, the others only unwrap older ones during a
//! rotation), never stored in PostgreSQL. A key's id is the first 16 hex
//! digits of its SHA-256, so a stored wrapped key names the key that opens
//! it without revealing it.

use std::path::{Path, PathBuf};

use aes_gcm::{Aes256Gcm, KeyInit, aead::Aead};
use sha2::{Digest, Sha256};

use super::DataKey;

/// The first line of a key file.
const HEADER: &str = "vpn-registry document key v1";
/// AES-GCM's nonce.
const NONCE_LEN: usize = 12;

/// Why keys could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("document key file {0}: {1}")]
    File(PathBuf, String),
    #[error("no document key file given (--document-key-file)")]
    None,
    #[error("no configured document key has id {0} (give the file that holds it with --document-key-file)")]
    Unknown(String),
    #[error("a wrapped data key does not open with key {0}: the key file is not the one it was wrapped with")]
    Wrong(String),
}

struct Kek {
    id: String,
    cipher: Aes256Gcm,
}

/// The key-encryption keys of this process.
pub struct Keyring {
    keys: Vec<Kek>,
}

fn id_of(key: &[u8; 32]) -> String {
    Sha256::digest(key)[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn parse(path: &Path, text: &str) -> Result<[u8; 32], KeyError> {
    let bad = |why: &str| KeyError::File(path.to_owned(), why.to_owned());
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    if lines.next() != Some(HEADER) {
        return Err(bad(&format!("not a document key (its first line must be {HEADER:?})")));
    }
    let hex = lines.next().ok_or_else(|| bad("no key line"))?;
    if hex.len() != 64 {
        return Err(bad("the key must be 64 hex digits"));
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad("the key must be hex"))?;
    }
    Ok(key)
}

/// Writes a new random key to `path` (refusing to overwrite one), readable
/// by its owner only; the key's id.
pub fn generate_key_file(path: &Path) -> Result<String, KeyError> {
    use std::io::Write;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| KeyError::File(path.to_owned(), e.to_string()))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| KeyError::File(path.to_owned(), e.to_string()))?;
    writeln!(file, "{HEADER}\n# id {}\n{hex}", id_of(&key))
        .map_err(|e| KeyError::File(path.to_owned(), e.to_string()))?;
    Ok(id_of(&key))
}

impl Keyring {
    /// The keys in `paths`, the first one current.
    pub fn load(paths: &[PathBuf]) -> Result<Self, KeyError> {
        if paths.is_empty() {
            return Err(KeyError::None);
        }
        let keys = paths
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).map_err(|e| KeyError::File(path.clone(), e.to_string()))?;
                let key = parse(path, &text)?;
                Ok(Kek {
                    id: id_of(&key),
                    cipher: Aes256Gcm::new((&key).into()),
                })
            })
            .collect::<Result<_, KeyError>>()?;
        Ok(Self { keys })
    }

    /// The id of the key that wraps new data keys.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// A data key wrapped by the current key: (key id, nonce || sealed key).
    pub fn wrap(&self, data_key: &DataKey) -> (String, Vec<u8>) {
        let kek = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source works");
        let sealed = kek
            .cipher
            .encrypt((&nonce).into(), data_key.as_slice())
            .expect("AES-GCM seals 32 bytes");
        (kek.id.clone(), [nonce.as_slice(), &sealed].concat())
    }

    /// The data key wrapped by key `id`.
    pub fn unwrap(&self, id: &str, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        let kek = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::Unknown(id.to_owned()))?;
        if wrapped.len() < NONCE_LEN {
            return Err(KeyError::Wrong(id.to_owned()));
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let key = kek
            .cipher
            .decrypt(nonce.into(), sealed)
            .map_err(|_| KeyError::Wrong(id.to_owned()))?;
        key.try_into().map_err(|_| KeyError::Wrong(id.to_owned()))
    }

    /// Whether `id` names the current key.
    pub fn is_current(&self, id: &str) -> bool {
        self.keys[0].id == id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_with_its_key_file_only_and_survives_rotation() {
        let dir = std::env::temp_dir().join(format!("vpnr-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (old, new) = (dir.join("old.key"), dir.join("new.key"));
        let old_id = generate_key_file(&old).unwrap();
        assert!(generate_key_file(&old).is_err(), "never overwrites a key");
        let new_id = generate_key_file(&new).unwrap();
        let data_key = [9u8; 32];
        let ring = Keyring::load(std::slice::from_ref(&old)).unwrap();
        let (id, wrapped) = ring.wrap(&data_key);
        assert_eq!(id, old_id);
        assert_eq!(ring.unwrap(&id, &wrapped).unwrap(), data_key);
        // Rotation: the new key current, the old one still opens.
        let rotating = Keyring::load(&[new.clone(), old.clone()]).unwrap();
        let unwrapped = rotating.unwrap(&old_id, &wrapped).unwrap();
        let (id, rewrapped) = rotating.wrap(&unwrapped);
        assert_eq!(id, new_id);
        let after = Keyring::load(&[new]).unwrap();
        assert_eq!(after.unwrap(&new_id, &rewrapped).unwrap(), data_key);
        assert!(matches!(after.unwrap(&old_id, &wrapped), Err(KeyError::Unknown(_))));
        // A file claiming the old id's place with another key cannot open it.
        let mut tampered = wrapped.clone();
        tampered[20] ^= 1;
        assert!(matches!(ring.unwrap(&old_id, &tampered), Err(KeyError::Wrong(_))));
        std::fs::write(dir.join("bad.key"), "not a key").unwrap();
        assert!(Keyring::load(&[dir.join("bad.key")]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

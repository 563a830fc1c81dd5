//! The agent's state on disk: the feed position and the entries, written
//! atomically (a temporary file, fsync, rename, fsync of the directory), so
//! a crash leaves the old state or the new, never a mix. On start the agent
//! enforces from it before the registry answers. A file that is not ours, of
//! another format version, or whose checksum fails is refused whole.

use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::set::{ActiveSet, Entry, Position};

/// The first line of every state file.
const MAGIC: &str = "vpn-registry-agent state";
/// The layout this agent writes and reads.
const VERSION: u32 = 1;
/// The state file's name inside `--state-dir`.
pub const FILE: &str = "state.json";

/// Why a state file was refused (nothing of it is applied).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}: reading it failed: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(
        "{0} is not a vpn-registry-agent state file (it does not start with {MAGIC:?}); move it away or point --state-dir elsewhere"
    )]
    Foreign(PathBuf),
    #[error("{0} is state format version {1}; this agent reads version {VERSION}")]
    Version(PathBuf, u32),
    #[error("{0} is damaged ({1}); it was not applied: remove it and the agent starts from a full snapshot")]
    Corrupt(PathBuf, String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    /// SHA-256 of the body, hex.
    sha256: String,
}

/// The body as read: the entries go straight into the set, never into an
/// intermediate list (a large gateway holds a million).
#[derive(Deserialize)]
struct Body {
    position: Position,
    #[serde(deserialize_with = "into_set")]
    entries: ActiveSet,
}

fn into_set<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ActiveSet, D::Error> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = ActiveSet;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of entries")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ActiveSet, A::Error> {
            // Built in bulk (full nodes), not entry by entry in key order
            // (half-full nodes).
            let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(entry) = seq.next_element::<Entry>()? {
                entries.push(entry);
            }
            Ok(ActiveSet::new(Position::default(), entries))
        }
    }
    d.deserialize_seq(Entries)
}

/// Reads the state in `dir`; `None` when there is none yet. The file is
/// read twice, streaming: once for its checksum, then (only if it
/// matches) into the set.
pub fn load(dir: &Path) -> Result<Option<ActiveSet>, StateError> {
    let path = dir.join(FILE);
    let io = |e: std::io::Error| StateError::Io(path.clone(), e);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut magic = Vec::new();
    (&mut reader)
        .take(MAGIC.len() as u64 + 1)
        .read_to_end(&mut magic)
        .map_err(io)?;
    if magic != format!("{MAGIC}\n").as_bytes() {
        return Err(StateError::Foreign(path));
    }
    let corrupt = |why: String| StateError::Corrupt(path.clone(), why);
    let mut header = String::new();
    (&mut reader).take(4096).read_line(&mut header).map_err(io)?;
    let header: Header = serde_json::from_str(&header).map_err(|e| corrupt(e.to_string()))?;
    if header.version != VERSION {
        return Err(StateError::Version(path, header.version));
    }
    let body_at = reader.stream_position().map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut HashWriter(&mut hasher)).map_err(io)?;
    if hex(&hasher.finalize()) != header.sha256 {
        return Err(corrupt("its checksum does not match".into()));
    }
    reader.seek(std::io::SeekFrom::Start(body_at)).map_err(io)?;
    let body: Body = serde_json::from_reader(reader).map_err(|e| corrupt(e.to_string()))?;
    let mut set = body.entries;
    set.position = body.position;
    Ok(Some(set))
}

/// Writes `set` as the state in `dir`, atomically.
pub fn save(dir: &Path, set: &ActiveSet) -> std::io::Result<()> {
    let mut entries = set.entries();
    save_with(dir, &set.position, |chunk| {
        chunk.extend(entries.by_ref().take(CHUNK).cloned());
        chunk.len() == CHUNK
    })
}

/// Entries serialised per call of the source in [`save_with`].
pub const CHUNK: usize = 10_000;

/// Writes the state at `position`, atomically, in one streaming pass: the
/// entries come from `next`, a chunk at a time (it fills the vector and
/// says whether more may follow), so a caller can hold its lock for a
/// chunk, not for the whole set. The header's checksum is written last,
/// over a placeholder of the same length.
///
/// Entries copied after `position` may already reflect later changes:
/// resuming from `position` replays those changes, and replaying an
/// announcement or a withdrawal twice changes nothing.
pub fn save_with(
    dir: &Path,
    position: &Position,
    mut next: impl FnMut(&mut Vec<Entry>) -> bool,
) -> std::io::Result<()> {
    let header = |sha256: String| {
        serde_json::to_string(&Header {
            version: VERSION,
            sha256,
        })
    };
    write_with(&dir.join(FILE), |file| {
        writeln!(file, "{MAGIC}")?;
        let header_at = file.stream_position()?;
        writeln!(file, "{}", header("0".repeat(64))?)?;
        let mut hasher = Sha256::new();
        let mut body = Tee(file, &mut hasher);
        body.write_all(b"{\"position\":")?;
        serde_json::to_writer(&mut body, position)?;
        body.write_all(b",\"entries\":[")?;
        let (mut chunk, mut first) = (Vec::with_capacity(CHUNK), true);
        loop {
            let more = next(&mut chunk);
            for entry in chunk.drain(..) {
                if !first {
                    body.write_all(b",")?;
                }
                first = false;
                serde_json::to_writer(&mut body, &entry)?;
            }
            if !more {
                break;
            }
        }
        body.write_all(b"]}")?;
        let sha256 = hex(&hasher.finalize());
        file.seek(std::io::SeekFrom::Start(header_at))?;
        write!(file, "{}", header(sha256)?)?;
        Ok(())
    })
}

/// Writes to a file and a hash alike.
struct Tee<'a, W>(&'a mut W, &'a mut Sha256);

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(bytes)?;
        self.1.update(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Feeds what is written to a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Replaces `path` with `content` so that a reader (or a crash) sees the
/// old file or the new one, whole.
pub fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    write_with(path, |file| file.write_all(content))
}

/// [`write_atomically`] of what `write` writes (buffered).
fn write_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(&temporary)?);
    write(&mut file)?;
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("agent-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn a_set() -> ActiveSet {
        let entry = Entry {
            prefix: "203.0.113.0/24".parse().unwrap(),
            reference: "VPN-2026-000001".into(),
            kind: "VPN".into(),
            peers: vec!["198.51.100.0/24".parse().unwrap()],
            valid_until: Some(1_800_000_000),
        };
        let position = Position {
            session: "s-1".into(),
            serial: 42,
        };
        ActiveSet::new(position, [entry])
    }

    #[test]
    fn state_is_read_back_as_written() {
        let dir = dir("roundtrip");
        assert!(load(&dir).unwrap().is_none(), "none yet");
        save(&dir, &a_set()).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(a_set()));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_set_larger_than_a_chunk_is_written_whole_and_read_back() {
        let dir = dir("chunks");
        let entries = (0..CHUNK as u32 * 2 + 7).map(|i| Entry {
            prefix: ipnet::IpNet::new(std::net::Ipv4Addr::from(0x0a00_0000 + i).into(), 32).unwrap(),
            reference: format!("VPN-2026-{i:07}").into(),
            kind: "VPN".into(),
            peers: vec![],
            valid_until: Some(1_800_000_000),
        });
        let set = ActiveSet::new(a_set().position, entries);
        save(&dir, &set).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(set));
    }

    #[test]
    fn a_foreign_or_damaged_file_is_refused_whole() {
        let dir = dir("refused");
        std::fs::write(dir.join(FILE), "{\"some\": \"other tool\"}").unwrap();
        assert!(matches!(load(&dir), Err(StateError::Foreign(_))));
        save(&dir, &a_set()).unwrap();
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap();
        std::fs::write(dir.join(FILE), text.replace("203.0.113.0/24", "203.0.113.0/25")).unwrap();
        let refused = load(&dir).unwrap_err();
        assert!(matches!(refused, StateError::Corrupt(..)), "{refused}");
        assert!(refused.to_string().contains("checksum"));
        std::fs::write(dir.join(FILE), text.replace("\"version\":1", "\"version\":9")).unwrap();
        assert!(matches!(load(&dir), Err(StateError::Version(_, 9))));
        std::fs::write(dir.join(FILE), &text[..text.len() / 2]).unwrap();
        assert!(matches!(load(&dir), Err(StateError::Corrupt(..))), "cut short");
    }
}

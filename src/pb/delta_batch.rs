//! `DeltaBatch` by hand (prost generates every other message): a batch of
//! live deltas goes to every watcher of a replica, so it is encoded once per
//! batch and scope and the bytes are shared; each watcher's message then
//! carries them as they are instead of encoding the batch again. Decoding
//! (clients, fan-out replicas) fills `deltas` as the generated code would.
//! Wired in by `extern_path` in `build.rs`; the wire format is the proto's.

use bytes::{Buf, BufMut, Bytes};
use prost::{
    DecodeError, Message,
    encoding::{DecodeContext, WireType, message, skip_field},
};

use super::Delta;

/// `vpnregistry.v1.DeltaBatch`: deltas in serial order.
#[derive(Clone, PartialEq, Default)]
pub struct DeltaBatch {
    pub deltas: Vec<Delta>,
    /// The encoded `deltas` field, when built once for many watchers; sent
    /// instead of `deltas` (which is then empty).
    encoded: Option<Bytes>,
}

impl DeltaBatch {
    pub fn new(deltas: Vec<Delta>) -> Self {
        Self { deltas, encoded: None }
    }

    /// The encoded body of a batch of `deltas`, to share between watchers.
    pub fn encode_body(deltas: &[Delta]) -> Bytes {
        let mut buf = Vec::with_capacity(message::encoded_len_repeated(1, deltas));
        for d in deltas {
            message::encode(1, d, &mut buf);
        }
        buf.into()
    }

    /// A batch that sends `body` (from [`Self::encode_body`]) as it is.
    pub fn pre_encoded(body: Bytes) -> Self {
        Self {
            deltas: Vec::new(),
            encoded: Some(body),
        }
    }
}

impl std::fmt::Debug for DeltaBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.encoded {
            Some(body) => write!(f, "DeltaBatch {{ {} encoded bytes }}", body.len()),
            None => f.debug_struct("DeltaBatch").field("deltas", &self.deltas).finish(),
        }
    }
}

impl Message for DeltaBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match &self.encoded {
            Some(body) => buf.put_slice(body),
            None => {
                for d in &self.deltas {
                    message::encode(1, d, buf);
                }
            }
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => message::merge_repeated(wire_type, &mut self.deltas, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        match &self.encoded {
            Some(body) => body.len(),
            None => message::encoded_len_repeated(1, &self.deltas),
        }
    }

    fn clear(&mut self) {
        self.deltas.clear();
        self.encoded = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn delta(serial: i64) -> Delta {
        Delta {
            serial,
            operation: pb::ChangeOperation::Announce as i32,
            entry: Some(pb::ActiveEntry {
                prefix: "8.8.8.0/24".into(),
                reference: format!("VPN-2026-{serial:06}"),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_pre_encoded_batch_is_the_same_bytes_and_decodes_to_the_same_deltas() {
        let deltas = vec![delta(1), delta(2), delta(3)];
        let plain = pb::WatchChangesResponse {
            event: Some(pb::watch_changes_response::Event::Deltas(DeltaBatch::new(
                deltas.clone(),
            ))),
        };
        let shared = pb::WatchChangesResponse {
            event: Some(pb::watch_changes_response::Event::Deltas(DeltaBatch::pre_encoded(
                DeltaBatch::encode_body(&deltas),
            ))),
        };
        assert_eq!(plain.encode_to_vec(), shared.encode_to_vec());
        assert_eq!(shared.encoded_len(), plain.encoded_len());
        let decoded = pb::WatchChangesResponse::decode(shared.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, plain);
        let Some(pb::watch_changes_response::Event::Deltas(batch)) = decoded.event else {
            panic!("not deltas");
        };
        assert_eq!(batch.deltas, deltas);
    }
}

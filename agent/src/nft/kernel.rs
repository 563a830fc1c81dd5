//! nf_tables over netlink: the table and sets created if missing, element
//! changes sent as one batch (the kernel applies a batch as one transaction,
//! all or nothing), and a set's elements read back.
//!
//! Not the `nft` command: it re-reads and re-merges whole interval sets on
//! every change (minutes for a thousand deletions from a large set). Here a
//! change is exactly the elements that differ, computed by [`super::layout`].

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_core::{
    DefaultNla, Emitable, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla,
};
use netlink_packet_netfilter::nftables::{
    DataAttribute, GenMessage, ListAttribute, NfTablesMessage, SetAttribute, SetDescription, SetElementAttribute,
    SetElementFlags, SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute, TableMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

pub use super::layout::SetKind;
use super::layout::{Expiry, Family, Layout};

/// Why the kernel could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("netlink: {0}")]
    Io(#[from] io::Error),
    #[error("the kernel refused {what}: {source}")]
    Refused { what: String, source: io::Error },
    #[error("the kernel's answer did not parse: {0}")]
    Decode(String),
    #[error("network namespace {path}: {source}")]
    Netns { path: String, source: io::Error },
}

/// nft's data type numbers (so `nft list` shows addresses, not bytes).
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_BITS: u32 = 6;
/// NFTA_DATA_VALUE, inside a key end.
const NFTA_DATA_VALUE: u16 = 1;
/// NFTA_LIST_ELEM / NFTA_SET_FIELD_LEN, describing a concatenation.
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_FIELD_LEN: u16 = 1;
/// Removes elements, ignoring those already gone (kernel 6.3+): a repair
/// never fails because someone removed an element behind our back.
const NFT_MSG_DESTROYSETELEM: u8 = 30;
/// Elements per message: the element list is one attribute, whose length
/// field is 16 bits.
const ELEMENTS_PER_MESSAGE: usize = 1000;

/// Where the sets live and what they are called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `inet`, `ip`, `ip6`, `bridge` or `netdev`.
    pub family: String,
    pub table: String,
    /// Set names start with this: `<prefix>_hosts4`, `<prefix>_nets6`, ...
    pub set_prefix: String,
}

impl Target {
    pub fn set_name(&self, kind: SetKind, family: Family) -> String {
        let kind = match kind {
            SetKind::Hosts => "hosts",
            SetKind::Nets => "nets",
            SetKind::Flows => "flows",
        };
        let v = match family {
            Family::V4 => 4,
            Family::V6 => 6,
        };
        format!("{}_{kind}{v}", self.set_prefix)
    }

    fn proto(&self) -> NetfilterProtoFamily {
        match self.family.as_str() {
            "ip" => NetfilterProtoFamily::IPv4,
            "ip6" => NetfilterProtoFamily::IPv6,
            "bridge" => NetfilterProtoFamily::Bridge,
            "netdev" => NetfilterProtoFamily::NetDev,
            _ => NetfilterProtoFamily::Inet,
        }
    }
}

/// A netlink socket speaking nf_tables.
pub struct Kernel {
    socket: Socket,
    seq: u32,
    target: Target,
}

impl Kernel {
    /// Opens the socket (in the network namespace at `netns`, when given:
    /// the gateway's, while the agent itself talks to the registry from
    /// its own) and creates the table and sets if they are missing.
    pub fn open(target: Target, netns: Option<&Path>) -> Result<Self, NftError> {
        let mut kernel = Self::connect(target, netns)?;
        kernel.create()?;
        Ok(kernel)
    }

    /// [`Kernel::open`] without creating anything (for `verify`, which
    /// only reads).
    pub fn connect(target: Target, netns: Option<&Path>) -> Result<Self, NftError> {
        let socket = match netns {
            Some(path) => in_namespace(path)?,
            None => Socket::new(NETLINK_NETFILTER)?,
        };
        let mut socket = socket;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Room for the kernel's answers to a dump (a batch's room is made
        // as it is sent).
        force_buffer(&socket, libc::SO_RCVBUFFORCE, 16 << 20);
        Ok(Kernel { socket, seq: 1, target })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The table and the six sets, created if missing (a set that exists
    /// with another type is refused by the kernel, and named).
    pub fn create(&mut self) -> Result<(), NftError> {
        let t = self.target.clone();
        let mut batch = Batch::begin(self);
        let table = NfTablesMessage::NewTable(TableMessage {
            attributes: vec![TableAttribute::Name(t.table.clone())],
        });
        batch.push(self, table, NLM_F_CREATE, || {
            format!("creating table {} {}", t.family, t.table)
        });
        let mut id = 1;
        for family in Family::BOTH {
            let (ty, width) = match family {
                Family::V4 => (TYPE_IPADDR, 4u32),
                Family::V6 => (TYPE_IP6ADDR, 16u32),
            };
            for kind in SetKind::ALL {
                let mut attributes = vec![
                    SetAttribute::Table(t.table.clone()),
                    SetAttribute::Name(t.set_name(kind, family)),
                ];
                match kind {
                    SetKind::Hosts => attributes.extend([
                        SetAttribute::Flags(SetFlags::Timeout),
                        SetAttribute::KeyType(ty),
                        SetAttribute::KeyLen(width),
                    ]),
                    SetKind::Nets => attributes.extend([
                        SetAttribute::Flags(SetFlags::Interval | SetFlags::Timeout),
                        SetAttribute::KeyType(ty),
                        SetAttribute::KeyLen(width),
                    ]),
                    SetKind::Flows => {
                        let field = |len: u32| {
                            let mut inner = vec![0u8; 8];
                            DefaultNla::new(NFTA_SET_FIELD_LEN, len.to_be_bytes().to_vec()).emit(&mut inner);
                            DefaultNla::new(NFTA_LIST_ELEM | netlink_packet_core::NLA_F_NESTED, inner)
                        };
                        attributes.extend([
                            SetAttribute::Flags(SetFlags::Interval | SetFlags::Concat | SetFlags::Timeout),
                            SetAttribute::KeyType(ty << TYPE_BITS | ty),
                            SetAttribute::KeyLen(2 * width),
                            SetAttribute::Description(vec![SetDescription::Concat(vec![field(width), field(width)])]),
                        ])
                    }
                }
                attributes.push(SetAttribute::Id(id));
                id += 1;
                let set = NfTablesMessage::NewSet(SetMessage { attributes });
                batch.push(self, set, NLM_F_CREATE, || {
                    format!("creating set {}", t.set_name(kind, family))
                });
            }
        }
        self.transact(batch)
    }

    /// Applies `remove` then `add` as one transaction; with `flush`, the
    /// sets are emptied first in that same transaction (a reset: the
    /// gateway never sees a half-filled set). `now` turns expiries into
    /// timeouts; elements already expired are not added.
    pub fn apply(&mut self, remove: &Layout, add: &Layout, flush: bool, now: i64) -> Result<(), NftError> {
        // Encoded as they are made, a message of elements at a time: a full
        // load never holds more than one message's element structures. The
        // buffer is sized up front (about 40 bytes an element, ranges two),
        // not doubled as it fills: a full load is tens of megabytes.
        let mut batch = Batch::begin(self);
        let ranges: usize = (0..2).map(|i| add.nets[i].len()).sum();
        batch.buf.reserve(40 * (add.len() + ranges) + 16 * remove.len());
        for family in Family::BOTH {
            for kind in SetKind::ALL {
                let set = self.target.set_name(kind, family);
                if flush {
                    let message = NfTablesMessage::DeleteSetElement(SetElementMessage {
                        attributes: vec![
                            SetElementList::Table(self.target.table.clone()),
                            SetElementList::Set(set.clone()),
                        ],
                    });
                    batch.push(self, message, 0, || format!("flushing set {set}"));
                } else {
                    let mut out = elements(remove, kind, family, None);
                    while let Some(chunk) = next_chunk(&mut out) {
                        let message = self.destroy(&set, chunk);
                        batch.push(self, message, 0, || format!("removing elements from set {set}"));
                    }
                }
                let mut ins = elements(add, kind, family, Some(now));
                while let Some(chunk) = next_chunk(&mut ins) {
                    let message = NfTablesMessage::NewSetElement(SetElementMessage {
                        attributes: vec![
                            SetElementList::Table(self.target.table.clone()),
                            SetElementList::Set(set.clone()),
                            SetElementList::Elements(chunk),
                        ],
                    });
                    batch.push(self, message, NLM_F_CREATE, || format!("adding elements to set {set}"));
                }
            }
        }
        self.transact(batch)
    }

    /// A removal that ignores elements already gone.
    fn destroy(&self, set: &str, chunk: Vec<ListAttribute<SetElementAttribute>>) -> NfTablesMessage {
        let raw = |nla: &SetElementList| {
            let mut value = vec![0u8; nla.value_len()];
            nla.emit_value(&mut value);
            DefaultNla::new(nla.kind(), value)
        };
        NfTablesMessage::Other {
            message_type: NFT_MSG_DESTROYSETELEM,
            attributes: vec![
                raw(&SetElementList::Table(self.target.table.clone())),
                raw(&SetElementList::Set(set.to_owned())),
                raw(&SetElementList::Elements(chunk)),
            ],
        }
    }

    /// What the kernel's sets hold now (`now` turns the remaining
    /// lifetimes back into expiries).
    pub fn read(&mut self, now: i64) -> Result<Layout, NftError> {
        let mut layout = Layout::default();
        let started = std::time::Instant::now();
        for (family, kind) in SetKind::each() {
            self.read_into(&mut layout, family, kind, now, started)?;
        }
        Ok(layout)
    }

    /// [`Kernel::read`] of one set (the others left empty).
    pub fn read_set(&mut self, family: Family, kind: SetKind, now: i64) -> Result<Layout, NftError> {
        let mut layout = Layout::default();
        self.read_into(&mut layout, family, kind, now, std::time::Instant::now())?;
        Ok(layout)
    }

    /// Lists one set into `layout`; `now` was the time at `started`.
    fn read_into(
        &mut self,
        layout: &mut Layout,
        family: Family,
        kind: SetKind,
        now: i64,
        started: std::time::Instant,
    ) -> Result<(), NftError> {
        // Decoded as each message arrives: a million elements are never
        // held twice.
        let mut decoder = Decoder::new(kind, family, now, started);
        self.dump(&self.target.set_name(kind, family), |raw| decoder.push(layout, raw))?;
        decoder.finish(layout).map_err(NftError::Decode)
    }

    /// The ruleset's generation: every transaction (ours or anyone's)
    /// moves it, so a read between two equal generations is consistent.
    pub fn generation(&mut self) -> Result<u32, NftError> {
        let seq = self.next_seq();
        let mut buf = Vec::new();
        let request = NfTablesMessage::GetGen(GenMessage { attributes: vec![] });
        self.encode(&mut buf, request.into(), NLM_F_REQUEST, seq);
        self.socket.send(&buf, 0)?;
        let mut datagram = Vec::with_capacity(1 << 16);
        loop {
            for message in self.receive(&mut datagram)? {
                if message.seq != seq {
                    continue;
                }
                if message.kind == NLMSG_ERROR {
                    return Err(NftError::Refused {
                        what: "reading the ruleset's generation".into(),
                        source: message.error().unwrap_or_else(|| io::Error::other("no answer")),
                    });
                }
                for a in attributes(message.body) {
                    let (kind, value) = a.map_err(NftError::Decode)?;
                    if kind == NFTA_GEN_ID {
                        let id = value
                            .try_into()
                            .map_err(|_| NftError::Decode("a generation of another size".into()))?;
                        return Ok(u32::from_be_bytes(id));
                    }
                }
                return Err(NftError::Decode("a generation without its id".into()));
            }
        }
    }

    /// Every element of one set, as the kernel lists them, to `each`.
    fn dump(&mut self, set: &str, mut each: impl FnMut(RawElement) -> Result<(), String>) -> Result<(), NftError> {
        let seq = self.next_seq();
        let request = NfTablesMessage::GetSetElement(SetElementMessage {
            attributes: vec![
                SetElementList::Table(self.target.table.clone()),
                SetElementList::Set(set.to_owned()),
            ],
        });
        let mut buf = Vec::new();
        self.encode(&mut buf, request.into(), NLM_F_REQUEST | NLM_F_DUMP, seq);
        self.socket.send(&buf, 0)?;
        let mut datagram = Vec::with_capacity(1 << 20);
        loop {
            for message in self.receive(&mut datagram)? {
                if message.seq != seq {
                    continue;
                }
                match message.kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        if let Some(source) = message.error() {
                            return Err(NftError::Refused {
                                what: format!("listing set {set}"),
                                source,
                            });
                        }
                    }
                    _ => parse_elements(message.body, &mut each).map_err(NftError::Decode)?,
                }
            }
        }
    }

    /// Sends one batch and waits for the kernel's verdict on it: the first
    /// refusal (with what it was), or success.
    fn transact(&mut self, batch: Batch) -> Result<(), NftError> {
        let Batch { mut buf, whats } = batch;
        if whats.is_empty() {
            return Ok(());
        }
        let end = self.next_seq();
        self.control(&mut buf, ControlMessage::BatchEnd, end);
        // A batch is one datagram, however large (a full load of a million
        // elements is tens of megabytes).
        force_buffer(
            &self.socket,
            libc::SO_SNDBUFFORCE,
            (buf.len() + (1 << 20)).try_into().unwrap_or(libc::c_int::MAX),
        );
        self.socket.send(&buf, 0)?;
        // The kernel processes the batch while we send it (and ignores
        // whatever follows its end in the same datagram); a request sent
        // after it marks where its answers end.
        let fence = self.next_seq();
        let generation = NfTablesMessage::GetGen(GenMessage { attributes: vec![] });
        buf.clear();
        self.encode(&mut buf, generation.into(), NLM_F_REQUEST, fence);
        self.socket.send(&buf, 0)?;
        let mut refused = None;
        let mut datagram = Vec::with_capacity(1 << 16);
        loop {
            for message in self.receive(&mut datagram)? {
                if message.seq == fence {
                    return refused.map_or(Ok(()), Err);
                }
                if message.kind == NLMSG_ERROR
                    && refused.is_none()
                    && let Some(source) = message.error()
                {
                    let what = whats
                        .iter()
                        .find(|(s, _)| *s == message.seq)
                        .map_or_else(|| "the batch".to_owned(), |(_, w)| w.clone());
                    refused = Some(NftError::Refused { what, source });
                }
            }
        }
    }

    /// The messages of the next datagram, read into `datagram`.
    fn receive<'a>(&self, datagram: &'a mut Vec<u8>) -> Result<Vec<Received<'a>>, NftError> {
        datagram.clear();
        self.socket.recv(datagram, 0)?;
        messages(datagram)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn control(&self, buf: &mut Vec<u8>, message: ControlMessage, seq: u32) {
        // The batch markers name the subsystem in res_id.
        let header = NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, libc::NFNL_SUBSYS_NFTABLES as u16);
        push(buf, NetfilterMessage::new(header, message), NLM_F_REQUEST, seq);
    }

    fn encode(&self, buf: &mut Vec<u8>, inner: NetfilterMessageInner, flags: u16, seq: u32) {
        let header = NetfilterHeader::new(self.target.proto(), 0, 0);
        push(buf, NetfilterMessage::new(header, inner), flags, seq);
    }
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_GEN_ID: u16 = 1;

/// One message of a datagram from the kernel.
struct Received<'a> {
    kind: u16,
    seq: u32,
    /// After the netlink header (and, for nf_tables messages, the
    /// netfilter header).
    body: &'a [u8],
}

impl Received<'_> {
    /// The refusal an error message carries (`None` for an acknowledgement).
    fn error(&self) -> Option<io::Error> {
        let code = i32::from_ne_bytes(self.body.get(..4)?.try_into().ok()?);
        (code != 0).then(|| io::Error::from_raw_os_error(-code))
    }
}

/// The messages of one datagram. Read by hand rather than through the
/// crate's parser, which formats whole payloads into its error contexts
/// as it goes: quadratic in a dump of a large set.
fn messages(datagram: &[u8]) -> Result<Vec<Received<'_>>, NftError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset + 16 <= datagram.len() {
        let at = |i: usize| &datagram[offset + i..];
        let len = u32::from_ne_bytes(at(0)[..4].try_into().unwrap_or_default()) as usize;
        if len < 16 || offset + len > datagram.len() {
            return Err(NftError::Decode(format!("a netlink message of {len} bytes")));
        }
        let kind = u16::from_ne_bytes(at(4)[..2].try_into().unwrap_or_default());
        let seq = u32::from_ne_bytes(at(8)[..4].try_into().unwrap_or_default());
        let skip = if kind == NLMSG_ERROR || kind == NLMSG_DONE {
            16
        } else {
            20
        };
        out.push(Received {
            kind,
            seq,
            body: datagram.get(offset + skip..offset + len).unwrap_or_default(),
        });
        offset += (len + 3) & !3;
    }
    Ok(out)
}

/// An element as listed: key, key end (flows), whether it closes a range,
/// remaining lifetime in milliseconds.
#[derive(Debug, Default)]
struct RawElement {
    key: Vec<u8>,
    key_end: Option<Vec<u8>>,
    end: bool,
    expiration_ms: Option<u64>,
}

/// The attributes in `bytes`: (type, value).
fn attributes(bytes: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), String>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            rest = &[];
            return Some(Err(format!("an attribute of {len} bytes")));
        }
        let value = &rest[4..len];
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
        Some(Ok((kind, value)))
    })
}

/// The value inside a nested NFTA_DATA_VALUE.
fn data_value(nested: &[u8]) -> Result<Vec<u8>, String> {
    for a in attributes(nested) {
        let (kind, value) = a?;
        if kind == NFTA_DATA_VALUE {
            return Ok(value.to_vec());
        }
    }
    Err("a key without its value".into())
}

/// Appends the elements of one NEWSETELEM message.
fn parse_elements(body: &[u8], each: &mut impl FnMut(RawElement) -> Result<(), String>) -> Result<(), String> {
    for list in attributes(body) {
        let (kind, list) = list?;
        if kind != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for element in attributes(list) {
            let (_, element) = element?;
            let mut e = RawElement::default();
            for a in attributes(element) {
                let (kind, value) = a?;
                match kind {
                    NFTA_SET_ELEM_KEY => e.key = data_value(value)?,
                    NFTA_SET_ELEM_KEY_END => e.key_end = Some(data_value(value)?),
                    NFTA_SET_ELEM_FLAGS => {
                        let flags = u32::from_be_bytes(value.try_into().map_err(|_| "flags of another size")?);
                        e.end = flags & SetElementFlags::IntervalEnd.bits() != 0;
                    }
                    NFTA_SET_ELEM_EXPIRATION => {
                        e.expiration_ms = Some(u64::from_be_bytes(
                            value.try_into().map_err(|_| "an expiration of another size")?,
                        ))
                    }
                    _ => {}
                }
            }
            each(e)?;
        }
    }
    Ok(())
}

/// The next message's worth of elements, or `None` when none are left.
fn next_chunk<T>(elements: &mut impl Iterator<Item = T>) -> Option<Vec<T>> {
    let chunk: Vec<T> = elements.by_ref().take(ELEMENTS_PER_MESSAGE).collect();
    (!chunk.is_empty()).then_some(chunk)
}

/// A transaction being encoded: the batch's bytes so far, and what each
/// message does (named in a refusal).
struct Batch {
    buf: Vec<u8>,
    whats: Vec<(u32, String)>,
}

impl Batch {
    fn begin(kernel: &mut Kernel) -> Self {
        let mut buf = Vec::new();
        let seq = kernel.next_seq();
        kernel.control(&mut buf, ControlMessage::BatchBegin, seq);
        Batch { buf, whats: Vec::new() }
    }

    fn push(&mut self, kernel: &mut Kernel, message: NfTablesMessage, flags: u16, what: impl FnOnce() -> String) {
        let seq = kernel.next_seq();
        kernel.encode(&mut self.buf, message.into(), NLM_F_REQUEST | flags, seq);
        self.whats.push((seq, what()));
    }
}

fn push(buf: &mut Vec<u8>, message: NetfilterMessage, flags: u16, seq: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    message.finalize();
    let start = buf.len();
    buf.resize(start + message.buffer_len(), 0);
    message.emit(&mut buf[start..]);
}

fn force_buffer(socket: &Socket, option: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt reads `bytes` for the given length; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "could not enlarge the netlink socket's buffer");
    }
}

/// A netlink socket opened inside another network namespace: from a
/// thread of its own that enters the namespace (a socket stays in the
/// namespace it was created in; the process's other threads stay put).
fn in_namespace(path: &Path) -> Result<Socket, NftError> {
    let file = std::fs::File::open(path).map_err(|source| NftError::Netns {
        path: path.display().to_string(),
        source,
    })?;
    let fd = file.as_raw_fd();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on an open namespace file, for this thread only.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(NftError::Netns {
                        path: path.display().to_string(),
                        source: io::Error::last_os_error(),
                    });
                }
                Ok(Socket::new(NETLINK_NETFILTER)?)
            })
            .join()
            .unwrap_or_else(|_| Err(NftError::Decode("the namespace thread panicked".into())))
    })
}

fn key(bytes: Vec<u8>) -> SetElementAttribute {
    SetElementAttribute::Key(DataAttribute::Value(bytes))
}

fn addr_bytes(family: Family, a: u128) -> Vec<u8> {
    match family {
        Family::V4 => (a as u32).to_be_bytes().to_vec(),
        Family::V6 => a.to_be_bytes().to_vec(),
    }
}

fn addr_from(family: Family, bytes: &[u8]) -> Option<u128> {
    match family {
        Family::V4 => Some(u32::from_be_bytes(bytes.try_into().ok()?) as u128),
        Family::V6 => Some(u128::from_be_bytes(bytes.try_into().ok()?)),
    }
}

/// The element attributes of one set of `layout`, made as they are
/// consumed. With `now`, elements get their timeouts (and expired ones are
/// left out); without, only keys (for a removal).
fn elements(
    layout: &Layout,
    kind: SetKind,
    family: Family,
    now: Option<i64>,
) -> Box<dyn Iterator<Item = ListAttribute<SetElementAttribute>> + '_> {
    let i = family.index();
    // None: leave the element out (expired).
    let timeout = move |e: Expiry| -> Option<Option<SetElementAttribute>> {
        match (now, e) {
            (Some(now), Some(until)) if until <= now => None,
            (Some(now), Some(until)) => Some(Some(SetElementAttribute::Timeout((until - now) as u64 * 1000))),
            _ => Some(None),
        }
    };
    let element = |attributes: Vec<SetElementAttribute>| ListAttribute::Element(attributes);
    match kind {
        SetKind::Hosts => Box::new(layout.hosts[i].iter().filter_map(move |(a, e)| {
            let t = timeout(*e)?;
            Some(element([key(addr_bytes(family, *a))].into_iter().chain(t).collect()))
        })),
        SetKind::Nets => Box::new(
            layout.nets[i]
                .iter()
                .flat_map(move |(lo, (hi, e))| {
                    let Some(t) = timeout(*e) else {
                        return [None, None];
                    };
                    let start = element([key(addr_bytes(family, *lo))].into_iter().chain(t).collect());
                    // The range closes at the next address, unless it reaches the last one.
                    let end = (*hi < family.max()).then(|| {
                        element(vec![
                            key(addr_bytes(family, hi + 1)),
                            SetElementAttribute::Flags(SetElementFlags::IntervalEnd),
                        ])
                    });
                    [Some(start), end]
                })
                .flatten(),
        ),
        SetKind::Flows => Box::new(layout.flows[i].iter().filter_map(move |((slo, shi, plo, phi), e)| {
            let t = timeout(*e)?;
            let mut start = addr_bytes(family, *slo);
            start.extend(addr_bytes(family, *plo));
            let mut end = addr_bytes(family, *shi);
            end.extend(addr_bytes(family, *phi));
            Some(element(
                [
                    key(start),
                    SetElementAttribute::KeyEnd(vec![DefaultNla::new(NFTA_DATA_VALUE, end)]),
                ]
                .into_iter()
                .chain(t)
                .collect(),
            ))
        })),
    }
}

/// A bound without a timeout.
const NO_EXPIRY: i64 = i64::MIN;

/// Turns one set's listed elements into `layout`'s, as they arrive.
struct Decoder {
    kind: SetKind,
    family: Family,
    now: i64,
    /// When the listing began: a large set takes the kernel tens of
    /// seconds to list, and each element's remaining lifetime is counted
    /// from when it was listed, not from `now`.
    started: std::time::Instant,
    /// Range starts and ends, for pairing: (address, expiry or
    /// [`NO_EXPIRY`], is_end); 32 bytes each, a million of them at most.
    bounds: Vec<(u128, i64, bool)>,
}

impl Decoder {
    fn new(kind: SetKind, family: Family, now: i64, started: std::time::Instant) -> Self {
        Decoder {
            kind,
            family,
            now,
            started,
            bounds: Vec::new(),
        }
    }

    fn push(&mut self, layout: &mut Layout, e: RawElement) -> Result<(), String> {
        let (kind, family) = (self.kind, self.family);
        let (i, w) = (family.index(), family.width());
        let listed_after = self.started.elapsed().as_millis() as u64;
        let expiry = e
            .expiration_ms
            .map(|ms| self.now + (listed_after + ms).div_ceil(1000) as i64);
        let k = e.key;
        let bad = || format!("an element of {} bytes in a {kind:?} set", k.len());
        match kind {
            SetKind::Hosts => {
                layout.hosts[i].insert(addr_from(family, &k).ok_or_else(bad)?, expiry);
            }
            SetKind::Nets => self.bounds.push((
                addr_from(family, &k).ok_or_else(bad)?,
                expiry.unwrap_or(NO_EXPIRY),
                e.end,
            )),
            SetKind::Flows => {
                let k_end = e.key_end.ok_or("a flow element without its end")?;
                if k.len() != 2 * w || k_end.len() != 2 * w {
                    return Err(bad());
                }
                let a = |b: &[u8]| addr_from(family, b).ok_or_else(bad);
                let rect = (a(&k[..w])?, a(&k_end[..w])?, a(&k[w..])?, a(&k_end[w..])?);
                layout.flows[i].insert(rect, expiry);
            }
        }
        Ok(())
    }

    /// Pairs the ranges' starts and ends.
    fn finish(mut self, layout: &mut Layout) -> Result<(), String> {
        let i = self.family.index();
        // Ends sort before starts at the same address (adjacent ranges).
        self.bounds.sort_unstable_by_key(|(a, _, end)| (*a, !*end));
        let mut open: Option<(u128, Expiry)> = None;
        for (a, expiry, end) in self.bounds {
            let expiry = (expiry != NO_EXPIRY).then_some(expiry);
            match (open, end) {
                (Some((lo, e)), true) if a > lo => {
                    layout.nets[i].insert(lo, (a - 1, e));
                    open = None;
                }
                (None, false) => open = Some((a, expiry)),
                (Some((lo, e)), false) => {
                    // A start without an end: reaches the last address only if
                    // nothing follows; otherwise the set is damaged.
                    return Err(format!(
                        "a range starting at {lo:#x} (expiry {e:?}) has no end before {a:#x}"
                    ));
                }
                // An end without a start (the kernel lists these for ranges
                // cut by a removal in progress): ignored.
                _ => {}
            }
        }
        if let Some((lo, e)) = open {
            layout.nets[i].insert(lo, (self.family.max(), e));
        }
        Ok(())
    }
}

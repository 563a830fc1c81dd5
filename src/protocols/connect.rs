//! The Connect protocol's unary calls as gRPC calls to the same server:
//! the request's headers become gRPC's and its body is transcoded (JSON to
//! protobuf) only when the handler reads it, after authentication, rate
//! limits and the permission table; the gRPC answer is read whole and given
//! back as Connect gives it (the message, or an error object with its
//! details). No RPC is implemented twice.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt as _;
use tonic::{Status, body::Body, codegen::http};

use super::connect_error;
use super::schema::{self, Unary};

/// The largest Connect request body read: a full CheckAddresses batch in
/// JSON is about 5 MB (the decoded message then meets the method's own
/// limit, as over gRPC).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// How a Connect message is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Proto,
}

impl Format {
    /// The format a unary request's content type names, if it is Connect's.
    pub fn of(content_type: &http::HeaderValue) -> Option<Self> {
        let value = content_type.to_str().ok()?;
        let (essence, params) = value.split_once(';').unwrap_or((value, ""));
        let charset_ok = |p: &str| {
            let p = p.trim();
            p.is_empty() || p.eq_ignore_ascii_case("charset=utf-8")
        };
        match essence.trim().to_ascii_lowercase().as_str() {
            "application/json" if charset_ok(params) => Some(Self::Json),
            "application/proto" if params.trim().is_empty() => Some(Self::Proto),
            _ => None,
        }
    }

    fn content_type(self) -> http::HeaderValue {
        http::HeaderValue::from_static(match self {
            Self::Json => "application/json",
            Self::Proto => "application/proto",
        })
    }
}

/// Why a request cannot be carried as a Connect unary call (its handler
/// answers with this instead of reading the body).
pub fn refusal<B>(req: &http::Request<B>, path: &str) -> Option<Status> {
    if req.method() != http::Method::POST {
        return Some(Status::unimplemented(
            "Connect calls are POST requests (GET is not offered)",
        ));
    }
    let headers = req.headers();
    if let Some(version) = headers.get("connect-protocol-version")
        && version != "1"
    {
        return Some(Status::invalid_argument("connect-protocol-version must be 1"));
    }
    if let Some(encoding) = headers.get(http::header::CONTENT_ENCODING)
        && encoding != "identity"
        && encoding != "gzip"
    {
        return Some(Status::unimplemented(format!(
            "content-encoding {} is not supported; send the body as identity or gzip",
            String::from_utf8_lossy(encoding.as_bytes())
        )));
    }
    if schema::is_streaming(path) {
        return Some(Status::unimplemented(format!(
            "{path} streams: call it over gRPC or gRPC-Web"
        )));
    }
    None
}

/// The Connect request as a gRPC request to the same path.
pub fn to_grpc(
    req: http::Request<Body>,
    format: Format,
    unary: Option<&'static Unary>,
    refused: Option<Status>,
) -> http::Request<Body> {
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    let timeout = headers.remove("connect-timeout-ms");
    let gzip = headers.get(http::header::CONTENT_ENCODING).is_some_and(|e| e == "gzip");
    for name in [
        http::header::CONTENT_LENGTH,
        http::header::CONTENT_ENCODING,
        http::header::ACCEPT_ENCODING,
    ] {
        headers.remove(name);
    }
    headers.remove("connect-protocol-version");
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    if let Some(ms) = timeout.as_ref().and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        // gRPC's timeout has at most 8 digits.
        let value = if ms < 100_000_000 {
            format!("{ms}m")
        } else {
            format!("{}S", (ms / 1000).min(99_999_999))
        };
        headers.insert("grpc-timeout", value.parse().expect("digits and a unit"));
    }
    let body = Transcode {
        body,
        format,
        gzip,
        input: unary,
        refused,
        read: BytesMut::new(),
        done: false,
    };
    http::Request::from_parts(parts, Body::new(body))
}

/// A Connect request body, given to the handler as one gRPC frame once it
/// is whole. Errors are statuses, which the handler answers with as if it
/// had decoded the message itself.
struct Transcode {
    body: Body,
    format: Format,
    /// The body is gzipped (`Content-Encoding: gzip`).
    gzip: bool,
    /// The method's types (none for a path that names no method: the
    /// server answers that without reading the body).
    input: Option<&'static Unary>,
    /// Why the call cannot be carried ([`refusal`]): the body is this error.
    refused: Option<Status>,
    read: BytesMut,
    done: bool,
}

impl Transcode {
    fn too_large() -> Status {
        Status::out_of_range(format!(
            "the request body is larger than {MAX_BODY} bytes, the most a Connect call may send"
        ))
    }

    /// The whole body as one gRPC frame (uncompressed, length-prefixed).
    fn frame(&mut self) -> Result<Bytes, Status> {
        let mut read = std::mem::take(&mut self.read);
        if self.gzip {
            read = gunzip(&read)?;
        }
        let message = match (self.format, self.input) {
            (Format::Json, Some(unary)) => schema::json_to_proto(&unary.input, &read)?.into(),
            _ => read.freeze(),
        };
        let length = u32::try_from(message.len()).map_err(|_| Self::too_large())?;
        let mut frame = BytesMut::with_capacity(5 + message.len());
        frame.put_u8(0);
        frame.put_u32(length);
        frame.put(message);
        Ok(frame.freeze())
    }
}

/// A gzipped body, refused when it expands beyond [`MAX_BODY`].
fn gunzip(compressed: &[u8]) -> Result<BytesMut, Status> {
    use std::io::Read as _;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(compressed)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| Status::invalid_argument(format!("the body is not valid gzip: {e}")))?;
    if plain.len() > MAX_BODY {
        return Err(Transcode::too_large());
    }
    Ok(BytesMut::from(&plain[..]))
}

impl HttpBody for Transcode {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(refused) = this.refused.take() {
            this.done = true;
            return Poll::Ready(Some(Err(refused)));
        }
        // A declared length over the limit is refused before reading any.
        if this.read.is_empty() && this.body.size_hint().lower() > MAX_BODY as u64 {
            this.done = true;
            return Poll::Ready(Some(Err(Self::too_large())));
        }
        loop {
            match std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        if this.read.len() + data.remaining() > MAX_BODY {
                            this.done = true;
                            return Poll::Ready(Some(Err(Self::too_large())));
                        }
                        this.read.put(&mut data);
                    }
                }
                Some(Err(status)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                None => {
                    this.done = true;
                    return Poll::Ready(Some(this.frame().map(Frame::data)));
                }
            }
        }
    }
}

/// The gRPC answer, read whole, as Connect's.
pub async fn to_connect(
    response: http::Response<Body>,
    format: Format,
    unary: Option<&'static Unary>,
) -> http::Response<Body> {
    let (parts, body) = response.into_parts();
    let mut headers = metadata(&parts.headers, "");
    // Trailers-only: the status is in the headers and there is no body.
    if let Some(status) = Status::from_header_map(&parts.headers) {
        return connect_error::error_response(&status, headers);
    }
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(status) => return connect_error::error_response(&status, headers),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    headers.extend(metadata(&trailers, "trailer-"));
    let status =
        Status::from_header_map(&trailers).unwrap_or_else(|| Status::internal("the call ended without a status"));
    if status.code() != tonic::Code::Ok {
        return connect_error::error_response(&status, headers);
    }
    let message = match unframe(collected.to_bytes()).and_then(|m| encode(format, unary, m)) {
        Ok(message) => message,
        Err(status) => return connect_error::error_response(&status, headers),
    };
    let mut response = http::Response::new(Body::new(http_body_util::Full::new(message)));
    *response.headers_mut() = headers;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, format.content_type());
    response
}

/// The message of a unary answer's only frame.
fn unframe(mut frames: Bytes) -> Result<Bytes, Status> {
    if frames.len() < 5 || frames[0] != 0 {
        return Err(Status::internal("the answer is not one uncompressed gRPC frame"));
    }
    frames.advance(1);
    let length = frames.get_u32() as usize;
    if frames.len() != length {
        return Err(Status::internal("the answer is not one uncompressed gRPC frame"));
    }
    Ok(frames)
}

/// The message as the caller asked for it.
fn encode(format: Format, unary: Option<&'static Unary>, message: Bytes) -> Result<Bytes, Status> {
    match (format, unary) {
        (Format::Json, Some(unary)) => schema::proto_to_json(&unary.output, &message).map(Bytes::from),
        _ => Ok(message),
    }
}

/// The call's own metadata from gRPC headers or trailers (what gRPC itself
/// uses is left out), names prefixed as Connect sends trailers.
fn metadata(from: &http::HeaderMap, prefix: &str) -> http::HeaderMap {
    let mut out = http::HeaderMap::new();
    for (name, value) in from {
        let n = name.as_str();
        if n.starts_with("grpc-") || matches!(n, "content-type" | "content-length" | "te" | "trailer") {
            continue;
        }
        let name = if prefix.is_empty() {
            name.clone()
        } else {
            match http::HeaderName::try_from(format!("{prefix}{n}")) {
                Ok(name) => name,
                Err(_) => continue,
            }
        };
        out.append(name, value.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(value: &'static str) -> Option<Format> {
        Format::of(&http::HeaderValue::from_static(value))
    }

    #[test]
    fn content_types_name_the_format() {
        assert_eq!(format("application/json"), Some(Format::Json));
        assert_eq!(format("application/json; charset=utf-8"), Some(Format::Json));
        assert_eq!(format("Application/JSON"), Some(Format::Json));
        assert_eq!(format("application/json; charset=latin1"), None);
        assert_eq!(format("application/proto"), Some(Format::Proto));
        assert_eq!(format("application/grpc"), None);
        assert_eq!(format("application/grpc-web+proto"), None);
        assert_eq!(format("application/connect+json"), None);
    }

    #[test]
    fn gzipped_bodies_are_read_within_the_limit() {
        use std::io::Write as _;
        let gzip = |plain: &[u8]| {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(plain).unwrap();
            encoder.finish().unwrap()
        };
        assert_eq!(&gunzip(&gzip(b"{\"id\": \"x\"}")).unwrap()[..], b"{\"id\": \"x\"}");
        // A small body that expands past the limit (a "zip bomb").
        let bomb = gzip(&vec![b' '; MAX_BODY + 1]);
        assert!(bomb.len() < 100_000);
        assert_eq!(gunzip(&bomb).unwrap_err().code(), tonic::Code::OutOfRange);
        assert_eq!(gunzip(b"not gzip").unwrap_err().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn only_a_single_uncompressed_frame_is_an_answer() {
        assert_eq!(unframe(Bytes::from_static(b"\0\0\0\0\x02hi")).unwrap(), "hi");
        assert!(unframe(Bytes::from_static(b"\x01\0\0\0\x02hi")).is_err());
        assert!(unframe(Bytes::from_static(b"\0\0\0\0\x03hi")).is_err());
        assert!(unframe(Bytes::from_static(b"\0\0")).is_err());
    }
}

//! Calling any RPC by path with raw request bytes: for walking the
//! permission table and for sending hostile bytes.

use prost::bytes::{Buf, BufMut};
use tonic::{
    Request, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    transport::Channel,
};

/// Sends and receives bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Calls `path` with `body` as `token`; for the server-streaming
/// WatchChanges, waits for the first message. `Ok` carries the (first)
/// answer's bytes.
pub async fn call(channel: &Channel, path: &str, token: Option<&str>, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    call_within(channel, path, token, body, std::time::Duration::from_secs(10)).await
}

/// [`call`] with a deadline.
pub async fn call_within(
    channel: &Channel,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    deadline: std::time::Duration,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = Request::new(body);
    req.set_timeout(deadline);
    if let Some(token) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let path: PathAndQuery = path.parse().unwrap();
    if path.path().ends_with("/WatchChanges") {
        let mut stream = grpc.server_streaming(req, path, RawCodec).await?.into_inner();
        Ok(stream.message().await?.unwrap_or_default())
    } else if path.path().ends_with("/WatchInstitutionEvents") {
        // Answered once the stream opens (events may never come).
        grpc.server_streaming(req, path, RawCodec).await?;
        Ok(Vec::new())
    } else {
        Ok(grpc.unary(req, path, RawCodec).await?.into_inner())
    }
}

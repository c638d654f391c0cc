//! The standard gRPC health check (`grpc.health.v1.Health/Check`) as an active probe: one call
//! on a new HTTP/2 connection, closed after the answer.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use super::super::Upstream;
use super::scheme;
use crate::pool::Backend;

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

impl Upstream {
    /// Asks `backend` whether `service` (empty: the whole server) is `SERVING`, by `deadline`;
    /// the connection goes through the same connector as traffic. `Err` says why not (a status
    /// other than `SERVING`, a gRPC error, a transport failure).
    pub(crate) async fn probe_grpc(
        &self,
        backend: &Backend,
        service: &str,
        deadline: Instant,
    ) -> Result<(), String> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let stream = self
            .connect_http2(backend, timeout, deadline)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, connection) =
            http2::handshake::<_, _, Full<Bytes>>(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        let driver = tokio::spawn(connection);
        let uri = Uri::builder()
            .scheme(scheme(backend))
            .authority(backend.authority.clone())
            .path_and_query("/grpc.health.v1.Health/Check")
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = Request::new(Full::new(check_request(service)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert(
            "user-agent",
            HeaderValue::from_static("lbhost-health-check"),
        );
        let call = async {
            let response = send
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            if response.status() != http::StatusCode::OK {
                return Err(format!("HTTP status {}", response.status().as_u16()));
            }
            let in_head = response.headers().get("grpc-status").cloned();
            let collected = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            let status = in_head.or_else(|| {
                collected
                    .trailers()
                    .and_then(|t| t.get("grpc-status").cloned())
            });
            match status.as_ref().map(HeaderValue::as_bytes) {
                Some(b"0") => {}
                Some(code) => {
                    return Err(format!(
                        "grpc-status {}",
                        String::from_utf8_lossy(code)
                            .chars()
                            .take(8)
                            .collect::<String>()
                    ))
                }
                None => return Err("no grpc-status".into()),
            }
            match serving_status(&collected.to_bytes()) {
                Some(SERVING) => Ok(()),
                Some(other) => Err(format!("serving status {other} (not SERVING)")),
                None => Err("a malformed HealthCheckResponse".into()),
            }
        };
        let result = tokio::time::timeout_at(deadline, call)
            .await
            .unwrap_or_else(|_| Err("no answer in time".into()));
        drop(send);
        driver.abort();
        result
    }
}

/// A `HealthCheckRequest { service }` as one gRPC message (uncompressed).
fn check_request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        // Field 1, length-delimited; the service name is at most 256 bytes (config).
        message.put_u8(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(&message);
    framed.freeze()
}

fn put_varint(out: &mut BytesMut, mut n: u64) {
    while n >= 0x80 {
        out.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.put_u8(n as u8);
}

/// `HealthCheckResponse.status` (field 1, a varint; 0 when absent) from one uncompressed gRPC
/// message, or `None` if it does not parse.
fn serving_status(body: &[u8]) -> Option<u64> {
    let (&compressed, rest) = body.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let mut message = rest.get(4..4 + len)?;
    let mut status = 0;
    while let Some((&tag, rest)) = message.split_first() {
        message = rest;
        let (value, rest) = varint(message)?;
        match tag {
            0x08 => {
                status = value;
                message = rest;
            }
            // Another varint field: skipped.
            t if t & 7 == 0 => message = rest,
            // A length-delimited field: skipped.
            t if t & 7 == 2 => message = rest.get(value as usize..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn varint(mut bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value, bytes));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_encode_and_decode() {
        assert_eq!(&check_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &check_request("a.B")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b'a', b'.', b'B']
        );
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(serving_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(serving_status(&[0, 0, 0, 0, 9]), None);
    }
}

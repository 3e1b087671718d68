//! One HTTP/1.1 POST on a fresh TCP connection (hyper's client), as the scanners' clients
//! need it (rspamd's `/checkv2` and its controller's `/learnspam`): within a timeout, the
//! reply body bounded, the status returned for the caller to judge. Header values HTTP
//! cannot carry are left out, never sent broken. It keeps no connection and no state.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Why no reply came.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("HTTP exchange with {address} failed: {reason}")]
    Exchange { address: String, reason: String },
    #[error("{address} did not answer within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
}

/// POST `body` to `http://address/path` with `headers`; the status and at most
/// `reply_max_bytes` of the reply (a longer reply is an error).
pub async fn post(
    address: &str,
    path: &str,
    headers: &[(&'static str, String)],
    body: Bytes,
    timeout: Duration,
    reply_max_bytes: usize,
) -> Result<(u16, Bytes), HttpError> {
    let exchange = exchange(address, path, headers, body, reply_max_bytes);
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout { address: address.to_string(), timeout }),
    }
}

async fn exchange(
    address: &str,
    path: &str,
    headers: &[(&'static str, String)],
    body: Bytes,
    reply_max_bytes: usize,
) -> Result<(u16, Bytes), HttpError> {
    let failed =
        |e: &dyn std::fmt::Display| HttpError::Exchange { address: address.to_string(), reason: e.to_string() };
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|source| HttpError::Connect { address: address.to_string(), source })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(&e))?;
    let driver = tokio::spawn(connection);
    let mut request = Request::post(path).header(hyper::header::HOST, address);
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            request = request.header(HeaderName::from_static(name), value);
        }
    }
    let request = request.body(Full::new(body)).map_err(|e| failed(&e))?;
    let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
    let status = response.status().as_u16();
    let reply = Limited::new(response.into_body(), reply_max_bytes).collect().await.map_err(|e| failed(&*e))?;
    driver.abort();
    Ok((status, reply.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_post_carries_its_headers_and_returns_status_and_bounded_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = vec![0u8; 4096];
            let n = s.read(&mut got).await.unwrap();
            s.write_all(b"HTTP/1.1 208 Already Reported\r\nContent-Length: 5\r\n\r\nhello").await.unwrap();
            String::from_utf8_lossy(&got[..n]).into_owned()
        });
        let headers = [("password", "pw".to_string()), ("rcpt", "bad\r\nvalue".to_string())];
        let (status, body) =
            post(&addr, "/learnspam", &headers, Bytes::from_static(b"msg"), Duration::from_secs(5), 16).await.unwrap();
        assert_eq!((status, &body[..]), (208, &b"hello"[..]));
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /learnspam HTTP/1.1\r\n") && request.contains("password: pw\r\n"),
            "{request}"
        );
        assert!(!request.contains("rcpt"), "an unsendable value is left out: {request}");
        assert!(request.ends_with("\r\n\r\nmsg"), "{request}");
    }
}

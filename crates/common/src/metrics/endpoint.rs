//! The `/metrics` HTTP listener (hyper, HTTP/1.1): `GET /metrics` answers the registry in
//! the Prometheus text format 0.0.4; with a token configured, only to a request bearing
//! `Authorization: Bearer TOKEN` (compared in constant time). It serves nothing else, holds
//! at most [`CONNECTIONS_MAX`] connections and each for at most [`CONNECTION_TIME_MAX`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Scrapers at once (Prometheus keeps one connection per target).
pub const CONNECTIONS_MAX: usize = 16;
/// How long one connection may last, keep-alive included.
pub const CONNECTION_TIME_MAX: Duration = Duration::from_secs(60);

/// The content type of the text format 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The registry as the text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry).expect("writing to a String cannot fail");
    text
}

/// What the endpoint serves and to whom.
struct Endpoint {
    registry: Registry,
    token: Option<String>,
}

impl Endpoint {
    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != "/metrics" {
            return status(StatusCode::NOT_FOUND, "only /metrics is served here\n");
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return status(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
        }
        if !self.authorized(request) {
            let mut refused = status(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
            refused.headers_mut().insert("www-authenticate", "Bearer".parse().expect("a valid header value"));
            return refused;
        }
        let mut ok = Response::new(Full::new(Bytes::from(render(&self.registry))));
        ok.headers_mut().insert("content-type", CONTENT_TYPE.parse().expect("a valid header value"));
        ok
    }

    fn authorized(&self, request: &Request<Incoming>) -> bool {
        let Some(token) = &self.token else { return true };
        let given = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let given = given.strip_prefix("Bearer ").unwrap_or("");
        given.as_bytes().ct_eq(token.as_bytes()).into()
    }
}

fn status(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = code;
    response
}

/// Serve `registry` on `listener` until the listener fails.
pub async fn serve(listener: TcpListener, registry: Registry, token: Option<String>) -> std::io::Result<()> {
    let endpoint = Arc::new(Endpoint { registry, token });
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: this connection is closed at once (the scraper retries next interval).
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(endpoint.answer(&request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIME_MAX, connection).await;
            drop(slot);
        });
    }
}

/// Bind `address` and serve `registry` there, logging where.
pub async fn start(address: &str, registry: Registry, token: Option<String>) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics");
    tokio::spawn(async move {
        if let Err(e) = serve(listener, registry, token).await {
            tracing::error!(error = %e, "the /metrics listener failed");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(address: std::net::SocketAddr, path: &str, token: Option<&str>) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn metrics_are_served_to_the_token_bearer_only() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("mail_things", "Things", counter.clone());
        counter.inc_by(7);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, registry, Some("sesame".into())));
        let refused = get(address, "/metrics", None).await;
        assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
        let wrong = get(address, "/metrics", Some("sesamf")).await;
        assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
        let served = get(address, "/metrics", Some("sesame")).await;
        assert!(served.starts_with("HTTP/1.1 200"), "{served}");
        assert!(served.contains("content-type: text/plain; version=0.0.4"), "{served}");
        assert!(served.contains("mail_things_total 7"), "{served}");
        let elsewhere = get(address, "/secrets", Some("sesame")).await;
        assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
    }
}

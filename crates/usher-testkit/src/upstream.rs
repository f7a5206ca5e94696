//! A small app to put behind Usher: it answers with what it received (method, path,
//! headers, body size) as JSON, streams on `/stream`, answers 204 on `/empty`, echoes
//! WebSocket messages, and counts the connections it accepted.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub struct Upstream {
    pub addr: SocketAddr,
    /// `/stream` sends its second chunk only after this is notified.
    pub release: Arc<Notify>,
    connections: Arc<AtomicUsize>,
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

impl Upstream {
    pub async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let release = Arc::new(Notify::new());
        let rel = release.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let rel = rel.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, rel.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            release,
            connections,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn uri(&self) -> http::Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }
}

async fn handle(
    req: Request<Incoming>,
    release: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    if req.headers().contains_key("sec-websocket-key") {
        return Ok(websocket(req));
    }
    if req.uri().path() == "/empty" {
        return Ok(Response::builder()
            .status(204)
            .body(BodyExt::boxed(Full::new(Bytes::new())))
            .unwrap());
    }
    if req.uri().path() == "/stream" {
        let stream = futures_util::stream::unfold(0u8, move |n| {
            let release = release.clone();
            async move {
                match n {
                    0 => Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"first;"))),
                        1,
                    )),
                    1 => {
                        release.notified().await;
                        Some((Ok(Frame::data(Bytes::from_static(b"second"))), 2))
                    }
                    _ => None,
                }
            }
        });
        return Ok(Response::new(BodyExt::boxed(StreamBody::new(stream))));
    }
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = serde_json::json!({
        "method": method,
        "path": path,
        "headers": headers,
        "body_len": body.len(),
        "body_sha_prefix": body.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>(),
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", "yes")
        .body(BodyExt::boxed(Full::new(Bytes::from(json.to_string()))))
        .unwrap())
}

/// Answers the WebSocket handshake, then echoes every message, prefixed with the
/// `Remote-User` the upgrade request carried.
fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
    let user = req
        .headers()
        .get("remote-user")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() {
                let reply = format!("{user}:{}", msg.into_text().unwrap());
                if ws.send(reply.into()).await.is_err() {
                    break;
                }
            }
        }
    });
    Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(&key))
        .body(BodyExt::boxed(Full::new(Bytes::new())))
        .unwrap()
}

/// The values the echo upstream saw for header `name` (any case), in order.
pub fn header_values(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

/// `GET url` (the upstream's `/stream`, through Usher) with `cookie`: the answer once
/// its first chunk has come; the second waits for [`Upstream::release`].
pub async fn stream_begun(url: &str, cookie: &str) -> reqwest::Response {
    let mut r = crate::client()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.chunk().await.unwrap().unwrap()[..], b"first;");
    r
}

/// The rest of a streamed answer's body.
pub async fn stream_rest(r: &mut reqwest::Response) -> Vec<u8> {
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    rest
}

/// What the echo upstream saw of `req` (sent through Usher), as JSON.
pub async fn echo_of(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// An upstream written by hand, for what hyper's server never sends (odd framings,
/// early answers, connections closed mid-way). `serve` gets each accepted connection
/// and its number, from 1.
pub async fn raw_upstream<F, Fut>(serve: F) -> http::Uri
where
    F: Fn(RawConn, usize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((stream, _)) = listener.accept().await {
            n += 1;
            let conn = RawConn {
                stream,
                buf: Vec::new(),
            };
            tokio::spawn(serve(conn, n));
        }
    });
    format!("http://{addr}").parse().unwrap()
}

/// One connection to a [`raw_upstream`].
pub struct RawConn {
    pub stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// The next request's head (without its blank line), once whole; `None` when the
    /// connection ends first. A body is left unread.
    pub async fn head(&mut self) -> Option<String> {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Some(head);
            }
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
    }

    /// Writes `bytes` as they are: whether they went.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.is_ok()
    }
}

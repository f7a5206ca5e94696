//! HTTP/1.1 as Usher speaks it to its upstream, over bytes only: the request head
//! written, the response head read, the response body delimited (RFC 9112). No sockets
//! here, so every framing rule is tested on its own.
//!
//! Only the upstream's side is spoken by hand (issue 9: hyper's client machinery was a
//! third of a proxied request's own instructions). Clients still reach Usher through
//! hyper's server, which parses what a stranger sends; the upstream is the application
//! Usher guards, and anything it sends that is not plain HTTP/1.1 is a 502, never a
//! guess.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::fmt::Write as _;
use std::mem::MaybeUninit;

/// The longest response head accepted (hyper's client allows about as much).
pub const MAX_HEAD: usize = 64 * 1024;
/// Header fields in a response head at most.
const MAX_HEADERS: usize = 128;
/// A chunk-size line, or the whole of the trailer section, longer than this is refused.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("the response head is malformed ({0})")]
    Head(httparse::Error),
    #[error("the response head is longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    #[error("a response header is not valid: {0}")]
    Header(&'static str),
    #[error("the response's Content-Length is not one number")]
    ContentLength,
    #[error("a chunk of the response body is malformed")]
    Chunk,
    #[error("the connection closed inside the response body")]
    Truncated,
    #[error("the upstream switched protocols without being asked to")]
    UnaskedUpgrade,
}

/// How a request's body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// None: nothing is written after the head.
    Empty,
    /// Exactly this many bytes (the head says so in `Content-Length`).
    Length(u64),
    /// Of a length not known in advance: chunked.
    Chunked,
}

/// A request head as it is written: the request line, then field after field.
pub struct HeadWriter {
    out: BytesMut,
}

impl HeadWriter {
    pub fn new(method: &Method, target: &str) -> Self {
        // Room for a typical head at once: growing the buffer copies it.
        let mut out = BytesMut::with_capacity(1024);
        out.extend_from_slice(method.as_str().as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        Self { out }
    }

    /// One field, from a `HeaderName` and a `HeaderValue`'s bytes (valid as such). A
    /// `Content-Length` or `Transfer-Encoding` is not written: the framing is written
    /// by [`HeadWriter::finish`] from what the body is, never from what a client said.
    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        if name == b"content-length" || name == b"transfer-encoding" {
            return;
        }
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
    }

    /// The whole head, with the framing `body` needs.
    pub fn finish(mut self, method: &Method, body: RequestBody) -> BytesMut {
        let out = &mut self.out;
        match body {
            RequestBody::Empty => {
                // A body-less request whose method normally has one still says so, as
                // hyper's client did: some servers wait for a body otherwise.
                if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
            }
            RequestBody::Length(n) => {
                // Writing to a `BytesMut` cannot fail.
                let _ = write!(out, "content-length: {n}\r\n");
            }
            RequestBody::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        out.extend_from_slice(b"\r\n");
        self.out
    }
}

/// The size line of one chunk of a chunked request body.
pub fn chunk_size_line(len: usize) -> Bytes {
    // Upper-case, as hyper writes it: the fast lane writes its answers with this too.
    Bytes::from(format!("{len:X}\r\n"))
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyKind,
    /// Whether the connection can carry another request once the body has been read.
    pub reusable: bool,
}

#[derive(Debug)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// An interim (1xx) response, this many bytes long: dropped, the real one follows.
    Interim(usize),
    /// The response head, taken out of the buffer.
    Head(ResponseHead),
}

/// Reads a response head from the front of `buf`, taking it out when whole. `head`:
/// the request was a HEAD (its answer has no body, whatever its headers say);
/// `upgrade`: the request asked to switch protocols (only then is 101 an answer).
pub fn parse_response_head(
    buf: &mut BytesMut,
    head: bool,
    upgrade: bool,
) -> Result<Parsed, WireError> {
    // Left uninitialised for httparse to fill: zeroing room for every field a head
    // may have cost more than parsing the few it has (`usher-bench --instructions`).
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(WireError::HeadTooLong);
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(WireError::Head(e)),
    };
    if len > MAX_HEAD {
        return Err(WireError::HeadTooLong);
    }
    let code = resp.code.unwrap_or_default();
    let status =
        StatusCode::from_u16(code).map_err(|_| WireError::Head(httparse::Error::Status))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Parsed::Interim(len));
    }
    if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err(WireError::UnaskedUpgrade);
    }
    let http11 = resp.version == Some(1);
    // Where each field lies in the buffer (name, value), so that the values can share
    // its bytes instead of each being copied into an allocation of its own; and the
    // framing, read on the way rather than looked up in the map afterwards.
    let base = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(resp.headers.len());
    let mut framing = Framing::default();
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        framing.field(name, h.value);
        let (n, v) = (
            name.as_ptr() as usize - base,
            h.value.as_ptr() as usize - base,
        );
        spans.push((n, n + name.len(), v, v + h.value.len()));
    }
    let bytes = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    for (name_from, name_to, from, to) in spans {
        let name = HeaderName::from_bytes(&bytes[name_from..name_to])
            .map_err(|_| WireError::Header("a name is not a token"))?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(from..to))
            .map_err(|_| WireError::Header("a value holds control characters"))?;
        headers.append(name, value);
    }
    let (body, framed) = framing.body_kind(status, head)?;
    if framing.coded {
        // Both framings: the coding won, and the length is a lie to pass on to no one
        // (RFC 9112 §6.3).
        headers.remove(header::CONTENT_LENGTH);
    }
    let reusable = http11 && framed && !framing.close;
    Ok(Parsed::Head(ResponseHead {
        status,
        headers,
        body,
        reusable,
    }))
}

/// A `Content-Length` value: one number, or a list of the same number (`5, 5`);
/// anything else — two numbers, a sign, an empty value — is `None`, a length to refuse.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for part in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
        let n = std::str::from_utf8(part)
            .ok()
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u64>().ok())?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// What a response head's fields say of its body and its connection.
#[derive(Default)]
struct Framing {
    /// A `Transfer-Encoding` was given…
    coded: bool,
    /// …and its last coding is `chunked`.
    chunked: bool,
    length: Option<u64>,
    /// A `Content-Length` that is not one number (refused when it counts).
    bad_length: bool,
    /// `Connection: close`.
    close: bool,
}

/// The comma-separated elements of a field's value, trimmed, empty ones left out.
pub(crate) fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

impl Framing {
    fn field(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.coded = true;
            if let Some(last) = elements(value).last() {
                self.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match content_length(value) {
                Some(n) if self.length.is_none_or(|l| l == n) => self.length = Some(n),
                _ => self.bad_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.close |= elements(value).any(|t| t.eq_ignore_ascii_case(b"close"));
        }
    }

    /// RFC 9112 §6.3, in its order. The second value: whether the framing leaves the
    /// connection usable afterwards (a body read until close does not, nor one whose
    /// head gave both a `Transfer-Encoding` and a `Content-Length`).
    fn body_kind(&self, status: StatusCode, head: bool) -> Result<(BodyKind, bool), WireError> {
        if head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok((BodyKind::Empty, true));
        }
        if self.coded {
            let clean = self.length.is_none() && !self.bad_length;
            return Ok(if self.chunked {
                (BodyKind::Chunked, clean)
            } else {
                (BodyKind::UntilClose, false)
            });
        }
        if self.bad_length {
            return Err(WireError::ContentLength);
        }
        Ok(match self.length {
            Some(0) => (BodyKind::Empty, true),
            Some(n) => (BodyKind::Length(n), true),
            None => (BodyKind::UntilClose, false),
        })
    }
}

/// Takes a response body out of the bytes read so far, piece by piece.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    /// In the trailer section, this many bytes of it read.
    Trailers(usize),
    Done,
}

/// What [`Decoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// Nothing more until more bytes are read.
    NeedMore,
    /// The body is over.
    Done,
}

impl Decoder {
    pub fn new(kind: BodyKind) -> Self {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::ChunkSize,
            BodyKind::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The body's bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The next piece of body from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, WireError> {
        loop {
            match self.state {
                State::Done => return Ok(Step::Done),
                State::Length(n) | State::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let left = n - take as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                State::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((len, 0))) => {
                        buf.advance(len);
                        self.state = State::Trailers(0);
                    }
                    Ok(httparse::Status::Complete((len, size))) => {
                        buf.advance(len);
                        self.state = State::ChunkData(size);
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_LINE => {
                        return Err(WireError::Chunk);
                    }
                    Ok(httparse::Status::Partial) => return Ok(Step::NeedMore),
                    Err(_) => return Err(WireError::Chunk),
                },
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunk);
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers(seen) => {
                    // Trailer fields are read past, not passed on: a client must ask for
                    // them (`TE: trailers`), and Usher removes `TE` on the way in.
                    let Some(end) = memchr::memchr(b'\n', buf) else {
                        if seen + buf.len() > MAX_TRAILERS {
                            return Err(WireError::Chunk);
                        }
                        return Ok(Step::NeedMore);
                    };
                    let line = &buf[..end];
                    let empty = line.is_empty() || line == b"\r";
                    if seen + end > MAX_TRAILERS {
                        return Err(WireError::Chunk);
                    }
                    buf.advance(end + 1);
                    self.state = if empty {
                        State::Done
                    } else {
                        State::Trailers(seen + end + 1)
                    };
                }
            }
        }
    }

    /// The connection closed: the end of a body read until close, and a truncated one
    /// otherwise.
    pub fn closed(&mut self) -> Result<(), WireError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(WireError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(raw: &str, head: bool) -> Result<ResponseHead, WireError> {
        let mut buf = BytesMut::from(raw);
        match parse_response_head(&mut buf, head, false)? {
            Parsed::Head(h) => Ok(h),
            other => panic!("{other:?}"),
        }
    }

    /// The whole body `raw` holds, decoded in pieces of `step` bytes as they would
    /// arrive, and whether the decoder saw its end.
    fn decode_in_steps(
        kind: BodyKind,
        raw: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, bool), WireError> {
        let mut d = Decoder::new(kind);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf)? {
                Step::Data(b) => out.extend_from_slice(&b),
                Step::Done => return Ok((out, true)),
                Step::NeedMore if fed >= raw.len() => return Ok((out, false)),
                Step::NeedMore => {
                    let end = (fed + step).min(raw.len());
                    buf.extend_from_slice(&raw[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn request_heads_carry_the_fields_and_the_bodys_own_framing() {
        let head = |method: Method, body: RequestBody| {
            let mut w = HeadWriter::new(&method, "/p?q=1");
            w.field(b"host", b"app");
            w.field(b"x-a", b"1");
            w.field(b"x-a", b"2");
            // A client's own framing fields never go out: the body's does.
            w.field(b"content-length", b"999");
            w.field(b"transfer-encoding", b"chunked");
            String::from_utf8(w.finish(&method, body).to_vec()).unwrap()
        };
        let fields = "host: app\r\nx-a: 1\r\nx-a: 2\r\n";
        assert_eq!(
            head(Method::GET, RequestBody::Empty),
            format!("GET /p?q=1 HTTP/1.1\r\n{fields}\r\n")
        );
        assert_eq!(
            head(Method::POST, RequestBody::Length(12)),
            format!("POST /p?q=1 HTTP/1.1\r\n{fields}content-length: 12\r\n\r\n")
        );
        assert_eq!(
            head(Method::PUT, RequestBody::Chunked),
            format!("PUT /p?q=1 HTTP/1.1\r\n{fields}transfer-encoding: chunked\r\n\r\n")
        );
        assert_eq!(
            head(Method::POST, RequestBody::Empty),
            format!("POST /p?q=1 HTTP/1.1\r\n{fields}content-length: 0\r\n\r\n")
        );
        // Upper-case hexadecimal (RFC 9112 reads either), as hyper's server writes it.
        assert_eq!(&chunk_size_line(300)[..], b"12C\r\n");
    }

    #[test]
    fn a_head_is_read_once_whole_and_shares_the_buffer() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: a b\r\nSet-Cookie: x=1\r\nSet-Cookie: y=2\r\n\r\nhello";
        for cut in [0, 10, raw.len() - 6] {
            let mut buf = BytesMut::from(&raw[..cut]);
            assert!(matches!(
                parse_response_head(&mut buf, false, false),
                Ok(Parsed::Partial)
            ));
            assert_eq!(buf.len(), cut, "nothing is taken from a partial head");
        }
        let mut buf = BytesMut::from(raw);
        let Ok(Parsed::Head(h)) = parse_response_head(&mut buf, false, false) else {
            panic!()
        };
        assert_eq!(&buf[..], b"hello", "the body stays in the buffer");
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.body, BodyKind::Length(5));
        assert!(h.reusable);
        assert_eq!(h.headers["x-app"], "a b");
        let cookies: Vec<_> = h.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["x=1", "y=2"]);
    }

    #[test]
    fn interim_answers_are_skipped_and_101_only_when_asked_for() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        );
        let Ok(Parsed::Interim(n)) = parse_response_head(&mut buf, false, false) else {
            panic!()
        };
        buf.advance(n);
        let Ok(Parsed::Head(h)) = parse_response_head(&mut buf, false, false) else {
            panic!()
        };
        assert_eq!(h.status, StatusCode::NO_CONTENT);
        let switch =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            parse_response_head(&mut BytesMut::from(switch), false, false).unwrap_err(),
            WireError::UnaskedUpgrade
        );
        let Ok(Parsed::Head(h)) = parse_response_head(&mut BytesMut::from(switch), false, true)
        else {
            panic!()
        };
        assert_eq!(h.status, StatusCode::SWITCHING_PROTOCOLS);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let kind = |raw: &str, head: bool| head_of(raw, head).map(|h| (h.body, h.reusable));
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false),
            Ok((BodyKind::Length(3), true))
        );
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true),
            Ok((BodyKind::Empty, true))
        );
        assert_eq!(
            kind(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n",
                false
            ),
            Ok((BodyKind::Empty, true))
        );
        assert_eq!(
            kind("HTTP/1.1 204 No Content\r\n\r\n", false),
            Ok((BodyKind::Empty, true))
        );
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            Ok((BodyKind::Empty, true))
        );
        assert_eq!(
            kind(
                "HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\nContent-Length: 4\r\n\r\n",
                false
            ),
            Ok((BodyKind::Length(4), true))
        );
        assert_eq!(
            kind(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            ),
            Ok((BodyKind::Chunked, true))
        );
        assert_eq!(
            kind(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false
            ),
            Ok((BodyKind::Chunked, true))
        );
        // Both framings: the coding wins, and the connection is not trusted again.
        assert_eq!(
            kind(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
                false
            ),
            Ok((BodyKind::Chunked, false))
        );
        let both = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n";
        let both = head_of(both, false).unwrap();
        assert!(
            !both.headers.contains_key(header::CONTENT_LENGTH),
            "the length is not passed on"
        );
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            Ok((BodyKind::UntilClose, false))
        );
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\n\r\n", false),
            Ok((BodyKind::UntilClose, false))
        );
        assert_eq!(
            kind(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
                false
            ),
            Ok((BodyKind::Length(3), false))
        );
        assert_eq!(
            kind("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", false),
            Ok((BodyKind::Length(3), false))
        );
        for bad in [
            "3, 4",
            "-3",
            "+3",
            "",
            "0x3",
            "3 3",
            "99999999999999999999999",
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(kind(&raw, false), Err(WireError::ContentLength), "{bad:?}");
        }
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(
                parse_response_head(&mut buf, false, false).is_err(),
                "{bad:?}"
            );
        }
        let mut long = BytesMut::from("HTTP/1.1 200 OK\r\n");
        while long.len() <= MAX_HEAD {
            long.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        assert!(parse_response_head(&mut long, false, false).is_err());
    }

    #[test]
    fn bodies_decode_whatever_the_reads_size() {
        let chunked = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(
                decode_in_steps(BodyKind::Chunked, chunked, step),
                Ok((b"hello world".to_vec(), true)),
                "step {step}"
            );
            assert_eq!(
                decode_in_steps(BodyKind::Length(5), b"hello", step),
                Ok((b"hello".to_vec(), true))
            );
            // Read until close: never over by itself.
            assert_eq!(
                decode_in_steps(BodyKind::UntilClose, b"abc", step),
                Ok((b"abc".to_vec(), false))
            );
        }
        // Bytes after a body are left where they are (the connection is then not reused).
        let mut d = Decoder::new(BodyKind::Length(2));
        let mut buf = BytesMut::from("abEXTRA");
        assert_eq!(
            d.decode(&mut buf),
            Ok(Step::Data(Bytes::from_static(b"ab")))
        );
        assert_eq!(d.decode(&mut buf), Ok(Step::Done));
        assert_eq!(&buf[..], b"EXTRA");
        assert_eq!(
            Decoder::new(BodyKind::Empty).decode(&mut buf),
            Ok(Step::Done)
        );
    }

    #[test]
    fn broken_and_cut_bodies_are_errors() {
        for bad in [&b"zz\r\nhello\r\n0\r\n\r\n"[..], b"5\r\nhelloXX0\r\n\r\n"] {
            assert_eq!(
                decode_in_steps(BodyKind::Chunked, bad, 4),
                Err(WireError::Chunk)
            );
        }
        let mut endless = b"1;".to_vec();
        endless.resize(MAX_LINE + 10, b'a');
        assert_eq!(
            decode_in_steps(BodyKind::Chunked, &endless, 512),
            Err(WireError::Chunk)
        );
        let mut d = Decoder::new(BodyKind::Length(10));
        let _ = d.decode(&mut BytesMut::from("abc"));
        assert_eq!(d.closed(), Err(WireError::Truncated));
        let mut d = Decoder::new(BodyKind::UntilClose);
        assert_eq!(d.closed(), Ok(()));
        assert!(d.is_done());
    }
}

//! The handoff wire format, version 1: what a secondary sends and what the primary answers.
//!
//! Every frame is `MAGIC` (15 bytes, `ONLYONE-HANDOFF`), a version byte, a kind byte, the body
//! length as a little-endian `u32`, then the body. Strings are byte strings (`u32` length, then
//! the bytes): arguments, the working directory and environment values travel byte-exact, with
//! no separator that a value could contain. A frame longer than the limit, with another magic,
//! another version, an unknown kind, trailing bytes or a length that runs past the body is
//! rejected with an error that says which. Relies on nothing but `std`.
//!
//! On Windows, where arguments and paths are UTF-16, strings travel as UTF-8: a string that is
//! not valid Unicode (an unpaired surrogate) cannot be sent (the secondary gets an error before
//! connecting), and a request whose strings are not UTF-8 is refused as malformed.
//!
//! Request body (kind 1): sender pid `u32`, expiry `u64` (milliseconds since the Unix epoch after
//! which the primary must not deliver it, 0 = none), cwd, `u32` argument count then the
//! arguments, `u32` environment entry count then key, value pairs.
//!
//! Answer body (kind 2): exit code `i32`, then the answer's bytes (the rest of the body).
//! Refusal body (kind 3): reason byte (1 malformed, 2 too large, 3 version, 4 other uid, 5
//! expired, 6 shutting down, 7 declined), then a UTF-8 explanation.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::path::PathBuf;

/// The first bytes of every handoff frame, so that a listener shared with lock contenders can
/// tell a handoff connection from a silent contender.
pub const MAGIC: &[u8; 15] = b"ONLYONE-HANDOFF";
/// The wire format version this build speaks.
pub const VERSION: u8 = 1;
/// The default and largest accepted body: 16 MiB.
pub const MAX_BODY: usize = 16 << 20;

/// Magic, version, kind, body length.
pub(crate) const HEADER: usize = MAGIC.len() + 1 + 1 + 4;
const KIND_REQUEST: u8 = 1;
const KIND_ANSWER: u8 = 2;
const KIND_REFUSAL: u8 = 3;

/// What a secondary sends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Request {
    pub pid: u32,
    pub expires_ms: u64,
    pub cwd: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

/// What the primary answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Answer { code: i32, data: Vec<u8> },
    Refusal { reason: Refusal, message: String },
}

/// Why a primary refused a request without handing it to the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The frame did not parse (bad magic, truncated, trailing bytes, unknown kind).
    Malformed,
    /// The frame is longer than the primary's limit.
    TooLarge,
    /// The frame's version is not one the primary speaks.
    Version,
    /// The sender runs as another uid.
    OtherUser,
    /// The request arrived after its deadline (the primary was stopped or busy).
    Expired,
    /// The primary is shutting down and takes no more activations.
    ShuttingDown,
    /// The application declined it without acting on it (a relay that could not pass it on).
    Declined,
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Refusal::Malformed => 1,
            Refusal::TooLarge => 2,
            Refusal::Version => 3,
            Refusal::OtherUser => 4,
            Refusal::Expired => 5,
            Refusal::ShuttingDown => 6,
            Refusal::Declined => 7,
        }
    }

    fn from_code(c: u8) -> Refusal {
        match c {
            2 => Refusal::TooLarge,
            3 => Refusal::Version,
            4 => Refusal::OtherUser,
            5 => Refusal::Expired,
            6 => Refusal::ShuttingDown,
            7 => Refusal::Declined,
            _ => Refusal::Malformed,
        }
    }
}

/// A frame that could not be read: which rule it broke.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The connection failed or closed before a whole frame arrived.
    Io(io::Error),
    /// The frame broke the format; the refusal to send back, and why.
    Bad(Refusal, String),
}

impl WireError {
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            WireError::Io(e) => e,
            WireError::Bad(_, m) => io::Error::new(io::ErrorKind::InvalidData, m),
        }
    }
}

fn bad(r: Refusal, m: impl Into<String>) -> WireError {
    WireError::Bad(r, m.into())
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// A string's bytes on the wire: its bytes on Unix, its UTF-8 on Windows (an error for a string
/// that is not valid Unicode).
fn os_bytes<'a>(s: &'a OsStr, what: &str) -> Result<&'a [u8], String> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let _ = what;
        Ok(s.as_bytes())
    }
    #[cfg(not(unix))]
    {
        s.to_str().map(str::as_bytes).ok_or_else(|| {
            format!("the {what} {s:?} is not valid Unicode, which handoff needs on this system")
        })
    }
}

/// The string whose wire bytes are `b` (see [`os_bytes`]).
fn os_string(b: Vec<u8>, what: &str) -> Result<OsString, WireError> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        let _ = what;
        Ok(OsString::from_vec(b))
    }
    #[cfg(not(unix))]
    {
        String::from_utf8(b)
            .map(OsString::from)
            .map_err(|_| bad(Refusal::Malformed, format!("the {what} is not UTF-8")))
    }
}

fn put_os(out: &mut Vec<u8>, s: &OsStr, what: &str) -> Result<(), String> {
    put_bytes(out, os_bytes(s, what)?);
    Ok(())
}

/// The encoded request, or an error when it is longer than `limit`.
pub(crate) fn encode_request(req: &Request, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    body.extend_from_slice(&req.pid.to_le_bytes());
    body.extend_from_slice(&req.expires_ms.to_le_bytes());
    put_os(&mut body, req.cwd.as_os_str(), "working directory")?;
    body.extend_from_slice(&(req.args.len() as u32).to_le_bytes());
    for a in &req.args {
        put_os(&mut body, a, "argument")?;
    }
    body.extend_from_slice(&(req.env.len() as u32).to_le_bytes());
    for (k, v) in &req.env {
        put_os(&mut body, k, "environment key")?;
        put_os(&mut body, v, "environment value")?;
    }
    if body.len() > limit.min(MAX_BODY) || body.len() > u32::MAX as usize {
        return Err(format!(
            "the activation is {} bytes, more than the limit of {} bytes",
            body.len(),
            limit.min(MAX_BODY)
        ));
    }
    Ok(frame(KIND_REQUEST, &body))
}

/// The encoded reply (an answer's data is cut to nothing if it exceeds [`MAX_BODY`]: callers
/// check first).
pub(crate) fn encode_reply(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::Answer { code, data } => {
            let mut body = code.to_le_bytes().to_vec();
            body.extend_from_slice(data);
            frame(KIND_ANSWER, &body)
        }
        Reply::Refusal { reason, message } => {
            let mut body = vec![reason.code()];
            body.extend_from_slice(message.as_bytes());
            frame(KIND_REFUSAL, &body)
        }
    }
}

/// Reads one frame's header and body from `r`: `(kind, body)`.
fn read_frame(r: &mut impl Read, limit: usize) -> Result<(u8, Vec<u8>), WireError> {
    let mut head = [0u8; HEADER];
    r.read_exact(&mut head).map_err(WireError::Io)?;
    decode_header(&head, limit).and_then(|(kind, len)| {
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).map_err(WireError::Io)?;
        Ok((kind, body))
    })
}

/// Checks a header: `(kind, body length)`.
pub(crate) fn decode_header(head: &[u8; HEADER], limit: usize) -> Result<(u8, usize), WireError> {
    if &head[..MAGIC.len()] != MAGIC {
        return Err(bad(Refusal::Malformed, "not a handoff frame (bad magic)"));
    }
    let version = head[MAGIC.len()];
    if version != VERSION {
        return Err(bad(
            Refusal::Version,
            format!("handoff wire version {version} is not supported (this side speaks {VERSION})"),
        ));
    }
    let kind = head[MAGIC.len() + 1];
    let len = u32::from_le_bytes(head[MAGIC.len() + 2..].try_into().expect("4 bytes")) as usize;
    if len > limit.min(MAX_BODY) {
        return Err(bad(
            Refusal::TooLarge,
            format!(
                "handoff frame of {len} bytes exceeds the limit of {} bytes",
                limit.min(MAX_BODY)
            ),
        ));
    }
    Ok((kind, len))
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], WireError> {
        if self.0.len() < n {
            return Err(bad(
                Refusal::Malformed,
                format!("truncated handoff request: {what} runs past the end"),
            ));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, WireError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
    /// A count of items of at least `min` bytes each, checked against what is left.
    fn count(&mut self, what: &str, min: usize) -> Result<usize, WireError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err(bad(
                Refusal::Malformed,
                format!("handoff request claims {n} {what}, more than its length allows"),
            ));
        }
        Ok(n)
    }
}

/// Parses a request body.
pub(crate) fn decode_request_body(body: &[u8]) -> Result<Request, WireError> {
    let mut c = Cursor(body);
    let pid = c.u32("sender pid")?;
    let expires_ms = c.u64("expiry")?;
    let cwd = PathBuf::from(os_string(
        c.bytes("working directory")?,
        "working directory",
    )?);
    let argc = c.count("arguments", 4)?;
    let mut args = Vec::with_capacity(argc);
    for _ in 0..argc {
        args.push(os_string(c.bytes("argument")?, "argument")?);
    }
    let envc = c.count("environment entries", 8)?;
    let mut env = Vec::with_capacity(envc);
    for _ in 0..envc {
        let k = os_string(c.bytes("environment key")?, "environment key")?;
        let v = os_string(c.bytes("environment value")?, "environment value")?;
        env.push((k, v));
    }
    if !c.0.is_empty() {
        return Err(bad(
            Refusal::Malformed,
            format!("handoff request has {} trailing bytes", c.0.len()),
        ));
    }
    Ok(Request {
        pid,
        expires_ms,
        cwd,
        args,
        env,
    })
}

/// Reads one request frame, its magic included (the primary reads without blocking, frame by
/// frame: see `unix::Server`; the tests and the Windows pipe's reader read whole frames).
#[cfg(any(test, windows))]
pub(crate) fn read_request(r: &mut impl Read, limit: usize) -> Result<Request, WireError> {
    let (kind, body) = read_frame(r, limit)?;
    request_from(kind, &body)
}

/// The request in a frame of `kind` with `body`.
pub(crate) fn request_from(kind: u8, body: &[u8]) -> Result<Request, WireError> {
    if kind != KIND_REQUEST {
        return Err(bad(
            Refusal::Malformed,
            format!("expected a handoff request (kind {KIND_REQUEST}), got kind {kind}"),
        ));
    }
    decode_request_body(body)
}

/// Reads the primary's reply.
pub(crate) fn read_reply(r: &mut impl Read, limit: usize) -> Result<Reply, WireError> {
    let (kind, body) = read_frame(r, limit)?;
    match kind {
        KIND_ANSWER if body.len() >= 4 => Ok(Reply::Answer {
            code: i32::from_le_bytes(body[..4].try_into().expect("4")),
            data: body[4..].to_vec(),
        }),
        KIND_REFUSAL if !body.is_empty() => Ok(Reply::Refusal {
            reason: Refusal::from_code(body[0]),
            message: String::from_utf8_lossy(&body[1..]).into_owned(),
        }),
        _ => Err(bad(
            Refusal::Malformed,
            format!(
                "malformed handoff reply (kind {kind}, {} bytes)",
                body.len()
            ),
        )),
    }
}

// Byte strings that are not UTF-8 are a Unix matter; Windows round trips are in `windows.rs`.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn sample() -> Request {
        Request {
            pid: 42,
            expires_ms: 7,
            cwd: PathBuf::from(OsString::from_vec(b"/t\xffmp\n".to_vec())),
            args: vec![
                OsString::new(),
                OsString::from_vec(b"a\nb\0c\xfe".to_vec()),
                OsString::from("x"),
            ],
            env: vec![("XDG_ACTIVATION_TOKEN".into(), "tok".into())],
        }
    }

    #[test]
    fn request_round_trips_byte_exact() {
        let bytes = encode_request(&sample(), MAX_BODY).unwrap();
        assert_eq!(read_request(&mut &bytes[..], MAX_BODY).unwrap(), sample());
    }

    #[test]
    fn replies_round_trip() {
        for r in [
            Reply::Answer {
                code: -3,
                data: b"\0ok\xff".to_vec(),
            },
            Reply::Refusal {
                reason: Refusal::OtherUser,
                message: "uid 5".into(),
            },
        ] {
            let bytes = encode_reply(&r);
            assert_eq!(read_reply(&mut &bytes[..], MAX_BODY).unwrap(), r);
        }
    }

    #[test]
    fn oversized_is_refused_on_both_sides() {
        let big = Request {
            args: vec![OsString::from_vec(vec![b'a'; 2000])],
            ..sample()
        };
        assert!(
            encode_request(&big, 1000)
                .unwrap_err()
                .contains("limit of 1000")
        );
        let bytes = encode_request(&big, MAX_BODY).unwrap();
        match read_request(&mut &bytes[..], 1000) {
            Err(WireError::Bad(Refusal::TooLarge, m)) => assert!(m.contains("1000"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        let good = encode_request(&sample(), MAX_BODY).unwrap();
        // Bad magic, other version, truncated body, trailing bytes, inflated count.
        let mut magic = good.clone();
        magic[0] = b'X';
        let mut version = good.clone();
        version[MAGIC.len()] = 9;
        let truncated = good[..good.len() - 1].to_vec();
        let mut trailing = good.clone();
        trailing.push(0);
        let len = (good.len() - HEADER + 1) as u32;
        trailing[MAGIC.len() + 2..HEADER].copy_from_slice(&len.to_le_bytes());
        for (bytes, want) in [
            (magic, Some(Refusal::Malformed)),
            (version, Some(Refusal::Version)),
            (truncated, None),
            (trailing, Some(Refusal::Malformed)),
        ] {
            match (read_request(&mut &bytes[..], MAX_BODY), want) {
                (Err(WireError::Bad(r, _)), Some(w)) => assert_eq!(r, w),
                (Err(WireError::Io(e)), None) => {
                    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof)
                }
                (other, _) => panic!("{other:?}"),
            }
        }
        let mut body = Vec::new();
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_request_body(&body),
            Err(WireError::Bad(Refusal::Malformed, m)) if m.contains("more than its length")
        ));
    }
}

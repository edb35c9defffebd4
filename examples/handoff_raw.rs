//! A handoff client written from the wire format's documentation alone (no onlyone code), as a
//! program in another language would: sends one frame to a primary's socket and prints its reply.
//! The test suite uses it to send what the library never sends: frames from another uid that skip
//! the sender's own checks, malformed and oversized frames.
//!
//! ```text
//! cargo run --example handoff_raw -- SOCKET valid|bad-magic|bad-version|oversize|truncated [ARG...]
//! ```
//! SOCKET is a socket file, or `@NAME` for the abstract socket NAME (Linux, Android: the
//! abstract socket lock's own listener carries the messages).
//! Prints `answer CODE DATA_LEN`, `refusal REASON_BYTE MESSAGE` or `closed` (no reply).
//!
//! Frame: `ONLYONE-HANDOFF`, version 1, kind 1, body length (u32 LE), body: pid u32, expiry u64
//! (ms since the epoch, 0 = none), cwd, argument count u32 and arguments, environment count u32
//! and pairs; every string a u32 LE length and its bytes.

#[cfg(unix)]
use std::io::{Read, Write};
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
#[cfg(unix)]
use std::os::unix::net::UnixStream;

#[cfg(unix)]
fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Connects to the socket file `path`, or to the abstract socket `@NAME`.
#[cfg(unix)]
fn connect(path: &std::ffi::OsStr) -> UnixStream {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(name) = path.as_bytes().strip_prefix(b"@") {
        #[cfg(target_os = "android")]
        use std::os::android::net::SocketAddrExt;
        #[cfg(target_os = "linux")]
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).expect("address");
        return UnixStream::connect_addr(&addr).expect("connect");
    }
    UnixStream::connect(path).expect("connect")
}

#[cfg(unix)]
fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    assert!(argv.len() >= 3, "usage: handoff_raw SOCKET MODE [ARG...]");
    let mode = argv[2].to_str().expect("MODE");
    let mut body = Vec::new();
    body.extend_from_slice(&std::process::id().to_le_bytes());
    body.extend_from_slice(&0u64.to_le_bytes());
    put(&mut body, b"/");
    body.extend_from_slice(&((argv.len() - 3) as u32).to_le_bytes());
    for a in &argv[3..] {
        put(&mut body, a.as_bytes());
    }
    body.extend_from_slice(&0u32.to_le_bytes());
    let mut frame = b"ONLYONE-HANDOFF".to_vec();
    frame.push(if mode == "bad-version" { 99 } else { 1 });
    frame.push(1);
    let len = if mode == "oversize" {
        (16u32 << 20) + 1
    } else {
        body.len() as u32
    };
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    match mode {
        "bad-magic" => frame[0] = b'X',
        "truncated" => frame.truncate(frame.len() - 1),
        _ => {}
    }
    let mut s = connect(&argv[1]);
    // A primary that refuses early (another uid, a bad header) replies and closes before
    // reading the rest: the send may then fail, and the reply is still there to read.
    let _ = s.write_all(&frame);
    if mode == "truncated" {
        // Stop sending: the primary sees the end of the stream in the middle of the frame.
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    }
    let mut head = [0u8; 21];
    if s.read_exact(&mut head).is_err() {
        println!("closed");
        return;
    }
    let n = u32::from_le_bytes(head[17..21].try_into().unwrap()) as usize;
    let mut reply = vec![0u8; n];
    s.read_exact(&mut reply).expect("reply body");
    match head[16] {
        2 => println!(
            "answer {} {}",
            i32::from_le_bytes(reply[..4].try_into().unwrap()),
            n - 4
        ),
        3 => println!(
            "refusal {} {}",
            reply[0],
            String::from_utf8_lossy(&reply[1..])
        ),
        k => println!("unknown-kind {k}"),
    }
}

/// Unix only: there is nothing to run here.
#[cfg(not(unix))]
fn main() {
    eprintln!("handoff_raw: second-instance handoff is Unix only");
}

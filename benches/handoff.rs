//! Handoff round trip against a raw Unix-socket round trip, measured in the same run.
//! Run with `cargo bench --bench handoff` (`-- --rounds N`, default 5,000 per case).
//!
//! Both servers run in this process on threads, both clients connect anew for every round:
//! - `raw`: connect(2) to a listening socket, write 64 bytes, read a 4-byte reply; the server
//!   accepts, reads the 64 bytes, writes the reply, closes — the least any transport does;
//! - `handoff send`: [`onlyone::handoff::send`] of a message with three arguments to a primary
//!   whose application thread answers each activation (exit code and 2 bytes): connect, peer
//!   uid check, framed request, the primary's per-connection thread, peer uid check, parse,
//!   channel to the application, framed answer;
//! - `handoff start (secondary)`: [`Handoff::start`] as a second launch does it: the lock found
//!   held (flock), then the same round trip.
//!
//! Prints the median and p99 of each case in µs and the ratios to `raw`. Linux and other Unix.

#[cfg(unix)]
use std::io::{Read, Write};
#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
#[cfg(unix)]
use std::time::{Duration, Instant};

#[cfg(unix)]
use onlyone::BackendKind;
#[cfg(unix)]
use onlyone::handoff::{Handoff, Message, Outcome, Start};

#[cfg(unix)]
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[cfg(unix)]
fn measure(rounds: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..rounds / 10 {
        f();
    }
    let mut t = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        f();
        t.push(t0.elapsed());
    }
    t.sort();
    (percentile(&t, 0.5), percentile(&t, 0.99))
}

#[cfg(unix)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(5000, |v| v.parse().expect("--rounds N"));
    let dir = tempfile::tempdir().expect("temp dir");

    // The raw server.
    let raw_path = dir.path().join("raw.sock");
    let raw = UnixListener::bind(&raw_path).expect("bind");
    std::thread::spawn(move || {
        for s in raw.incoming() {
            let Ok(mut s) = s else { continue };
            let mut req = [0u8; 64];
            if s.read_exact(&mut req).is_ok() {
                let _ = s.write_all(b"done");
            }
        }
    });

    // The handoff primary and its application thread.
    let handoff = Handoff::new("handoff-bench")
        .backend(if BackendKind::Flock.is_available() {
            BackendKind::Flock
        } else {
            BackendKind::PidFile
        })
        .lock_dir(dir.path());
    let Start::Primary(primary) = handoff
        .start(&Message::with_args(["primary"]))
        .expect("start")
    else {
        panic!("the bench's lock is taken")
    };
    let socket = primary.socket_path().to_owned();
    std::thread::spawn(move || {
        while let Some(a) = primary.recv() {
            let _ = a.answer(0, b"ok");
        }
    });
    let message = Message::with_args(["open", "/tmp/some file.txt", "--new-window"]);

    let raw_case = measure(rounds, || {
        let mut s = UnixStream::connect(&raw_path).expect("connect");
        s.write_all(&[7u8; 64]).expect("write");
        let mut reply = [0u8; 4];
        s.read_exact(&mut reply).expect("read");
    });
    let send_case = measure(rounds, || {
        let o = onlyone::handoff::send(&socket, &message, Duration::from_secs(10)).expect("send");
        assert!(matches!(o, Outcome::Delivered(_)), "{o}");
    });
    let start_case = measure(rounds, || match handoff.start(&message).expect("start") {
        Start::Secondary(Outcome::Delivered(_)) => {}
        other => panic!("{other:?}"),
    });
    println!("handoff bench, {rounds} rounds per case (µs: median, p99; ratio of medians to raw)");
    for (name, (median, p99)) in [
        ("raw connect+write+read", raw_case),
        ("handoff send", send_case),
        ("handoff start (secondary)", start_case),
    ] {
        println!(
            "{name:<28} {median:>8.1} {p99:>8.1}   x{:.2}",
            median / raw_case.0
        );
    }
}

/// Unix only: there is nothing to run here.
#[cfg(not(unix))]
fn main() {
    eprintln!("the handoff benchmark measures Unix sockets; nothing to measure here");
}

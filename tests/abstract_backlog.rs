//! A holder that never accepts connections (onlyone before the draining listener, or a process
//! that bound the name itself) lets contenders that came and went fill its backlog; after that,
//! holder lookups go through `/proc/net/unix`, where every pending connection is listed under
//! the holder's name too. The lookup must still name the holder. (A holder of this onlyone
//! drains its listener: tests/wait_queue.rs.)

#![cfg(all(feature = "abstract-socket", target_os = "linux"))]

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
};
use onlyone::{Acquire, BackendKind, Builder, HolderKind, Lock};

#[test]
fn holder_is_named_after_the_backlog_fills() {
    let name = format!("test-backlog-{}", std::process::id());
    let build = || {
        Builder::new(&name)
            .backend(BackendKind::AbstractSocket)
            .build()
            .expect("build")
    };
    // The holder: this process binds and listens on the lock's name, and never accepts.
    let resource = build().resource();
    let addr = UnixAddr::new_abstract(resource.trim_start_matches('@').as_bytes()).unwrap();
    let listener = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(listener.as_raw_fd(), &addr).expect("bind");
    listen(&listener, Backlog::MAXCONN).expect("listen");

    // Connect and leave, like contenders do, until the backlog is full (somaxconn, at most
    // 65535 connections: stop there rather than loop forever).
    let mut pending = 0;
    loop {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("socket");
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => pending += 1,
            Err(Errno::EAGAIN) => break,
            Err(e) => panic!("connect: {e}"),
        }
        assert!(pending <= 65_536, "the backlog never filled");
    }

    let contender = build();
    match contender.try_acquire().expect("try_acquire") {
        Acquire::Held(h) => {
            assert_eq!(
                h.pid,
                Some(std::process::id()),
                "after {pending} connections: {h}"
            );
            assert_eq!(h.kind, HolderKind::SameUser, "{h}");
        }
        Acquire::Acquired(_) => panic!("acquired a held lock"),
    }
    let h = contender.holder().expect("holder").expect("held");
    assert_eq!(h.pid, Some(std::process::id()));
    drop(listener);
}

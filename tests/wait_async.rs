//! Async waiting (feature `tokio`): woken by the release, never blocking the runtime's thread,
//! and leaving nothing behind when the future is dropped.
//!
//! One test function, run alone in this binary, so that counting descriptors is exact.

// The Unix suite: Windows has its own (tests/windows.rs).
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::{Proc, backends, lock, parse_outcome, unique_name};
use onlyone::{Acquire, BackendKind, Lock, asynchronous};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn async_waits() {
    // A single-threaded runtime: if the wait blocked its thread, nothing else could run.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for backend in backends() {
        rt.block_on(async_wait_for(backend));
    }
}

async fn async_wait_for(backend: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name(&format!("async-{backend}"));
    let l = lock(backend, &name, dir.path());
    let mut holder = Proc::holder(backend, &name, dir.path(), None);
    assert!(parse_outcome(&holder.line()).0, "{backend}");

    // A short deadline: held, with the holder's pid. (This also fills the inotify pool, which
    // keeps one instance per concurrent wait for reuse: see `watch_file`.)
    match asynchronous::acquire(&*l, Some(Duration::from_millis(20)))
        .await
        .unwrap()
    {
        Acquire::Held(h) => assert_eq!(h.pid, Some(holder.pid()), "{backend}"),
        Acquire::Acquired(_) => panic!("{backend}: acquired a held lock"),
    }

    // A wait without deadline, dropped by a timeout around it: nothing is left behind.
    let before = open_fds();
    let dropped =
        tokio::time::timeout(Duration::from_millis(30), asynchronous::acquire(&*l, None)).await;
    assert!(
        dropped.is_err(),
        "{backend}: the wait should still be pending"
    );
    assert_eq!(
        open_fds(),
        before,
        "{backend}: descriptors leaked by a dropped wait"
    );

    // The runtime's only thread keeps running other tasks while a wait is pending, and the
    // wait ends when the holder releases (the holder is told to release from such a task).
    let waiting = tokio::spawn({
        let l = lock(backend, &name, dir.path());
        async move { asynchronous::acquire(&*l, None).await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "{backend}: acquired a held lock");
    let released = tokio::task::spawn_blocking(move || {
        let answer = holder.ask("release");
        (answer, holder)
    })
    .await
    .unwrap();
    assert_eq!(released.0, "released", "{backend}");
    let guard = match waiting.await.unwrap().unwrap() {
        Acquire::Acquired(g) => g,
        Acquire::Held(h) => panic!("{backend}: still held by {h} after the release"),
    };
    // And after the async waiter drops its guard, the (still running) old holder can lock again.
    drop(guard);
    let mut holder = released.1;
    assert!(parse_outcome(&holder.ask("try")).0, "{backend}");
    drop(holder);

    // A dropped wait did not take the lock behind our back: it is free once the holder is gone.
    assert!(l.try_acquire().unwrap().is_acquired(), "{backend}");
}

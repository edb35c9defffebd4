#![cfg(unix)]
//! The tokio flavour of handoff: `Handoff::start_async` makes a primary whose
//! `AsyncPrimary::recv().await` gets the activation a secondary process sends, and a second
//! `start_async` of the same name is a secondary that gets the answer.

use std::ffi::OsString;
use std::time::Duration;

use onlyone::BackendKind;
use onlyone::handoff::{AsyncStart, Handoff, Message, Outcome};

#[tokio::test(flavor = "current_thread")]
async fn async_primary_and_secondary() {
    let backend = [BackendKind::Flock, BackendKind::PidFile]
        .into_iter()
        .find(|b| b.is_available())
        .unwrap_or(onlyone::DEFAULT_BACKEND);
    round_trip(backend, "file").await;
}

/// The same on the abstract socket backend, whose lock's own listener carries the messages (its
/// serving thread is woken through the handler's socket pair, not a socket file).
#[tokio::test(flavor = "current_thread")]
async fn async_primary_and_secondary_abstract() {
    if !BackendKind::AbstractSocket.is_available() {
        eprintln!("skipped: the abstract socket backend is not in this build");
        return;
    }
    round_trip(BackendKind::AbstractSocket, "abstract").await;
}

async fn round_trip(backend: BackendKind, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let handoff = Handoff::new(format!("handoff-async-{tag}-{}", std::process::id()))
        .backend(backend)
        .lock_dir(dir.path())
        .timeout(Duration::from_secs(30));
    let AsyncStart::Primary(mut primary) = handoff
        .start_async(&Message::with_args(["own"]))
        .await
        .unwrap()
    else {
        panic!("the lock was free")
    };
    // The secondary runs on the same runtime: start_async never blocks a worker, so the primary's
    // recv below can run while the secondary waits for its answer.
    let second = handoff.clone();
    let secondary = tokio::spawn(async move {
        second
            .start_async(&Message::with_args(["from", "", "async"]))
            .await
            .unwrap()
    });
    let a = tokio::time::timeout(Duration::from_secs(60), primary.recv())
        .await
        .expect("an activation within 60 s (watchdog)")
        .expect("listening");
    let want: Vec<OsString> = vec!["from".into(), "".into(), "async".into()];
    assert_eq!(a.args(), &want[..]);
    a.answer(4, b"async answer").unwrap();
    match secondary.await.unwrap() {
        AsyncStart::Secondary(Outcome::Delivered(answer)) => {
            assert_eq!((answer.code, answer.data), (4, b"async answer".to_vec()));
        }
        other => panic!("{other:?}"),
    }
    // Dropping the primary stops its serving thread (woken for it) and releases the lock.
    drop(primary);
    let free = onlyone::Builder::new(format!("handoff-async-{tag}-{}", std::process::id()))
        .backend(backend)
        .lock_dir(dir.path())
        .build()
        .unwrap()
        .try_acquire()
        .unwrap();
    assert!(free.guard().is_some(), "released after the primary dropped");
}

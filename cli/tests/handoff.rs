//! `onlyone run --handoff` with real processes: a first launch whose job (a bash script) reads
//! activations from `ONLYONE_HANDOFF_FD` and answers on `ONLYONE_HANDOFF_ANSWER_FD`; second
//! launches exit with the answer, byte-exact arguments included; an unanswered one reports
//! unknown (75) within its timeout; with the first launch gone, not delivered (69).

#![cfg(unix)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::{Child, Command, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_onlyone");

/// The job: prints `ready` and `socket $ONLYONE_HANDOFF_SOCKET`, then per activation answers code ARGC and the arguments joined by
/// `|`, except when the first argument is `noanswer`.
const JOB: &str = r#"#!/usr/bin/env bash
echo ready
echo "socket $ONLYONE_HANDOFF_SOCKET"
while IFS= read -r -d '' id <&"$ONLYONE_HANDOFF_FD"; do
  IFS= read -r -d '' cwd <&"$ONLYONE_HANDOFF_FD"
  IFS= read -r -d '' argc <&"$ONLYONE_HANDOFF_FD"
  args=()
  for ((i = 0; i < argc; i++)); do IFS= read -r -d '' a <&"$ONLYONE_HANDOFF_FD"; args+=("$a"); done
  IFS= read -r -d '' envc <&"$ONLYONE_HANDOFF_FD"
  for ((i = 0; i < envc; i++)); do IFS= read -r -d '' e <&"$ONLYONE_HANDOFF_FD"; done
  [ "${args[0]}" = noanswer ] && continue
  joined=$(IFS='|'; printf '%s' "${args[*]}")
  printf '%s\0%s\0%s\0' "$id" "$argc" "$cwd:$joined" >&"$ONLYONE_HANDOFF_ANSWER_FD"
done
"#;

struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn launch(dir: &std::path::Path, args: &[OsString]) -> Command {
    let mut c = Command::new(EXE);
    // The build's default backend (abstract, flock or pidfile); the socket sits in `dir`.
    c.args(["run", "-N"])
        .arg(format!("handoff-cli-{}", std::process::id()))
        .arg("--lock-dir")
        .arg(dir)
        .args(["--handoff", "--handoff-timeout", "1", "--"])
        .arg(dir.join("job.sh"))
        .args(args)
        .stdin(Stdio::null());
    c
}

#[test]
fn second_launch_hands_over_and_exits_with_the_answer() {
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        eprintln!("skipped: no bash");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.sh");
    std::fs::write(&job, JOB).unwrap();
    std::fs::set_permissions(&job, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut first = launch(dir.path(), &["first".into()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = first.stdout.take().unwrap();
    let first = Reap(first);
    let mut out = BufReader::new(out);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line, "ready\n",
        "the job started (the listener is up before it)"
    );
    // Where second launches connect: on the abstract socket (the default on Linux) the lock's
    // own listener, `@` and its name, and no socket file; else the file beside the lock file.
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let socket = line.trim_end().strip_prefix("socket ").unwrap().to_owned();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "handoff"))
        .collect();
    if onlyone::DEFAULT_BACKEND == onlyone::BackendKind::AbstractSocket {
        assert!(socket.starts_with('@'), "{socket}");
        assert!(files.is_empty(), "no socket file: {files:?}");
    } else {
        assert_eq!(files, vec![std::path::PathBuf::from(&socket)]);
    }

    let args: Vec<OsString> = vec![
        "two words".into(),
        OsString::new(),
        OsString::from_vec(b"caf\xe9\nline".to_vec()),
    ];
    let cwd = dir.path().join("sub dir");
    std::fs::create_dir(&cwd).unwrap();
    let out = launch(dir.path(), &args)
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = cwd.as_os_str().as_bytes().to_vec();
    want.extend_from_slice(b":two words||caf\xe9\nline\n");
    assert_eq!(out.stdout, want);

    // Sent, never answered: unknown (75) after the 1 s timeout.
    let out = launch(dir.path(), &["noanswer".into()]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The first launch gone: nothing to hand to, and the second one does not become the first
    // unless the lock is free — here it is, so it runs its own job (a plain first launch).
    drop(first);
    let mut again = launch(dir.path(), &["later".into()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = again.stdout.take().unwrap();
    let _again = Reap(again);
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
}

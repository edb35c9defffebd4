//! `onlyone run` and `onlyone status` with `--backend postgres`, against the throwaway server of
//! the library's tests (../tests/pg/mod.rs): holder named across processes, a lost session stops
//! the job (exit 76), clear failures without a URL or a server.
//!
//! `cargo test -p onlyone-cli --features postgres --test postgres`. Without server binaries the
//! tests skip with a message naming the Debian package; with `CI=true` they fail instead.

// The workspace's test harnesses, shared with the library's tests.
#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/pg/mod.rs"]
mod pg;

use std::process::{Command, Output};

use common::{Proc, unique_name};

fn this_host() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

/// libpq's variables onlyone reads: none of the tests' environment may leak into a test.
const PG_VARS: [&str; 11] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGCONNECT_TIMEOUT",
    "PGSERVICE",
];

/// `onlyone ARGS`, without the DATABASE_URL and PG* variables of the environment.
fn onlyone_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onlyone"));
    cmd.args(args).env_remove("DATABASE_URL");
    for v in PG_VARS {
        cmd.env_remove(v);
    }
    cmd
}

/// Runs `onlyone ARGS` to completion.
fn onlyone(args: &[&str]) -> Output {
    onlyone_cmd(args).output().expect("run onlyone")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_and_status_with_a_database_url() {
    let server = server_or_skip!();
    let url = server.url();
    let name = unique_name("pg-cli");
    let out = onlyone(&[
        "run",
        "-b",
        "postgres",
        "--database-url",
        &url,
        "-N",
        &name,
        "--",
        "sh",
        "-c",
        "echo token=$ONLYONE_FENCING_TOKEN backend=$ONLYONE_BACKEND",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("token=1 backend=postgres"), "{stdout}");

    // Held by another onlyone (its job says `ready` once the lock is taken): exit 75, naming
    // that onlyone's pid and host.
    let mut child = Proc::spawn(onlyone_cmd(&[
        "run",
        "-b",
        "postgres",
        "--database-url",
        &url,
        "-N",
        &name,
        "--",
        "sh",
        "-c",
        "echo ready; read x; exit 0",
    ]));
    assert_eq!(child.line(), "ready");
    let out = onlyone(&[
        "run",
        "-b",
        "postgres",
        "--database-url",
        &url,
        "-N",
        &name,
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("pid {}", child.pid())), "{stderr}");
    assert!(stderr.contains(&format!(" on {}", this_host())), "{stderr}");

    let out = onlyone(&[
        "status",
        "-b",
        "postgres",
        "--database-url",
        &url,
        "--json",
        &name,
    ]);
    assert_eq!(out.status.code(), Some(0), "held: {}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["held"], true);
    assert_eq!(json["holder"]["pid"], child.pid());
    assert_eq!(json["holder"]["host"], this_host().as_str());
    // The job ends when its standard input closes; onlyone releases the lock and exits 0.
    assert!(child.finish().success());
    let out = onlyone(&["status", "-b", "postgres", "--database-url", &url, &name]);
    assert_eq!(out.status.code(), Some(1), "free: {}", text(&out.stdout));
}

/// The session of `onlyone run` is cut while the job runs: onlyone stops the job (SIGTERM)
/// and exits with 76, not with the job's status.
#[test]
fn run_stops_the_job_when_the_lock_is_lost() {
    use std::io::BufRead;
    let server = server_or_skip!();
    let url = server.url();
    let name = unique_name("pg-lost");
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("got-term");
    let script = format!(
        "trap 'echo term > {}; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        marker.display()
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onlyone"))
        .args([
            "run",
            "-b",
            "postgres",
            "--database-url",
            &url,
            "--kill-after",
            "30",
        ])
        .args(["-N", &name, "--", "sh", "-c", &script])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn onlyone");
    let _kill = common::KillOnDrop(child.id());
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    // Cut the wrapper's session, as a server restart or an administrator would.
    let pattern = format!("onlyone {} %", child.id());
    let cut = server
        .admin()
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name LIKE $1",
            &[&pattern],
        )
        .unwrap();
    assert_eq!(cut.len(), 1, "one session holds the lock");

    let output = child.wait_with_output().expect("wait for onlyone");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(76), "{stderr}");
    assert!(stderr.contains("lost the lock"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "term\n");
}

#[test]
fn postgres_without_a_url_or_server_is_a_clear_failure() {
    let out = onlyone(&["run", "-b", "postgres", "-N", "no-url", "--", "true"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("DATABASE_URL"),
        "{}",
        text(&out.stderr)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/db");
    let out = onlyone(&[
        "run",
        "-b",
        "postgres",
        "--database-url",
        &url,
        "-N",
        "down",
        "--",
        "true",
    ]);
    assert_eq!(
        out.status.code(),
        Some(69),
        "server down: {}",
        text(&out.stderr)
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// No URL at all (`onlyone status`, exit 1: free): PGHOST, PGPORT, PGUSER and PGDATABASE name
/// the server, the password comes from
/// PGPASSFILE when the file is private (0600), and a file others may read (0644) is ignored with
/// libpq's warning; PGPASSWORD comes first.
#[test]
fn pg_variables_and_the_password_file_are_honoured() {
    use std::os::unix::fs::PermissionsExt;
    let server = server_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pgpass");
    std::fs::write(
        &passfile,
        format!(
            "# onlyone test\n127.0.0.1:{}:*:{}:{}\n",
            server.port,
            pg::PASSWORD_ROLE,
            pg::PASSWORD
        ),
    )
    .unwrap();
    let name = unique_name("pg-env");
    let port = server.port.to_string();
    let run = |extra: &[(&str, &str)]| {
        // status, not run: the password role may not create the fencing table.
        onlyone_cmd(&["status", "-b", "postgres", &name])
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", &port)
            .env("PGUSER", pg::PASSWORD_ROLE)
            .env("PGDATABASE", "postgres")
            .env("PGPASSFILE", &passfile)
            .envs(extra.iter().copied())
            .output()
            .expect("run onlyone")
    };
    let chmod =
        |mode| std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(mode)).unwrap();

    chmod(0o600);
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1), "free: {}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    chmod(0o644);
    let out = run(&[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "onlyone: warning: password file {} has group or other access",
            passfile.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("authentication failed"), "{stderr}");

    // PGPASSWORD is used before the file is looked at.
    let out = run(&[("PGPASSWORD", pg::PASSWORD)]);
    assert_eq!(out.status.code(), Some(1), "free: {}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

/// PGSSLMODE=verify-full with PGSSLROOTCERT against the TLS server: runs with the right CA,
/// exits 69 naming the host and the reason with another CA.
#[test]
fn pg_ssl_variables_verify_the_server() {
    let Some(server) = pg::PgServer::shared_tls() else {
        return;
    };
    let name = unique_name("pg-env-tls");
    let port = server.port.to_string();
    let run = |ca: &str| {
        onlyone_cmd(&["run", "-b", "postgres", "-N", &name, "--", "true"])
            .env("PGHOST", pg::TLS_HOST)
            .env("PGHOSTADDR", "127.0.0.1")
            .env("PGPORT", &port)
            .env("PGUSER", "postgres")
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", server.dir.join(ca))
            .output()
            .expect("run onlyone")
    };
    let out = run("ca.crt");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run("other-ca.crt");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("not signed by a CA"), "{stderr}");
    assert!(stderr.contains(pg::TLS_HOST), "{stderr}");
}

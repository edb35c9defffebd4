//! `onlyone run` and `onlyone status` with `--backend postgres`, against the throwaway server of
//! the library's tests (../tests/pg/mod.rs): holder named across processes, a lost session stops
//! the job (exit 76), clear failures without a URL or a server.
//!
//! `cargo test -p onlyone-cli --features postgres --test postgres`. Without server binaries the
//! tests skip with a message naming the Debian package; with `CI=true` they fail instead.

// The Unix suite: Windows has its own (cli/tests/windows.rs).
#![cfg(unix)]

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
const PG_VARS: [&str; 13] = [
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
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
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
        !text(&out.stderr).contains("warning: password file"),
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
        !text(&out.stderr).contains("warning: password file"),
        "{}",
        text(&out.stderr)
    );
}

/// PGSERVICE names a section of the service file PGSERVICEFILE names, which gives host, port,
/// user, database and password (`onlyone status`, exit 1: free); `service=` in the string does
/// too; a service in no file is refused with libpq's words.
#[test]
fn pg_service_file_is_honoured() {
    let server = server_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("pg_service.conf");
    std::fs::write(
        &services,
        format!(
            "# onlyone test\n[other]\nport=1\n\n[jobs]\nhost=127.0.0.1\nport={}\nuser={}\n\
             dbname=postgres\npassword={}\n",
            server.port,
            pg::PASSWORD_ROLE,
            pg::PASSWORD
        ),
    )
    .unwrap();
    let name = unique_name("pg-service");
    let status = |url: Option<&str>, service: Option<&str>| {
        let mut cmd = onlyone_cmd(&["status", "-b", "postgres", &name]);
        if let Some(u) = url {
            cmd.arg("--database-url").arg(u);
        }
        if let Some(s) = service {
            cmd.env("PGSERVICE", s);
        }
        cmd.env("PGSERVICEFILE", &services)
            .env("PGSYSCONFDIR", dir.path().join("none"))
            .output()
            .expect("run onlyone")
    };
    let out = status(None, Some("jobs"));
    assert_eq!(out.status.code(), Some(1), "free: {}", text(&out.stderr));
    let out = status(Some("service=jobs"), None);
    assert_eq!(out.status.code(), Some(1), "free: {}", text(&out.stderr));
    let out = status(None, Some("nosuch"));
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert_ne!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("definition of service \"nosuch\" not found"),
        "{stderr}"
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

/// libfaketime's preload library (Debian package `faketime`); `None` after a loud message, a
/// failure with `CI=true`.
fn libfaketime() -> Option<std::path::PathBuf> {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime").join("libfaketime.so.1"))
        .chain([std::path::PathBuf::from(
            "/usr/lib/faketime/libfaketime.so.1",
        )])
        .find(|p| p.is_file());
    if found.is_none() {
        let msg = "\n!!! --once-per skew test SKIPPED: libfaketime.so.1 not found; install the \
                   Debian package `faketime` (apt-get install -y faketime).\n";
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{msg}(CI=true: a missing libfaketime fails the run instead of skipping)");
        }
        use std::io::Write;
        let _ = std::io::stderr().write_all(msg.as_bytes());
    }
    found
}

/// The server's clock, in seconds since the epoch.
fn server_now(admin: &mut postgres::Client) -> f64 {
    admin
        .query_one("SELECT extract(epoch from now())::float8", &[])
        .unwrap()
        .get(0)
}

/// Three "hosts": onlyone processes whose wall clocks libfaketime puts 30 s ahead, 30 s behind
/// and on time, with a window of 20 s (shorter than the skew, so windows counted on the hosts'
/// clocks would let each of them run). Launched one after another (each after the previous
/// ended, so the lock alone cannot stop them), then at the same moment: the job runs once per
/// window of the server's clock that the launches spanned (one, or two if a window boundary fell
/// in between), every other launch exits 79 (or 75 when it met the running one's lock), and the
/// recorded start is the server's now(), inside the server's time of the launches.
#[test]
fn once_per_window_across_skewed_hosts() {
    let server = server_or_skip!();
    let Some(faketime) = libfaketime() else {
        return;
    };
    const PERIOD: f64 = 20.0;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let mut admin = server.admin();
    let skewed = |offset: &str, program: &str| {
        let mut cmd = Command::new(program);
        cmd.env("LD_PRELOAD", &faketime)
            .env("FAKETIME", offset)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        cmd
    };
    // The precondition: the offsets reach the processes (date(1) under the same preload).
    let ahead: f64 = text(&skewed("+30", "date").arg("+%s").output().unwrap().stdout)
        .trim()
        .parse()
        .expect("date +%s");
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        ahead - real > 20.0,
        "libfaketime did not shift the clock: {ahead} vs {real}"
    );

    for concurrent in [false, true] {
        let name = unique_name(if concurrent {
            "pg-once-par"
        } else {
            "pg-once-seq"
        });
        let ran = dir.path().join(&name);
        let script = format!("date +%s >> {}", ran.display());
        let launch = |offset: &str| {
            let mut cmd = skewed(offset, env!("CARGO_BIN_EXE_onlyone"));
            cmd.args(["run", "-b", "postgres", "--database-url", &url])
                .args(["--once-per", "20s", "-N", &name, "--", "sh", "-c", &script])
                .env_remove("DATABASE_URL")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let child = cmd.spawn().expect("spawn onlyone");
            let guard = common::KillOnDrop(child.id());
            (child, guard)
        };
        let before = server_now(&mut admin);
        let mut outputs = Vec::new();
        if concurrent {
            let children: Vec<_> = ["+30", "-30", "+0"].iter().map(|o| launch(o)).collect();
            for (child, _guard) in children {
                outputs.push(child.wait_with_output().unwrap());
            }
        } else {
            for offset in ["+30", "-30", "+0"] {
                let (child, _guard) = launch(offset);
                outputs.push(child.wait_with_output().unwrap());
            }
        }
        let after = server_now(&mut admin);
        let windows = ((after / PERIOD).floor() - (before / PERIOD).floor()) as usize + 1;

        let runs = std::fs::read_to_string(&ran)
            .unwrap_or_default()
            .lines()
            .count();
        let codes: Vec<Option<i32>> = outputs.iter().map(|o| o.status.code()).collect();
        let all_stderr: String = outputs.iter().map(|o| text(&o.stderr)).collect();
        assert!(
            runs >= 1 && runs <= windows,
            "{runs} runs in {windows} window(s), codes {codes:?}: {all_stderr}"
        );
        assert_eq!(
            codes.iter().filter(|c| **c == Some(0)).count(),
            runs,
            "{codes:?}: {all_stderr}"
        );
        for c in &codes {
            let allowed: &[i32] = if concurrent { &[0, 75, 79] } else { &[0, 79] };
            assert!(
                c.is_some_and(|c| allowed.contains(&c)),
                "{codes:?}: {all_stderr}"
            );
        }
        if codes.contains(&Some(79)) {
            assert!(
                all_stderr.contains("already ran in this 20 s window"),
                "{all_stderr}"
            );
        }
        let rows = admin
            .query(
                "SELECT window_no, extract(epoch from started_at)::float8, exit_status, \
                 ended_at IS NOT NULL FROM onlyone_runs WHERE name = $1",
                &[&name],
            )
            .unwrap();
        assert_eq!(rows.len(), runs, "one row per run");
        for row in rows {
            let (window, started): (i64, f64) = (row.get(0), row.get(1));
            assert!(
                before <= started && started <= after,
                "start {started} is not the server's now() (launches between {before} and {after})"
            );
            assert_eq!(window, (started / PERIOD).floor() as i64);
            assert_eq!(row.get::<_, Option<i32>>(2), Some(0));
            assert!(row.get::<_, bool>(3), "end recorded");
        }

        if !concurrent {
            let out = onlyone(&[
                "status",
                "-b",
                "postgres",
                "--database-url",
                &url,
                "--json",
                &name,
            ]);
            assert_eq!(out.status.code(), Some(1), "free: {}", text(&out.stderr));
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            assert_eq!(json["last_run"]["host"], this_host().as_str(), "{json}");
            assert_eq!(json["last_run"]["exit_status"], 0, "{json}");
            assert_eq!(json["last_run"]["period_secs"], 20, "{json}");
            let out = onlyone(&["status", "-b", "postgres", "--database-url", &url, &name]);
            let stdout = text(&out.stdout);
            assert!(
                stdout.contains(&format!("last run: on {} (pid ", this_host())),
                "{stdout}"
            );
            assert!(stdout.contains("with exit status 0"), "{stdout}");
        }
    }
}

/// `--once-per` with a local backend is a usage error (the record lives on the server).
#[test]
fn once_per_needs_the_postgres_backend() {
    // A directory of its own: the flock lock is taken before --once-per is refused.
    let dir = tempfile::tempdir().unwrap();
    let out = onlyone(&[
        "run",
        "-b",
        "flock",
        "--lock-dir",
        &dir.path().to_string_lossy(),
        "--once-per",
        "1h",
        "-N",
        "x",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--backend postgres"),
        "{}",
        text(&out.stderr)
    );
}

//! A throwaway PostgreSQL server for the tests and the benchmark: `initdb` into a temporary
//! directory, listening only on 127.0.0.1 on a free port, its Unix socket in the same directory,
//! trust authentication except for one role with a password.
//!
//! As root the server runs as the `postgres` OS user (it refuses root). A watchdog shell holds the
//! read end of a pipe whose write end this process keeps: when the server is dropped, or when the
//! test process ends in any way (the shared server lives in a static and is never dropped), the
//! pipe closes and the watchdog runs `pg_ctl stop -m immediate` and removes the directory.
//!
//! Without server binaries this module says so loudly and the tests skip; with `CI=true` a
//! missing server is a failure.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

/// The role with a password (scram-sha-256), for authentication failure tests.
pub const PASSWORD_ROLE: &str = "onlyone_pw";
/// Its password.
pub const PASSWORD: &str = "pw-correct-horse";
/// A second role without superuser rights, to see a holder of another role.
pub const OTHER_ROLE: &str = "onlyone_other";

/// The Debian package that provides `initdb` and `pg_ctl`.
const PACKAGE: &str = "postgresql";

pub struct PgServer {
    pub port: u16,
    /// The temporary directory: data, log, socket.
    pub dir: PathBuf,
    bindir: PathBuf,
    /// uid and gid to run the server tools as (when we are root).
    run_as: Option<(u32, u32)>,
    watchdog: Option<(ChildStdin, Child)>,
    /// Another address to listen on, and the network allowed from there (trust).
    extra: Option<(String, String)>,
    /// `ssl=on` with this certificate and key (copied into the server's directory).
    tls: Option<(PathBuf, PathBuf)>,
}

/// Why no server can be started here.
fn missing(why: &str, ci_fails: bool) -> Option<PgServer> {
    let msg = format!(
        "\n!!! PostgreSQL tests SKIPPED: {why}.\n!!! Install the Debian package `{PACKAGE}` \
         (apt-get install -y {PACKAGE}) or set ONLYONE_PG_BINDIR to a directory with initdb and pg_ctl.\n"
    );
    if ci_fails && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg}(CI=true: a missing server fails the run instead of skipping)");
    }
    // Straight to the descriptor: the test harness captures print macros, not this.
    let _ = std::io::stderr().write_all(msg.as_bytes());
    None
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bindir() -> Option<PathBuf> {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(d) = std::env::var_os("ONLYONE_PG_BINDIR") {
        return Some(PathBuf::from(d)).filter(|d| has_all(d));
    }
    // Debian: /usr/lib/postgresql/<major>/bin, newest first.
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|d| std::cmp::Reverse(d.0));
    let path = std::env::var_os("PATH").unwrap_or_default();
    debian
        .into_iter()
        .map(|(_, d)| d)
        .chain(std::env::split_paths(&path))
        .find(|d| has_all(d))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

impl PgServer {
    /// The server shared by all tests of this binary, started on first use; `None` (after a loud
    /// message) when there is no server to run and this is not CI.
    pub fn shared() -> Option<&'static PgServer> {
        static SHARED: OnceLock<Option<PgServer>> = OnceLock::new();
        SHARED.get_or_init(PgServer::start).as_ref()
    }

    /// Starts a server of its own (stopped and removed when dropped); `None` (after a loud
    /// message) without server binaries, a failure instead when `CI=true`.
    pub fn start() -> Option<PgServer> {
        PgServer::start_with(true, None)
    }

    /// The TLS server shared by the tests of this binary (`ssl=on`, certificate for
    /// [`TLS_HOST`]); its directory holds `ca.crt` (the signing CA) and `other-ca.crt`.
    pub fn shared_tls() -> Option<&'static PgServer> {
        static SHARED: OnceLock<Option<PgServer>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let certs = match TestCerts::generate() {
                    Ok(c) => c,
                    Err(why) => return missing(&why, true),
                };
                let server = PgServer::start_tls(&certs.server_cert, &certs.server_key)?;
                for (from, to) in [(&certs.ca, "ca.crt"), (&certs.other_ca, "other-ca.crt")] {
                    std::fs::copy(from, server.dir.join(to)).expect("copy a CA certificate");
                }
                Some(server)
            })
            .as_ref()
    }

    /// A server of its own with `ssl=on`, serving `cert` with `key` (PEM files).
    pub fn start_tls(cert: &Path, key: &Path) -> Option<PgServer> {
        PgServer::start_full(true, None, Some((cert.to_owned(), key.to_owned())))
    }

    /// The same, but a missing server is never a failure (the benchmark skips cleanly).
    pub fn start_or_skip() -> Option<PgServer> {
        PgServer::start_with(false, None)
    }

    /// A server of its own that also listens on `addr` and trusts clients from `network`.
    pub fn start_also_on(addr: &str, network: &str) -> Option<PgServer> {
        PgServer::start_with(true, Some((addr.to_owned(), network.to_owned())))
    }

    fn start_with(ci_fails: bool, extra: Option<(String, String)>) -> Option<PgServer> {
        PgServer::start_full(ci_fails, extra, None)
    }

    fn start_full(
        ci_fails: bool,
        extra: Option<(String, String)>,
        tls: Option<(PathBuf, PathBuf)>,
    ) -> Option<PgServer> {
        let Some(bindir) = find_bindir() else {
            return missing(
                "initdb/pg_ctl/postgres not found in /usr/lib/postgresql/*/bin or PATH",
                ci_fails,
            );
        };
        let run_as = if nix::unistd::geteuid().is_root() {
            match nix::unistd::User::from_name("postgres") {
                Ok(Some(u)) => Some((u.uid.as_raw(), u.gid.as_raw())),
                _ => {
                    return missing(
                        "running as root and there is no `postgres` OS user to run the server as",
                        ci_fails,
                    );
                }
            }
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("onlyone-pg-")
            .tempdir()
            .expect("temporary directory")
            .keep();
        let mut server = PgServer {
            port: 0,
            dir,
            bindir,
            run_as,
            watchdog: None,
            extra,
            tls: None,
        };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&server.dir, Some(uid), Some(gid)).expect("chown temp dir");
        }
        server.spawn_watchdog();
        server.init();
        if let Some((cert, key)) = tls {
            // The server reads them as its own user and refuses a key others may read.
            let (c, k) = (server.dir.join("server.crt"), server.dir.join("server.key"));
            std::fs::copy(&cert, &c).expect("copy the server certificate");
            std::fs::copy(&key, &k).expect("copy the server key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
            if let Some((uid, gid)) = run_as {
                for f in [&c, &k] {
                    std::os::unix::fs::chown(f, Some(uid), Some(gid)).expect("chown TLS files");
                }
            }
            server.tls = Some((c, k));
        }
        // A free port can be taken by someone else before the server binds it: try a few.
        for attempt in 0..5 {
            server.port = free_port();
            match server.pg_ctl_start() {
                Ok(()) => break,
                Err(log) if attempt == 4 => panic!("PostgreSQL did not start:\n{log}"),
                Err(_) => continue,
            }
        }
        server.create_roles();
        Some(server)
    }

    fn tool(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(name));
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn run(&self, mut cmd: Command) -> Result<(), String> {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed ({}):\n{}{}\n--- server log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            ))
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn init(&self) {
        let mut cmd = self.tool("initdb");
        cmd.arg("-D").arg(self.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ]);
        self.run(cmd).unwrap_or_else(|e| panic!("{e}"));
        let mut hba = format!(
            "local all all trust\n\
             host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 trust\n"
        );
        if let Some((_, network)) = &self.extra {
            hba.push_str(&format!("host all all {network} trust\n"));
        }
        let path = self.data().join("pg_hba.conf");
        std::fs::write(&path, hba).expect("write pg_hba.conf");
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown pg_hba.conf");
        }
    }

    fn pg_ctl(&self, action: &str) -> Command {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"));
        // -w: pg_ctl itself waits (bounded by -t) until the server accepts connections.
        cmd.args(["-w", "-t", "60", action]);
        cmd
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut cmd = self.pg_ctl("start");
        let listen = match &self.extra {
            Some((addr, _)) => format!("127.0.0.1,{addr}"),
            None => "127.0.0.1".to_owned(),
        };
        let mut options = format!(
            "-c listen_addresses={listen} -p {} -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        if let Some((cert, key)) = &self.tls {
            options += &format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            );
        }
        cmd.arg("-o").arg(options);
        self.run(cmd)
    }

    /// `pg_ctl restart -m fast`: every session is cut, every lock freed; same port.
    pub fn restart(&self) {
        let mut cmd = self.pg_ctl("restart");
        cmd.args(["-m", "fast"]);
        self.run(cmd).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The URL for `user` on database `db` (password only for [`PASSWORD_ROLE`] if given).
    pub fn url_for(&self, user: &str, password: Option<&str>, db: &str) -> String {
        match password {
            Some(p) => format!("postgres://{user}:{p}@127.0.0.1:{}/{db}", self.port),
            None => format!("postgres://{user}@127.0.0.1:{}/{db}", self.port),
        }
    }

    /// The superuser URL on database `postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres", None, "postgres")
    }

    /// A superuser connection for setting things up and looking at the server.
    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("admin connection")
    }

    fn create_roles(&self) {
        self.admin()
            .batch_execute(&format!(
                "CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'; \
                 CREATE ROLE {OTHER_ROLE} LOGIN;"
            ))
            .expect("create test roles");
    }

    /// A shell that waits for its stdin to close, then stops the server and removes the
    /// directory: runs when this value drops and when the test process exits, crash included.
    fn spawn_watchdog(&mut self) {
        let script =
            r#"read -r _; "$0" -D "$1" stop -m immediate -w -t 60 >/dev/null 2>&1; rm -rf "$2""#;
        let mut sh = Command::new("/bin/sh");
        sh.current_dir("/")
            .arg("-c")
            .arg(script)
            .arg(self.bindir.join("pg_ctl"))
            .arg(self.data())
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C of the tests must not kill the cleanup.
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            sh.uid(uid).gid(gid);
        }
        let mut child = sh.spawn().expect("spawn the cleanup watchdog");
        let stdin = child.stdin.take().expect("watchdog stdin");
        self.watchdog = Some((stdin, child));
    }

    /// Whether the server accepts connections (pg_ctl status).
    pub fn running(&self) -> bool {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D").arg(self.data()).arg("status");
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    }
}

impl Drop for PgServer {
    /// Stops the server (`pg_ctl stop -m immediate`, through the watchdog) and removes its
    /// directory, also when a test panicked.
    fn drop(&mut self) {
        if let Some((stdin, mut child)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// The shared server, or return from the test (skipped, after the loud message).
#[macro_export]
macro_rules! server_or_skip {
    () => {
        match $crate::pg::PgServer::shared() {
            Some(s) => s,
            None => return,
        }
    };
}

/// A network namespace joined to this one by a veth pair: this side `host_addr`, the namespace
/// side `ns_addr`, a /30 of 10.231.0.0/16 chosen by pid. Removed when dropped. Needs root and
/// iproute2's `ip`.
pub struct NetNs {
    pub name: String,
    pub host_if: String,
    pub host_addr: String,
    pub ns_addr: String,
    pub network: String,
    /// The namespace side's interface.
    pub peer: String,
}

impl NetNs {
    /// The reason, where namespaces cannot be made here.
    pub fn create() -> Result<NetNs, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root".to_owned());
        }
        let pid = std::process::id();
        let (a, b) = ((pid / 64) % 256, (pid % 64) * 4);
        let ns = NetNs {
            name: format!("onlyone-test-{pid}"),
            host_if: format!("oo{pid}a"),
            host_addr: format!("10.231.{a}.{}", b + 1),
            ns_addr: format!("10.231.{a}.{}", b + 2),
            network: format!("10.231.{a}.{b}/30"),
            peer: format!("oo{pid}b"),
        };
        let peer = ns.peer.clone();
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), ns.name.clone()],
            vec![
                "link".into(),
                "add".into(),
                ns.host_if.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                peer.clone(),
                "netns".into(),
                ns.name.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("{}/30", ns.host_addr),
                "dev".into(),
                ns.host_if.clone(),
            ],
            vec!["link".into(), "set".into(), ns.host_if.clone(), "up".into()],
        ];
        for step in steps {
            ns.ip(&step)?;
        }
        for step in [
            vec!["addr", "add", &format!("{}/30", ns.ns_addr), "dev", &peer],
            vec!["link", "set", &peer, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            ns.ip_in(&step)?;
        }
        Ok(ns)
    }

    /// Runs `ip ARGS` here (outside the namespace).
    pub fn ip<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {:?}: {}",
                args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip_in(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        self.ip(&all)
    }

    /// A command run inside the namespace (`ip netns exec` execs it: same pid).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.ip(&["link", "del", &self.host_if]);
        let _ = self.ip(&["netns", "del", &self.name]);
    }
}

/// A CA, a second CA, and a server certificate signed by the first for the DNS name `db.test`,
/// made with the openssl(1) command in a temporary directory.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// The name the server certificate is for.
pub const TLS_HOST: &str = "db.test";

impl TestCerts {
    /// `Err(reason)` when openssl(1) cannot be run.
    pub fn generate() -> Result<TestCerts, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path();
        let openssl = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run openssl (Debian package openssl): {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            let (key, crt, subj) = (
                format!("{ca}.key"),
                format!("{ca}.crt"),
                format!("/CN=onlyone test {ca}"),
            );
            args.extend([
                "-keyout",
                &key,
                "-out",
                &crt,
                "-days",
                "2",
                "-subj",
                &subj,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&args)?;
        }
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=db.test",
        ]);
        openssl(&args)?;
        std::fs::write(
            d.join("server.ext"),
            format!(
                "subjectAltName=DNS:{TLS_HOST}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ])?;
        Ok(TestCerts {
            ca: d.join("ca.crt"),
            other_ca: d.join("other-ca.crt"),
            server_cert: d.join("server.crt"),
            server_key: d.join("server.key"),
            dir,
        })
    }
}

//! The connection as libpq users configure it: the URL or `key=value` string, then the `PG*`
//! environment variables for what it leaves out, then the password file, with libpq's rules.
//!
//! The `postgres` crate reads neither the variables nor the password file, and its `sslmode`
//! knows no `verify-ca` or `verify-full`: the parameters it does not know (`sslmode`,
//! `sslrootcert`, `passfile`) are taken out of the string here before it parses the rest.
//!
//! Precedence, as in libpq: the string, then the variable, then the default. Read: `PGHOST`,
//! `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGPASSFILE`, `PGSSLMODE`, `PGSSLROOTCERT`,
//! `PGCONNECT_TIMEOUT`. The password file (`passfile`, else `PGPASSFILE`, else `~/.pgpass`) is
//! read only when no password was given, and ignored with a warning when it is not a plain file
//! or has any group or other permission bit (libpq's rule). Its lines are
//! `host:port:database:user:password`; `*` as a whole field matches anything; `\` escapes `:`
//! and `\`; lines starting with `#` are comments. The first matching line wins; the host matched
//! is the first host of the connection (`localhost` for a socket in the default directory).
//!
//! A connection service (`service=` in the string, else `PGSERVICE`) fills in, as libpq does,
//! what the string leaves out, before the variables: its `[NAME]` section is looked for in the
//! user's file (`PGSERVICEFILE`, else `~/.pg_service.conf`), then in the system's
//! (`PGSYSCONFDIR/pg_service.conf`, else Debian's `/etc/postgresql-common/pg_service.conf`); the
//! first file with the section wins. Its lines are `key=value` (`#` starts a comment); the keys
//! read are those of the variables above (`host`, `hostaddr`, `port`, `user`, `dbname`,
//! `password`, `passfile`, `sslmode`, `sslrootcert`, `connect_timeout`); another key is ignored
//! with a warning, and a service found in neither file is an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::config::Host;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Treated as `prefer` (libpq tries plain text first; the driver has no such mode).
    Allow,
    /// TLS when the server offers it, without checking its certificate (the default).
    Prefer,
    /// TLS or no connection; the certificate is checked as with `verify-ca` when a root
    /// certificate file is there (libpq's rule), else not at all.
    Require,
    /// TLS; the server's certificate must be signed by a CA of `sslrootcert`.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The name libpq gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// What TLS the connection asks for (only the mode matters without feature `postgres-tls`).
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "postgres-tls"), allow(dead_code))]
pub struct TlsSettings {
    pub mode: SslMode,
    /// The root certificate file: `sslrootcert` or `PGSSLROOTCERT` (`explicit`), else
    /// `~/.postgresql/root.crt`.
    pub root_cert: Option<PathBuf>,
    pub explicit_root_cert: bool,
}

/// A parsed connection: the driver's configuration with the environment applied, the TLS wanted,
/// and warnings for the user (an ignored password file).
pub struct Conninfo {
    pub config: postgres::Config,
    pub tls: TlsSettings,
    pub warnings: Vec<String>,
}

/// The parameters taken out of the string before the driver parses it.
const OURS: [&str; 4] = ["sslmode", "sslrootcert", "passfile", "service"];

/// The system's service file when `PGSYSCONFDIR` is not set: where Debian's libpq looks.
const SYSTEM_SERVICE_FILE: &str = "/etc/postgresql-common/pg_service.conf";

/// The variables a service file's keys stand in for.
const SERVICE_KEYS: [(&str, &str); 10] = [
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("user", "PGUSER"),
    ("dbname", "PGDATABASE"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
];

/// Debian's libpq's default socket directory, then upstream's.
const SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// Parses `url` and fills in what it leaves out from `env` (a variable's value) and the password
/// file. The error is the reason, without the password.
pub fn parse(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Conninfo, String> {
    let (rest, ours) = split_params(url);
    let mut config: postgres::Config = rest.parse().map_err(|e: postgres::Error| {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    })?;
    let param = |k: &str| {
        ours.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let mut warnings = Vec::new();
    // The service's values come before the variables: looked up under the variable's name.
    let service = match param("service").or_else(|| env("PGSERVICE").filter(|v| !v.is_empty())) {
        Some(name) => service_values(&name, env, &mut warnings)?,
        None => Vec::new(),
    };
    let env = |k: &str| -> Option<String> {
        SERVICE_KEYS
            .iter()
            .find(|(_, var)| *var == k)
            .and_then(|(key, _)| service.iter().find(|(sk, _)| sk == key))
            .map(|(_, v)| v.clone())
            .or_else(|| env(k))
    };
    let env = &env;
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());

    if config.get_hosts().is_empty() {
        match nonempty("PGHOST") {
            Some(hosts) => {
                for h in hosts.split(',') {
                    config.host(h.trim());
                }
            }
            None => {
                let port = config.get_ports().first().copied().unwrap_or(5432);
                let default = SOCKET_DIRS
                    .iter()
                    .find(|d| Path::new(d).join(format!(".s.PGSQL.{port}")).exists());
                config.host(default.copied().unwrap_or("localhost"));
            }
        }
    }
    if config.get_hostaddrs().is_empty() {
        if let Some(addrs) = nonempty("PGHOSTADDR") {
            for a in addrs.split(',') {
                let addr = a
                    .trim()
                    .parse()
                    .map_err(|_| format!("invalid address {a:?} in PGHOSTADDR"))?;
                config.hostaddr(addr);
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(ports) = nonempty("PGPORT") {
            for p in ports.split(',') {
                let port = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("invalid port {p:?} in PGPORT"))?;
                config.port(port);
            }
        }
    }
    if config.get_user().is_none() {
        let user = nonempty("PGUSER").or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        });
        if let Some(u) = user {
            config.user(&u);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(db) = nonempty("PGDATABASE") {
            config.dbname(&db);
        }
    }
    if config.get_connect_timeout().is_none() {
        if let Some(t) = nonempty("PGCONNECT_TIMEOUT") {
            let secs: u64 = t
                .trim()
                .parse()
                .map_err(|_| format!("invalid PGCONNECT_TIMEOUT {t:?}: expected seconds"))?;
            if secs > 0 {
                config.connect_timeout(Duration::from_secs(secs.max(2)));
            }
        }
    }
    if config.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            config.password(p);
        } else {
            let file = param("passfile")
                .or_else(|| nonempty("PGPASSFILE"))
                .map(PathBuf::from)
                .or_else(|| home(env).map(|h| h.join(".pgpass")));
            if let Some(file) = file {
                if let Some(p) = password_from_file(&file, &config, &mut warnings) {
                    config.password(p);
                }
            }
        }
    }

    let mode_text = param("sslmode")
        .map(|m| (m, "sslmode"))
        .or_else(|| nonempty("PGSSLMODE").map(|m| (m, "PGSSLMODE")));
    let mode = match &mode_text {
        Some((m, from)) => SslMode::parse(m).ok_or_else(|| {
            format!(
                "invalid {from} {m:?}: expected disable, allow, prefer, require, verify-ca or \
                 verify-full"
            )
        })?,
        None => SslMode::Prefer,
    };
    let explicit = param("sslrootcert").or_else(|| nonempty("PGSSLROOTCERT"));
    let tls = TlsSettings {
        mode,
        explicit_root_cert: explicit.is_some(),
        root_cert: explicit
            .map(PathBuf::from)
            .or_else(|| home(env).map(|h| h.join(".postgresql").join("root.crt"))),
    };
    Ok(Conninfo {
        config,
        tls,
        warnings,
    })
}

/// The `key=value` lines of service `name`'s section, from the first service file that has it
/// (see the module docs); keys onlyone does not read are left out with a warning.
fn service_values(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, String)>, String> {
    let user_file = env("PGSERVICEFILE")
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
        .or_else(|| home(env).map(|h| h.join(".pg_service.conf")));
    let system_file = env("PGSYSCONFDIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("pg_service.conf"))
        .unwrap_or_else(|| PathBuf::from(SYSTEM_SERVICE_FILE));
    let mut looked = Vec::new();
    for file in user_file.into_iter().chain(std::iter::once(system_file)) {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                looked.push(file.display().to_string());
                continue;
            }
            Err(e) => return Err(format!("cannot read service file {}: {e}", file.display())),
        };
        looked.push(file.display().to_string());
        let Some(lines) = service_section(&text, name).map_err(|line| {
            format!(
                "syntax error in service file {}, line {line}",
                file.display()
            )
        })?
        else {
            continue;
        };
        let mut values = Vec::new();
        for (key, value) in lines {
            if SERVICE_KEYS.iter().any(|(k, _)| *k == key) {
                values.push((key, value));
            } else {
                warnings.push(format!(
                    "service {name:?} in {}: {key:?} is not read by onlyone, ignored",
                    file.display()
                ));
            }
        }
        return Ok(values);
    }
    Err(format!(
        "definition of service {name:?} not found (looked in {})",
        looked.join(" and ")
    ))
}

/// The `key=value` pairs of section `[name]` of a service file, `None` when it has no such
/// section; `Err(line number)` for a line that is neither.
fn service_section(text: &str, name: &str) -> Result<Option<Vec<(String, String)>>, usize> {
    let mut in_section = false;
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if found.is_some() && in_section {
                break;
            }
            in_section = section == name;
            if in_section {
                found = Some(Vec::new());
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(i + 1);
        };
        if in_section {
            if let Some(v) = found.as_mut() {
                v.push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }
    Ok(found)
}

/// The home directory: `HOME`, else the password database's.
fn home(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
}

/// Takes [`OURS`] out of a URL's query string or a `key=value` string: the rest for the driver,
/// and the values taken (decoded).
fn split_params(url: &str) -> (String, Vec<(String, String)>) {
    let mut ours = Vec::new();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), ours);
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k);
            if OURS.contains(&key.as_str()) {
                ours.push((key, percent_decode(v)));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, ours);
    }
    let Some(pairs) = key_values(url) else {
        // Let the driver say what is wrong with it.
        return (url.to_owned(), ours);
    };
    let mut rest = String::new();
    for (k, v) in pairs {
        if OURS.contains(&k.as_str()) {
            ours.push((k, v));
        } else {
            if !rest.is_empty() {
                rest.push(' ');
            }
            rest.push_str(&format!(
                "{k}='{}'",
                v.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    (rest, ours)
}

/// `key = value` pairs as libpq reads them: values plain up to white space, or in single quotes;
/// `\` escapes the next character in both. `None` when the string does not read that way.
fn key_values(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.push(chars.next()?);
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// `%XX` decoded (invalid escapes kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The password of the first line of the password file `path` that matches the connection;
/// `None` (with a warning where libpq gives one) when the file is missing, unsafe or has none.
fn password_from_file(
    path: &Path,
    config: &postgres::Config,
    warnings: &mut Vec<String>,
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        warnings.push(format!(
            "password file {} is not a plain file; ignored",
            path.display()
        ));
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warnings.push(format!(
            "password file {} has group or other access (mode {:04o}); permissions should be \
             u=rw (0600) or less: ignored",
            path.display(),
            meta.permissions().mode() & 0o7777
        ));
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            warnings.push(format!(
                "cannot read password file {}: {e}; ignored",
                path.display()
            ));
            return None;
        }
    };
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(dir)) if SOCKET_DIRS.iter().any(|d| Path::new(d) == dir) => {
            "localhost".to_owned()
        }
        Some(Host::Unix(dir)) => dir.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    pgpass_lookup(&text, [&host, &port, db, user])
}

/// The password of the first line of `text` whose host, port, database and user fields match.
fn pgpass_lookup(text: &str, want: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = pgpass_fields(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = want
            .iter()
            .zip(&fields)
            .all(|(w, (raw, value))| raw == "*" || value == w);
        if matches {
            return Some(fields[4].1.clone());
        }
    }
    None
}

/// The fields of a password file line: the raw text (to see a lone `*`) and the value with its
/// escapes removed. The fifth field (the password) runs to the end of the line.
fn pgpass_fields(line: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let (mut raw, mut value) = (String::new(), String::new());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                raw.push(c);
                if let Some(n) = chars.next() {
                    raw.push(n);
                    value.push(n);
                }
            }
            ':' if fields.len() < 4 => {
                fields.push((std::mem::take(&mut raw), std::mem::take(&mut value)));
            }
            c => {
                raw.push(c);
                value.push(c);
            }
        }
    }
    fields.push((raw, value));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn verify_modes_are_taken_out_of_urls_and_strings() {
        let env = env_of(&[("HOME", "/nonexistent")]);
        let c = parse(
            "postgres://u@db.example:6543/jobs?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
            &env,
        )
        .unwrap();
        assert_eq!(c.tls.mode, SslMode::VerifyFull);
        assert_eq!(c.tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(c.tls.explicit_root_cert);
        assert_eq!(
            c.config.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        let c = parse(
            "host=db user=u sslmode = verify-ca password='a b\\'c' sslrootcert=/x",
            &env,
        )
        .unwrap();
        assert_eq!(c.tls.mode, SslMode::VerifyCa);
        assert_eq!(c.config.get_password(), Some(&b"a b'c"[..]));
        let err = parse("postgres://u@db/x?sslmode=verify", &env)
            .err()
            .unwrap();
        assert!(err.contains("invalid sslmode \"verify\""), "{err}");
    }

    #[test]
    fn variables_fill_what_the_url_leaves_out() {
        let env = env_of(&[
            ("PGHOST", "db1.example"),
            ("PGPORT", "6000"),
            ("PGUSER", "jobs"),
            ("PGDATABASE", "cron"),
            ("PGPASSWORD", "pw"),
            ("PGSSLMODE", "require"),
            ("HOME", "/nonexistent"),
        ]);
        let c = parse("", &env).unwrap();
        assert_eq!(c.config.get_hosts(), &[Host::Tcp("db1.example".to_owned())]);
        assert_eq!(c.config.get_ports(), &[6000]);
        assert_eq!(c.config.get_user(), Some("jobs"));
        assert_eq!(c.config.get_dbname(), Some("cron"));
        assert_eq!(c.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(c.tls.mode, SslMode::Require);
        // The URL wins over the variables.
        let c = parse("postgres://app@db2:7000/other?sslmode=disable", &env).unwrap();
        assert_eq!(c.config.get_hosts(), &[Host::Tcp("db2".to_owned())]);
        assert_eq!(c.config.get_ports(), &[7000]);
        assert_eq!(c.config.get_user(), Some("app"));
        assert_eq!(c.config.get_dbname(), Some("other"));
        assert_eq!(c.tls.mode, SslMode::Disable);
        let err = parse("", &env_of(&[("PGPORT", "x")])).err().unwrap();
        assert!(err.contains("PGPORT"), "{err}");
    }

    #[test]
    fn password_file_lines_match_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    other:5432:*:u:wrong\n\
                    db\\:1:*:jobs:u:first\\:pw\\\\x\n\
                    *:*:*:u:any\n";
        assert_eq!(
            pgpass_lookup(text, ["db:1", "5432", "jobs", "u"]).as_deref(),
            Some("first:pw\\x")
        );
        assert_eq!(
            pgpass_lookup(text, ["db:1", "5432", "other", "u"]).as_deref(),
            Some("any")
        );
        assert_eq!(pgpass_lookup(text, ["db", "5432", "jobs", "v"]), None);
        // A `*` inside a field is a plain character.
        assert_eq!(pgpass_lookup("d*:*:*:*:p\n", ["db", "1", "x", "y"]), None);
    }

    #[test]
    fn service_sections() {
        let text = "# comment\n[a]\nhost=h1\n\n[b]\n host = h2 \nport=5433\n[c]\n";
        assert_eq!(
            service_section(text, "b"),
            Ok(Some(vec![
                ("host".to_owned(), "h2".to_owned()),
                ("port".to_owned(), "5433".to_owned())
            ]))
        );
        assert_eq!(service_section(text, "c"), Ok(Some(vec![])));
        assert_eq!(service_section(text, "d"), Ok(None));
        assert_eq!(service_section("[a]\nnonsense\n", "a"), Err(2));
    }

    #[test]
    fn a_service_comes_between_the_string_and_the_variables() {
        let dir = std::env::temp_dir().join(format!("onlyone-svc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("services");
        std::fs::write(
            &file,
            "[jobs]\nhost=svc.example\nport=6000\ndbname=svcdb\napplication_name=x\n",
        )
        .unwrap();
        let file_s = file.display().to_string();
        let vars = [
            ("PGSERVICEFILE", file_s.as_str()),
            ("PGSYSCONFDIR", "/nonexistent"),
            ("PGPORT", "7000"),
            ("PGUSER", "envuser"),
            ("HOME", "/nonexistent"),
        ];
        let env = env_of(&vars);
        let c = parse("service=jobs dbname=strdb", &env).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&c.config.get_hosts()[0], Host::Tcp(h) if h == "svc.example"));
        assert_eq!(c.config.get_ports(), [6000]);
        assert_eq!(c.config.get_dbname(), Some("strdb"));
        assert_eq!(c.config.get_user(), Some("envuser"));
        assert!(
            c.warnings.iter().any(|w| w.contains("application_name")),
            "{:?}",
            c.warnings
        );
        let e = parse("service=other", &env)
            .err()
            .expect("an unknown service is an error");
        assert!(
            e.contains("definition of service \"other\" not found"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%2Fetc%2fca"), "/etc/ca");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}

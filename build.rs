//! Two jobs, neither touching the library's code:
//!
//! 1. `ONLYONE_PORTABLE=1` builds the library with the cfg `onlyone_portable`: Linux then takes
//!    the code paths of the Unix systems CI cannot boot (see `src/os.rs`). A cfg set here, rather
//!    than through RUSTFLAGS, leaves the dependencies' builds untouched.
//! 2. The crate documentation (`src/lib.rs` includes it) is README.md made fit for rustdoc.
//!    README.md is written for the repository's front page, where relative paths name files
//!    beside it. Rendered by rustdoc (docs.rs, `cargo doc`) those paths point into the generated
//!    HTML tree and break. So, in the copy the crate documentation includes:
//!    - an image on a line of its own whose relative path is an SVG file of the package (the
//!      `onlyone compare` chart, `docs/compare.svg`) is drawn inline, as the SVG markup itself;
//!      any other relatively addressed image becomes its alt text;
//!    - a link to a relative path (`[BENCHMARKS.md](BENCHMARKS.md#waiting)`) becomes its text.
//!
//!    Each line of README.md stays one line, so a failing doc test's line number (reported
//!    against `OUT_DIR/crate-doc.md`) is its line in README.md.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(onlyone_portable)");
    println!("cargo::rerun-if-env-changed=ONLYONE_PORTABLE");
    if env::var_os("ONLYONE_PORTABLE").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=onlyone_portable");
    }
    crate_doc();
}

/// Writes `OUT_DIR/crate-doc.md` from README.md.
fn crate_doc() {
    println!("cargo::rerun-if-changed=README.md");
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let readme_path = manifest_dir.join("README.md");
    let readme = fs::read_to_string(&readme_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", readme_path.display()));
    let mut doc = String::with_capacity(readme.len() + 8192);
    for line in readme.lines() {
        match standalone_image(line) {
            Some((alt, target)) if is_relative(target) => {
                doc.push_str(&inline_image(&manifest_dir, alt, target));
            }
            _ => doc.push_str(&unlink_relative(line)),
        }
        doc.push('\n');
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("crate-doc.md");
    fs::write(&out, doc).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// `![alt](target)` alone on its line: `(alt, target)`.
fn standalone_image(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim().strip_prefix("![")?.strip_suffix(')')?;
    let (alt, target) = rest.split_once("](")?;
    (!target.contains(char::is_whitespace)).then_some((alt, target))
}

/// A path inside the repository, not a URL (`https:`, `mailto:`) or an anchor of the same page.
fn is_relative(target: &str) -> bool {
    !(target.is_empty()
        || target.starts_with('#')
        || target.starts_with('/')
        || target.split_once(':').is_some_and(|(scheme, _)| {
            scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }))
}

/// The SVG markup of `target` on one line, in a `<div>` (a raw HTML block up to the next blank
/// line: README.md has one after the image), or the alt text in italics when `target` is not an SVG file of the
/// package.
fn inline_image(manifest_dir: &Path, alt: &str, target: &str) -> String {
    let path = manifest_dir.join(target);
    if path.extension().is_some_and(|e| e == "svg") {
        println!("cargo::rerun-if-changed={}", path.display());
        if let Ok(svg) = fs::read_to_string(&path) {
            let body = svg
                .trim_start()
                .strip_prefix("<?xml")
                .map_or(svg.as_str(), |rest| {
                    rest.split_once("?>").map_or("", |(_, after)| after)
                });
            let lines: Vec<&str> = body.lines().map(str::trim).collect();
            let svg = lines.join(" ");
            if svg.trim_start().starts_with("<svg") {
                // `<div>` opens a raw HTML block that runs to the next blank line; `<svg>` alone
                // would only be raw HTML inside a paragraph, its text open to Markdown.
                return format!("<div>{}</div>", svg.trim());
            }
        }
    }
    format!("*{alt}*")
}

/// `line` with every `[text](relative target)` replaced by `text`.
fn unlink_relative(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(close) = rest.find("](") {
        let after = &rest[close + 2..];
        let open = rest[..close].rfind('[');
        let end = after.find(')');
        match (open, end) {
            (Some(open), Some(end))
                if !rest[..open].ends_with('!')
                    && is_relative(&after[..end])
                    && !after[..end].contains(char::is_whitespace) =>
            {
                out.push_str(&rest[..open]);
                out.push_str(&rest[open + 1..close]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..close + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

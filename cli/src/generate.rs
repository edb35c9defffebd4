//! `onlyone generate`: man pages (clap_mangen) and shell completions (clap_complete), made from
//! the same clap definition the binary parses with, on demand (for packagers and installers).
//!
//! The pages are clap_mangen's, with three changes: the top page lists no `onlyone-help(1)` (no
//! such page is written: every page a page names is one `generate man` writes), `onlyone-run(1)`
//! has its exit statuses as a tbl(1) table instead of the help's plain text, and every page has
//! a SEE ALSO naming the others.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, Generate, GenerateArgs};
use crate::exit::{self, Failure};

/// The version every page shows (clap sets it on the top command only).
const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn main(args: GenerateArgs) -> Result<u8, Failure> {
    match args.what {
        Generate::Man { out } => {
            check_dir(&out)?;
            for (file, page) in man_pages()? {
                let path = out.join(&file);
                std::fs::write(&path, page).map_err(|e| write_failure(&path, e))?;
                say!("onlyone: wrote {}", path.display());
            }
        }
        Generate::Completions { shell, out } => {
            let mut cmd = Cli::command();
            match out {
                Some(dir) => {
                    check_dir(&dir)?;
                    let path = clap_complete::generate_to(shell, &mut cmd, "onlyone", &dir)
                        .map_err(|e| write_failure(&dir, e))?;
                    say!("onlyone: wrote {}", path.display());
                }
                None => clap_complete::generate(shell, &mut cmd, "onlyone", &mut std::io::stdout()),
            }
        }
    }
    Ok(0)
}

/// Every man page, as (file name, roff source): `onlyone.1`, one per subcommand
/// (`onlyone-run.1`), and one per subcommand of those (`onlyone-generate-man.1`).
fn man_pages() -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let top = Cli::command();
    let mut commands = Vec::new();
    collect(
        no_help_subcommand(top.display_name("onlyone").bin_name("onlyone")),
        &mut commands,
    );
    let titles: Vec<String> = commands.iter().map(title).collect();
    let mut pages = Vec::new();
    for cmd in commands {
        let title = title(&cmd);
        pages.push((format!("{title}.1"), render(cmd, &title, &titles)?));
    }
    Ok(pages)
}

/// `cmd` and its visible subcommands, depth first, each named as its page is: display name
/// `onlyone-run` (the page's title, as clap_mangen names subcommands), bin name `onlyone run`
/// (what the synopsis shows).
fn collect(cmd: clap::Command, out: &mut Vec<clap::Command>) {
    let subcommands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let (display, bin) = (
        title(&cmd),
        cmd.get_bin_name().unwrap_or_default().to_owned(),
    );
    out.push(cmd);
    for sub in subcommands {
        let name = sub.get_name().to_owned();
        let sub = sub
            .display_name(format!("{display}-{name}"))
            .bin_name(format!("{bin} {name}"))
            .version(VERSION);
        collect(sub, out);
    }
}

/// clap's `help` subcommand has no page of its own (`--help` is on every page), so no page
/// lists it.
fn no_help_subcommand(cmd: clap::Command) -> clap::Command {
    cmd.disable_help_subcommand(true)
        .mut_subcommands(no_help_subcommand)
}

fn title(cmd: &clap::Command) -> String {
    cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned()
}

/// One page: clap_mangen's rendering, the exit statuses of `run` as a table in place of the
/// help's text, and SEE ALSO.
fn render(cmd: clap::Command, title: &str, titles: &[String]) -> Result<Vec<u8>, Failure> {
    let is_run = cmd.get_name() == "run";
    // The help's plain-text table would render as run-together lines; the page gets a real one.
    let cmd = if is_run {
        cmd.after_long_help(None::<&str>)
    } else {
        cmd
    };
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(title)
        .source(format!("onlyone {VERSION}"))
        .render(&mut page)
        .map_err(|e| Failure::new(exit::SOFTWARE, format!("cannot render {title}.1: {e}")))?;
    let page = String::from_utf8(page)
        .map_err(|e| Failure::new(exit::SOFTWARE, format!("{title}.1 is not UTF-8: {e}")))?;
    let mut extra = String::new();
    if is_run {
        extra += &exit_status_section();
    }
    let others: Vec<String> = titles
        .iter()
        .filter(|t| *t != title)
        .map(|t| format!("\\fB{}\\fR(1)", roff_escape(t)))
        .collect();
    extra += &format!(".SH \"SEE ALSO\"\n{}\n", others.join(", "));
    // Before VERSION, which clap_mangen writes last but for AUTHORS (onlyone has none).
    let page = match page.rfind("\n.SH VERSION\n") {
        Some(at) => format!("{}\n{extra}{}", &page[..at], &page[at + 1..]),
        None => format!("{page}{extra}"),
    };
    // The first line tells man(1) to run the page through tbl(1).
    let preprocess = if is_run { "'\\\" t\n" } else { "" };
    Ok(format!("{preprocess}{page}").into_bytes())
}

/// EXIT STATUS of `onlyone-run(1)`: a tbl(1) table of [`exit::STATUSES`], meanings in text
/// blocks that wrap to the terminal.
fn exit_status_section() -> String {
    let mut s = String::from(".SH \"EXIT STATUS\"\n.TS\ntab(@);\nlB lB\nl lx.\nStatus@Meaning\n");
    for (status, meaning) in exit::STATUSES {
        s += &format!(
            "{}@T{{\n{}\nT}}\n",
            roff_escape(status),
            roff_escape(meaning)
        );
    }
    s += &format!(".TE\n.PP\n{}\n", roff_escape(exit::NEVER));
    s
}

/// Text for a roff line: backslashes and hyphens escaped, a leading `.` or `'` made literal.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn check_dir(dir: &Path) -> Result<(), Failure> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Failure::new(
            exit::NOINPUT,
            format!("output directory {} does not exist", dir.display()),
        ))
    }
}

fn write_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        exit::CANTCREAT,
        format!("cannot write {}: {e}", path.display()),
    )
}

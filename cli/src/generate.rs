//! `onlyone generate`: man pages (clap_mangen) and shell completions (clap_complete), made from
//! the same clap definition the binary parses with, on demand (for packagers and installers).

use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, Generate, GenerateArgs};
use crate::exit::{self, Failure};

pub fn main(args: GenerateArgs) -> Result<u8, Failure> {
    let cmd = Cli::command();
    match args.what {
        Generate::Man { out } => {
            check_dir(&out)?;
            write_man(&cmd, "onlyone", &out)?;
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("onlyone-{}", sub.get_name());
                // clap keeps names as `&'static str`; this process writes a few files and exits.
                let static_name: &'static str = name.clone().leak();
                let sub = sub
                    .clone()
                    .name(static_name)
                    .version(env!("CARGO_PKG_VERSION"));
                write_man(&sub, &name, &out)?;
            }
        }
        Generate::Completions { shell, out } => {
            let mut cmd = cmd;
            match out {
                Some(dir) => {
                    check_dir(&dir)?;
                    let path = clap_complete::generate_to(shell, &mut cmd, "onlyone", &dir)
                        .map_err(|e| write_failure(&dir, e))?;
                    eprintln!("onlyone: wrote {}", path.display());
                }
                None => clap_complete::generate(shell, &mut cmd, "onlyone", &mut std::io::stdout()),
            }
        }
    }
    Ok(0)
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

fn write_man(cmd: &clap::Command, name: &str, dir: &Path) -> Result<(), Failure> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .map_err(|e| Failure::new(exit::SOFTWARE, format!("cannot render {name}.1: {e}")))?;
    std::fs::write(&path, page).map_err(|e| write_failure(&path, e))?;
    eprintln!("onlyone: wrote {}", path.display());
    Ok(())
}

fn write_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        exit::CANTCREAT,
        format!("cannot write {}: {e}", path.display()),
    )
}

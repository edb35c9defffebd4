//! `ONLYONE_PORTABLE=1` builds the library with the cfg `onlyone_portable`: Linux then takes the
//! code paths of the Unix systems CI cannot boot (see `src/os.rs`). A cfg set here, rather than
//! through RUSTFLAGS, leaves the dependencies' builds untouched.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(onlyone_portable)");
    println!("cargo::rerun-if-env-changed=ONLYONE_PORTABLE");
    if std::env::var_os("ONLYONE_PORTABLE").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=onlyone_portable");
    }
}

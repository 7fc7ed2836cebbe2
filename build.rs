// 1. Where libtorch's libraries are (tch's build reports it), written into this package's
//    binaries and tests as their run path: they start without LD_LIBRARY_PATH.
// 2. Whether the shared gtzan-mini clips are beside this checkout (../shared/data/gtzan-mini):
//    the tests that need them are compiled as ignored without them, so a run reports them as
//    skipped, not passed. Cargo looks again when that folder (or the nearest existing folder
//    above it) changes; after moving the clips in from elsewhere, `touch build.rs`.
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo::rustc-link-arg=-Wl,-rpath,{lib}");
    }
    println!("cargo::rustc-check-cfg=cfg(gtzan_mini)");
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
    let mini = Path::new(&root).join("../shared/data/gtzan-mini");
    if mini.join("genres").is_dir() {
        println!("cargo::rustc-cfg=gtzan_mini");
    }
    if let Some(watch) =
        [mini.as_path(), &Path::new(&root).join("../shared/data"), &Path::new(&root).join("../shared")].into_iter().find(|p| p.is_dir())
    {
        println!("cargo::rerun-if-changed={}", watch.display());
    }
}

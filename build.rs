//! Embeds the libtorch library directory as an rpath, so that the `selfsup` binary and the test
//! binaries run without LD_LIBRARY_PATH. torch-sys passes the directory to its direct dependents
//! as DEP_TCH_LIBTORCH_LIB (its `links = "tch"` key).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}

//! Embeds the libtorch library directory as an rpath, so that the `selfsup` binary and the test
//! binaries run without LD_LIBRARY_PATH. torch-sys passes the directory to its direct dependents
//! as DEP_TCH_LIBTORCH_LIB (its `links = "tch"` key).
//!
//! Where that libtorch has CUDA (`libtorch_cuda.so`, as the pinned PyPI wheel does), the binary
//! must link it explicitly: nothing in our code or tch's references its symbols, so the linker's
//! `--as-needed` drops it and `tch::Cuda::is_available()` then says false on a GPU machine.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}

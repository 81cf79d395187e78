//! Embeds the libtorch library directory as an rpath, so that the `selfsup` binary and the test
//! binaries run without LD_LIBRARY_PATH. torch-sys passes the directory to its direct dependents
//! as DEP_TCH_LIBTORCH_LIB (its `links = "tch"` key).
//!
//! The binary does not name `libtorch_cuda.so` at link time (torch-sys asks for it, the
//! linker's `--as-needed` drops it: nothing references its symbols): a CPU install has no
//! cuBLAS/cuDNN for it, and the binary must start there. `src/device/cuda_libs.rs` loads it at
//! start-up where it loads, which is what makes libtorch see the GPUs.
//!
//! It also compiles `csrc/autocast.cpp` (mixed precision, see `src/precision.rs`) against the
//! same libtorch's headers (`<lib>/../include`), and generates ONNX's protobuf types from
//! `proto/onnx.proto` (`src/export/onnx/proto.rs` includes them).
fn main() {
    onnx_types();
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    let dir = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys passes DEP_TCH_LIBTORCH_LIB (run scripts/setup-libtorch.sh)");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    let include = std::path::Path::new(&dir).join("../include");
    println!(
        "cargo:rustc-env=SELFSUP_LIBTORCH_VERSION={}",
        libtorch_version(&include)
    );
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    cc::Build::new()
        .cpp(true)
        .file("csrc/autocast.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("selfsup_autocast");
}

/// "2.11.0": the version of the libtorch headers selfsup is built against.
fn libtorch_version(include: &std::path::Path) -> String {
    let h = include.join("torch/headeronly/version.h");
    println!("cargo:rerun-if-changed={}", h.display());
    let text = std::fs::read_to_string(&h).unwrap_or_default();
    let part = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("#define TORCH_VERSION_{name} ")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!("{}.{}.{}", part("MAJOR"), part("MINOR"), part("PATCH"))
}

/// `OUT_DIR/onnx.rs`: prost's types for ONNX's schema, parsed by protox (no protoc needed).
fn onnx_types() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["onnx.proto"], ["proto"])
        .unwrap_or_else(|e| panic!("proto/onnx.proto does not parse: {e}"));
    prost_build::Config::new()
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("prost-build could not generate ONNX's types: {e}"));
}

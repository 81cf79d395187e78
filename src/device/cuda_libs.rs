//! libtorch's CUDA half, loaded at run time: one binary for machines with and without a GPU.
//!
//! The `torch` wheel splits libtorch in two: `libtorch_cpu.so` (needs only the small CUDA
//! runtime and profiler libraries, 13 MB) and `libtorch_cuda.so` (needs cuBLAS, cuDNN, NCCL …,
//! about 3 GB). A CPU install (`scripts/setup-libtorch.sh`) leaves the large ones out, so the
//! binary must not name `libtorch_cuda` at link time, or it would not start (build.rs keeps it
//! off). Instead [`load`] opens it with `dlopen` first thing in `main`: its static constructors
//! register ATen's CUDA hooks, which is all libtorch needs to see the GPUs. ATen keeps the
//! first hooks it is asked for, so the load must come before any tensor work; [`load`] is also
//! called by [`super::cuda_devices`] for library users who call nothing else first.

use std::sync::OnceLock;

/// The library's file name; found as the binary's libtorch is (its rpath, LD_LIBRARY_PATH).
pub const LIBRARY: &str = "libtorch_cuda.so";

static LOADED: OnceLock<Result<(), String>> = OnceLock::new();

/// Loads `libtorch_cuda.so` once; `Err` holds the loader's reason where it cannot (a CPU
/// install: "libcublas.so.13: cannot open shared object file"; a CPU-only libtorch: the file
/// itself is missing). Later calls return the first answer.
pub fn load() -> Result<(), &'static str> {
    LOADED
        .get_or_init(open)
        .as_ref()
        .map(|_| ())
        .map_err(String::as_str)
}

#[cfg(target_os = "linux")]
fn open() -> Result<(), String> {
    let name = std::ffi::CString::new(LIBRARY).expect("no NUL in the name");
    // SAFETY: dlopen/dlerror with a valid C string; the handle is kept open for the process's
    // life (never dlclose'd: libtorch holds pointers into it).
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if !handle.is_null() {
            return Ok(());
        }
        let why = libc::dlerror();
        Err(match why.is_null() {
            true => format!("{LIBRARY} did not load"),
            false => std::ffi::CStr::from_ptr(why).to_string_lossy().into_owned(),
        })
    }
}

#[cfg(not(target_os = "linux"))]
fn open() -> Result<(), String> {
    Err("selfsup uses CUDA on Linux only".into())
}

/// What `--device cuda` says where [`load`] failed with `why`: the fix, not only the fault.
pub fn missing_advice(why: &str) -> String {
    format!(
        "this install has no CUDA libraries ({LIBRARY} does not load: {why}). On a machine with an \
         NVIDIA GPU and driver, `bash scripts/setup-libtorch.sh --cuda` adds them to .venv (about \
         3 GB, once; the same binary then uses the GPU, no rebuild). Else use --device cpu, or \
         --device auto to take a GPU only where there is one"
    )
}

/// `selfsup --version`'s second line: the libtorch, and its CUDA half loaded or why not.
pub fn summary() -> String {
    let libtorch = format!("libtorch {}", super::LIBTORCH_VERSION);
    match (load(), runtime_version()) {
        (Ok(()), Some(v)) => format!(
            "{libtorch}, CUDA {}.{} libraries loaded, {} GPU(s) visible",
            v / 1000,
            v % 1000 / 10,
            super::cuda_devices()
        ),
        (Ok(()), None) => {
            format!("{libtorch}: {LIBRARY} loaded after ATen's first CUDA query (a bug)")
        }
        (Err(why), _) => format!("{libtorch}, CPU install: no CUDA libraries ({why})"),
    }
}

/// The CUDA runtime version libtorch was built with (13000 for 13.0) where its CUDA half is
/// loaded; `None` where ATen's CUDA hooks are the CPU stubs (nothing loaded, or loaded too
/// late). Needs no GPU: this is how a test tells that [`load`] registered the hooks.
pub fn runtime_version() -> Option<i64> {
    // SAFETY: plain FFI calls. torch-sys's wrapper catches the C++ exception the CPU stubs throw
    // ("Cannot query CUDART version without ATen_cuda library") and returns 0, keeping the text
    // for the next call to read: taken and freed here, so no later `tch` call trips over it.
    let version = unsafe { torch_sys::at_context_version_cudart() };
    unsafe {
        let err = torch_sys::get_and_reset_last_err();
        if !err.is_null() {
            libc::free(err.cast());
        }
    }
    (version > 0).then_some(version)
}

// libtorch's autocast for any device type and dtype, for src/precision.rs. tch 0.24 exposes only
// the deprecated CUDA-only switch (fp16, a no-op without CUDA); selfsup needs CPU and CUDA, and
// bf16 or fp16. Every function catches C++ exceptions: none crosses into Rust.
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>

namespace {
at::DeviceType device_type(int device) { return device == 1 ? at::kCUDA : at::kCPU; }
}

extern "C" {

// Turns autocast on for `device` (0 CPU, 1 CUDA) with `dtype` (c10::ScalarType code: 5 Half,
// 15 BFloat16). The previous state goes to *prev_enabled / *prev_dtype for selfsup_autocast_exit.
// Returns 0, or -1 when libtorch refused.
int selfsup_autocast_enter(int device, int dtype, int* prev_enabled, int* prev_dtype) {
  try {
    auto t = device_type(device);
    *prev_enabled = at::autocast::is_autocast_enabled(t) ? 1 : 0;
    *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(t));
    at::autocast::set_autocast_dtype(t, static_cast<at::ScalarType>(dtype));
    at::autocast::set_autocast_enabled(t, true);
    at::autocast::increment_nesting();
    return 0;
  } catch (...) {
    return -1;
  }
}

// Restores the state selfsup_autocast_enter saved; the outermost exit frees the cast weights.
int selfsup_autocast_exit(int device, int prev_enabled, int prev_dtype) {
  try {
    auto t = device_type(device);
    at::autocast::set_autocast_enabled(t, prev_enabled != 0);
    at::autocast::set_autocast_dtype(t, static_cast<at::ScalarType>(prev_dtype));
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    return 0;
  } catch (...) {
    return -1;
  }
}

// 1 where the current CUDA device computes in bf16 natively (compute capability 8.0 or later),
// 0 where not or where there is no CUDA, -1 on error.
int selfsup_cuda_bf16_native() {
  try {
    auto& hooks = at::detail::getCUDAHooks();
    if (!hooks.hasCUDA()) return 0;
    return hooks.supportsBFloat16ConvolutionWithCuDNNv8() ? 1 : 0;
  } catch (...) {
    return -1;
  }
}
}

//! glibc `malloc` settings for training on CPU.
//!
//! libtorch allocates every activation and gradient afresh each step. glibc serves blocks above
//! its mmap threshold (128 KiB, raised dynamically) with `mmap` and gives them back with
//! `munmap` on free, and trims the heap top when it shrinks, so every step faults its ~1 GB of
//! tensors into memory again: `selfsup bench` (ResNet-18 w0.25, batch 256) spent 4–8 s of each
//! 10 s in the kernel. A fixed 32 MiB mmap threshold (glibc's maximum) and no trimming keep those
//! pages in the heap for reuse: the SimCLR step went from 463–509 to 615–674 views/s
//! (alternating runs, the guide (docs/src), "Throughput"), at about 30 % more resident memory.

/// Applies the settings (Linux with glibc; elsewhere nothing). Call first thing in `main`,
/// before libtorch allocates. Returns whether they were applied.
pub fn keep_tensors_in_the_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called before other threads
        // start allocating.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        assert!(super::keep_tensors_in_the_heap());
    }
}

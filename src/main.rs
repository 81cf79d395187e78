//! The `selfsup` command line: pretrain, eval, embed; with no subcommand, the built-in demo.
//! The subcommands live in `cli/`, one file each.

use selfsup::train;
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    // output piped into a reader that stops early (`selfsup cache list | head`) ends the process
    // quietly, as for any Unix tool, instead of a panic on the failed print (Rust ignores SIGPIPE)
    // SAFETY: resetting a signal to its default action before any thread starts
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    selfsup::malloc::keep_tensors_in_the_heap();
    // libtorch's CUDA half where this install has it, before any tensor (device/cuda_libs.rs);
    // where it does not, the CPU runs as before and `--device cuda` says how to add it
    let _ = selfsup::device::cuda_libs::load();
    let cli = cli::Cli::parse_with_install();
    // joins the MPI job when mpirun (or srun) started this process; finalises MPI on return
    let _mpi = match selfsup::dist::init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = cli::run(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<train::interrupt::Interrupted>() => {
            if selfsup::dist::is_root() {
                eprintln!("{e}"); // every rank stopped at the same step; one says so
            }
            ExitCode::from(130)
        }
        // one rank's error ends the whole job: the others would wait for it forever
        Err(e) if selfsup::dist::size() > 1 => {
            selfsup::dist::world().abort(&format!("error: {e:#}"), 1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

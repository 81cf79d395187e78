//! MPI's world communicator as a [`Collective`] (rsmpi on the system's MPI, host buffers),
//! with a watchdog: a collective that waits longer than the timeout for the other ranks (one
//! died or hangs) ends the job with a message naming this rank, instead of waiting forever.

use super::Collective;
use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The universe, kept until [`finalize`] (its drop is `MPI_Finalize`).
static UNIVERSE: Mutex<Option<Universe>> = Mutex::new(None);

struct Universe(#[allow(dead_code)] mpi::environment::Universe);
// SAFETY: MPI is initialised with MPI_THREAD_MULTIPLE (checked in `init`), so its handles may
// be used from any thread; the universe is only dropped once, by `finalize`.
unsafe impl Send for Universe {}

pub fn finalize() {
    if let Ok(mut u) = UNIVERSE.lock() {
        drop(u.take());
    }
}

/// What the watchdog sees: when the collective in progress started (ms since `epoch`, 0:
/// none), its name, and the timeout (ms, 0: disarmed).
struct Watch {
    epoch: Instant,
    entered_ms: AtomicU64,
    timeout_ms: AtomicU64,
    what: Mutex<&'static str>,
}

pub struct MpiWorld {
    comm: SimpleCommunicator,
    rank: usize,
    size: usize,
    watch: Arc<Watch>,
}

// SAFETY: as for `Universe`: MPI_THREAD_MULTIPLE.
unsafe impl Send for MpiWorld {}
unsafe impl Sync for MpiWorld {}

impl MpiWorld {
    pub fn init() -> anyhow::Result<Self> {
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Multiple)
            .ok_or_else(|| {
                anyhow::anyhow!("MPI could not be initialised (was it initialised twice?)")
            })?;
        anyhow::ensure!(
            threading == mpi::Threading::Multiple,
            "this MPI gives thread level {threading:?}, but selfsup's watchdog needs MPI_THREAD_MULTIPLE \
             (OpenMPI 4 and later have it)"
        );
        let comm = universe.world();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        *UNIVERSE.lock().expect("first initialisation") = Some(Universe(universe));
        let watch = Arc::new(Watch {
            epoch: Instant::now(),
            entered_ms: AtomicU64::new(0),
            timeout_ms: AtomicU64::new(0),
            what: Mutex::new(""),
        });
        let w = watch.clone();
        std::thread::Builder::new()
            .name("collective-watchdog".into())
            .spawn(move || watchdog(w, rank))?;
        Ok(MpiWorld {
            comm: SimpleCommunicator::world(),
            rank,
            size,
            watch,
        })
    }

    /// Runs collective `f`, timed by the watchdog.
    fn timed<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> T {
        *self.watch.what.lock().expect("watch") = what;
        let now = self.watch.epoch.elapsed().as_millis() as u64;
        self.watch.entered_ms.store(now.max(1), Ordering::SeqCst);
        let out = f();
        self.watch.entered_ms.store(0, Ordering::SeqCst);
        out
    }
}

fn watchdog(w: Arc<Watch>, rank: usize) {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let (entered, timeout) = (
            w.entered_ms.load(Ordering::SeqCst),
            w.timeout_ms.load(Ordering::SeqCst),
        );
        if entered == 0 || timeout == 0 {
            continue;
        }
        let waited = w.epoch.elapsed().as_millis() as u64 - entered;
        if waited > timeout {
            let what = *w.what.lock().expect("watch");
            eprintln!(
                "error: rank {rank} waited {:.0} s in the {what} for the other ranks: one of them died or \
                 hangs. Ending the job (train.collective_timeout = {:.0} s); the last checkpoint stays valid, \
                 resume it with the same number of ranks",
                waited as f64 / 1e3,
                timeout as f64 / 1e3
            );
            SimpleCommunicator::world().abort(75);
        }
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.size
    }
    fn all_gather_f32(&self, local: &[f32], what: &'static str) -> Vec<f32> {
        let mut out = vec![0f32; local.len() * self.size];
        self.timed(what, || self.comm.all_gather_into(local, &mut out[..]));
        out
    }
    fn all_gather_i64(&self, local: &[i64], what: &'static str) -> Vec<i64> {
        let mut out = vec![0i64; local.len() * self.size];
        self.timed(what, || self.comm.all_gather_into(local, &mut out[..]));
        out
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32], what: &'static str) {
        let send = buf.to_vec();
        self.timed(what, || {
            self.comm
                .all_reduce_into(&send[..], buf, SystemOperation::sum())
        });
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64], what: &'static str) {
        let send = buf.to_vec();
        self.timed(what, || {
            self.comm
                .all_reduce_into(&send[..], buf, SystemOperation::sum())
        });
    }
    fn broadcast_f32(&self, buf: &mut [f32], what: &'static str) {
        self.timed(what, || self.comm.process_at_rank(0).broadcast_into(buf));
    }
    fn broadcast_f64(&self, buf: &mut [f64], what: &'static str) {
        self.timed(what, || self.comm.process_at_rank(0).broadcast_into(buf));
    }
    fn abort(&self, message: &str, code: i32) -> ! {
        eprintln!("rank {}: {message}", self.rank);
        self.comm.abort(code)
    }
    fn set_timeout(&self, seconds: Option<f64>) {
        let ms = seconds.map_or(0, |s| (s * 1e3).max(1.0) as u64);
        self.watch.timeout_ms.store(ms, Ordering::SeqCst);
    }
}

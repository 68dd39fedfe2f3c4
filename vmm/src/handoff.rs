//! A job that a helper thread runs if it gets to it first, else the thread
//! that needs its result, at that moment.
//!
//! [`crate::vm::Vm::new`] fills guest RAM this way, the ticker thread
//! being the helper, while it has KVM create the VM: on an idle host the two
//! go in parallel; on a busy one, where a new thread may wait milliseconds
//! for a CPU, the creating thread finds the job untaken and runs it itself
//! instead of waiting.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

type Job<T> = Box<dyn FnOnce() -> T + Send>;

/// A job for whichever thread takes it first, and the way its result
/// comes back from a helper.
pub struct Handoff<T> {
    job: Arc<Mutex<Option<Job<T>>>>,
    sender: Sender<T>,
    result: Receiver<T>,
}

impl<T: Send + 'static> Handoff<T> {
    /// Offer `job`.
    pub fn new(job: impl FnOnce() -> T + Send + 'static) -> Handoff<T> {
        let (sender, result) = channel();
        Handoff {
            job: Arc::new(Mutex::new(Some(Box::new(job)))),
            sender,
            result,
        }
    }

    /// What a helper thread calls: it runs the job unless the job was
    /// taken already.
    pub fn helper(&self) -> impl FnOnce() + Send + 'static {
        let job = Arc::clone(&self.job);
        let sender = self.sender.clone();
        move || {
            if let Some(job) = take(&job) {
                // The receiver is gone only if its owner gave up (its own
                // work failed): the result is not wanted then.
                let _ = sender.send(job());
            }
        }
    }

    /// The job's result: run on this thread if no helper has taken the
    /// job, else the helper's once it is done; None if the helper panicked.
    pub fn result(self) -> Option<T> {
        if let Some(job) = take(&self.job) {
            return Some(job());
        }
        // A helper that panics drops its sender: the wait then ends.
        drop(self.sender);
        self.result.recv().ok()
    }
}

/// The job, unless a thread took it already.
fn take<T>(job: &Mutex<Option<Job<T>>>) -> Option<Job<T>> {
    job.lock().unwrap_or_else(|e| e.into_inner()).take()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_no_helper_took_runs_on_the_thread_that_wants_the_result() {
        let offer = Handoff::new(|| std::thread::current().id());
        let helper = offer.helper();
        assert_eq!(offer.result(), Some(std::thread::current().id()));
        helper(); // Too late: nothing left to run.
    }

    #[test]
    fn a_job_a_helper_took_comes_back_from_the_helper() {
        let offer = Handoff::new(|| std::thread::current().id());
        let helper = offer.helper();
        let thread = std::thread::spawn(move || {
            let id = std::thread::current().id();
            helper();
            id
        });
        let helper_id = thread.join().unwrap();
        assert_eq!(offer.result(), Some(helper_id));
    }

    #[test]
    fn the_job_runs_once_however_many_helpers_there_are() {
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let offer = Handoff::new(move || counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let helpers: Vec<_> = (0..4).map(|_| offer.helper()).collect();
        let threads: Vec<_> = helpers.into_iter().map(std::thread::spawn).collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(offer.result(), Some(0));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn a_helper_that_panics_in_the_job_gives_no_result_instead_of_a_hang() {
        let offer: Handoff<u32> = Handoff::new(|| panic!("job failed"));
        let helper = offer.helper();
        assert!(std::thread::spawn(helper).join().is_err());
        assert_eq!(offer.result(), None);
    }

    #[test]
    fn a_helper_dropped_unrun_leaves_the_job_to_the_caller() {
        let offer = Handoff::new(|| 7);
        drop(offer.helper());
        assert_eq!(offer.result(), Some(7));
    }
}

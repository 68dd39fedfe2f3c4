//! The guest's timer interrupt.
//!
//! The guest kernel runs one task at a time on one vCPU. A task that never
//! enters the kernel (a spinning loop) would keep the CPU for good, so while
//! the guest says it wants them ([`GuestStats::timer_wanted`]: more than one
//! task, or an alarm armed) a ticker thread kicks the vCPU thread out of
//! KVM_RUN every [`PERIOD`] with a signal, and the run loop injects
//! [`TIMER_VECTOR`] with KVM_INTERRUPT as soon as the guest accepts
//! interrupts (at once in user mode; through an interrupt-window exit when
//! the kernel is running with interrupts off). The guest's handler wakes
//! sleepers, fires alarms and switches tasks.
//!
//! The same injection works on VMX, SVM and kvm_pvm: vmrun creates no
//! in-kernel interrupt controller, so KVM_INTERRUPT is the user-space
//! interrupt path every KVM offers.
//!
//! [`GuestStats::timer_wanted`]: vmrun_contract::GuestStats::timer_wanted

use kvm_ioctls::VcpuFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmrun_contract::{layout, TIMER_VECTOR, TIMER_WANTED_OFFSET};

/// Time between two timer interrupts: the length of a time slice.
pub const PERIOD: Duration = Duration::from_millis(10);

mod ioctls {
    #![allow(missing_docs)]
    use vmm_sys_util::ioctl_iow_nr;
    // KVM_INTERRUPT, which kvm-ioctls does not wrap.
    ioctl_iow_nr!(
        KVM_INTERRUPT,
        kvm_bindings::KVMIO,
        0x86,
        kvm_bindings::kvm_interrupt
    );
}
use ioctls::KVM_INTERRUPT;

/// The signal that kicks the vCPU thread out of KVM_RUN.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + 1
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: the signal's only work is to make KVM_RUN return
    // EINTR; `Shared::due` says why.
}

struct Shared {
    /// The thread inside KVM_RUN, if one is.
    running: Mutex<Option<libc::pthread_t>>,
    /// A tick came and is not injected yet.
    due: AtomicBool,
    /// The ticker is to end.
    stop: AtomicBool,
}

/// The ticker thread of one VM, and what the vCPU thread needs of it.
pub struct Ticker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// An interrupt-window exit was asked for.
    window: bool,
}

impl Ticker {
    /// Start ticking for the guest whose memory is `mem` (the ticker reads
    /// the guest's `timer_wanted` word there), once the new thread has run
    /// `first`.
    pub fn start(
        mem: &GuestMemoryMmap,
        first: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Ticker> {
        static HANDLER: Once = Once::new();
        HANDLER.call_once(|| {
            // Without the handler the signal would end vmrun; failing to
            // install it leaves the guest without preemption (the ticker
            // then never signals, below).
            let _ = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick);
        });
        let shared = Arc::new(Shared {
            running: Mutex::new(None),
            due: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let mem = mem.clone();
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("vmrun-tick".into())
            .spawn(move || {
                first();
                tick_loop(&s, &mem)
            })?;
        Ok(Ticker {
            shared,
            thread: Some(thread),
            window: false,
        })
    }

    /// Say that this thread is about to enter KVM_RUN (it may be signalled
    /// until [`Ticker::left`]).
    pub fn entering(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        *self
            .shared
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(me);
    }

    /// Say that KVM_RUN returned: no more signals to this thread.
    pub fn left(&self) {
        *self
            .shared
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Make a tick due now, wanted or not (a signal for the guest waits in
    /// its stats page).
    pub fn force(&self) {
        self.shared.due.store(true, Ordering::Relaxed);
    }

    /// Before entering the guest: if a tick is due, inject the timer
    /// interrupt now if the guest takes interrupts, or ask KVM to exit as
    /// soon as it does.
    pub fn inject(&mut self, vcpu: &mut VcpuFd) {
        if !self.window && !self.shared.due.load(Ordering::Relaxed) {
            return;
        }
        let run = vcpu.get_kvm_run();
        if run.ready_for_interrupt_injection != 0 && run.if_flag != 0 {
            run.request_interrupt_window = 0;
            let irq = kvm_bindings::kvm_interrupt {
                irq: u32::from(TIMER_VECTOR),
            };
            // SAFETY: KVM_INTERRUPT reads one kvm_interrupt from the valid
            // `irq`; the fd is a vCPU fd.
            let r = unsafe { ioctl_with_ref(vcpu, KVM_INTERRUPT(), &irq) };
            if r == 0 {
                self.shared.due.store(false, Ordering::Relaxed);
                self.window = false;
                return;
            }
        }
        vcpu.get_kvm_run().request_interrupt_window = 1;
        self.window = true;
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn tick_loop(s: &Shared, mem: &GuestMemoryMmap) {
    let wanted = GuestAddress(layout::STATS_PHYS + TIMER_WANTED_OFFSET);
    while !s.stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(PERIOD);
        if s.stop.load(Ordering::Relaxed) {
            break;
        }
        let want = mem.load::<u64>(wanted, Ordering::Relaxed).unwrap_or(0);
        if want == 0 {
            continue;
        }
        s.due.store(true, Ordering::Relaxed);
        let running = s.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(thread) = *running {
            // SAFETY: `thread` is inside KVM_RUN (or about to enter or
            // leave it) and cannot end while `running` names it: the vCPU
            // thread clears it under this lock before leaving the run loop.
            unsafe { libc::pthread_kill(thread, kick_signal()) };
        }
    }
}

//! Ctrl-C, SIGTERM and a quarter-second tick, for the `vmrun` binary.
//!
//! [`install`] makes SIGINT, SIGTERM and SIGHUP set a flag instead of
//! killing vmrun at once, and starts a 250 ms interval timer whose
//! SIGALRM, sent to the vCPU's thread, does nothing but interrupt
//! `KVM_RUN`. (A stop signal may reach another thread; the run then ends
//! at the next tick at the latest.) [`crate::vm::Vm::resume`]
//! then drains the trace ring about once a second ([`crate::vm::Event::Tick`],
//! so that `--trace` is live), and ends the run when the flag is set
//! ([`crate::vm::RunEnd::Interrupted`]), so that the session can still
//! write its trace, statistics and JSON files. [`die_by`] then ends vmrun
//! by the same signal, as a shell expects of a program it interrupted.
//! The first [`FORWARD_LIMIT`] signals are taken for the guest instead
//! ([`take_for_guest`]), which delivers them to the program.
//!
//! The library never installs these by itself: a program that embeds
//! `vmm` keeps its own signal dispositions.
//!
//! A signal vmrun was started with ignored (under `nohup`, or as a
//! background job of a non-interactive shell) stays ignored: [`install`]
//! leaves such a stop signal alone, and the program starts with it ignored
//! too ([`ignored_at_start`]), as a native exec keeps SIG_IGN.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// The signals ignored when [`record_start`] ran (bit `n - 1` for signal
/// `n`), or `u64::MAX` before it has.
static IGNORED_AT_START: AtomicU64 = AtomicU64::new(u64::MAX);

/// Records which signals are ignored now. The `vmrun` binary calls it from
/// `.init_array`, before Rust's runtime sets SIGPIPE to SIG_IGN for itself,
/// so that the set is the one vmrun was started with.
pub extern "C" fn record_start() {
    IGNORED_AT_START.store(ignored_now(), Ordering::SeqCst);
}

/// The signals ignored when vmrun started (see [`record_start`]; the
/// ones ignored now if it never ran), without SIGKILL and SIGSTOP, which
/// cannot be.
pub fn ignored_at_start() -> u64 {
    match IGNORED_AT_START.load(Ordering::SeqCst) {
        u64::MAX => ignored_now(),
        set => set,
    }
}

/// The signals whose disposition is SIG_IGN (bit `n - 1` for signal `n`).
fn ignored_now() -> u64 {
    (1..=64).fold(0, |set, signal| match disposition(signal) {
        Some(libc::SIG_IGN) => set | 1 << (signal - 1),
        _ => set,
    })
}

/// The handler of `signal` (SIG_DFL, SIG_IGN or a function), asked of the
/// kernel itself: the C library refuses to tell those of its own signals
/// (32 and 33), which a parent may have ignored all the same.
fn disposition(signal: libc::c_int) -> Option<libc::sighandler_t> {
    // The kernel's struct sigaction: handler, flags, restorer, mask.
    let mut old = [0u64; 4];
    // SAFETY: with a null new action, rt_sigaction only writes the current
    // one into the valid 32-byte `old`; it changes nothing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            std::ptr::null::<u64>(),
            old.as_mut_ptr(),
            8usize,
        )
    };
    (r == 0).then_some(old[0] as libc::sighandler_t)
}

/// The stop signal received, or 0.
static STOP: AtomicI32 = AtomicI32::new(0);

/// Signals that stop the run (and then vmrun).
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_stop(signal: libc::c_int) {
    STOP.store(signal, Ordering::SeqCst);
}

extern "C" fn on_tick(_: libc::c_int) {}

/// Installs the handlers and starts the tick, whose signal goes
/// to the calling thread: call it from the thread that runs the vCPU.
pub fn install() -> std::io::Result<()> {
    // No SA_RESTART for the stop signals: a host read that waits for the
    // program's input returns at once, and the run ends at the next exit.
    // One ignored when vmrun started stays ignored, for vmrun as for the
    // program (`nohup vmrun ...` survives the hangup).
    let ignored = ignored_at_start();
    for signal in STOP_SIGNALS {
        if ignored & 1 << (signal - 1) == 0 {
            set_handler(signal, on_stop as *const () as libc::sighandler_t, 0)?;
        }
    }
    // The tick interrupts KVM_RUN (which KVM never restarts) and nothing
    // else: reads and writes on vmrun's stdio restart.
    set_handler(
        libc::SIGALRM,
        on_tick as *const () as libc::sighandler_t,
        libc::SA_RESTART,
    )?;
    start_tick()
}

/// A 250 ms timer whose SIGALRM goes to this thread, the one that
/// runs the vCPU, and not to any other thread vmrun has.
fn start_tick() -> std::io::Result<()> {
    // SAFETY: an all-zero sigevent is valid; the fields that matter are
    // set below.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_THREAD_ID;
    event.sigev_signo = libc::SIGALRM;
    // SAFETY: gettid has no preconditions.
    event.sigev_notify_thread_id = unsafe { libc::gettid() };
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: timer_create reads the valid `event` and writes the new
    // timer's id into `timer`.
    if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A quarter of Vm::resume's second: a tick is handed over at most
    // 1.25 s after the last, and a stop signal that reached another
    // thread is seen within 250 ms.
    let quarter = libc::timespec {
        tv_sec: 0,
        tv_nsec: 250_000_000,
    };
    let period = libc::itimerspec {
        it_interval: quarter,
        it_value: quarter,
    };
    // SAFETY: `timer` was just created; settime reads the valid `period`
    // and is not asked for the old value. The timer lives until exit.
    if unsafe { libc::timer_settime(timer, 0, &period, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn set_handler(
    signal: libc::c_int,
    handler: libc::sighandler_t,
    flags: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: an all-zero sigaction is valid (empty mask, no flags); the
    // handlers only store to an atomic, which is async-signal-safe.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = flags;
    // SAFETY: `action` is a valid sigaction; the old one is not asked for.
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Signals handed to the guest so far (see [`take_for_guest`]).
static FORWARDED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// How many stop signals go to the guest before one stops vmrun itself.
pub const FORWARD_LIMIT: u32 = 2;

/// The stop signal received, taken to be delivered inside the guest (as a
/// terminal's Ctrl-C reaches the foreground program): the first
/// [`FORWARD_LIMIT`] are; after that a signal stays for [`requested`] and
/// ends the run, so that a program that ignores SIGINT can still be
/// stopped.
pub fn take_for_guest() -> Option<i32> {
    if FORWARDED.load(Ordering::SeqCst) >= FORWARD_LIMIT {
        return None;
    }
    let signal = STOP.swap(0, Ordering::SeqCst);
    if signal == 0 {
        return None;
    }
    FORWARDED.fetch_add(1, Ordering::SeqCst);
    Some(signal)
}

/// The stop signal received since [`install`], if any.
pub fn requested() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Ends vmrun by `signal` with its default action (or, should that not
/// kill, with status 128 + `signal`).
pub fn die_by(signal: i32) -> ! {
    // SAFETY: restoring the default action and raising the signal touch
    // only this process's signal state.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    std::process::exit(128 + signal)
}

/// The name of a stop signal, for messages.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_now_sees_a_signal_set_to_sig_ign_and_back() {
        // A real-time signal nothing else in the test process uses.
        let signal = libc::SIGRTMAX() - 3;
        let bit = 1u64 << (signal - 1);
        assert_eq!(ignored_now() & bit, 0);
        set_handler(signal, libc::SIG_IGN, 0).unwrap();
        assert_eq!(disposition(signal), Some(libc::SIG_IGN));
        assert_ne!(ignored_now() & bit, 0);
        set_handler(signal, libc::SIG_DFL, 0).unwrap();
        assert_eq!(ignored_now() & bit, 0);
        // The C library's own signals are asked of the kernel too.
        assert!(disposition(32).is_some());
        assert_eq!(disposition(65), None);
    }
}

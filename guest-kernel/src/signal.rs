//! Signals: numbers, default actions, and the dispositions a process sets.
//!
//! What `rt_sigaction`, `rt_sigprocmask` and `sigaltstack` set, and the
//! default action of each signal; `frame` builds and reads the
//! `rt_sigframe` a handler runs on (see docs/processes.md, Signals).

pub mod frame;

/// Reset handlers as CLONE_CLEAR_SIGHAND does (Linux's
/// `flush_signal_handlers`): every handled signal goes back to SIG_DFL,
/// ignored ones stay ignored, and flags and masks are cleared. `set`
/// holds the signals whose action may not be the default (bit `n - 1`
/// for signal `n`; every other's is all zero): only those are looked at
/// (a shell's few, not the 64 of the table, nor a block fill of it, in
/// every exec), and only the ignored ones stay in it.
pub fn flush_handlers(actions: &mut [SigAction; NSIG], set: &mut u64) {
    let (mut left, mut ignored) = (*set, 0);
    while left != 0 {
        let i = left.trailing_zeros() as usize;
        left &= left - 1;
        let Some(a) = actions.get_mut(i) else {
            continue;
        };
        let ign = a.handler == SIG_IGN;
        *a = SigAction {
            handler: if ign { SIG_IGN } else { SIG_DFL },
            ..SigAction::default()
        };
        ignored |= u64::from(ign) << i;
    }
    *set = ignored;
}

/// Sets SIG_IGN for the signals of `set` (bit `n - 1` for signal `n`),
/// as the first process inherits them from vmrun, and adds them to
/// `changed` (the signals whose action may not be the default); SIGKILL
/// and SIGSTOP cannot be ignored and keep their default.
pub fn ignore_inherited(actions: &mut [SigAction; NSIG], changed: &mut u64, set: u64) {
    let never = 1 << (nr::SIGKILL - 1) | 1 << (nr::SIGSTOP - 1);
    let mut left = set & !never;
    *changed |= left;
    // Bit by set bit: a shell's background job has two or three, and a
    // walk of all 64 costs some 300 instructions at every boot.
    while left != 0 {
        actions[left.trailing_zeros() as usize].handler = SIG_IGN;
        left &= left - 1;
    }
}

/// The signals set to SIG_IGN and those with a handler (bit `n - 1` for
/// signal `n`), as `/proc/PID/status` shows them (SigIgn, SigCgt).
pub fn ignored_and_caught(actions: &[SigAction; NSIG]) -> (u64, u64) {
    let (mut ignored, mut caught) = (0, 0);
    for (i, a) in actions.iter().enumerate() {
        match a.handler {
            SIG_DFL => {}
            SIG_IGN => ignored |= 1 << i,
            _ => caught |= 1 << i,
        }
    }
    (ignored, caught)
}

/// Number of signals (1..=64).
pub const NSIG: usize = 64;

#[allow(missing_docs)]
pub mod nr {
    pub const SIGHUP: u64 = 1;
    pub const SIGINT: u64 = 2;
    pub const SIGQUIT: u64 = 3;
    pub const SIGILL: u64 = 4;
    pub const SIGTRAP: u64 = 5;
    pub const SIGABRT: u64 = 6;
    pub const SIGBUS: u64 = 7;
    pub const SIGFPE: u64 = 8;
    pub const SIGKILL: u64 = 9;
    pub const SIGSEGV: u64 = 11;
    pub const SIGPIPE: u64 = 13;
    pub const SIGALRM: u64 = 14;
    pub const SIGTERM: u64 = 15;
    pub const SIGCHLD: u64 = 17;
    pub const SIGCONT: u64 = 18;
    pub const SIGSTOP: u64 = 19;
    pub const SIGTSTP: u64 = 20;
    pub const SIGTTIN: u64 = 21;
    pub const SIGTTOU: u64 = 22;
    pub const SIGURG: u64 = 23;
    pub const SIGVTALRM: u64 = 26;
    pub const SIGPROF: u64 = 27;
    pub const SIGWINCH: u64 = 28;
}

/// `sa_handler` value: default action.
pub const SIG_DFL: u64 = 0;
/// `sa_handler` value: ignore.
pub const SIG_IGN: u64 = 1;

/// What a signal does to the process when it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing happens.
    Ignore,
    /// The process is killed by the signal.
    Terminate,
    /// The process stops until SIGCONT (job control).
    Stop,
}

/// One `struct sigaction` as the kernel keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    /// Handler address, SIG_DFL or SIG_IGN.
    pub handler: u64,
    /// SA_* flags.
    pub flags: u64,
    /// sa_restorer.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// Whether `sig` is a valid signal number.
pub fn valid(sig: u64) -> bool {
    (1..=NSIG as u64).contains(&sig)
}

/// The default action of `sig` (SIGCONT's "continue" happens when it is
/// sent; delivered, it is ignored).
pub fn default_action(sig: u64) -> Disposition {
    use nr::*;
    match sig {
        SIGCHLD | SIGCONT | SIGURG | SIGWINCH => Disposition::Ignore,
        SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => Disposition::Stop,
        _ => Disposition::Terminate,
    }
}

/// Whether `sig` is one of the stop signals.
pub fn is_stop(sig: u64) -> bool {
    default_action(sig) == Disposition::Stop
}

/// The pending bits of the stop signals.
pub const STOP_MASK: u64 = (1 << (nr::SIGSTOP - 1))
    | (1 << (nr::SIGTSTP - 1))
    | (1 << (nr::SIGTTIN - 1))
    | (1 << (nr::SIGTTOU - 1));

/// What happens when `sig` arrives with `action` set: SIGKILL always
/// terminates; SIG_IGN ignores; a default or (not yet delivered) handler
/// disposition follows the default action.
pub fn disposition(sig: u64, action: &SigAction) -> Disposition {
    if sig == nr::SIGKILL {
        return Disposition::Terminate;
    }
    match action.handler {
        SIG_IGN => Disposition::Ignore,
        _ => default_action(sig),
    }
}

/// What sending `sig` does to a task whose handler for it is `action` and
/// whose blocked set is `blocked` (Linux's `sig_ignored` and
/// `complete_signal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Pending on the task: it has a handler, or blocks the signal.
    Post,
    /// Dropped: ignored, explicitly or by default.
    Drop,
    /// The task's process dies of it now.
    Kill,
}

/// How `sig` reaches a task with `action` and `blocked` (see [`Route`]).
pub fn route(sig: u64, action: &SigAction, blocked: u64) -> Route {
    let handled = action.handler != SIG_DFL && action.handler != SIG_IGN;
    let is_blocked = blocked & (1u64 << (sig - 1)) != 0 && sig != nr::SIGKILL;
    if handled || is_blocked {
        return Route::Post;
    }
    match disposition(sig, action) {
        Disposition::Ignore => Route::Drop,
        Disposition::Terminate => Route::Kill,
        // The target stops when it takes the signal.
        Disposition::Stop => Route::Post,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_handlers_keeps_ignored_signals_and_defaults_the_rest() {
        let mut actions = [SigAction::default(); NSIG];
        let mut set = 0;
        for (i, handler) in [(0, SIG_IGN), (9, 0x40_1000), (40, SIG_IGN), (63, SIG_IGN)] {
            actions[i] = SigAction {
                handler,
                flags: 0x0400_0000,
                restorer: 0x40_2000,
                mask: 1 << i,
            };
            set |= 1 << i;
        }
        // A signal set back to its default by its call keeps its bit.
        set |= 1 << 20;
        flush_handlers(&mut actions, &mut set);
        assert_eq!(set, 1 | 1 << 40 | 1 << 63, "the ignored ones stay marked");
        for (i, a) in actions.iter().enumerate() {
            let handler = if [0, 40, 63].contains(&i) {
                SIG_IGN
            } else {
                SIG_DFL
            };
            let want = SigAction {
                handler,
                ..SigAction::default()
            };
            assert_eq!(*a, want, "signal {}", i + 1);
        }
    }

    #[test]
    fn a_signal_is_posted_dropped_or_kills() {
        let dfl = SigAction::default();
        let ign = SigAction {
            handler: SIG_IGN,
            ..dfl
        };
        let handler = SigAction {
            handler: 0x401000,
            ..dfl
        };
        let term = 1u64 << (nr::SIGTERM - 1);
        assert_eq!(route(nr::SIGTERM, &handler, 0), Route::Post);
        assert_eq!(route(nr::SIGTERM, &dfl, term), Route::Post, "blocked");
        assert_eq!(
            route(nr::SIGTERM, &ign, term),
            Route::Post,
            "blocked, ignored"
        );
        assert_eq!(route(nr::SIGTERM, &ign, 0), Route::Drop);
        assert_eq!(
            route(nr::SIGCHLD, &dfl, 0),
            Route::Drop,
            "ignored by default"
        );
        assert_eq!(route(nr::SIGTERM, &dfl, 0), Route::Kill);
        assert_eq!(
            route(nr::SIGKILL, &dfl, !0),
            Route::Kill,
            "SIGKILL is never blocked"
        );
    }

    #[test]
    fn sigabrt_terminates_and_sigchld_is_ignored_by_default() {
        assert_eq!(default_action(nr::SIGABRT), Disposition::Terminate);
        assert_eq!(default_action(nr::SIGCHLD), Disposition::Ignore);
    }

    #[test]
    fn ignored_signal_is_ignored_but_sigkill_never() {
        let ign = SigAction {
            handler: SIG_IGN,
            ..Default::default()
        };
        assert_eq!(disposition(15, &ign), Disposition::Ignore);
        assert_eq!(disposition(nr::SIGKILL, &ign), Disposition::Terminate);
    }

    #[test]
    fn inherited_ignored_signals_are_ignored_but_never_sigkill_or_sigstop() {
        let mut actions = [SigAction::default(); NSIG];
        let set = 1 << (nr::SIGHUP - 1)
            | 1 << (nr::SIGINT - 1)
            | 1 << (nr::SIGKILL - 1)
            | 1 << (nr::SIGPIPE - 1)
            | 1 << (nr::SIGSTOP - 1)
            | 1 << 63;
        let mut changed = 0;
        ignore_inherited(&mut actions, &mut changed, set);
        let ignored: alloc::vec::Vec<u64> = (1..=64)
            .filter(|&sig| actions[sig as usize - 1].handler == SIG_IGN)
            .collect();
        assert_eq!(ignored, [nr::SIGHUP, nr::SIGINT, nr::SIGPIPE, 64]);
        let bits = ignored.iter().fold(0, |b, &sig| b | 1 << (sig - 1));
        assert_eq!(changed, bits, "each ignored signal is marked as set");
        assert_eq!(disposition(nr::SIGINT, &actions[1]), Disposition::Ignore);
        assert_eq!(
            disposition(nr::SIGKILL, &actions[8]),
            Disposition::Terminate
        );
    }

    #[test]
    fn status_shows_ignored_and_caught_signals_as_bits() {
        let mut actions = [SigAction::default(); NSIG];
        actions[0].handler = SIG_IGN;
        actions[12].handler = SIG_IGN;
        actions[1].handler = 0x40_1000;
        actions[63].handler = 0x40_2000;
        assert_eq!(
            ignored_and_caught(&actions),
            (1 | 1 << 12, 1 << 1 | 1 << 63)
        );
    }

    #[test]
    fn signal_numbers_are_1_to_64() {
        assert!(!valid(0));
        assert!(valid(1));
        assert!(valid(64));
        assert!(!valid(65));
    }
}

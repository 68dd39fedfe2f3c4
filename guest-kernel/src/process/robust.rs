//! Robust futexes at thread exit: Linux's `exit_robust_list`.
//!
//! A thread that registered a `struct robust_list_head` with
//! `set_robust_list` keeps, in user memory, a list of the robust mutexes
//! it holds:
//!
//! ```text
//! robust_list_head { list.next (+0), futex_offset (+8), list_op_pending (+16) }
//! entry            { next (+0) }        futex word = entry + futex_offset
//! ```
//!
//! (bit 0 of a pointer marks a PI futex). When the thread dies, every
//! futex word on the list (and the one `list_op_pending` names, which it
//! was taking or releasing) that holds the thread's tid gets
//! `FUTEX_OWNER_DIED`, keeping `FUTEX_WAITERS`; if waiters were marked,
//! one is woken, and the next `pthread_mutex_lock` returns EOWNERDEAD. The
//! walk stops after [`ROBUST_LIST_LIMIT`] entries (a circular list) and at
//! the first pointer it cannot read: user memory never faults the kernel.

use alloc::vec::Vec;

/// The futex word's "a waiter sleeps" bit.
pub const FUTEX_WAITERS: u32 = 0x8000_0000;
/// The futex word's "the owner died" bit.
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// The futex word's owner tid.
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// Most entries walked (Linux's `ROBUST_LIST_LIMIT`).
pub const ROBUST_LIST_LIMIT: usize = 2048;

/// The dying thread's user memory, as the walk needs it; `None` is a
/// bad address.
pub trait RobustMem {
    /// The u64 at `va`.
    fn read_u64(&mut self, va: u64) -> Option<u64>;
    /// The u32 at `va`.
    fn read_u32(&mut self, va: u64) -> Option<u32>;
    /// Store `v` at `va`; false if it cannot.
    fn write_u32(&mut self, va: u64, v: u32) -> bool;
    /// The three words of the list head at `va` (one read where the
    /// memory allows it: every thread of a glibc program has a head).
    fn read_head(&mut self, va: u64) -> Option<[u64; 3]> {
        Some([
            self.read_u64(va)?,
            self.read_u64(va.wrapping_add(8))?,
            self.read_u64(va.wrapping_add(16))?,
        ])
    }
}

/// Walk the robust list at `head` of thread `tid`, marking the futexes it
/// owns; returns the futex addresses on which one waiter is to be woken.
pub fn exit_robust_list(mem: &mut impl RobustMem, head: u64, tid: u64) -> Vec<u64> {
    let mut wake = Vec::new();
    if head == 0 {
        return wake;
    }
    let Some([first, offset, op_pending]) = mem.read_head(head) else {
        return wake;
    };
    let (mut entry, mut pi) = (first & !1, first & 1 != 0);
    let (pending, pending_pi) = (op_pending & !1, op_pending & 1 != 0);
    let mut limit = ROBUST_LIST_LIMIT;
    while entry != head {
        let next = fetch_entry(mem, entry);
        if entry != pending {
            handle_futex_death(mem, entry.wrapping_add(offset), tid, pi, false, &mut wake);
        }
        let Some((n, n_pi)) = next else {
            return wake;
        };
        (entry, pi) = (n, n_pi);
        limit -= 1;
        if limit == 0 {
            break;
        }
    }
    if pending != 0 {
        let word = pending.wrapping_add(offset);
        handle_futex_death(mem, word, tid, pending_pi, true, &mut wake);
    }
    wake
}

/// A list pointer at `va`: the address (bit 0 cleared) and its PI bit.
fn fetch_entry(mem: &mut impl RobustMem, va: u64) -> Option<(u64, bool)> {
    let v = mem.read_u64(va)?;
    Some((v & !1, v & 1 != 0))
}

/// One futex word of a dying owner (Linux's `handle_futex_death`).
fn handle_futex_death(
    mem: &mut impl RobustMem,
    word: u64,
    tid: u64,
    pi: bool,
    pending_op: bool,
    wake: &mut Vec<u64>,
) {
    if word & 3 != 0 {
        return;
    }
    let Some(v) = mem.read_u32(word) else {
        return;
    };
    // A pending unlock that already stored 0 but died before the wake:
    // wake one waiter, who finds the lock free.
    if pending_op && !pi && v == 0 {
        wake.push(word);
        return;
    }
    if u64::from(v & FUTEX_TID_MASK) != tid {
        return;
    }
    let marked = (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
    if !mem.write_u32(word, marked) {
        return;
    }
    if !pi && v & FUTEX_WAITERS != 0 {
        wake.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Sparse user memory: only the words written exist.
    #[derive(Default)]
    struct Mem(HashMap<u64, u64>);

    impl RobustMem for Mem {
        fn read_u64(&mut self, va: u64) -> Option<u64> {
            self.0.get(&va).copied()
        }
        fn read_u32(&mut self, va: u64) -> Option<u32> {
            self.0.get(&va).map(|&v| v as u32)
        }
        fn write_u32(&mut self, va: u64, v: u32) -> bool {
            match self.0.get_mut(&va) {
                Some(w) => {
                    *w = u64::from(v);
                    true
                }
                None => false,
            }
        }
    }

    const HEAD: u64 = 0x1000;
    /// glibc's futex_offset: the word sits before the list entry in
    /// `struct pthread_mutex_t`.
    const OFFSET: u64 = (-32i64) as u64;

    /// A head with entries at `entries` (each followed by the next), the
    /// futex word of each holding `words[i]`, and `pending`.
    fn list(entries: &[u64], words: &[u32], pending: u64) -> Mem {
        let mut m = Mem::default();
        let first = entries.first().copied().unwrap_or(HEAD);
        m.0.insert(HEAD, first);
        m.0.insert(HEAD + 8, OFFSET);
        m.0.insert(HEAD + 16, pending);
        for (i, &e) in entries.iter().enumerate() {
            let next = entries.get(i + 1).copied().unwrap_or(HEAD);
            m.0.insert(e, next);
            m.0.insert(e.wrapping_add(OFFSET), u64::from(words[i]));
        }
        m
    }

    fn word(m: &mut Mem, entry: u64) -> u32 {
        m.read_u32(entry.wrapping_add(OFFSET)).unwrap()
    }

    #[test]
    fn owned_futexes_get_owner_died_and_waiters_are_woken() {
        let mut m = list(
            &[0x2000, 0x3000, 0x4000],
            [7 | FUTEX_WAITERS, 8, 7].as_slice(),
            0,
        );
        let wake = exit_robust_list(&mut m, HEAD, 7);
        assert_eq!(word(&mut m, 0x2000), FUTEX_WAITERS | FUTEX_OWNER_DIED);
        assert_eq!(word(&mut m, 0x3000), 8, "another thread's lock");
        assert_eq!(word(&mut m, 0x4000), FUTEX_OWNER_DIED);
        assert_eq!(wake, [0x2000u64.wrapping_add(OFFSET)]);
    }

    #[test]
    fn the_pending_entry_is_handled_once_and_a_released_one_wakes() {
        let mut m = list(&[0x2000], &[7], 0x2000);
        assert!(exit_robust_list(&mut m, HEAD, 7).is_empty());
        assert_eq!(word(&mut m, 0x2000), FUTEX_OWNER_DIED);
        // Died between storing 0 and waking: one waiter is woken.
        let mut m = list(&[], &[], 0x5000);
        m.0.insert(0x5000u64.wrapping_add(OFFSET), 0);
        let wake = exit_robust_list(&mut m, HEAD, 7);
        assert_eq!(wake, [0x5000u64.wrapping_add(OFFSET)]);
    }

    #[test]
    fn a_circular_list_stops_at_the_limit() {
        let mut m = list(&[0x2000], &[7], 0);
        m.0.insert(0x2000, 0x2000); // points at itself
        let wake = exit_robust_list(&mut m, HEAD, 7);
        assert!(wake.is_empty());
        assert_eq!(word(&mut m, 0x2000), FUTEX_OWNER_DIED);
    }

    #[test]
    fn bad_pointers_end_the_walk_quietly() {
        let mut m = list(&[0x2000, 0x3000], &[7, 7], 0);
        m.0.remove(&0x3000); // the second entry's next is unreadable
        exit_robust_list(&mut m, HEAD, 7);
        assert_eq!(word(&mut m, 0x2000), FUTEX_OWNER_DIED);
        assert_eq!(
            word(&mut m, 0x3000),
            FUTEX_OWNER_DIED,
            "handled before its next"
        );
        let mut empty = Mem::default();
        assert!(exit_robust_list(&mut empty, HEAD, 7).is_empty());
        assert!(exit_robust_list(&mut empty, 0, 7).is_empty());
    }

    #[test]
    fn pi_futexes_are_marked_but_not_woken_and_misaligned_words_skipped() {
        let mut m = list(&[0x2000], &[7 | FUTEX_WAITERS], 0);
        m.0.insert(HEAD, 0x2001); // PI bit on the first pointer
        assert!(exit_robust_list(&mut m, HEAD, 7).is_empty());
        assert_eq!(word(&mut m, 0x2000), FUTEX_WAITERS | FUTEX_OWNER_DIED);
        let mut m = list(&[0x2002], &[7], 0);
        exit_robust_list(&mut m, HEAD, 7);
        assert_eq!(word(&mut m, 0x2002), 7);
    }
}

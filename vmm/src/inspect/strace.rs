//! An strace-style view of the guest program's system calls, built from
//! SYSCALL_ENTER and SYSCALL_EXIT trace records.
//!
//! Each pair becomes one line as strace prints it:
//! `write(1, "hello, world\n", 13) = 13`, `open("/etc/passwd", O_RDONLY) =
//! -1 ENOSYS (Function not implemented)`, `exit(0) = ?`. Buffers and strings
//! are read from the program's memory through a [`UserMemory`] the caller
//! provides (a page-table walk): a buffer the call reads at entry, one it
//! fills at exit, so the view is faithful when the host feeds records as the
//! guest stops at each system call, and close to it when fed later. Strings
//! are quoted as strace does (`\n`, `\t`, `\"`, octal escapes for other
//! unprintable bytes) and cut at 32 bytes with `...` after the quote.

use super::pagetable::read_user;
use super::syscalls::{self, Arg, Ret, Syscall};
use crate::memory::GuestRam;
use vmrun_contract::trace::{kind, syscall_nr, syscall_tid, Record};

/// Bytes of a string or buffer shown before `...` (strace's `-s 32`).
pub const STRING_LIMIT: usize = 32;

/// Reads the traced program's memory by virtual address.
pub trait UserMemory {
    /// Copy memory at `va` into `buf`; return how many bytes could be read
    /// (fewer, down to 0, where a page is not mapped).
    fn read_user(&self, va: u64, buf: &mut [u8]) -> usize;
}

impl<F: Fn(u64, &mut [u8]) -> usize> UserMemory for F {
    fn read_user(&self, va: u64, buf: &mut [u8]) -> usize {
        self(va, buf)
    }
}

/// The program's memory as the guest maps it: reads go through the page
/// tables at `cr3` (the host's own walk) and see only user-accessible pages.
pub struct GuestUserMemory<'a> {
    /// Guest RAM.
    pub ram: &'a GuestRam,
    /// The program's CR3.
    pub cr3: u64,
}

impl UserMemory for GuestUserMemory<'_> {
    fn read_user(&self, va: u64, buf: &mut [u8]) -> usize {
        read_user(self.ram, self.cr3, va, buf)
    }
}

/// Memory that cannot be read: strings print as addresses.
pub struct NoMemory;

impl UserMemory for NoMemory {
    fn read_user(&self, _va: u64, _buf: &mut [u8]) -> usize {
        0
    }
}

/// A call entered and not yet returned.
struct Pending {
    nr: u32,
    /// The calling thread.
    tid: u32,
    args: [u64; 6],
    /// Arguments rendered at entry; `None` for a buffer filled at exit.
    shown: Vec<Option<String>>,
}

/// Pairs records into lines; feed records in order.
#[derive(Default)]
pub struct Strace {
    pending: Option<Pending>,
}

impl Strace {
    /// A formatter with no call pending.
    pub fn new() -> Strace {
        Strace::default()
    }

    /// Take one record; return the lines it completes (none, one, or two
    /// when a call was left unfinished). Records other than system-call
    /// records are ignored.
    pub fn feed(&mut self, r: &Record, mem: &dyn UserMemory) -> Vec<String> {
        match r.kind {
            kind::SYSCALL_ENTER => self.enter(r, mem),
            kind::SYSCALL_EXIT => vec![self.exit(r, mem)],
            _ => Vec::new(),
        }
    }

    /// Flush a call that never returned (`name(args) = ?`).
    pub fn finish(&mut self) -> Option<String> {
        self.pending.take().map(|p| unfinished(&p))
    }

    fn enter(&mut self, r: &Record, mem: &dyn UserMemory) -> Vec<String> {
        let mut out: Vec<String> = self.finish().into_iter().collect();
        let nr = syscall_nr(r.aux);
        let p = Pending {
            nr,
            tid: syscall_tid(r.aux),
            args: r.a,
            shown: show_entry_args(nr, &r.a, mem),
        };
        match syscalls::lookup(nr) {
            Some(sc) if sc.ret == Ret::None => out.push(unfinished(&p)),
            _ => self.pending = Some(p),
        }
        out
    }

    fn exit(&mut self, r: &Record, mem: &dyn UserMemory) -> String {
        let ret = r.a[0] as i64;
        let (nr, tid) = (syscall_nr(r.aux), syscall_tid(r.aux));
        match self.pending.take() {
            Some(p) if p.nr == nr && p.tid == tid => {
                let args = complete_args(&p, ret, mem);
                let line = format!("{}({args}) = {}", syscalls::name(p.nr), result(p.nr, ret));
                prefixed(tid, line)
            }
            other => {
                self.pending = other;
                let line = format!(
                    "<... {} resumed>) = {}",
                    syscalls::name(nr),
                    result(nr, ret)
                );
                prefixed(tid, line)
            }
        }
    }
}

/// Every line for `records` in order, with a call left open at the end
/// shown as `= ?`.
pub fn strace_lines(records: &[Record], mem: &dyn UserMemory) -> Vec<String> {
    let mut s = Strace::new();
    let mut out: Vec<String> = records.iter().flat_map(|r| s.feed(r, mem)).collect();
    out.extend(s.finish());
    out
}

/// strace's last line for a program that exited: `+++ exited with 0 +++`.
pub fn exited_line(status: u64) -> String {
    format!("+++ exited with {status} +++")
}

/// strace's last line for a program killed by a signal:
/// `+++ killed by SIGSEGV +++`.
pub fn killed_line(signal: u64) -> String {
    format!("+++ killed by {} +++", syscalls::signal_name(signal))
}

fn unfinished(p: &Pending) -> String {
    let shown: Vec<String> = p
        .shown
        .iter()
        .enumerate()
        .map(|(i, s)| s.clone().unwrap_or_else(|| pointer(p.args[i])))
        .collect();
    prefixed(
        p.tid,
        format!("{}({}) = ?", syscalls::name(p.nr), shown.join(", ")),
    )
}

/// `line` with strace -f's `[pid N] ` prefix for any process but the first.
fn prefixed(tid: u32, line: String) -> String {
    if tid <= 1 {
        line
    } else {
        format!("[pid {tid:>5}] {line}")
    }
}

fn complete_args(p: &Pending, ret: i64, mem: &dyn UserMemory) -> String {
    let shown: Vec<String> = p
        .shown
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Some(s) => s.clone(),
            None => out_buffer(p.args[i], ret, mem),
        })
        .collect();
    shown.join(", ")
}

/// The arguments as shown at entry; an unknown call shows all six in hex.
fn show_entry_args(nr: u32, args: &[u64; 6], mem: &dyn UserMemory) -> Vec<Option<String>> {
    let Some(sc) = syscalls::lookup(nr) else {
        return args.iter().map(|&v| Some(format!("{v:#x}"))).collect();
    };
    let mut shown = Vec::new();
    for (i, spec) in sc.args.iter().enumerate() {
        if *spec == Arg::Mode && !mode_shown(sc, args) {
            continue;
        }
        shown.push(match spec {
            Arg::BufOut => None,
            _ => Some(show_arg(*spec, args[i], args, mem)),
        });
    }
    shown
}

/// strace shows an open mode only with O_CREAT or O_TMPFILE.
fn mode_shown(sc: &Syscall, args: &[u64; 6]) -> bool {
    let Some(i) = sc.args.iter().position(|a| *a == Arg::OpenFlags) else {
        return true;
    };
    args[i] & (0o100 | 0o20000000) != 0
}

fn show_arg(spec: Arg, v: u64, args: &[u64; 6], mem: &dyn UserMemory) -> String {
    use syscalls::{flag_names, MAP_FLAGS, PROT_FLAGS};
    match spec {
        Arg::Int => (v as i32).to_string(),
        Arg::Size => v.to_string(),
        Arg::Off => (v as i64).to_string(),
        Arg::Ptr => pointer(v),
        Arg::Hex => c_hex(v),
        Arg::Str => c_string(v, mem),
        Arg::BufIn(n) => in_buffer(v, args[usize::from(n)], mem),
        Arg::BufOut => pointer(v),
        Arg::Prot => flag_names(v, PROT_FLAGS, "PROT_NONE"),
        Arg::MapFlags => flag_names(v, MAP_FLAGS, "0"),
        Arg::OpenFlags => syscalls::open_flags(v),
        Arg::Mode => c_octal(v),
        Arg::DirFd if v as i32 == -100 => "AT_FDCWD".into(),
        Arg::DirFd => (v as i32).to_string(),
        Arg::Signal => syscalls::signal_name(v),
        Arg::ArchCode => syscalls::arch_code(v),
        Arg::Clock => syscalls::clock_name(v),
        Arg::Resource => syscalls::resource_name(v),
        Arg::AtFlags => flag_names(v, syscalls::AT_FLAGS, "0"),
        Arg::GrndFlags => flag_names(v, syscalls::GRND_FLAGS, "0"),
        Arg::SigHow => syscalls::sighow_name(v),
        Arg::FcntlCmd => syscalls::fcntl_name(v),
        Arg::IoctlReq => syscalls::ioctl_name(v),
    }
}

/// `NULL` or hex, as strace prints pointers.
fn pointer(v: u64) -> String {
    if v == 0 {
        "NULL".into()
    } else {
        format!("{v:#x}")
    }
}

/// C's `%#03o`, as strace prints modes: `0644`, `000`.
fn c_octal(v: u64) -> String {
    let digits = if v == 0 {
        String::new()
    } else {
        format!("0{v:o}")
    };
    format!("{digits:0>3}")
}

/// C's `%#x`: `0` for zero, `0x..` otherwise.
fn c_hex(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

fn result(nr: u32, ret: i64) -> String {
    if (-4095..0).contains(&ret) {
        return format!("-1 {}", syscalls::errno_text(-ret));
    }
    match syscalls::lookup(nr).map(|s| s.ret) {
        Some(Ret::Hex) => format!("{:#x}", ret as u64),
        _ => ret.to_string(),
    }
}

/// A buffer of `len` bytes the call reads, quoted.
fn in_buffer(va: u64, len: u64, mem: &dyn UserMemory) -> String {
    quoted_buffer(va, len, mem)
}

/// A buffer the call filled: `ret` bytes, quoted; the address on error.
fn out_buffer(va: u64, ret: i64, mem: &dyn UserMemory) -> String {
    match u64::try_from(ret) {
        Ok(len) => quoted_buffer(va, len, mem),
        Err(_) => pointer(va),
    }
}

fn quoted_buffer(va: u64, len: u64, mem: &dyn UserMemory) -> String {
    let shown = len.min(STRING_LIMIT as u64) as usize;
    let mut buf = vec![0u8; shown];
    if va == 0 || mem.read_user(va, &mut buf) < shown {
        return pointer(va);
    }
    quote(&buf, len > shown as u64)
}

/// A NUL-terminated string at `va`, quoted and cut at [`STRING_LIMIT`].
fn c_string(va: u64, mem: &dyn UserMemory) -> String {
    if va == 0 {
        return "NULL".into();
    }
    let mut buf = vec![0u8; STRING_LIMIT + 1];
    let got = mem.read_user(va, &mut buf);
    match buf[..got].iter().position(|&b| b == 0) {
        Some(end) if end <= STRING_LIMIT => quote(&buf[..end], false),
        _ if got > STRING_LIMIT => quote(&buf[..STRING_LIMIT], true),
        _ => pointer(va),
    }
}

/// Quote bytes as strace does: printable ASCII as is, `\"` and `\\`,
/// `\t \n \v \f \r`, other bytes in octal (three digits when a digit
/// follows); `...` after the closing quote if `truncated`.
pub fn quote(bytes: &[u8], truncated: bool) -> String {
    let mut s = String::from("\"");
    for (i, &c) in bytes.iter().enumerate() {
        let next_is_digit = bytes.get(i + 1).is_some_and(|n| (b'0'..=b'7').contains(n));
        push_escaped(&mut s, c, next_is_digit);
    }
    s.push('"');
    if truncated {
        s.push_str("...");
    }
    s
}

fn push_escaped(s: &mut String, c: u8, next_is_digit: bool) {
    match c {
        b'"' | b'\\' => {
            s.push('\\');
            s.push(char::from(c));
        }
        b'\t' => s.push_str("\\t"),
        b'\n' => s.push_str("\\n"),
        0x0b => s.push_str("\\v"),
        0x0c => s.push_str("\\f"),
        b'\r' => s.push_str("\\r"),
        0x20..=0x7e => s.push(char::from(c)),
        _ if next_is_digit => s.push_str(&format!("\\{c:03o}")),
        _ => s.push_str(&format!("\\{c:o}")),
    }
}

#[cfg(test)]
mod tests;

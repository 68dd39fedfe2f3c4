//! vmrun's own messages on its stdout and stderr.
//!
//! `println!` and `eprintln!` panic when the stream cannot be written (a
//! reader that closed the pipe, /dev/full), and a panic would replace the
//! program's exit status with 101. vmrun's own output is worth less than
//! that status: these macros write the same text and drop a failed write.
//! The crate denies `clippy::print_stdout` and `clippy::print_stderr`, so
//! the panicking macros cannot come back by accident.

use std::fmt;
use std::io::Write;

/// Writes `args` to stderr; a failed write is dropped.
pub fn err(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Writes `args` to stdout and flushes it; a failed write is dropped.
pub fn out(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args).and_then(|_| out.flush());
}

/// `eprintln!` that never panics: a line on stderr, dropped if it cannot
/// be written.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::console::err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that never panics.
#[macro_export]
macro_rules! errprint {
    ($($arg:tt)*) => {
        $crate::console::err(format_args!($($arg)*))
    };
}

/// `println!` that never panics: a line on stdout, dropped if it cannot
/// be written.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::console::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

//! `#!` scripts as Linux's `binfmt_script` reads them: the first line of
//! at most [`BINPRM_BUF_SIZE`] bytes names an interpreter and at most one
//! argument; the kernel then runs the interpreter with the script's path.

use alloc::vec::Vec;

use crate::errno::{Errno, KResult};

/// Bytes of a file's start the kernel looks at (Linux's `BINPRM_BUF_SIZE`).
pub const BINPRM_BUF_SIZE: usize = 256;
/// Most interpreter rewrites one exec follows (Linux's `exec_binprm`
/// gives ELOOP past 5).
pub const MAX_DEPTH: u32 = 5;

/// A script's interpreter line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shebang {
    /// The interpreter path.
    pub interp: Vec<u8>,
    /// Its optional argument (everything after the path, trimmed).
    pub arg: Option<Vec<u8>>,
}

fn is_space(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Parse the start of a file (at most [`BINPRM_BUF_SIZE`] bytes of it):
/// None if it is not a `#!` script; ENOEXEC if the line names no
/// interpreter, or the interpreter's name does not end within the buffer.
/// Inlined: nearly every exec is of an ELF file, which the first two
/// bytes tell without a call.
#[inline]
pub fn parse(buf: &[u8]) -> KResult<Option<Shebang>> {
    match buf.strip_prefix(b"#!") {
        Some(_) => parse_line(buf),
        None => Ok(None),
    }
}

/// [`parse`] of a file that starts with `#!`.
fn parse_line(buf: &[u8]) -> KResult<Option<Shebang>> {
    let buf = &buf[..buf.len().min(BINPRM_BUF_SIZE)];
    let Some(rest) = buf.strip_prefix(b"#!") else {
        return Ok(None);
    };
    let (line, complete) = match rest.iter().position(|&c| c == b'\n') {
        Some(n) => (&rest[..n], true),
        None => (rest, buf.len() < BINPRM_BUF_SIZE),
    };
    let start = line
        .iter()
        .position(|&c| !is_space(c))
        .unwrap_or(line.len());
    let line = &line[start..];
    let end = line
        .iter()
        .rposition(|&c| !is_space(c) && c != 0)
        .map_or(0, |p| p + 1);
    let line = &line[..end];
    if line.is_empty() {
        return Err(Errno::ENOEXEC);
    }
    let name_end = line.iter().position(|&c| is_space(c)).unwrap_or(line.len());
    // A name that runs to the end of a full buffer may be cut short.
    if !complete && name_end == line.len() {
        return Err(Errno::ENOEXEC);
    }
    let interp = line[..name_end].to_vec();
    let tail = &line[name_end..];
    let arg_start = tail.iter().position(|&c| !is_space(c));
    let arg = arg_start.map(|s| tail[s..].to_vec());
    Ok(Some(Shebang { interp, arg }))
}

/// The argument strings for the interpreter: its path, its argument if
/// any, the script's path, then the script's own arguments after argv[0].
pub fn interpreter_argv(sb: &Shebang, script: &[u8], argv: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut v = Vec::with_capacity(argv.len() + 2);
    v.push(sb.interp.clone());
    if let Some(a) = &sb.arg {
        v.push(a.clone());
    }
    v.push(script.to_vec());
    v.extend(argv.iter().skip(1).cloned());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(interp: &[u8], arg: Option<&[u8]>) -> Option<Shebang> {
        Some(Shebang {
            interp: interp.to_vec(),
            arg: arg.map(<[u8]>::to_vec),
        })
    }

    #[test]
    fn interpreter_and_one_argument_are_split_at_the_first_blank() {
        assert_eq!(parse(b"#!/bin/sh\necho hi\n"), Ok(sb(b"/bin/sh", None)));
        assert_eq!(
            parse(b"#! /usr/bin/env  python3 -u \n"),
            Ok(sb(b"/usr/bin/env", Some(b"python3 -u")))
        );
        assert_eq!(parse(b"#!/bin/sh\t-e\n"), Ok(sb(b"/bin/sh", Some(b"-e"))));
        assert_eq!(parse(b"#!/bin/sh"), Ok(sb(b"/bin/sh", None)));
    }

    #[test]
    fn not_a_script_or_an_empty_line() {
        assert_eq!(parse(b"\x7fELF"), Ok(None));
        assert_eq!(parse(b"#"), Ok(None));
        assert_eq!(parse(b"#!\n"), Err(Errno::ENOEXEC));
        assert_eq!(parse(b"#!   \t\n"), Err(Errno::ENOEXEC));
    }

    #[test]
    fn a_name_cut_by_the_buffer_end_is_enoexec_but_a_cut_argument_is_kept() {
        let mut long = b"#!/".to_vec();
        long.resize(300, b'a');
        assert_eq!(parse(&long), Err(Errno::ENOEXEC));
        let mut arg = b"#!/bin/sh ".to_vec();
        arg.resize(300, b'x');
        let got = parse(&arg).unwrap().unwrap();
        assert_eq!(got.interp, b"/bin/sh");
        assert_eq!(got.arg.unwrap().len(), BINPRM_BUF_SIZE - 10);
    }

    #[test]
    fn interpreter_argv_replaces_argv0_with_the_script_path() {
        let s = sb(b"/bin/sh", Some(b"-e")).unwrap();
        let argv = [b"x".to_vec(), b"a1".to_vec()];
        let v = interpreter_argv(&s, b"./t.sh", &argv);
        assert_eq!(
            v,
            [
                b"/bin/sh".to_vec(),
                b"-e".to_vec(),
                b"./t.sh".to_vec(),
                b"a1".to_vec()
            ]
        );
    }
}

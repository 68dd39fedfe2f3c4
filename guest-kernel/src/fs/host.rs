//! The host's file service as the kernel sees it: one request block
//! ([`FsRequest`]) filled in place and submitted with a hypercall.
//!
//! The block is large (two paths), so it is never built on the stack:
//! [`FsHost::req`] hands out the one block, the caller sets the fields its
//! operation uses, and [`FsHost::submit`] sends it with a scatter/gather
//! list (on the kernel stack) for the data, if any.

#[cfg(test)]
use vmrun_contract::fs::DEFERRED_CLOSES;
use vmrun_contract::fs::{op, FsRequest, PATH_MAX};
use vmrun_contract::IoVec;

use crate::errno::{Errno, KResult};

/// The host's file service.
pub trait FsHost {
    /// The request block (its outputs hold the last call's results).
    fn req(&mut self) -> &mut FsRequest;
    /// Send the request with `iov` as its data pieces; returns `ret`.
    fn submit(&mut self, iov: &[IoVec]) -> i64;
}

/// A host that has no files (for unit tests).
pub struct NoHost {
    req: FsRequest,
}

impl NoHost {
    /// A host whose every path is missing (ENOENT).
    pub fn new() -> NoHost {
        NoHost {
            req: FsRequest::zeroed(),
        }
    }
}

impl Default for NoHost {
    fn default() -> Self {
        Self::new()
    }
}

impl FsHost for NoHost {
    fn req(&mut self) -> &mut FsRequest {
        &mut self.req
    }
    fn submit(&mut self, _iov: &[IoVec]) -> i64 {
        Errno::ENOENT.to_ret()
    }
}

/// Start a request: clear the inputs every op reads.
pub fn begin(host: &mut dyn FsHost, operation: u32, handle: u64) -> &mut FsRequest {
    let r = host.req();
    r.op = operation;
    r.flags = 0;
    r.handle = handle;
    r.handle2 = 0;
    r.mode = 0;
    r.offset = 0;
    r.path_len = 0;
    r.path2_len = 0;
    r.ret = 0;
    r
}

/// Put `path` (no NUL) into the request's first or second path slot.
pub fn set_path(r: &mut FsRequest, second: bool, path: &[u8]) -> KResult<()> {
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if second {
        r.path2[..path.len()].copy_from_slice(path);
        r.path2_len = path.len() as u32;
    } else {
        r.path[..path.len()].copy_from_slice(path);
        r.path_len = path.len() as u32;
    }
    Ok(())
}

/// Submit and turn `ret` into a result (in line: a call of its own costs
/// more than its test).
#[inline(always)]
pub fn call(host: &mut dyn FsHost, iov: &[IoVec]) -> KResult<u64> {
    let r = host.submit(iov);
    if r < 0 {
        Err(Errno::from_ret(r))
    } else {
        Ok(r as u64)
    }
}

/// Close host handle `h` (errors are of no use to anyone here): at once
/// if `now` (a handle opened for writing: on a network file system the
/// host's close is what hands its data to the server), else with the next
/// request, which carries it in its list of handles to close
/// ([`FsRequest::close_count`]; a CLOSE request now if the list is full).
/// A program that opens, reads and closes files or directories in turn
/// (ld.so, Python's imports, `du`) then makes no hypercall for a close.
/// Out of line: exec's release of the old image's files keeps its
/// registers.
#[inline(never)]
pub fn close(host: &mut dyn FsHost, h: u64, now: bool) {
    let r = host.req();
    let n = r.close_count as usize;
    if !now && n < r.closes.len() {
        r.closes[n] = h;
        r.close_count += 1;
        return;
    }
    begin(host, op::CLOSE, h);
    let _ = host.submit(&[]);
}

/// Read from handle `h` at `offset` into the physical pieces.
pub fn pread(host: &mut dyn FsHost, h: u64, offset: u64, iov: &[IoVec]) -> KResult<u64> {
    begin(host, op::PREAD, h).offset = offset;
    call(host, iov)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that records the requests it is sent.
    struct Recorder {
        req: FsRequest,
        sent: alloc::vec::Vec<(u32, u64, alloc::vec::Vec<u64>)>,
    }

    impl FsHost for Recorder {
        fn req(&mut self) -> &mut FsRequest {
            &mut self.req
        }
        fn submit(&mut self, _iov: &[IoVec]) -> i64 {
            let r = &mut self.req;
            let carried = r.closes[..r.close_count as usize].to_vec();
            self.sent.push((r.op, r.handle, carried));
            r.close_count = 0;
            0
        }
    }

    #[test]
    fn a_read_only_handle_is_closed_with_the_next_request_and_a_full_list_at_once() {
        let mut h = Recorder {
            req: FsRequest::zeroed(),
            sent: alloc::vec::Vec::new(),
        };
        close(&mut h, 5, false);
        close(&mut h, 6, false);
        assert!(h.sent.is_empty(), "no request of their own");
        let _ = pread(&mut h, 9, 0, &[]);
        assert_eq!(h.sent, [(op::PREAD, 9, alloc::vec![5, 6])]);
        // A handle opened for writing: a CLOSE now, with the list.
        close(&mut h, 7, false);
        close(&mut h, 8, true);
        assert_eq!(h.sent[1], (op::CLOSE, 8, alloc::vec![7]));
        // A full list: the next one goes as a CLOSE of its own.
        for k in 0..DEFERRED_CLOSES as u64 {
            close(&mut h, 20 + k, false);
        }
        assert_eq!(h.sent.len(), 2);
        close(&mut h, 40, false);
        let all: alloc::vec::Vec<u64> = (20..20 + DEFERRED_CLOSES as u64).collect();
        assert_eq!(h.sent[2], (op::CLOSE, 40, all));
    }
}

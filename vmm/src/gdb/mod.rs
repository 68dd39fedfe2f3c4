//! A gdb remote stub (`vmrun --gdb PORT` or `--gdb unix:PATH`).
//!
//! The protocol is the `gdbstub` crate's; this module is the target it
//! drives. The guest kernel stops the program for the host (see
//! [`vmrun_contract::debug`]): before its first instruction, at an `int3`,
//! after a single step, before a fault signal is delivered, and when gdb
//! interrupts. At a stop the program's registers are where the kernel
//! saved them (its trap frame and FXSAVE image, whose guest-physical
//! addresses the stop names), and its memory is read and written through
//! its own page tables by the host's walker, never faulted in.
//!
//! Software breakpoints are `int3` bytes written into the program's page
//! (see docs/gdb.md for what that means for shared file pages); single
//! steps set RFLAGS.TF for one user instruction, which works the same on
//! kvm_pvm and on VMX/SVM. `monitor` commands show the guest kernel's own
//! structures at the stop ([`monitor`]).

mod monitor;
mod regs;

use crate::error::{Error, Result};
use crate::hypercall::Outcome;
use crate::inspect::pagetable::translate;
use crate::session::{Session, SessionReport, Step};
use crate::stdio::Stdio;
use crate::vm::{DebugStop, RunEnd};
use gdbstub::common::Signal;
use gdbstub::common::Tid;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::{run_blocking, DisconnectReason, GdbStub, MultiThreadStopReason};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSingleStep,
    MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::{Target, TargetError, TargetResult};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use vmrun_contract::debug::{reason, resume, TaskRecord};
use vmrun_contract::layout::TASK_SIZE;

/// Where the stub listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP port on 127.0.0.1 (0: any free port, printed).
    Tcp(u16),
    /// A Unix socket at this path.
    Unix(PathBuf),
}

impl Listen {
    /// Parse `PORT` or `unix:PATH`.
    pub fn parse(s: &str) -> std::result::Result<Listen, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("--gdb unix: needs a socket path".into());
            }
            return Ok(Listen::Unix(path.into()));
        }
        let port = s.strip_prefix(':').unwrap_or(s);
        port.parse()
            .map(Listen::Tcp)
            .map_err(|_| format!("--gdb {s}: not a port number or unix:PATH"))
    }
}

type Conn = Box<dyn ConnectionExt<Error = io::Error>>;

/// The `int3` instruction.
const INT3: u8 = 0xcc;

/// The program under the debugger.
pub struct DebugTarget {
    session: Session,
    io: Stdio,
    /// The current stop (None once the run is over).
    stop: Option<DebugStop>,
    /// Breakpoints gdb placed: address, the byte the `int3` replaced.
    breakpoints: BTreeMap<u64, u8>,
    /// The answer for the stop, set by resume or step.
    answer: u64,
    /// The run's end, once it came.
    report: Option<Box<SessionReport>>,
    /// The program's auxiliary vector, read from its stack at the first
    /// stop (gdb finds a dynamic program's libraries through it).
    auxv: Vec<u8>,
}

/// How a debugged run ended.
pub enum Ended {
    /// The run finished (with or without gdb attached to the end).
    Finished(Box<SessionReport>),
    /// gdb killed the program.
    Killed,
}

/// Run `session` under gdb: run to the program's first instruction, wait
/// for gdb on `listen`, serve it, and after a detach run to the end.
pub fn serve(session: Session, io: Stdio, listen: &Listen) -> Result<Ended> {
    let mut target = DebugTarget {
        session,
        io,
        stop: None,
        breakpoints: BTreeMap::new(),
        answer: resume::CONTINUE,
        report: None,
        auxv: vec![],
    };
    target.run_to_stop()?;
    target.auxv = target.read_auxv().unwrap_or_default();
    if let Some(report) = target.report.take() {
        return Ok(Ended::Finished(report));
    }
    let conn = accept(listen)?;
    let stub = GdbStub::new(conn);
    let reason = stub.run_blocking::<EventLoop>(&mut target);
    match reason {
        Ok(DisconnectReason::Kill) => return Ok(Ended::Killed),
        Ok(DisconnectReason::TargetExited(_)) | Ok(DisconnectReason::TargetTerminated(_)) => {}
        Ok(DisconnectReason::Disconnect) => target.detach()?,
        Err(e) => {
            crate::errln!("vmrun: gdb connection: {e}; the program runs on");
            target.detach()?;
        }
    }
    match target.report.take() {
        Some(report) => Ok(Ended::Finished(report)),
        None => Err(Error::Config(
            "the debugged run ended without a report".into(),
        )),
    }
}

fn accept(listen: &Listen) -> Result<Conn> {
    let err = |e: io::Error| Error::Config(format!("--gdb: {e}"));
    match listen {
        Listen::Tcp(port) => {
            let l = TcpListener::bind(("127.0.0.1", *port)).map_err(err)?;
            let port = l.local_addr().map_err(err)?.port();
            crate::errln!("vmrun: waiting for gdb on 127.0.0.1:{port} (target remote :{port})");
            let (s, _) = l.accept().map_err(err)?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
        Listen::Unix(path) => {
            let l = UnixListener::bind(path).map_err(err)?;
            crate::errln!("vmrun: waiting for gdb on {}", path.display());
            let accepted = l.accept().map_err(err);
            let _ = std::fs::remove_file(path);
            Ok(Box::new(accepted?.0))
        }
    }
}

impl DebugTarget {
    /// Run until the program stops for the debugger or the run ends.
    fn run_to_stop(&mut self) -> Result<()> {
        loop {
            if let Some(event) = self.run_once()? {
                return Ok(event);
            }
        }
    }

    /// One step of the session: Some(()) at a stop or the end.
    fn run_once(&mut self) -> Result<Option<()>> {
        match self.session.step(&mut self.io)? {
            Step::Debug(stop) => {
                self.stop = Some(stop);
                Ok(Some(()))
            }
            Step::Done(report) => {
                self.stop = None;
                self.report = Some(report);
                Ok(Some(()))
            }
            Step::Running | Step::Tick => Ok(None),
        }
    }

    /// Answer the current stop with what gdb asked for.
    fn release(&mut self) -> Result<()> {
        if self.stop.take().is_some() {
            self.session.vm_mut().answer_debug_stop(self.answer)?;
        }
        Ok(())
    }

    /// gdb left: take the breakpoints out and run to the end, never
    /// stopping again.
    fn detach(&mut self) -> Result<()> {
        let placed = std::mem::take(&mut self.breakpoints);
        for (addr, byte) in placed {
            // Only where the int3 still is: after an exec the address may
            // hold another program's byte.
            if self.raw_byte(addr) == Some(INT3) {
                let _ = self.poke(addr, &[byte]);
            }
        }
        if self.report.is_some() {
            return Ok(());
        }
        self.answer = resume::DETACH;
        self.release()?;
        while self.report.is_none() {
            match self.session.step(&mut self.io)? {
                Step::Debug(_) => self.session.vm_mut().answer_debug_stop(resume::DETACH)?,
                Step::Done(report) => self.report = Some(report),
                Step::Running | Step::Tick => {}
            }
        }
        Ok(())
    }

    /// The stop as gdb should see it: the stopped task is the thread.
    fn stop_reason(&mut self) -> MultiThreadStopReason<u64> {
        let Some(stop) = self.stop else {
            return match self.report.as_ref().map(|r| &r.run.outcome) {
                Some(RunEnd::Guest(Outcome::Exited(s))) => MultiThreadStopReason::Exited(*s as u8),
                Some(RunEnd::Guest(Outcome::Signaled { signal, .. })) => {
                    MultiThreadStopReason::Terminated(gdb_signal(*signal))
                }
                _ => MultiThreadStopReason::Terminated(Signal::SIGKILL),
            };
        };
        let tid = tid_of(stop.pid);
        let signal = match stop.reason {
            reason::BREAKPOINT => {
                // The saved RIP is after the int3: a breakpoint of gdb's
                // is reported at its address, as gdb expects of a stub
                // that reports swbreak.
                if let Ok(mut f) = self.frame() {
                    let at = f.rip.wrapping_sub(1);
                    if self.breakpoints.contains_key(&at) && self.set_rip(&mut f, at).is_ok() {
                        return MultiThreadStopReason::SwBreak(tid);
                    }
                }
                Signal::SIGTRAP
            }
            reason::INTERRUPT => Signal::SIGINT,
            reason::SIGNAL => gdb_signal(stop.signal),
            _ => Signal::SIGTRAP,
        };
        MultiThreadStopReason::SignalWithThread { tid, signal }
    }

    /// The tasks at the stop, the stopped one first.
    fn tasks(&self) -> Vec<TaskRecord> {
        let Some(stop) = self.stop else {
            return vec![];
        };
        let ram = self.session.vm().ram();
        let size = std::mem::size_of::<TaskRecord>() as u64;
        (0..stop.task_count.min(MAX_TASKS))
            .map_while(|i| ram.read_pod(stop.tasks_phys + i * size).ok())
            .collect()
    }

    /// The task `tid` names, and whether it is the stopped one.
    fn task(&self, tid: Tid) -> Option<(TaskRecord, bool)> {
        let tasks = self.tasks();
        let i = tasks.iter().position(|t| t.pid == tid.get() as u64)?;
        Some((tasks[i], i == 0))
    }

    /// Where `tid`'s memory is: the page-table root of its address space,
    /// and that space's pid (None: the stopped process's, in CR3).
    fn space_of(&self, tid: Tid) -> Result<(u64, Option<u64>)> {
        let (task, _) = self.task(tid).ok_or_else(not_stopped)?;
        let stopped = self.tasks().first().map_or(0, |t| t.tgid);
        if task.tgid == stopped {
            return Ok((self.cr3()?, None));
        }
        let spaces = self.session.spaces_now()?;
        let space = spaces
            .iter()
            .find(|s| s.pid == task.tgid || s.pid == task.pid)
            .ok_or_else(|| Error::Memory(format!("no address space for pid {}", task.pid)))?;
        Ok((space.root, Some(space.pid)))
    }

    /// The auxiliary vector on the stack exec built: after argc, the
    /// argument pointers and the environment pointers, each list ended by
    /// a null; pairs up to AT_NULL's.
    fn read_auxv(&self) -> Result<Vec<u8>> {
        let word = |at: u64| -> Result<u64> {
            let mut b = [0u8; 8];
            match self.peek(at, &mut b)? {
                8 => Ok(u64::from_le_bytes(b)),
                _ => Err(Error::Memory(format!("{at:#x} is not readable"))),
            }
        };
        let sp = self.frame()?.rsp;
        let argc = word(sp)?;
        let mut at = sp + 8 * (argc + 2);
        while word(at)? != 0 {
            at += 8;
        }
        at += 8;
        let mut auxv = Vec::new();
        for _ in 0..64 {
            let (kind, value) = (word(at)?, word(at + 8)?);
            auxv.extend_from_slice(&kind.to_le_bytes());
            auxv.extend_from_slice(&value.to_le_bytes());
            if kind == 0 {
                break;
            }
            at += 16;
        }
        Ok(auxv)
    }

    fn frame(&self) -> Result<vmrun_contract::debug::UserFrame> {
        let stop = self.stop.ok_or_else(not_stopped)?;
        self.session.vm().ram().read_pod(stop.frame_phys)
    }

    fn set_rip(&mut self, f: &mut vmrun_contract::debug::UserFrame, rip: u64) -> Result<()> {
        let stop = self.stop.ok_or_else(not_stopped)?;
        f.rip = rip;
        self.session.vm().ram().write_pod(stop.frame_phys, f)
    }

    /// The running process's page-table root.
    fn cr3(&self) -> Result<u64> {
        self.session.vm().cr3()
    }

    /// Read user memory at `va` through the page tables. A page the
    /// program has not touched yet is read from what backs it (its file,
    /// or zeros) without being mapped; an address outside every area ends
    /// the read.
    fn peek(&self, va: u64, buf: &mut [u8]) -> Result<usize> {
        self.peek_in((self.cr3()?, None), va, buf)
    }

    /// [`Self::peek`] in the address space `(root, pid)` of
    /// [`Self::space_of`].
    fn peek_in(&self, (cr3, pid): (u64, Option<u64>), va: u64, buf: &mut [u8]) -> Result<usize> {
        let ram = self.session.vm().ram();
        let mut done = 0;
        while done < buf.len() {
            let at = va.saturating_add(done as u64);
            let rest = &mut buf[done..];
            let n = match translate(ram, cr3, at) {
                Some(leaf) if leaf.flags.user => {
                    crate::inspect::pagetable::read_user(ram, cr3, at, rest)
                }
                Some(_) => 0,
                None if at < TASK_SIZE => {
                    self.session.unmapped_bytes_now(pid, at, rest).unwrap_or(0)
                }
                None => 0,
            };
            if n == 0 {
                break;
            }
            done += n;
        }
        // Show the program's own bytes where gdb's int3s are.
        for (addr, byte) in self.breakpoints.range(va..va.saturating_add(done as u64)) {
            buf[(addr - va) as usize] = *byte;
        }
        Ok(done)
    }

    /// Write user memory at `va` through the page tables, read-only pages
    /// included (as ptrace's POKE does). A page of an area the program has
    /// not touched yet is first mapped by the guest kernel, as the
    /// program's own read would map it; outside every area the write fails.
    fn poke(&mut self, va: u64, data: &[u8]) -> Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let at = va + done as u64;
            let leaf = match self.user_leaf(at)? {
                Some(leaf) => leaf,
                None => {
                    self.fault_in(at)?;
                    self.user_leaf(at)?
                        .ok_or_else(|| Error::Memory(format!("{at:#x} is not mapped")))?
                }
            };
            let offset = at - leaf.va;
            let n = ((leaf.size.bytes() - offset) as usize).min(data.len() - done);
            let ram = self.session.vm().ram();
            ram.write_bytes(leaf.pa + offset, &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// The byte at `va` as the program sees it, if mapped.
    fn raw_byte(&self, va: u64) -> Option<u8> {
        let mut b = [0u8];
        let cr3 = self.cr3().ok()?;
        let n = crate::inspect::pagetable::read_user(self.session.vm().ram(), cr3, va, &mut b);
        (n == 1).then_some(b[0])
    }

    fn user_leaf(&self, va: u64) -> Result<Option<crate::inspect::pagetable::Leaf>> {
        let cr3 = self.cr3()?;
        let leaf = translate(self.session.vm().ram(), cr3, va);
        Ok(leaf.filter(|l| l.flags.user && va < TASK_SIZE))
    }

    /// Have the guest kernel map the page at `va` (it stops again at once).
    fn fault_in(&mut self, va: u64) -> Result<()> {
        let mut empty = [0u8];
        if va >= TASK_SIZE
            || self
                .session
                .unmapped_bytes_now(None, va, &mut empty)
                .is_none()
        {
            return Err(Error::Memory(format!("{va:#x} is outside every area")));
        }
        let stop = self.stop.ok_or_else(not_stopped)?;
        self.session
            .vm_mut()
            .answer_debug_stop(resume::FAULT_IN | (va & !0xfff))?;
        loop {
            match self.session.step(&mut self.io)? {
                Step::Debug(again) => {
                    self.stop = Some(DebugStop { ..again });
                    // The stop is the same one: keep its reason.
                    if let Some(s) = &mut self.stop {
                        s.reason = stop.reason;
                        s.signal = stop.signal;
                        s.addr = stop.addr;
                    }
                    return Ok(());
                }
                Step::Done(report) => {
                    self.stop = None;
                    self.report = Some(report);
                    return Err(not_stopped());
                }
                Step::Running | Step::Tick => {}
            }
        }
    }
}

fn not_stopped() -> Error {
    Error::Config("the program is not stopped".into())
}

/// gdb's number for Linux signal `signal` (they differ above SIGKILL).
fn gdb_signal(signal: u32) -> Signal {
    let n = match signal {
        7 => 10,  // SIGBUS
        10 => 30, // SIGUSR1
        12 => 31, // SIGUSR2
        17 => 20, // SIGCHLD
        s => s as u8,
    };
    Signal(n)
}

/// Linux's number for gdb signal `signal`.
fn linux_signal(signal: Signal) -> u64 {
    match signal.0 {
        10 => 7,
        30 => 10,
        31 => 12,
        20 => 17,
        s => u64::from(s),
    }
}

fn target_err(e: Error) -> TargetError<String> {
    TargetError::Fatal(e.to_string())
}

impl Target for DebugTarget {
    type Arch = regs::X86_64Linux;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    fn support_auxv(&mut self) -> Option<gdbstub::target::ext::auxv::AuxvOps<'_, Self>> {
        Some(self)
    }
}

impl gdbstub::target::ext::auxv::Auxv for DebugTarget {
    fn get_auxv(&self, offset: u64, length: usize, buf: &mut [u8]) -> TargetResult<usize, Self> {
        let start = (offset as usize).min(self.auxv.len());
        let n = length.min(buf.len()).min(self.auxv.len() - start);
        buf[..n].copy_from_slice(&self.auxv[start..start + n]);
        Ok(n)
    }
}

impl MultiThreadBase for DebugTarget {
    fn read_registers(&mut self, regs: &mut regs::LinuxRegs, tid: Tid) -> TargetResult<(), Self> {
        let (task, _) = self.task(tid).ok_or(TargetError::NonFatal)?;
        let ram = self.session.vm().ram();
        let frame = ram.read_pod(task.frame_phys).map_err(target_err)?;
        let mut fx = [0u8; 512];
        ram.read_bytes(task.fpu_phys, &mut fx).map_err(target_err)?;
        regs::to_gdb(&frame, &fx, &mut regs.core);
        regs.orig_rax = u64::MAX;
        regs.fs_base = task.fs_base;
        regs.gs_base = task.gs_base;
        Ok(())
    }

    /// Only the stopped task's registers can be written (FS and GS bases
    /// gdb writes are not taken: the guest kernel keeps its own copy).
    fn write_registers(&mut self, regs: &regs::LinuxRegs, tid: Tid) -> TargetResult<(), Self> {
        let (task, true) = self.task(tid).ok_or(TargetError::NonFatal)? else {
            return Err(TargetError::NonFatal);
        };
        let ram = self.session.vm().ram();
        let mut frame = ram.read_pod(task.frame_phys).map_err(target_err)?;
        let mut fx = [0u8; 512];
        ram.read_bytes(task.fpu_phys, &mut fx).map_err(target_err)?;
        regs::from_gdb(&regs.core, &mut frame, &mut fx);
        ram.write_pod(task.frame_phys, &frame).map_err(target_err)?;
        ram.write_bytes(task.fpu_phys, &fx).map_err(target_err)?;
        Ok(())
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let read = self
            .space_of(tid)
            .and_then(|space| self.peek_in(space, start, data));
        match read {
            Ok(0) | Err(_) => Err(TargetError::Errno(14)),
            Ok(n) => Ok(n),
        }
    }

    /// Writes go to the stopped process's memory (a thread of another
    /// process sees them if it shares the page).
    fn write_addrs(&mut self, start: u64, data: &[u8], _tid: Tid) -> TargetResult<(), Self> {
        // Bytes under gdb's own breakpoints change the saved byte.
        let mut data = data.to_vec();
        for (addr, saved) in self.breakpoints.range_mut(start..start + data.len() as u64) {
            let i = (addr - start) as usize;
            *saved = data[i];
            data[i] = INT3;
        }
        self.poke(start, &data).map_err(|_| TargetError::Errno(14))
    }

    fn list_active_threads(
        &mut self,
        thread_is_active: &mut dyn FnMut(Tid),
    ) -> std::result::Result<(), String> {
        for t in self.tasks() {
            thread_is_active(tid_of(t.pid));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for DebugTarget {
    fn resume(&mut self) -> std::result::Result<(), String> {
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> std::result::Result<(), String> {
        self.answer = resume::CONTINUE;
        Ok(())
    }

    /// Every task runs on; a signal goes to the stopped one only.
    fn set_resume_action_continue(
        &mut self,
        tid: Tid,
        signal: Option<Signal>,
    ) -> std::result::Result<(), String> {
        if self.answer & 0xff == resume::STEP || !self.is_stopped(tid) {
            return Ok(());
        }
        let signal = signal.map_or(0, linux_signal) & 0xff;
        self.answer = resume::CONTINUE | signal << 8;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(
        &mut self,
    ) -> Option<gdbstub::target::ext::base::multithread::MultiThreadSchedulerLockingOps<'_, Self>>
    {
        Some(self)
    }
}

/// gdb steps one thread and names no others (`vCont;s:p1.1`): the guest
/// kernel's scheduler is not held, so the others may run meanwhile, as
/// they would with `set scheduler-locking off`.
impl gdbstub::target::ext::base::multithread::MultiThreadSchedulerLocking for DebugTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> std::result::Result<(), String> {
        Ok(())
    }
}

impl MultiThreadSingleStep for DebugTarget {
    /// Only the stopped task can step (the others run on).
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        signal: Option<Signal>,
    ) -> std::result::Result<(), String> {
        if !self.is_stopped(tid) {
            return Err(format!("thread {tid} is not the one that stopped"));
        }
        let signal = signal.map_or(0, linux_signal) & 0xff;
        self.answer = resume::STEP | signal << 8;
        Ok(())
    }
}

impl DebugTarget {
    fn is_stopped(&self, tid: Tid) -> bool {
        self.stop.is_some_and(|s| s.pid == tid.get() as u64)
    }
}

/// The gdb thread id of task `pid` (pids start at 1).
fn tid_of(pid: u64) -> Tid {
    Tid::new(pid as usize).unwrap_or(Tid::MIN)
}

/// Most tasks a stop's table is read for.
const MAX_TASKS: u64 = 4096;

impl Breakpoints for DebugTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for DebugTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.breakpoints.contains_key(&addr) {
            return Ok(true);
        }
        let mut byte = [0u8];
        if self.peek(addr, &mut byte).ok() != Some(1) || self.poke(addr, &[INT3]).is_err() {
            return Ok(false);
        }
        self.breakpoints.insert(addr, byte[0]);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let Some(byte) = self.breakpoints.remove(&addr) else {
            return Ok(false);
        };
        Ok(self.poke(addr, &[byte]).is_ok())
    }
}

/// The blocking event loop: run the VM until it stops, checking for gdb's
/// interrupt at each tick.
enum EventLoop {}

impl run_blocking::BlockingEventLoop for EventLoop {
    type Target = DebugTarget;
    type Connection = Conn;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut DebugTarget,
        conn: &mut Conn,
    ) -> std::result::Result<
        run_blocking::Event<Self::StopReason>,
        run_blocking::WaitForStopReasonError<String, io::Error>,
    > {
        let fatal = |e: Error| run_blocking::WaitForStopReasonError::Target(e.to_string());
        target.release().map_err(fatal)?;
        loop {
            if target.report.is_some() {
                let reason = target.stop_reason();
                return Ok(run_blocking::Event::TargetStopped(reason));
            }
            match target.session.step(&mut target.io).map_err(fatal)? {
                Step::Debug(stop) => {
                    target.stop = Some(stop);
                    let reason = target.stop_reason();
                    return Ok(run_blocking::Event::TargetStopped(reason));
                }
                Step::Done(report) => target.report = Some(report),
                Step::Running => {}
                Step::Tick => {
                    let peeked = conn
                        .peek()
                        .map_err(run_blocking::WaitForStopReasonError::Connection)?;
                    if peeked.is_some() {
                        let byte = conn
                            .read()
                            .map_err(run_blocking::WaitForStopReasonError::Connection)?;
                        return Ok(run_blocking::Event::IncomingData(byte));
                    }
                }
            }
        }
    }

    fn on_interrupt(
        target: &mut DebugTarget,
    ) -> std::result::Result<Option<Self::StopReason>, String> {
        if !target.session.vm_mut().request_debug_interrupt() {
            return Err("the VM has no timer to interrupt the program with".into());
        }
        Ok(None)
    }
}

/// Flush what the program wrote before gdb takes over the terminal.
pub fn flush_stdout() {
    let _ = io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_parses_ports_and_unix_paths() {
        assert_eq!(Listen::parse("1234"), Ok(Listen::Tcp(1234)));
        assert_eq!(Listen::parse(":0"), Ok(Listen::Tcp(0)));
        assert_eq!(
            Listen::parse("unix:/tmp/s"),
            Ok(Listen::Unix("/tmp/s".into()))
        );
        assert!(Listen::parse("unix:").is_err());
        assert!(Listen::parse("port").is_err());
    }

    #[test]
    fn signal_numbers_map_both_ways() {
        for linux in [2, 5, 7, 10, 11, 12, 17] {
            assert_eq!(linux_signal(gdb_signal(linux)), u64::from(linux));
        }
        assert_eq!(gdb_signal(7), Signal(10));
    }
}

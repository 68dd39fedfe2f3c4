//! execve and execveat (Linux's `do_execveat_common`, `bprm_execve`,
//! `begin_new_exec`).
//!
//! [`prepare`] does everything that can fail while the caller can still
//! get an errno: it opens the file, follows `#!` lines (up to
//! [`script::MAX_DEPTH`] interpreters), parses and checks the ELF image and
//! its `PT_INTERP` interpreter through the page cache, and builds the new
//! argument block and checks its size. [`commit`] is the point of no
//! return: close-on-exec fds are closed, caught signals reset, the old
//! address space torn down, and the program (with its interpreter) and a
//! fresh stack loaded. The boot program goes through the same two steps,
//! from the image the VMM placed in RAM.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec::Vec;

use super::files::{self, absolute, open_path, release, AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW};
use super::{memory, Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::exec::aslr::Layout;
use crate::exec::elf::{header_span, EHDR_SIZE, MAX_PHDR_BYTES, PHDR_SIZE};
use crate::exec::script::{self, BINPRM_BUF_SIZE};
use crate::exec::stack::MAX_ARG_STRLEN;
use crate::exec::stack::{ArgShape, ArgTable};
use crate::exec::{ArgBlock, AuxValues, LoadPlan, StackLayout};
use crate::fs::file::{o, FileRef, Node};
use crate::fs::path;
use crate::fs::stat::{S_IFMT, S_IFREG};
use crate::mm::paging::KernelHalf;
use crate::mm::phys::PhysMem;
use crate::process::exec::{load_elf_binary, EntryState};
use crate::trace::{self, category, kind};
use crate::uaccess::user_string_array;
use vmrun_contract::layout::PAGE_SIZE;
use vmrun_contract::trace::exec_phase;

type Cx<'p, 'e, 'a, M, H> = Ctx<'p, 'e, 'a, M, H>;

/// Most argument plus environment strings (Linux's MAX_ARG_STRINGS).
const MAX_ARG_STRINGS: u64 = 0x7fff_ffff;

/// The argument block's first allocation: the kernel heap's largest
/// small block, which holds a shell's usual environment, so that most
/// execs never grow it.
const ARGS_BLOCK: usize = 2048;

/// The length table's first allocation: 128 strings.
const ARGS_LENS: usize = 512;

/// One image to load: its page-cache inode, plan, and the open file that
/// keeps the inode's host handle (None for the boot image).
pub struct ExecImage {
    /// The page-cache inode.
    pub inode: u16,
    /// Where its segments go.
    pub plan: LoadPlan,
    /// The open file (kept while the mappings live).
    pub file: Option<FileRef>,
}

/// Everything an exec decided before its point of no return.
pub struct ExecPlan {
    /// The program.
    pub program: ExecImage,
    /// Its `PT_INTERP` interpreter (boxed: a static program's plan, with
    /// its pointer table in place, then fits the heap's small blocks).
    pub interp: Option<Box<ExecImage>>,
    /// The exec file name, argv and envp strings, each NUL-terminated.
    pub args: Cow<'static, [u8]>,
    /// The stack's argc and argv/envp pointer arrays, built while the
    /// strings' lengths were checked ([`ArgBlock::with_lengths`]).
    pub table: ArgTable,
    /// argv count.
    pub argc: u32,
    /// envp count.
    pub envc: u32,
    /// The block's shape as [`ArgBlock::with_lengths`] checked it, so that
    /// the commit does not check every string again.
    pub shape: ArgShape,
    /// Where the parts go.
    pub layout: Layout,
    /// The initial stack's addresses, laid out for the argument block.
    pub stack: StackLayout,
}

impl ExecPlan {
    /// A plan before anything is decided: an exec allocates its plan as
    /// one block copied from this and fills the parts in place (built
    /// apart and moved in, the load plan and the stack layout are copied
    /// a few times on the way); once it is done, the block serves the
    /// next exec ([`Self::recycle`]), not copied from this again.
    pub const EMPTY: ExecPlan = ExecPlan {
        program: ExecImage {
            inode: 0,
            plan: LoadPlan::EMPTY,
            file: None,
        },
        interp: None,
        args: Cow::Borrowed(&[]),
        table: ArgTable::new(),
        argc: 0,
        envc: 0,
        shape: ArgShape::EMPTY,
        layout: Layout::FIXED,
        stack: StackLayout::EMPTY,
    };

    /// The plan made ready for the next exec once this one is done (kept
    /// in [`Tasks::spare_plan`](crate::process::task::Tasks::spare_plan)):
    /// the files, interpreter, strings and a large pointer table it still
    /// holds are dropped and the program's load plan cleared
    /// ([`LoadPlan::clear`]); the rest is written by the next exec before
    /// it is read (the argument table's NULL words too, see
    /// [`ArgBlock::with_lengths`]).
    pub fn recycle(&mut self) {
        self.program.file = None;
        self.program.plan.clear();
        self.interp = None;
        self.args = Cow::Borrowed(&[]);
        self.table.release_heap();
    }

    /// The segment error that will make [`commit`] fail (Linux meets it
    /// while mapping, past the point of no return), if any.
    pub fn late_error(&self) -> Option<crate::exec::elf::ElfError<'static>> {
        let interp = self.interp.as_ref().and_then(|i| i.plan.load_error);
        self.program.plan.load_error.or(interp)
    }
}

impl core::fmt::Debug for ExecPlan {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ExecPlan")
            .field("inode", &self.program.inode)
            .field("argc", &self.argc)
            .field("envc", &self.envc)
            .finish_non_exhaustive()
    }
}

/// The argument strings of an exec in the making, as the stack takes
/// them: the exec file name, argv and envp strings, each NUL-terminated,
/// end to end in one block, and their lengths.
pub struct Args {
    /// The strings.
    pub block: Vec<u8>,
    /// Their lengths (NUL included), one LE u32 each.
    pub lens: Vec<u8>,
    /// argv count.
    pub argc: u32,
    /// envp count.
    pub envc: u32,
}

/// The argument strings one by one (a `#!` script's, whose argv the
/// interpreter's line changes).
struct Strings {
    /// The file name as given (`AT_EXECFN`).
    execfn: Vec<u8>,
    /// argv.
    argv: Vec<Vec<u8>>,
    /// envp.
    envp: Vec<Vec<u8>>,
}

/// Why an exec failed before its point of no return: the errno, and for
/// the boot program a one-line message (the ELF checks' own words).
#[derive(Debug)]
pub struct ExecError {
    /// The errno the caller gets.
    pub errno: Errno,
    /// What was wrong (may be empty).
    pub message: Vec<u8>,
}

impl From<Errno> for ExecError {
    fn from(errno: Errno) -> Self {
        ExecError {
            errno,
            message: Vec::new(),
        }
    }
}

fn with_message(errno: Errno, msg: &[u8]) -> ExecError {
    ExecError {
        errno,
        message: msg.to_vec(),
    }
}

/// The boot program as the VMM placed it in RAM.
pub struct BootArgs {
    /// The exec file name, argv and envp strings, each NUL-terminated.
    pub block: &'static [u8],
    /// Their lengths, one LE u32 each (NUL included).
    pub lens: &'static [u8],
    /// argv count.
    pub argc: u32,
    /// envp count.
    pub envc: u32,
    /// The program file's bytes, all of them (its page-cache inode's):
    /// read in place, not through the cache.
    pub image: &'static [u8],
}

impl Strings {
    fn into_args(self) -> Args {
        let all = core::iter::once(&self.execfn)
            .chain(self.argv.iter())
            .chain(self.envp.iter());
        let mut block = Vec::new();
        let mut lens = Vec::new();
        for s in all {
            block.extend_from_slice(s);
            block.push(0);
            lens.extend_from_slice(&(s.len() as u32 + 1).to_le_bytes());
        }
        Args {
            block,
            lens,
            argc: self.argv.len() as u32,
            envc: self.envp.len() as u32,
        }
    }
}

/// Split an argument block back into strings (a script's).
fn split_block(block: &[u8], argc: u32) -> Strings {
    let mut it = block.split(|&b| b == 0).map(<[u8]>::to_vec);
    let execfn = it.next().unwrap_or_default();
    let mut rest: Vec<Vec<u8>> = it.collect();
    rest.pop(); // after the last NUL
    let envp = rest.split_off((argc as usize).min(rest.len()));
    Strings {
        execfn,
        argv: rest,
        envp,
    }
}

/// Append the NUL-terminated strings of the user pointer array at `va`
/// (none if `va` is 0) to `args`' block and lengths, as Linux's
/// `copy_strings` takes them: E2BIG for a string longer than
/// [`MAX_ARG_STRLEN`] or when `total` (each string with its NUL and
/// pointer) passes [`ARG_LIMIT`](crate::exec::stack::ARG_LIMIT). Returns
/// how many.
fn user_strings<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    va: u64,
    args: &mut Args,
    total: &mut u64,
) -> KResult<u32> {
    if va == 0 {
        return Ok(0);
    }
    let limits = (MAX_ARG_STRLEN as usize, MAX_ARG_STRINGS);
    let (block, lens) = (&mut args.block, &mut args.lens);
    let n = user_string_array(&mut cx.p.mm, cx.env, va, limits, block, lens, |len| {
        *total += len + 8;
        match *total > crate::exec::stack::ARG_LIMIT {
            true => Err(Errno::E2BIG),
            false => Ok(()),
        }
    })?;
    Ok(n as u32)
}

/// Bytes `[off, off + buf.len())` of page-cache inode `id`.
fn read_file<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    id: u16,
    off: u64,
    buf: &mut [u8],
) -> KResult<()> {
    let mut done = 0;
    while done < buf.len() {
        let cur = off + done as u64;
        let env = &mut *cx.env;
        let frame = env
            .cache
            .page(env.mem, env.frames, &mut *env.host, id, cur / PAGE_SIZE)?;
        let in_page = (cur % PAGE_SIZE) as usize;
        let n = (PAGE_SIZE as usize - in_page).min(buf.len() - done);
        env.mem
            .read_bytes(frame + in_page as u64, &mut buf[done..done + n]);
        done += n;
    }
    Ok(())
}

/// The frame of page-cache inode `id`'s first page (read from the host
/// if it is not cached): its bytes are looked at where they lie.
fn first_frame<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, id: u16) -> KResult<u64> {
    let env = &mut *cx.env;
    env.cache.page(env.mem, env.frames, &mut *env.host, id, 0)
}

/// The page-cache inode and size of an executable open file: EACCES
/// unless it is a regular file with an execute bit, opened for reading.
fn exec_inode<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    f: &FileRef,
) -> KResult<(u16, u64)> {
    let b = f.borrow();
    match b.node {
        Node::Host {
            inode: Some(id),
            mode,
            ..
        } if mode & S_IFMT == S_IFREG && mode & 0o111 != 0 && b.flags & o::PATH == 0 => {
            let ino = cx.env.cache.get(id);
            if ino.is_some_and(|i| i.writers > 0) {
                // Open for writing somewhere (Linux's deny_write_access).
                return Err(Errno::ETXTBSY);
            }
            Ok((id, ino.map_or(0, |i| i.size)))
        }
        _ => Err(Errno::EACCES),
    }
}

/// Open `abs` for exec (ENOENT, EACCES as open gives them).
fn open_exec<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    abs: Vec<u8>,
    nofollow: bool,
) -> KResult<FileRef> {
    let flags = o::RDONLY | if nofollow { o::NOFOLLOW } else { 0 };
    let f = open_path(cx, abs, flags, 0)?;
    if let Err(e) = exec_inode(cx, &f) {
        release(cx, f);
        return Err(e);
    }
    Ok(f)
}

/// A file of at most this many bytes (an ELF header and 16 program
/// headers) is read whole into a stack buffer, once for the `#!` check and
/// the ELF headers; a larger one's first page is looked at where it lies
/// in the page cache.
const SMALL_PREFIX: usize = EHDR_SIZE + 16 * PHDR_SIZE;

/// Parse an ELF image of inode `id` (`size` bytes) through the cache.
/// `known`: the file's first bytes if the caller read them already (the
/// file is read only for what they do not hold); `first`: the frame of
/// its first page, if the caller looked it up. What the caller does not
/// hold is parsed where it lies in the first page (an ELF header and most
/// programs' headers do, an interpreter's always): not copied into a
/// zeroed buffer first, which cost some 240 emulated iterations of `rep
/// stos` and `rep movs` an exec. The plan is made in `plan`, in place.
fn plan_image<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    id: u16,
    (size, known, first): (u64, &[u8], Option<u64>),
    interpreter: bool,
    layout: &Layout,
    plan: &mut LoadPlan,
) -> Result<(), ExecError> {
    let place = (layout.mmap_base, layout.dyn_offset);
    if known.len() as u64 == size && !interpreter {
        // The whole file is at hand (the boot image, a small file): the
        // parser finds the headers in it, or says why they are not there,
        // without `header_span` working out first how much to read.
        return finish_plan(plan.prefix_into(known, size, false, place), false);
    }
    let n = (size as usize).min(EHDR_SIZE);
    let first = match first {
        None if known.len() < n => Some(first_frame(cx, id)?),
        first => first,
    };
    let Some(head) = first_bytes(cx.env.mem, (known, first), n) else {
        return Err(Errno::EIO.into());
    };
    if interpreter && n < EHDR_SIZE {
        // Linux reads a whole ELF header of the interpreter: a short read
        // is EIO.
        return Err(with_message(
            Errno::EIO,
            b"the interpreter is shorter than an ELF header",
        ));
    }
    let span = header_span(head);
    let phoff = head
        .get(32..40)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let parsed = match span {
        None if n == EHDR_SIZE => {
            // The program headers lie far into the file: read them apart.
            let len = (MAX_PHDR_BYTES as u64).min(size.saturating_sub(phoff));
            let mut table = alloc::vec![0u8; len as usize];
            read_file(cx, id, phoff, &mut table)?;
            let head = first_bytes(cx.env.mem, (known, first), n).unwrap_or_default();
            plan.parts_into((head, &table), size, interpreter, place)
        }
        span => {
            let len = (span.unwrap_or(n as u64).min(size) as usize).max(n);
            if let Some(prefix) = first_bytes(cx.env.mem, (known, first), len) {
                return finish_plan(
                    plan.prefix_into(prefix, size, interpreter, place),
                    interpreter,
                );
            }
            let mut large = alloc::vec![0u8; len];
            read_file(cx, id, 0, &mut large)?;
            plan.prefix_into(&large, size, interpreter, place)
        }
    };
    finish_plan(parsed, interpreter)
}

/// A file's first `len` bytes: `known`, the caller's, if they hold them,
/// else where they lie in its first page (frame `first`); None past it.
fn first_bytes<'a, M: PhysMem>(
    mem: &'a mut M,
    (known, first): (&'a [u8], Option<u64>),
    len: usize,
) -> Option<&'a [u8]> {
    match (known.get(..len), first) {
        (Some(k), _) => Some(k),
        (None, Some(pa)) if len as u64 <= PAGE_SIZE => Some(&*mem.bytes_mut(pa, len as u64)),
        (None, _) => None,
    }
}

/// Nothing, or the exec error a parse's ELF error gives (inlined: the
/// error, rare, is built apart).
#[inline]
fn finish_plan(
    plan: Result<(), crate::exec::elf::ElfError<'static>>,
    interpreter: bool,
) -> Result<(), ExecError> {
    plan.map_err(|e| elf_error(e, interpreter))
}

/// The exec error of ELF error `e`: its errno and message, or ELIBBAD and
/// the message saying so for an interpreter.
#[cold]
fn elf_error(e: crate::exec::elf::ElfError<'static>, interpreter: bool) -> ExecError {
    let mut m = crate::fmt::MsgBuf::<256>::new();
    if interpreter {
        m.str("the interpreter: ");
    }
    e.write_msg(&mut m);
    let errno = if interpreter {
        Errno::ELIBBAD
    } else {
        e.errno()
    };
    with_message(errno, m.as_bytes())
}

/// The `PT_INTERP` path of `plan` (image `id`), checked: NUL-terminated
/// with no NUL inside.
fn interp_path<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    id: u16,
    plan: &LoadPlan,
) -> KResult<Option<Vec<u8>>> {
    let Some((off, len)) = plan.interp else {
        return Ok(None);
    };
    let mut p = alloc::vec![0u8; len as usize + 1];
    read_file(cx, id, off, &mut p)?;
    if p.pop() != Some(0) || p.contains(&0) || p.is_empty() {
        return Err(Errno::ENOEXEC);
    }
    Ok(Some(p))
}

/// [`prepare`] for the boot program (in inode `id`, named `filename`),
/// into `out` (the kernel's static plan, [`ExecPlan::EMPTY`] as the kernel
/// image holds it: no template copied into a heap block, 255 emulated
/// iterations of `rep movs` where ring 0 is emulated): one that is not a
/// script is planned from its bytes in RAM here, without the script
/// loop's set-up (what [`prepare`] and [`plan_image`] would do with it);
/// a script goes through [`prepare`].
pub fn prepare_boot<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    id: u16,
    filename: Cow<'_, [u8]>,
    boot_args: BootArgs,
    layout: Layout,
    out: &mut ExecPlan,
) -> Result<(), ExecError> {
    let image = boot_args.image;
    // The image is the whole file (see `BootArgs::image`): its length is
    // the inode's size, not looked up again.
    let size = image.len() as u64;
    if image.starts_with(b"#!") {
        *out = *prepare(cx, id, None, filename, Some(boot_args), None, layout)?;
        return Ok(());
    }
    trace::emit(
        cx.env.mem,
        category::EXEC,
        kind::EXEC_PHASE,
        0,
        [exec_phase::START, 0, 0, 0, 0, 0],
    );
    let place = (layout.mmap_base, layout.dyn_offset);
    let program = &mut out.program;
    finish_plan(program.plan.prefix_into(image, size, false, place), false)?;
    program.inode = id;
    finish(cx, out, Some(boot_args), None, layout)
}

/// Everything up to the point of no return, for the program in inode `id`
/// (held open by `file`, None for the boot image) named `filename`.
#[allow(clippy::too_many_arguments)]
pub fn prepare<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    mut id: u16,
    mut file: Option<FileRef>,
    mut filename: Cow<'_, [u8]>,
    boot_args: Option<BootArgs>,
    mut args: Option<Args>,
    layout: Layout,
) -> Result<Box<ExecPlan>, ExecError> {
    trace::emit(
        cx.env.mem,
        category::EXEC,
        kind::EXEC_PHASE,
        0,
        [exec_phase::START, 0, 0, 0, 0, 0],
    );
    // The last exec's block if there is one (no template copied).
    let spare = cx.tasks.spare_plan.take();
    let mut out = spare.unwrap_or_else(|| Box::new(ExecPlan::EMPTY));
    let mut boot_args = boot_args;
    // The boot program's bytes, already in RAM (the first file only: an
    // interpreter it names is read through the cache).
    let mut image = boot_args.as_ref().map(|b| b.image);
    for depth in 0..=script::MAX_DEPTH {
        let size = cx.env.cache.get(id).map_or(0, |i| i.size);
        // The file's first bytes, for the `#!` check and the ELF headers:
        // the boot image's in RAM; a small file's whole, read (the plan
        // then parses it as it is); a larger one's are looked at where
        // they lie in the page cache, the `#!` line here and the headers by
        // the plan (no zeroed buffer of 960 bytes filled by a copy).
        let mut head_buf;
        let (head, first) = match image.take() {
            Some(bytes) if bytes.len() as u64 == size => (bytes, None),
            _ if size as usize <= SMALL_PREFIX => {
                head_buf = [0u8; SMALL_PREFIX];
                let n = size as usize;
                read_file(cx, id, 0, &mut head_buf[..n])?;
                (&head_buf[..n], None)
            }
            _ => (&[][..], Some(first_frame(cx, id)?)),
        };
        let line = match first {
            Some(pa) => &*cx.env.mem.bytes_mut(pa, BINPRM_BUF_SIZE as u64),
            None => &head[..head.len().min(BINPRM_BUF_SIZE)],
        };
        let parsed = script::parse(line).map_err(|e| with_message(e, b"bad #! line"))?;
        let Some(sb) = parsed else {
            let program = &mut out.program;
            let known = (size, head, first);
            plan_image(cx, id, known, false, &layout, &mut program.plan)?;
            program.inode = id;
            program.file = file;
            finish(cx, &mut out, boot_args, args, layout)?;
            return Ok(out);
        };
        if depth == script::MAX_DEPTH {
            break;
        }
        // `#!`: run the interpreter with the script's path.
        let a = match (args.take(), boot_args.take()) {
            (Some(a), _) => split_block(&a.block, a.argc),
            (None, Some(b)) => split_block(b.block, b.argc),
            (None, None) => return Err(Errno::EINVAL.into()),
        };
        let argv = script::interpreter_argv(&sb, &filename, &a.argv);
        let strings = Strings {
            execfn: a.execfn,
            argv,
            envp: a.envp,
        };
        args = Some(strings.into_args());
        let abs = absolute(cx, files::AT_FDCWD as u64, &sb.interp)?;
        let f = open_exec(cx, abs, false)
            .map_err(|e| interp_error(e, b"bad interpreter ", &sb.interp))?;
        if let Some(old) = file.replace(f.clone()) {
            release(cx, old);
        }
        id = exec_inode(cx, &f)?.0;
        filename = Cow::Owned(sb.interp);
    }
    Err(with_message(
        Errno::ELOOP,
        b"#! interpreters nested too deep",
    ))
}

fn interp_error(e: Errno, what: &[u8], path: &[u8]) -> ExecError {
    let mut m = Vec::from(what);
    m.extend_from_slice(path);
    m.extend_from_slice(b": ");
    m.extend_from_slice(e.name().as_bytes());
    with_message(e, &m)
}

/// Name the process after the program (`/proc/self/exe` and comm): the
/// path its open file was opened by, or the boot image's; and remember
/// the program's inode, which no open may write while it runs (ETXTBSY).
fn name_process<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    id: u16,
    file: &Option<FileRef>,
) {
    cx.p.image_inode = Some(id);
    let node;
    let exe: &[u8] = match file {
        Some(f) => {
            node = f.borrow();
            node.node.path()
        }
        None => cx.env.cache.get(id).map_or(&[][..], |i| &*i.path),
    };
    cx.p.set_exe_and_comm(exe);
}

/// The interpreter and the argument block, checked, into `out` (which
/// holds the program's plan).
fn finish<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    out: &mut ExecPlan,
    boot_args: Option<BootArgs>,
    args: Option<Args>,
    layout: Layout,
) -> Result<(), ExecError> {
    if let Some(p) = interp_path(cx, out.program.inode, &out.program.plan)? {
        let abs = absolute(cx, files::AT_FDCWD as u64, &p)?;
        let f = open_exec(cx, abs, false).map_err(|e| interp_error(e, b"ELF interpreter ", &p))?;
        let (iid, isize) = exec_inode(cx, &f)?;
        let mut interp = Box::new(ExecImage {
            inode: iid,
            plan: LoadPlan::EMPTY,
            file: None,
        });
        if let Err(e) = plan_image(cx, iid, (isize, &[], None), true, &layout, &mut interp.plan) {
            release(cx, f);
            return Err(e);
        }
        interp.file = Some(f);
        out.interp = Some(interp);
    }
    let lens = match (args, boot_args) {
        (Some(a), _) => {
            (out.argc, out.envc) = (a.argc, a.envc);
            out.args = Cow::Owned(a.block);
            Cow::Owned(a.lens)
        }
        (None, Some(b)) => {
            (out.argc, out.envc) = (b.argc, b.envc);
            out.args = Cow::Borrowed(b.block);
            Cow::Borrowed(b.lens)
        }
        (None, None) => return Err(Errno::EINVAL.into()),
    };
    let plan = &mut *out;
    let (argc, envc, top) = (plan.argc, plan.envc, layout.stack_top);
    let block = ArgBlock::with_lengths(&plan.args, &lens, argc, envc, top, &mut plan.table)?;
    plan.shape = block.shape();
    plan.stack = StackLayout::new_below_with(&block, top, cx.p.vdso.is_some())
        .map_err(|e| with_message(e, b"arguments and environment too large"))?;
    plan.layout = layout;
    trace::emit(
        cx.env.mem,
        category::EXEC,
        kind::EXEC_PHASE,
        0,
        [exec_phase::ELF_CHECKED, 0, 0, 0, 0, 0],
    );
    Ok(())
}

/// execveat(dirfd, path, argv, envp, flags); execve is execveat(AT_FDCWD,
/// path, argv, envp, 0).
pub fn execveat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    uargv: u64,
    uenvp: u64,
    flags: u64,
    layout: Layout,
) -> Result<Box<ExecPlan>, ExecError> {
    if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 {
        return Err(Errno::EINVAL.into());
    }
    let p = path::user_string(&mut cx.p.mm, cx.env, upath, vmrun_contract::fs::PATH_MAX)?;
    let empty = p.is_empty();
    // The exec file name heads the block: the path as given, or the
    // /dev/fd name an empty one with AT_EMPTY_PATH stands for.
    let execfn = match empty {
        true => {
            let mut name = b"/dev/fd/".to_vec();
            name.extend_from_slice(&crate::fs::proc::dec(dirfd));
            name
        }
        false => p,
    };
    let mut args = Args {
        block: Vec::with_capacity(ARGS_BLOCK),
        lens: Vec::with_capacity(ARGS_LENS),
        argc: 0,
        envc: 0,
    };
    args.block.extend_from_slice(&execfn);
    args.block.push(0);
    let execfn_len = execfn.len() as u32 + 1;
    args.lens.extend_from_slice(&execfn_len.to_le_bytes());
    // The host reads both arrays in one exit where every page is mapped
    // for the user: the kernel's loop costs about 100 instructions a
    // string and 10 every 8 bytes. Its own path is for the rest (pages to
    // fault in, E2BIG), which it meets as before.
    let (root, budget) = (cx.p.mm.pt.root(), crate::exec::stack::ARG_LIMIT);
    let (block, lens) = (&mut args.block, &mut args.lens);
    if let Some([argc, envc]) = cx
        .host
        .user_strings(root, [uargv, uenvp], budget, block, lens)
    {
        (args.argc, args.envc) = (argc as u32, envc as u32);
    } else {
        let mut total = 0;
        args.argc = user_strings(cx, uargv, &mut args, &mut total)?;
        args.envc = user_strings(cx, uenvp, &mut args, &mut total)?;
    }
    let file = if empty {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT.into());
        }
        let f = cx.p.fds.file(dirfd)?;
        exec_inode(cx, &f)?;
        f
    } else {
        let abs = absolute(cx, dirfd, &execfn)?;
        open_exec(cx, abs, flags & AT_SYMLINK_NOFOLLOW != 0)?
    };
    let (id, _) = exec_inode(cx, &file)?;
    prepare(
        cx,
        id,
        Some(file),
        Cow::Owned(execfn),
        None,
        Some(args),
        layout,
    )
}

/// Release what a failed or finished plan holds.
pub fn drop_plan<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, plan: Box<ExecPlan>) {
    let ExecPlan {
        program, interp, ..
    } = *plan;
    for f in [program.file, interp.and_then(|i| i.file)]
        .into_iter()
        .flatten()
    {
        release(cx, f);
    }
}

/// The point of no return: the old image goes, the new one is loaded.
/// An error here leaves the process without a usable address space (the
/// caller kills it, as Linux does with SIGSEGV). The plan is read where it
/// lies: moving it out of its box copies two load plans.
pub fn commit<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    kernel: &KernelHalf,
    plan: &mut ExecPlan,
    hwcap: (u64, u64),
    random: [u8; 16],
) -> KResult<EntryState> {
    begin_new_exec(cx);
    let journaling = cx.p.mm.vmas.journaling();
    if cx.p.mm.pt.root() != 0 {
        super::task::hand_writes_to_parent(cx);
        cx.p.mm.teardown(cx.env.mem, cx.env.frames);
        let phase = [exec_phase::TORN_DOWN, 0, 0, 0, 0, 0];
        trace::emit(cx.env.mem, category::EXEC, kind::EXEC_PHASE, 0, phase);
    }
    cx.p.mm.init(cx.env.mem, cx.env.frames, kernel)?;
    cx.p.mm.vmas.set_journaling(journaling);
    trace::emit(
        cx.env.mem,
        category::EXEC,
        kind::EXEC_PHASE,
        0,
        [exec_phase::ADDRESS_SPACE, 0, 0, 0, 0, 0],
    );
    let entry = load_plan(cx, plan, hwcap, random)?;
    let program = &mut plan.program;
    name_process(cx, program.inode, &program.file);
    // A new address space: no membarrier registration.
    cx.p.membarrier_registered = 0;
    // One test a file (a loop over the two options cost the boot
    // program, which has neither, some thirty instructions).
    if let Some(f) = plan.program.file.take() {
        cx.p.mapped_files.push(f);
    }
    if let Some(f) = plan.interp.as_mut().and_then(|i| i.file.take()) {
        cx.p.mapped_files.push(f);
    }
    trace::emit(
        cx.env.mem,
        category::EXEC,
        kind::EXEC_PHASE,
        0,
        [exec_phase::STACK_BUILT, 0, 0, 0, 0, 0],
    );
    Ok(entry)
}

/// Load the program of `plan` (with its interpreter and the vDSO) into
/// the fresh address space and build its stack.
fn load_plan<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    plan: &ExecPlan,
    hwcap: (u64, u64),
    random: [u8; 16],
) -> KResult<EntryState> {
    let table = plan.table.bytes();
    let block = ArgBlock::checked(&plan.args, table, plan.argc, plan.envc, plan.shape)?;
    let (program, interp) = (&plan.program, plan.interp.as_ref());
    let base = interp.map_or(0, |i| i.plan.base());
    let mut aux = AuxValues::for_program(&program.plan, base, random);
    (aux.hwcap, aux.hwcap2) = hwcap;
    let vdso = cx.p.vdso;
    load_elf_binary(
        &mut cx.p.mm,
        cx.env,
        program.inode,
        &program.plan,
        interp.map(|i| (i.inode, &i.plan)),
        vdso,
        (&block, &plan.stack),
        &aux,
        &plan.layout,
    )
}

/// `begin_new_exec`: write back shared mappings, close close-on-exec fds,
/// drop the old image's files, reset caught signals and per-thread state.
fn begin_new_exec<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) {
    if cx.p.mm.pt.root() == 0 {
        // The boot program: the process is as `Process::empty` made it
        // (no address space yet, one thread, no timers, robust list,
        // vfork parent, mapped file, handler or close-on-exec fd) and the
        // CPU's FS and GS bases are still the zero the VMM set: nothing
        // to undo or reload.
        return;
    }
    super::task::release_vfork_parent(cx);
    // The robust futexes the threads hold are released as at their exit,
    // and the process's POSIX timers are deleted.
    super::process::exit_group_robust_lists(cx);
    cx.tasks.timers.exec(cx.p.tgid);
    // de_thread: the other threads go; the exec'ing one takes the pid.
    super::task::end_other_threads(cx);
    cx.p.pid = cx.p.tgid;
    cx.p.is_thread = false;
    memory::writeback_all(cx);
    let cloexec: Vec<u64> =
        cx.p.fds
            .fds()
            .filter(|(_, f)| f.cloexec)
            .map(|(n, _)| n)
            .collect();
    for fd in cloexec {
        let _ = files::close(cx, fd);
    }
    // The list keeps its allocation for the new image's files.
    let mut mapped = core::mem::take(&mut cx.p.mapped_files);
    for f in mapped.drain(..) {
        release(cx, f);
    }
    cx.p.mapped_files = mapped;
    crate::signal::flush_handlers(&mut cx.p.sigactions, &mut cx.p.sigactions_set);
    cx.p.altstack = [0, 2, 0];
    cx.p.fs_base = 0;
    cx.p.gs_base = 0;
    cx.p.bases_changed = true;
    cx.p.clear_child_tid = 0;
    cx.p.robust_list = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel heap serves blocks of up to 2 KiB from its size classes
    /// (`MAX_SMALL` in arch/heap.rs) and larger ones by a first-fit search
    /// and a free that costs as much: a static program's plan, with its
    /// pointer table in place, stays a small block.
    #[test]
    fn an_exec_plan_is_a_small_heap_block() {
        assert!(core::mem::size_of::<ExecPlan>() <= 2048);
    }
}

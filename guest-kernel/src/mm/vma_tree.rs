//! The storage behind [`super::vma::VmaSet`]: a B+-tree of areas in
//! address order, in the kernel heap.
//!
//! Leaves hold up to [`LEAF_CAP`] areas, inner nodes up to [`INNER_CAP`]
//! children, each child with a [`Summary`] of its subtree: how many areas
//! it holds (so that areas are reached by their position, as in a sorted
//! array), the first area's start and guard-gap start, the last area's
//! end, and the largest free gap between two neighbouring areas inside it
//! (Linux's maple tree keeps the same gap, so that `get_unmapped_area`
//! finds room in logarithmic time however many areas there are). Every
//! operation touches one path from the root, plus at most a sibling per
//! level, so its cost grows with the logarithm of the number of areas.
//!
//! Nodes are counted against a budget ([`set_node_limit`], set at boot from
//! the heap's size) shared by every address space, so that a program that
//! maps areas until memory runs out gets ENOMEM while the heap still has
//! room for tasks, files and everything else the kernel allocates.
//!
//! A finger remembers the leaf the last lookup ended in, so that reading
//! areas near the last one looked up walks the remembered path instead of
//! searching. The page-fault path goes further: [`VmaTree::find_hot`]
//! keeps a copy of the area it found (the "hot" area) with its position,
//! so that the next fault in the same area, and every read of that
//! position, costs a comparison or two; a change to the tree drops the
//! copy, but for an area grown in place (the copy grows with it), an
//! insert into a one-leaf tree (the new area becomes the hot one) and an
//! append of areas gathered in order (the last becomes the hot one).

use super::vma::{mergeable_anon, next_anon, Backing, Prot, VmFlags, Vma};
use crate::errno::{Errno, KResult};
use alloc::vec::Vec;
use core::cell::Cell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Areas per leaf (42 areas of 48 bytes fill a 2 KiB heap block): a
/// dynamically linked program's 25 to 40 areas mostly stay in one leaf, whose
/// lookups, splits and merges take the one-leaf paths.
pub const LEAF_CAP: usize = 42;
/// Most areas a one-leaf tree's fault lookup scans from the start
/// ([`VmaTree::find_hot`]) rather than bisects.
const SCAN_MAX: usize = 12;
/// Children per inner node.
pub const INNER_CAP: usize = 12;
/// Fewest areas of a one-leaf tree whose top-down searches keep what they
/// learn of the areas above the gap they find ([`Dense`]): a dynamically
/// linked program's from its first mmap (ld.so's start-up has 12), where
/// the next search then passes over a library's areas no more.
const DENSE_MIN: usize = 12;
/// A non-root node with fewer entries is merged with or refilled from a
/// sibling.
const MIN_FILL: usize = 4;
/// Deepest tree (a root and 15 levels: far more than [`MIN_FILL`]-way
/// branching needs for any number of nodes the heap can hold).
const MAX_DEPTH: usize = 16;

/// Node units (see [`NODE_BYTES`]) allocated by every tree.
static NODES: AtomicUsize = AtomicUsize::new(0);
/// Most node units every tree together may hold.
static NODE_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The unit in which nodes are counted against the budget: bytes of heap
/// an inner node takes (its vector's block, rounded to the heap's
/// power-of-two size class); a leaf takes [`LEAF_UNITS`] of them.
pub const NODE_BYTES: usize = 1024;

/// Budget units a leaf takes.
const LEAF_UNITS: usize = (LEAF_CAP * core::mem::size_of::<Vma>()).div_ceil(NODE_BYTES);
/// Budget units an inner node takes.
const INNER_UNITS: usize = (INNER_CAP * core::mem::size_of::<Child>()).div_ceil(NODE_BYTES);

/// Let all VMA trees together hold at most `n` node units.
pub fn set_node_limit(n: usize) {
    NODE_LIMIT.store(n, Ordering::Relaxed);
}

/// Node units all VMA trees hold now.
pub fn nodes_in_use() -> usize {
    NODES.load(Ordering::Relaxed)
}

/// What a parent knows of one child's subtree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Summary {
    /// Areas in the subtree.
    count: usize,
    /// First area's start.
    start: u64,
    /// First area's `start_gap()`.
    start_gap: u64,
    /// Last area's end.
    end: u64,
    /// At least the largest `next.start_gap() - prev.end` between two
    /// neighbouring areas of the subtree (exact after a structural change;
    /// growing an area in place may leave it larger than the truth, which
    /// only costs a search a wasted descent).
    gap: u64,
}

#[derive(Debug)]
enum Node {
    Leaf(Vec<Vma>),
    Inner(Vec<Child>),
}

#[derive(Debug)]
struct Child {
    sum: Summary,
    node: Node,
}

impl Node {
    /// [`VmaTree::for_each_leaf`] below this node.
    fn for_each_leaf(&self, f: &mut dyn FnMut(&[Vma])) {
        match self {
            Node::Leaf(v) => f(v),
            Node::Inner(k) => k.iter().for_each(|c| c.node.for_each_leaf(f)),
        }
    }

    /// [`VmaTree::mark_uncopied_where`] below this node.
    fn mark_uncopied_where(&mut self, f: &mut dyn FnMut(&Vma) -> bool) {
        match self {
            Node::Leaf(v) => mark_uncopied_in(v, &mut *f),
            Node::Inner(k) => k.iter_mut().for_each(|c| c.node.mark_uncopied_where(f)),
        }
    }
}

/// Mark [`VmFlags::UNCOPIED`] the areas of `leaf` that `f` picks.
#[inline(always)]
fn mark_uncopied_in(leaf: &mut [Vma], mut f: impl FnMut(&Vma) -> bool) {
    for v in leaf {
        if f(v) {
            v.flags = VmFlags(v.flags.0 | VmFlags::UNCOPIED.0);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let units = match self {
            Node::Leaf(_) => LEAF_UNITS,
            Node::Inner(_) => INNER_UNITS,
        };
        NODES.fetch_sub(units, Ordering::Relaxed);
    }
}

/// Take a leaf's units from the budget and allocate its vector (ENOMEM if
/// the budget or the heap is exhausted).
fn alloc_leaf() -> KResult<Vec<Vma>> {
    alloc_vec(LEAF_CAP, LEAF_UNITS)
}

/// Take an inner node's units from the budget and allocate its vector.
fn alloc_inner() -> KResult<Vec<Child>> {
    alloc_vec(INNER_CAP, INNER_UNITS)
}

/// Take `units` from the budget and allocate a vector of `cap` elements.
fn alloc_vec<T>(cap: usize, units: usize) -> KResult<Vec<T>> {
    if NODES.load(Ordering::Relaxed) + units > NODE_LIMIT.load(Ordering::Relaxed) {
        return Err(Errno::ENOMEM);
    }
    let mut v = Vec::new();
    v.try_reserve_exact(cap).map_err(|_| Errno::ENOMEM)?;
    NODES.fetch_add(units, Ordering::Relaxed);
    Ok(v)
}

/// A leaf filled apart from any tree, in address order (an exec's
/// areas), for [`VmaTree::append_leaf`] to take whole as an empty tree's
/// root. Its vector is allocated with the first area, its budget units
/// taken then and given back if it is dropped still holding them.
#[derive(Debug, Default)]
pub struct LooseLeaf(Vec<Vma>);

impl LooseLeaf {
    /// An empty leaf, not yet allocated.
    pub const fn new() -> Self {
        LooseLeaf(Vec::new())
    }

    /// The areas, in order.
    #[inline]
    pub fn areas(&self) -> &[Vma] {
        &self.0
    }

    /// Add `vma` after the others if a leaf has room for it (allocating
    /// the leaf for the first); false, with nothing changed, if it is full
    /// or cannot be allocated.
    #[inline(always)]
    pub fn push(&mut self, vma: Vma) -> bool {
        if self.0.len() == self.0.capacity() && !self.allocate() {
            return false;
        }
        self.0.push(vma);
        true
    }

    /// Whether a leaf has room for `n` more areas (allocating the leaf if
    /// it has none yet).
    #[inline(always)]
    pub fn reserve(&mut self, n: usize) -> bool {
        let room = |v: &Vec<Vma>| v.capacity() - v.len() >= n;
        room(&self.0) || (self.allocate() && room(&self.0))
    }

    /// Add `vma` after the others, in room [`Self::reserve`] found.
    #[inline(always)]
    pub fn push_reserved(&mut self, vma: Vma) {
        debug_assert!(self.0.len() < self.0.capacity());
        self.0.push(vma);
    }

    /// Allocate the vector if the leaf has none yet; false if it is full
    /// or cannot be allocated.
    #[inline(never)]
    fn allocate(&mut self) -> bool {
        if self.0.capacity() != 0 {
            return false;
        }
        match alloc_leaf() {
            Ok(v) => {
                self.0 = v;
                true
            }
            Err(_) => false,
        }
    }

    /// Drop the areas (the allocation stays for the next).
    #[inline]
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl Drop for LooseLeaf {
    fn drop(&mut self) {
        if self.0.capacity() != 0 {
            NODES.fetch_sub(LEAF_UNITS, Ordering::Relaxed);
        }
    }
}

impl Node {
    fn len(&self) -> usize {
        match self {
            Node::Leaf(v) => v.len(),
            Node::Inner(k) => k.len(),
        }
    }

    fn is_full(&self) -> bool {
        match self {
            Node::Leaf(v) => v.len() >= LEAF_CAP,
            Node::Inner(k) => k.len() >= INNER_CAP,
        }
    }

    /// The exact summary of a non-empty node.
    fn summary(&self) -> Summary {
        match self {
            Node::Leaf(v) => leaf_summary(v),
            Node::Inner(k) => inner_summary(k),
        }
    }

    /// A copy of the subtree (ENOMEM if the budget runs out; what was
    /// copied is freed).
    fn try_clone(&self) -> KResult<Node> {
        match self {
            Node::Leaf(v) => {
                let mut c = alloc_leaf()?;
                c.extend_from_slice(v);
                Ok(Node::Leaf(c))
            }
            Node::Inner(k) => {
                // Wrapped at once, so that a failure below frees it.
                let mut copy = Node::Inner(alloc_inner()?);
                for child in k {
                    let node = child.node.try_clone()?;
                    if let Node::Inner(c) = &mut copy {
                        c.push(Child {
                            sum: child.sum,
                            node,
                        });
                    }
                }
                Ok(copy)
            }
        }
    }
}

fn leaf_summary(v: &[Vma]) -> Summary {
    let (Some(first), Some(last)) = (v.first(), v.last()) else {
        return Summary::default();
    };
    let mut gap = 0;
    for w in v.windows(2) {
        gap = gap.max(w[1].start_gap().saturating_sub(w[0].end));
    }
    Summary {
        count: v.len(),
        start: first.start,
        start_gap: first.start_gap(),
        end: last.end,
        gap,
    }
}

fn inner_summary(k: &[Child]) -> Summary {
    let (Some(first), Some(last)) = (k.first(), k.last()) else {
        return Summary::default();
    };
    let mut s = Summary {
        count: 0,
        start: first.sum.start,
        start_gap: first.sum.start_gap,
        end: last.sum.end,
        gap: 0,
    };
    let mut prev_end = None;
    for c in k {
        s.count += c.sum.count;
        s.gap = s.gap.max(c.sum.gap);
        if let Some(e) = prev_end {
            s.gap = s.gap.max(c.sum.start_gap.saturating_sub(e));
        }
        prev_end = Some(c.sum.end);
    }
    s
}

/// The child of `k` holding position `i`, and `i` within it. With `append`
/// a position just past a child's last area goes to that child.
fn child_at(k: &[Child], mut i: usize, append: bool) -> (usize, usize) {
    let mut j = 0;
    while j + 1 < k.len() && (i > k[j].sum.count || (!append && i == k[j].sum.count)) {
        i -= k[j].sum.count;
        j += 1;
    }
    (j, i)
}

/// The child of `k` an insertion at position `i` goes to, and `i` within
/// it: at a boundary between two children, the front of the right one
/// unless it is full (so that areas added one below the other, as
/// top-down mmaps are, fill whole leaves; see `insert_rec`).
fn insert_child(k: &[Child], i: usize) -> (usize, usize) {
    let (j, r) = child_at(k, i, true);
    if r == k[j].sum.count && j + 1 < k.len() && !k[j + 1].node.is_full() {
        return (j + 1, 0);
    }
    (j, r)
}

/// Nodes an insertion will allocate, made beforehand so that it cannot
/// fail halfway.
struct Spares {
    leaf: Option<Vec<Vma>>,
    /// Used from the end.
    inner: Vec<Vec<Child>>,
}

impl Spares {
    fn leaf(&mut self) -> Vec<Vma> {
        self.leaf.take().unwrap_or_default()
    }

    fn inner(&mut self) -> Vec<Child> {
        self.inner.pop().unwrap_or_default()
    }

    /// Allocate one more inner node.
    fn add_inner(&mut self) -> KResult<()> {
        self.inner.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        let node = alloc_inner()?;
        self.inner.push(node);
        Ok(())
    }
}

impl Drop for Spares {
    /// Spares not used go back to the budget.
    fn drop(&mut self) {
        let unused = usize::from(self.leaf.is_some()) * LEAF_UNITS + self.inner.len() * INNER_UNITS;
        NODES.fetch_sub(unused, Ordering::Relaxed);
    }
}

/// The leaf the last lookup ended in: the child index taken at each level
/// and the positions the leaf holds.
#[derive(Clone, Copy, Debug, Default)]
struct Finger {
    path: [u8; MAX_DEPTH],
    depth: u8,
    /// Position of the leaf's first area.
    base: usize,
    /// Areas in the leaf (0: no finger).
    len: usize,
    /// End of the area before the leaf (0 if none).
    low: u64,
}

/// What the last top-down search of a one-leaf tree learnt of the areas
/// above the gap it found: every two neighbouring areas that both start at
/// or above `from` leave no room between them for a search below `high`
/// (or below any lower top), nor would any area put between them (see
/// [`no_room`]). It holds until an area is removed or shrunk: every such
/// change drops the hot copy, which forgets it (`high` becomes 0, below
/// which no search finds room anyway); an insert, a growth, a merge or a
/// replacement inside an area makes no room.
#[derive(Clone, Copy, Debug)]
struct Dense {
    from: u64,
    high: u64,
}

impl Dense {
    /// No knowledge (all zeros, as the fields beside it start).
    const NONE: Dense = Dense { from: 0, high: 0 };
}

impl Default for Dense {
    fn default() -> Self {
        Dense::NONE
    }
}

/// A copy of the area [`VmaTree::find_hot`] found last, and its position.
#[derive(Clone, Copy, Debug)]
struct Hot {
    /// Position of the area ([`Hot::NONE`]'s `usize::MAX`: no copy).
    pos: usize,
    /// The area (starting at `u64::MAX` when there is no copy: no address
    /// is inside, and no area starts there).
    vma: Vma,
}

impl Hot {
    const NONE: Hot = Hot {
        pos: usize::MAX,
        vma: Vma {
            start: u64::MAX,
            ..Vma::EMPTY
        },
    };
}

impl Default for Hot {
    fn default() -> Self {
        Hot::NONE
    }
}

/// Areas in address order, reached by position (see the module docs).
#[derive(Debug, Default)]
pub struct VmaTree {
    root: Option<Node>,
    len: usize,
    /// Bytes all areas span (Linux's `total_vm`, in bytes).
    bytes: u64,
    /// Bytes the data areas span ([`Vma::is_data`]; Linux's `data_vm`).
    data_bytes: u64,
    finger: Cell<Finger>,
    hot: Hot,
    /// Position in its leaf of the area [`Self::grow_anon`] grew last
    /// (the heap, as a rule): tried before a search.
    grown: usize,
    /// Position in a one-leaf tree of the gap the last top-down search
    /// found (where an area placed there goes): tried, and checked, before
    /// a search by [`Self::hinted_slot`].
    gap_pos: Cell<usize>,
    /// What the last top-down search learnt ([`Dense`]): the next one
    /// starts below the areas it vouches for.
    dense: Cell<Dense>,
}

/// What an area adds to the (total, data) byte counts.
fn weight(v: &Vma) -> (u64, u64) {
    let len = v.end.saturating_sub(v.start);
    (len, if v.is_data() { len } else { 0 })
}

impl VmaTree {
    /// An empty tree.
    pub const fn new() -> Self {
        VmaTree {
            root: None,
            len: 0,
            bytes: 0,
            data_bytes: 0,
            finger: Cell::new(Finger {
                path: [0; MAX_DEPTH],
                depth: 0,
                base: 0,
                len: 0,
                low: 0,
            }),
            hot: Hot::NONE,
            grown: 0,
            gap_pos: Cell::new(0),
            dense: Cell::new(Dense::NONE),
        }
    }

    /// Number of areas.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes all areas span.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes the data areas span.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    fn add_weight(&mut self, v: &Vma) {
        let (b, d) = weight(v);
        self.bytes += b;
        self.data_bytes += d;
    }

    fn sub_weight(&mut self, v: &Vma) {
        let (b, d) = weight(v);
        self.bytes = self.bytes.saturating_sub(b);
        self.data_bytes = self.data_bytes.saturating_sub(d);
    }

    /// Remove every area (freeing the nodes).
    pub fn clear(&mut self) {
        if self.root.is_some() {
            self.drop_nodes();
        }
        self.len = 0;
        self.bytes = 0;
        self.data_bytes = 0;
        self.forget_finger();
    }

    /// Free every node (out of line: clearing an empty tree, as a fresh
    /// exec's, saves no registers for it).
    #[inline(never)]
    fn drop_nodes(&mut self) {
        self.root = None;
    }

    /// Forget the finger and the hot area (every change to the tree's
    /// shape or to an area's bounds does: positions move, and the finger's
    /// `low` is the end of the area before its leaf).
    fn forget_finger(&mut self) {
        self.finger.get_mut().len = 0;
        self.drop_hot();
    }

    /// Drop the hot copy: no position is its, and no address is inside it
    /// (two stores, not a copy of [`Hot::NONE`]'s whole area).
    #[inline(always)]
    fn drop_hot(&mut self) {
        self.hot.pos = usize::MAX;
        self.hot.vma.start = u64::MAX;
        self.dense.get_mut().high = 0;
    }

    /// Make `to` a copy of this tree, in place (ENOMEM, and `to`
    /// unchanged, if the node budget or the heap runs out): as `*to =
    /// self.try_clone()?`, without a whole tree built apart and moved in.
    pub fn copy_into(&self, to: &mut VmaTree) -> KResult<()> {
        to.root = match &self.root {
            Some(r) => Some(r.try_clone()?),
            None => None,
        };
        to.len = self.len;
        to.bytes = self.bytes;
        to.data_bytes = self.data_bytes;
        *to.finger.get_mut() = Finger::default();
        to.hot = Hot::NONE;
        to.grown = 0;
        *to.gap_pos.get_mut() = 0;
        *to.dense.get_mut() = Dense::NONE;
        Ok(())
    }

    /// A copy (ENOMEM if the node budget or the heap runs out).
    pub fn try_clone(&self) -> KResult<VmaTree> {
        let root = match &self.root {
            Some(r) => Some(r.try_clone()?),
            None => None,
        };
        Ok(VmaTree {
            root,
            len: self.len,
            bytes: self.bytes,
            data_bytes: self.data_bytes,
            finger: Cell::new(Finger::default()),
            hot: Hot::NONE,
            grown: 0,
            gap_pos: Cell::new(0),
            dense: Cell::new(Dense::NONE),
        })
    }

    /// The end of the last area (None if there is none): a field load for
    /// a one-leaf tree.
    #[inline]
    pub fn last_end(&self) -> Option<u64> {
        match self.root.as_ref()? {
            Node::Leaf(v) => v.last().map(|l| l.end),
            _ => self.get(self.len.checked_sub(1)?).map(|l| l.end),
        }
    }

    /// The area at position `i`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<&Vma> {
        if i == self.hot.pos {
            return Some(&self.hot.vma);
        }
        self.get_cold(i)
    }

    /// The areas at positions `i` and `i + 1` (a merge's test): read
    /// straight from a one-leaf tree, without [`Self::get`]'s calls.
    #[inline]
    pub fn pair(&self, i: usize) -> (Option<&Vma>, Option<&Vma>) {
        if let Some(Node::Leaf(v)) = &self.root {
            return (v.get(i), v.get(i + 1));
        }
        (self.get(i), self.get(i + 1))
    }

    /// The areas at positions `i - 1`, `i` and `i + 1` (an area and its
    /// neighbours, which its anonymous identity is taken from): read
    /// straight from a one-leaf tree, without [`Self::get`]'s calls.
    #[inline]
    pub fn around(&self, i: usize) -> [Option<&Vma>; 3] {
        if let Some(Node::Leaf(v)) = &self.root {
            return [
                i.checked_sub(1).and_then(|p| v.get(p)),
                v.get(i),
                v.get(i + 1),
            ];
        }
        self.around_deep(i)
    }

    /// [`Self::around`] in a tree of more than one leaf (out of line: the
    /// one leaf's reads then save no registers).
    #[inline(never)]
    fn around_deep(&self, i: usize) -> [Option<&Vma>; 3] {
        let prev = i.checked_sub(1).and_then(|p| self.get(p));
        [prev, self.get(i), self.get(i + 1)]
    }

    /// The position and a copy of the area containing `addr`, kept as the
    /// hot area: a lookup in the hot area costs two comparisons, and
    /// [`Self::get`] of its position one.
    #[inline]
    pub fn find_hot(&mut self, addr: u64) -> Option<(usize, &Vma)> {
        if self.hot.vma.start <= addr && addr < self.hot.vma.end {
            return Some((self.hot.pos, &self.hot.vma));
        }
        self.find_hot_cold(addr)
    }

    /// [`Self::find_hot`], the area found marked mapped
    /// ([`Self::mark_mapped`]) if it was [`Vma::is_fresh`]: a fault's lookup
    /// (a test of the hot copy's flag when the area is hot). With `word`,
    /// `fresh` added to it if the area was fresh: the fault that maps its
    /// first pages may write their entries unread (none of the area's is
    /// used); added by the marking's out-of-line call, so that the usual
    /// path, an area with pages, does no more than before.
    #[inline(always)]
    pub fn find_hot_mapping(
        &mut self,
        addr: u64,
        word: u64,
        fresh: u64,
    ) -> Option<(usize, &Vma, u64)> {
        let pos = match self.hot.vma.start <= addr && addr < self.hot.vma.end {
            true => self.hot.pos,
            false => self.find_hot_cold(addr)?.0,
        };
        let word = match self.hot.vma.is_fresh() {
            true => self.mark_mapped_cold(pos, word | fresh),
            false => word,
        };
        Some((pos, &self.hot.vma, word))
    }

    /// Whether `[start, end)` lies wholly in [`Vma::is_fresh`] areas, with no
    /// hole between them (see [`super::vma::VmaSet::all_fresh`]): the hot
    /// area alone (a reservation just made, or the segment just mapped
    /// over it) in two comparisons; else the areas of one leaf from the
    /// one holding `start` (false if the range reaches past the leaf).
    pub fn all_fresh(&self, start: u64, end: u64) -> bool {
        let h = &self.hot.vma;
        if h.start <= start && end <= h.end {
            return h.is_fresh();
        }
        self.all_fresh_in_leaf(start, end)
    }

    /// Whether `[start, end)` lies in the hot area and it is
    /// [`Vma::is_fresh`]: [`Self::all_fresh`]'s first test alone (false
    /// where that one would look further).
    #[inline(always)]
    pub fn hot_fresh(&self, start: u64, end: u64) -> bool {
        let h = &self.hot.vma;
        h.is_fresh() && h.start <= start && end <= h.end
    }

    /// [`Self::all_fresh`] past the hot area: in a one-leaf tree from the
    /// area after the hot one if `start` lies above it (the next segment
    /// of a library mapped over its reservation), else by a lookup.
    fn all_fresh_in_leaf(&self, start: u64, end: u64) -> bool {
        let (areas, skip) = match &self.root {
            Some(Node::Leaf(v)) if start >= self.hot.vma.end && self.hot.pos < v.len() => {
                (&v[self.hot.pos + 1..], true)
            }
            _ => {
                let (i, _) = self.seek(start);
                let (leaf, first) = self.leaf_of(i);
                match leaf.get(i.wrapping_sub(first)..) {
                    Some(areas) => (areas, false),
                    None => return false,
                }
            }
        };
        // Covered from `start` on, area after area with no hole between.
        let mut at = start;
        for v in areas {
            if skip && v.end <= start {
                continue;
            }
            if !v.is_fresh() || v.start > at {
                return false;
            }
            at = v.end;
            if at >= end {
                return true;
            }
        }
        false
    }

    /// [`Self::mark_mapped`] out of the fault path's line (once an area).
    #[cold]
    #[inline(never)]
    /// Returns `word`, for [`Self::find_hot_mapping`].
    fn mark_mapped_cold(&mut self, i: usize, word: u64) -> u64 {
        self.mark_mapped(i);
        word
    }

    fn find_hot_cold(&mut self, addr: u64) -> Option<(usize, &Vma)> {
        // A one-leaf tree (most address spaces) is searched here, without
        // the call and the finger of [`Self::seek`]; a small one from its
        // start, a comparison an area (a static program's faults are in
        // its first areas), where a binary search costs some forty
        // instructions whatever the area; from the hot area's next if the
        // address lies above it (a program's later faults are mostly
        // above its earlier ones: data after text, heap, stack, vDSO).
        let v = match &self.root {
            Some(Node::Leaf(v)) if v.len() <= SCAN_MAX => v,
            _ => return self.find_hot_deep(addr),
        };
        let above = addr >= self.hot.vma.end && self.hot.pos < v.len();
        let mut pos = if above { self.hot.pos + 1 } else { 0 };
        while pos < v.len() && v[pos].end <= addr {
            pos += 1;
        }
        let vma = *v.get(pos).filter(|v| v.start <= addr)?;
        self.hot = Hot { pos, vma };
        Some((pos, &self.hot.vma))
    }

    /// [`Self::find_hot_cold`] in a larger leaf (bisected) or a deeper
    /// tree: out of line, so that the small leaf's scan saves no
    /// registers.
    #[inline(never)]
    fn find_hot_deep(&mut self, addr: u64) -> Option<(usize, &Vma)> {
        let (pos, vma) = match &self.root {
            Some(Node::Leaf(v)) => {
                let p = v.partition_point(|x| x.end <= addr);
                (p, v.get(p))
            }
            _ => self.seek(addr),
        };
        let vma = *vma.filter(|v| v.start <= addr)?;
        self.hot = Hot { pos, vma };
        Some((pos, &self.hot.vma))
    }

    /// [`Self::get`] of a position other than the hot area's (cold: the
    /// fault path reads its own area, the hot one, so its reads run
    /// straight on).
    #[cold]
    fn get_cold(&self, i: usize) -> Option<&Vma> {
        // A small address space is one leaf: index it directly.
        match self.root.as_ref()? {
            Node::Leaf(v) => v.get(i),
            root => self.get_deep(root, i),
        }
    }

    /// [`Self::get_cold`] below an inner `root` (out of line: the leaf's
    /// read then takes no stack frame).
    #[inline(never)]
    fn get_deep<'a>(&'a self, root: &'a Node, i: usize) -> Option<&'a Vma> {
        if i >= self.len {
            return None;
        }
        let f = self.finger.get();
        if i.wrapping_sub(f.base) < f.len {
            return self.leaf_by_path(&f).get(i - f.base);
        }
        let mut node = root;
        let mut f = Finger {
            base: i,
            ..Finger::default()
        };
        let mut i = i;
        loop {
            match node {
                Node::Leaf(v) => {
                    f.base -= i;
                    f.len = v.len();
                    self.finger.set(f);
                    return v.get(i);
                }
                Node::Inner(k) => {
                    let (j, r) = child_at(k, i, false);
                    if j > 0 {
                        f.low = k[j - 1].sum.end;
                    }
                    f.path[usize::from(f.depth)] = j as u8;
                    f.depth += 1;
                    i = r;
                    node = &k[j].node;
                }
            }
        }
    }

    /// The areas of the leaf holding position `i` and the position of its
    /// first (nothing if `i` is past the end): to read the areas near one
    /// without a lookup each. A one-leaf tree's in line (the fault-around
    /// path's), a deeper one's by [`Self::leaf_of_deep`].
    #[inline(always)]
    pub fn leaf_of(&self, i: usize) -> (&[Vma], usize) {
        match &self.root {
            Some(Node::Leaf(v)) => (v, 0),
            None => (&[], 0),
            Some(Node::Inner(_)) => self.leaf_of_deep(i),
        }
    }

    /// [`Self::leaf_of`] in a tree of more than one leaf.
    #[inline(never)]
    fn leaf_of_deep(&self, i: usize) -> (&[Vma], usize) {
        // The lookup leaves the finger on `i`'s leaf.
        if self.get_cold(i).is_none() {
            return (&[], 0);
        }
        let f = self.finger.get();
        (self.leaf_by_path(&f), f.base)
    }

    /// The leaf a finger points at.
    fn leaf_by_path(&self, f: &Finger) -> &[Vma] {
        let mut node = match &self.root {
            Some(n) => n,
            None => return &[],
        };
        for &j in &f.path[..usize::from(f.depth)] {
            match node {
                Node::Inner(k) => match k.get(usize::from(j)) {
                    Some(c) => node = &c.node,
                    None => return &[],
                },
                Node::Leaf(_) => return &[],
            }
        }
        match node {
            Node::Leaf(v) => v,
            Node::Inner(_) => &[],
        }
    }

    /// The position of the first area ending after `addr` (`len()` if
    /// none), and that area. A one-leaf tree (most address spaces) is
    /// searched inline, without a call.
    #[inline(always)]
    pub fn seek(&self, addr: u64) -> (usize, Option<&Vma>) {
        if let Some(Node::Leaf(v)) = &self.root {
            // From the hot area's next if `addr` lies above it, as a
            // fault's lookup starts (a heap is added above the data the
            // program's first faults touched).
            let from = match addr >= self.hot.vma.end && self.hot.pos < v.len() {
                true => self.hot.pos + 1,
                false => 0,
            };
            let p = from + leaf_seek(&v[from..], addr);
            return (p, v.get(p));
        }
        self.seek_deep(addr)
    }

    /// [`Self::seek`] in a tree of more than one leaf (or none): from the
    /// finger's leaf if it holds the area, else by a descent.
    #[inline(never)]
    fn seek_deep(&self, addr: u64) -> (usize, Option<&Vma>) {
        let f = self.finger.get();
        if f.len != 0 {
            let leaf = self.leaf_by_path(&f);
            // The finger's leaf answers when the area lies inside it.
            if let Some(last) = leaf.last() {
                if f.low <= addr && addr < last.end {
                    let p = leaf.partition_point(|v| v.end <= addr);
                    return (f.base + p, leaf.get(p));
                }
            }
        }
        let Some(mut node) = self.root.as_ref() else {
            return (0, None);
        };
        let mut f = Finger::default();
        loop {
            match node {
                Node::Leaf(v) => {
                    let p = v.partition_point(|x| x.end <= addr);
                    f.len = v.len();
                    self.finger.set(f);
                    return (f.base + p, v.get(p));
                }
                Node::Inner(k) => {
                    let mut j = 0;
                    while j + 1 < k.len() && k[j].sum.end <= addr {
                        f.base += k[j].sum.count;
                        f.low = k[j].sum.end;
                        j += 1;
                    }
                    f.path[usize::from(f.depth)] = j as u8;
                    f.depth += 1;
                    node = &k[j].node;
                }
            }
        }
    }

    /// How many areas start below `addr`.
    pub fn rank_start(&self, addr: u64) -> usize {
        let Some(mut node) = self.root.as_ref() else {
            return 0;
        };
        let mut base = 0;
        loop {
            match node {
                Node::Leaf(v) => return base + v.partition_point(|x| x.start < addr),
                Node::Inner(k) => {
                    let mut j = 0;
                    while j + 1 < k.len() && k[j + 1].sum.start < addr {
                        base += k[j].sum.count;
                        j += 1;
                    }
                    node = &k[j].node;
                }
            }
        }
    }

    /// Insert `vma` at position `i` (`i <= len()`); the caller keeps the
    /// order. ENOMEM, with nothing changed, if the nodes it needs cannot be
    /// allocated.
    #[inline]
    pub fn insert_at(&mut self, i: usize, vma: Vma) -> KResult<()> {
        let i = i.min(self.len);
        if let Some(Node::Leaf(v)) = &mut self.root {
            // A small address space (a fresh exec's) is one leaf with
            // room: no spare to allocate, no path to walk, no summary to
            // keep (the root has none).
            if v.len() < LEAF_CAP {
                v.insert(i, vma);
                self.len += 1;
                self.add_weight(&vma);
                // The new area is the hot one: a program touches what it
                // just mapped (a new heap, an mmap), and its first fault
                // then needs no lookup.
                self.finger.get_mut().len = 0;
                self.hot = Hot { pos: i, vma };
                return Ok(());
            }
        }
        self.insert_at_slow(i, vma)
    }

    /// Make area `i` the one [`Self::grow_anon`] tries before a search (a
    /// hint: `grow_anon` checks it).
    pub fn hint_growth(&mut self, i: usize) {
        let (_, base) = self.leaf_of(i);
        self.grown = i - base;
    }

    /// Keep a copy of the area at position `i` as the hot one (nothing if
    /// there is none): the fault that follows at once (exec writing its
    /// new stack) reads it without a lookup.
    pub fn make_hot(&mut self, i: usize) {
        if let Some(vma) = self.get_cold(i).copied() {
            self.hot = Hot { pos: i, vma };
        }
    }

    /// Append the areas of `leaf` (in order, apart and past the last area,
    /// which the caller checked, as it summed the (total, data) bytes they
    /// add to `weight`) when the tree is empty, taking the leaf as its root
    /// (no copy), or is one leaf with room for them; the last becomes the
    /// hot area, as an insert into a one-leaf tree makes it (exec writes
    /// its new stack at once). False, with nothing changed, otherwise.
    #[inline]
    pub fn append_leaf(&mut self, leaf: &mut LooseLeaf, weight: (u64, u64)) -> bool {
        let n = leaf.0.len();
        if n == 0 {
            return true;
        }
        match &mut self.root {
            None => {
                let taken = Some(Node::Leaf(core::mem::take(&mut leaf.0)));
                // The root replaced is none: forgotten, not dropped (its
                // drop glue is a call that would test it).
                core::mem::forget(core::mem::replace(&mut self.root, taken));
            }
            Some(Node::Leaf(v)) if v.len() + n <= LEAF_CAP => {
                v.extend_from_slice(&leaf.0);
                leaf.0.clear();
            }
            _ => return false,
        }
        // The hot copy is taken from the leaf (not kept from before the
        // move, which costs a round trip through the stack).
        if let Some(Node::Leaf(v)) = &self.root {
            if let Some(&last) = v.last() {
                self.hot.vma = last;
            }
        }
        self.hot.pos = self.len + n - 1;
        self.bytes += weight.0;
        self.data_bytes += weight.1;
        self.len += n;
        self.finger.get_mut().len = 0;
        true
    }

    /// Whether the area at position `i` is the hot one.
    #[inline(always)]
    pub fn is_hot(&self, i: usize) -> bool {
        self.hot.pos == i
    }

    /// [`Self::insert_at`] for an empty tree, a full leaf or an inner
    /// root: apart, so that the fast path inlined into callers pays no
    /// large frame.
    #[inline(never)]
    fn insert_at_slow(&mut self, i: usize, vma: Vma) -> KResult<()> {
        let mut spares = self.spares_for(i)?;
        self.forget_finger();
        let Some(root) = self.root.as_mut() else {
            let mut leaf = spares.leaf();
            leaf.push(vma);
            self.root = Some(Node::Leaf(leaf));
            self.len = 1;
            self.add_weight(&vma);
            return Ok(());
        };
        if let (Some(right), _) = insert_rec(root, i, vma, &mut spares) {
            let mut k = spares.inner();
            if let Some(old) = self.root.take() {
                k.push(Child {
                    sum: old.summary(),
                    node: old,
                });
            }
            k.push(right);
            self.root = Some(Node::Inner(k));
        }
        self.len += 1;
        self.add_weight(&vma);
        Ok(())
    }

    /// Allocate the nodes inserting at `i` will split off.
    fn spares_for(&self, i: usize) -> KResult<Spares> {
        let mut s = Spares {
            leaf: None,
            inner: Vec::new(),
        };
        let Some(mut node) = self.root.as_ref() else {
            s.leaf = Some(alloc_leaf()?);
            return Ok(s);
        };
        // Fullness of each node on the path, root first.
        let mut full = [false; MAX_DEPTH];
        let mut depth = 0;
        let mut i = i;
        loop {
            full[depth] = node.is_full();
            depth += 1;
            match node {
                Node::Leaf(_) => break,
                Node::Inner(k) => {
                    let (j, r) = insert_child(k, i);
                    i = r;
                    node = &k[j].node;
                }
            }
            if depth == MAX_DEPTH {
                return Err(Errno::ENOMEM);
            }
        }
        // Splits run up from the leaf while nodes are full; a full root
        // needs a new root above it.
        if full[depth - 1] {
            s.leaf = Some(alloc_leaf()?);
            let mut d = depth - 1;
            while d > 0 && full[d - 1] {
                s.add_inner()?;
                d -= 1;
            }
            if d == 0 {
                if depth == MAX_DEPTH {
                    return Err(Errno::ENOMEM);
                }
                s.add_inner()?;
            }
        }
        Ok(s)
    }

    /// Remove and return the area at position `i`.
    pub fn remove_at(&mut self, i: usize) -> Option<Vma> {
        if i >= self.len {
            return None;
        }
        self.forget_finger();
        let root = self.root.as_mut()?;
        let (v, _) = remove_rec(root, i);
        self.len -= 1;
        self.sub_weight(&v);
        // Shrink the tree: an empty leaf root goes, an inner root with one
        // child is replaced by it.
        loop {
            match self.root.as_mut() {
                Some(Node::Leaf(v)) if v.is_empty() => self.root = None,
                Some(Node::Inner(k)) if k.len() == 1 => {
                    let only = k.pop().map(|c| c.node);
                    self.root = only;
                }
                _ => break,
            }
        }
        Some(v)
    }

    /// Change the area at position `i` with `f`, which keeps it in order
    /// between its neighbours; the summaries above it are recomputed.
    pub fn update<F: FnOnce(&mut Vma)>(&mut self, i: usize, f: F) {
        if i >= self.len {
            return;
        }
        // The area's end may move past the finger's `low`.
        self.forget_finger();
        // The weights before and after, not copies of the area (two areas
        // copied through an Option are a string move of a dozen words).
        let mut delta = None;
        let change = |a: &mut Vma| {
            let old = weight(a);
            f(a);
            delta = Some((old, weight(a)));
        };
        match self.root.as_mut() {
            // A leaf root has no summaries to recompute.
            Some(Node::Leaf(v)) => {
                if let Some(a) = v.get_mut(i) {
                    change(a);
                }
            }
            Some(root) => {
                update_rec(root, i, change);
            }
            None => {}
        }
        if let Some(((b0, d0), (b1, d1))) = delta {
            self.bytes = self.bytes.saturating_sub(b0) + b1;
            self.data_bytes = self.data_bytes.saturating_sub(d0) + d1;
        }
    }

    /// Split the area at position `i` into `low` (staying at `i`) and
    /// `high` (at `i + 1`), its two parts, which together span its bytes
    /// (one may have rights of its own, as after an mprotect of part of
    /// the area: the data bytes follow them): in a one-leaf tree with
    /// room, one write and one insert, inline.
    #[inline(always)]
    pub fn split_at(&mut self, i: usize, low: Vma, high: Vma) -> KResult<()> {
        if let Some(Node::Leaf(v)) = &mut self.root {
            if v.len() < LEAF_CAP && i < v.len() {
                let old = core::mem::replace(&mut v[i], low);
                v.insert(i + 1, high);
                self.len += 1;
                self.sub_weight(&old);
                self.add_weight(&low);
                self.add_weight(&high);
                self.forget_finger();
                return Ok(());
            }
        }
        self.split_at_deep(i, low, high)
    }

    /// Split the area at position `i` at `addr`, strictly inside it, into
    /// two parts with its rights: in a one-leaf tree with room, in place
    /// (the area's copy made in its leaf, no part passed by value, and the
    /// weights unchanged: the parts weigh what the area did); else as
    /// [`Self::split_at`].
    #[inline(always)]
    pub fn split_in_two(&mut self, i: usize, addr: u64) -> KResult<()> {
        if let Some(Node::Leaf(v)) = &mut self.root {
            if v.len() < LEAF_CAP && i < v.len() {
                let mut high = v[i];
                high.start_at(addr);
                v[i].end = addr;
                v.insert(i + 1, high);
                self.len += 1;
                self.forget_finger();
                return Ok(());
            }
        }
        let Some(&area) = self.get(i) else {
            return Ok(());
        };
        let (mut low, mut high) = (area, area);
        high.start_at(addr);
        low.end = addr;
        self.split_at_deep(i, low, high)
    }

    /// [`Self::split_at`] in a deeper tree or a full leaf: the high part
    /// inserted first (if that fails nothing has changed), then the low
    /// part written, each keeping the weights.
    #[inline(never)]
    fn split_at_deep(&mut self, i: usize, low: Vma, high: Vma) -> KResult<()> {
        self.insert_at(i + 1, high)?;
        self.update(i, |a| *a = low);
        Ok(())
    }

    /// Give the range `[start, end)` new rights in place, when it lies
    /// inside one area of a one-leaf tree with room for one more and
    /// reaches at least one of that area's ends (RELRO's mprotect of a
    /// segment's head, a guard page at an end, a whole area), and
    /// `rights` (the protection and flags the area is to have, given it)
    /// changes them: the
    /// range becomes an area of its own, the rest of the area keeping its
    /// rights, and merges with the neighbour past each end it reaches if
    /// they are compatible ([`Vma::can_merge_with`]), the areas after it
    /// moving once per split or merge. The same areas and weights as a
    /// split, a change and a merge of neighbours each make, without a
    /// lookup or a weighing of its own each. Whether it was that case
    /// (nothing changed if not: a range across areas, inside an area
    /// without reaching an end, unchanged rights, a deeper tree).
    #[inline]
    pub fn reprotect_one_area(
        &mut self,
        start: u64,
        end: u64,
        rights: impl FnOnce(&Vma) -> (Prot, VmFlags),
    ) -> bool {
        let Some(Node::Leaf(v)) = &mut self.root else {
            return false;
        };
        let i = leaf_seek(v, start);
        let Some(&old) = v.get(i) else {
            return false;
        };
        let (head, tail) = (start > old.start, end < old.end);
        if old.start > start || end > old.end || (head && tail) || v.len() >= LEAF_CAP {
            return false;
        }
        let (prot, flags) = rights(&old);
        if prot == old.prot && flags == old.flags {
            return false;
        }
        let new = Vma { prot, flags, ..old };
        // `at`: the changed area's position.
        let at = i + usize::from(head);
        let n = v.len();
        if head || tail {
            // Area `i` and those after it move up one place in one copy.
            v.push(Vma::EMPTY);
            v.copy_within(i..n, i + 1);
            self.len += 1;
        }
        // The two copies of area `i` (or it alone) cut at the split and
        // changed in place, reached by one bounds check.
        match &mut v[i..] {
            [low, high, ..] if head => {
                low.end = start;
                high.start_at(start);
                (high.prot, high.flags) = (prot, flags);
            }
            [low, high, ..] if tail => {
                low.end = end;
                high.start_at(end);
                (low.prot, low.flags) = (prot, flags);
            }
            [whole, ..] => (whole.prot, whole.flags) = (prot, flags),
            [] => {}
        }
        if old.is_data() != new.is_data() {
            let len = end - start;
            self.data_bytes = match new.is_data() {
                true => self.data_bytes + len,
                false => self.data_bytes.saturating_sub(len),
            };
        }
        // A merge keeps the weights: both areas have the same rights.
        if !tail && at + 1 < v.len() && v[at].can_merge_with(&v[at + 1]) {
            v[at] = v[at].merged_with(&v[at + 1]);
            v.remove(at + 1);
            self.len -= 1;
        }
        if !head && at > 0 && v[at - 1].can_merge_with(&v[at]) {
            v[at - 1] = v[at - 1].merged_with(&v[at]);
            v.remove(at);
            self.len -= 1;
        }
        self.forget_finger();
        true
    }

    /// Put `new` (page aligned, not empty, its rights accounted) in place
    /// of what its range holds, when the range lies inside one
    /// [`Vma::is_fresh`] area of a one-leaf tree with room for two more (a
    /// dynamic linker's segment mapped over its library's reservation),
    /// and merge it with the areas beside it as
    /// [`super::vma::VmaSet::merge_around`] does: the areas and weights a
    /// split at each end, the replacement and the merges make, from one
    /// lookup, the areas after it moved once for the splits (and once a
    /// merge, which the common cases need none of). Where `new` is the
    /// very part of the area it lands on (a segment over the reservation
    /// that already maps it so), and it would merge back into the area
    /// as the area's neighbours would not, nothing changes at all. The
    /// position of the area now holding `new.start`, which becomes the hot
    /// one; None, with nothing changed, if it is not that case.
    #[inline]
    pub fn replace_in_fresh_area(&mut self, new: Vma) -> Option<usize> {
        let Some(Node::Leaf(v)) = &mut self.root else {
            return None;
        };
        let i = seek_from_hot(v, &self.hot, new.start);
        let &old = v.get(i)?;
        let inside = old.start <= new.start && new.end <= old.end;
        if !inside || !old.is_fresh() || v.len() + 2 > LEAF_CAP {
            return None;
        }
        let (head, tail) = (new.start > old.start, new.end < old.end);
        if new.is_part_of(&old) {
            // Split and merged back, it would be the same area (fresh, as
            // both parts are), unless a neighbour it reaches then merged
            // with it, which it does not now either.
            let prev_merges = !head && i > 0 && v[i - 1].can_merge_with(&old);
            let next_merges = !tail && v.get(i + 1).is_some_and(|n| old.can_merge_with(n));
            if !prev_merges && !next_merges {
                self.hot = Hot { pos: i, vma: old };
                return Some(i);
            }
        }
        // The splits: area `i`'s parts on each side of `new`, the areas
        // after it moved up once.
        let n = v.len();
        let at = i + usize::from(head);
        let splits = usize::from(head) + usize::from(tail);
        if splits > 0 {
            v.push(Vma::EMPTY);
            if splits > 1 {
                v.push(Vma::EMPTY);
            }
            v.copy_within(i + 1..n, i + 1 + splits);
        }
        if head {
            v[i].end = new.start;
        }
        v[at] = new;
        if tail {
            let mut high = old;
            high.start_at(new.end);
            v[at + 1] = high;
        }
        // The merges with the areas beside it (a merge keeps the weights:
        // both areas have the same rights).
        if at + 1 < v.len() && v[at].can_merge_with(&v[at + 1]) {
            v[at] = v[at].merged_with(&v[at + 1]);
            v.remove(at + 1);
        }
        let mut pos = at;
        if at > 0 && v[at - 1].can_merge_with(&v[at]) {
            v[at - 1] = v[at - 1].merged_with(&v[at]);
            v.remove(at);
            pos = at - 1;
        }
        self.len = v.len();
        if old.is_data() != new.is_data() {
            let len = new.end - new.start;
            self.data_bytes = match new.is_data() {
                true => self.data_bytes + len,
                false => self.data_bytes.saturating_sub(len),
            };
        }
        self.finger.get_mut().len = 0;
        self.hot = Hot { pos, vma: v[pos] };
        Some(pos)
    }

    /// Insert `new` (page aligned, not empty, its rights accounted) into a
    /// one-leaf tree with room for it, where it overlaps no area, and merge
    /// it with the areas beside it as an insert and
    /// [`super::vma::VmaSet::merge_around`] do (the next area first): a
    /// neighbour it merges with grows in place, and the areas after it
    /// move only when it is an area of its own. Its slot is the gap a
    /// top-down search just found if that one is right
    /// ([`Self::hinted_slot`]'s test), past the last area, or found by a
    /// lookup. The position of the area now holding `new.start`, which
    /// becomes the hot one; None, with nothing changed, otherwise (an
    /// overlap included: the general path reports it).
    #[inline]
    pub fn insert_merged_in_leaf(&mut self, new: Vma) -> Option<usize> {
        let Some(Node::Leaf(v)) = &mut self.root else {
            return None;
        };
        let n = v.len();
        if n >= LEAF_CAP {
            return None;
        }
        let g = self.gap_pos.get();
        let below_ok = g
            .checked_sub(1)
            .is_none_or(|p| v.get(p).is_some_and(|a| a.end <= new.start));
        let hinted = g <= n && below_ok && v.get(g).is_none_or(|a| a.start >= new.end);
        let i = match hinted {
            true => g,
            false if v.last().is_none_or(|l| l.end <= new.start) => n,
            false => seek_from_hot(v, &self.hot, new.start),
        };
        if v.get(i).is_some_and(|a| a.start < new.end) {
            return None;
        }
        let merge_next = v.get(i).is_some_and(|next| new.can_merge_with(next));
        let area = match merge_next {
            true => new.merged_with(&v[i]),
            false => new,
        };
        let merge_prev = i > 0 && v[i - 1].can_merge_with(&area);
        let pos = match (merge_prev, merge_next) {
            (true, _) => {
                v[i - 1] = v[i - 1].merged_with(&area);
                if merge_next {
                    v.remove(i);
                }
                i - 1
            }
            (false, true) => {
                v[i] = area;
                i
            }
            (false, false) => {
                v.insert(i, area);
                i
            }
        };
        self.len = v.len();
        self.hot = Hot { pos, vma: v[pos] };
        self.add_weight(&new);
        self.finger.get_mut().len = 0;
        Some(pos)
    }

    /// Remove `[start, end)` (page aligned, not empty) when it lies inside
    /// one area of a one-leaf tree (with room for one more if it leaves a
    /// part on each side), handing the removed part to `on_removed`: the
    /// areas and weights splits at its ends and the removal make, from one
    /// lookup, the areas after it moved at most once. The position an area
    /// of `[start, end)` now takes; None, with nothing changed, if it is
    /// not that case.
    #[inline]
    pub fn remove_in_one_area(
        &mut self,
        start: u64,
        end: u64,
        on_removed: &mut impl FnMut(&Vma),
    ) -> Option<usize> {
        let Some(Node::Leaf(v)) = &mut self.root else {
            return None;
        };
        let i = leaf_seek(v, start);
        let &old = v.get(i)?;
        let (head, tail) = (start > old.start, end < old.end);
        if old.start > start || end > old.end || (head && tail && v.len() >= LEAF_CAP) {
            return None;
        }
        let mut gone = old;
        gone.start_at(start);
        gone.end = end;
        match (head, tail) {
            (false, false) => {
                v.remove(i);
            }
            (true, false) => v[i].end = start,
            (false, true) => v[i].start_at(end),
            (true, true) => {
                let mut high = old;
                high.start_at(end);
                v[i].end = start;
                v.insert(i + 1, high);
            }
        }
        self.len = v.len();
        on_removed(&gone);
        self.sub_weight(&gone);
        self.forget_finger();
        Some(i + usize::from(head))
    }

    /// Put `vma` in place of the area at position `i` (between the same
    /// neighbours), as the hot one: as [`Self::insert_at`] makes a new
    /// area, since a program touches what it just mapped (a MAP_FIXED
    /// mapping's first fault then needs no lookup).
    pub fn replace_at(&mut self, i: usize, vma: Vma) {
        self.update(i, |a| *a = vma);
        if i < self.len {
            self.hot = Hot { pos: i, vma };
        }
    }

    /// Give the area at position `i` an anonymous-memory identity: the
    /// one [`mergeable_anon`] finds beside it, else the next after `last`
    /// (no summary depends on it). A one-leaf tree's areas are read and
    /// the identity written through one borrow of its leaf, in line.
    #[inline(always)]
    pub fn attach_anon(&mut self, i: usize, last: &mut u32) {
        let Some(Node::Leaf(v)) = &mut self.root else {
            return self.attach_anon_deep(i, last);
        };
        let prev = i.checked_sub(1).and_then(|p| v.get(p));
        let anon =
            mergeable_anon([prev, v.get(i), v.get(i + 1)]).unwrap_or_else(|| next_anon(last));
        if let Some(a) = v.get_mut(i) {
            a.anon = anon;
        }
        if i == self.hot.pos {
            self.hot.vma.anon = anon;
        }
    }

    /// Clear [`Vma::is_fresh`] of the area at position `i` (a page is mapped
    /// in it; no summary depends on it), and of the hot copy if it is
    /// that area's.
    pub fn mark_mapped(&mut self, i: usize) {
        match self.root.as_mut() {
            Some(Node::Leaf(v)) => {
                if let Some(a) = v.get_mut(i) {
                    a.flags = a.flags.kind();
                }
            }
            Some(root) => set_mapped_deep(root, i),
            None => {}
        }
        if i == self.hot.pos {
            self.hot.vma.flags = self.hot.vma.flags.kind();
        }
    }

    /// Clear [`VmFlags::UNCOPIED`] of the areas of the leaf holding
    /// position `i` from it on that start below `hi` (a forked child's
    /// fault-around mapped pages in them; [`VmFlags::FRESH`] stays), and
    /// of the hot copy if it is one of them.
    pub fn clear_uncopied(&mut self, i: usize, hi: u64) {
        let (leaf, k) = match self.root.as_mut() {
            Some(Node::Leaf(v)) => (v, i),
            Some(root) => leaf_mut_deep(root, i),
            None => return,
        };
        let mut n = 0;
        for a in leaf.iter_mut().skip(k).take_while(|a| a.start < hi) {
            a.flags = VmFlags(a.flags.0 & !VmFlags::UNCOPIED.0);
            n += 1;
        }
        if (i..i + n).contains(&self.hot.pos) {
            let h = &mut self.hot.vma.flags;
            *h = VmFlags(h.0 & !VmFlags::UNCOPIED.0);
        }
    }

    /// [`Self::attach_anon`] in a tree of more than one leaf (out of line:
    /// the one leaf's path then saves no registers).
    #[inline(never)]
    fn attach_anon_deep(&mut self, i: usize, last: &mut u32) {
        let anon = mergeable_anon(self.around_deep(i)).unwrap_or_else(|| next_anon(last));
        if let Some(root) = self.root.as_mut() {
            set_anon_deep(root, i, anon);
        }
        if i == self.hot.pos {
            self.hot.vma.anon = anon;
        }
    }

    /// Grow the area that ends at `end` to `new_end` (above it) in place,
    /// if an anonymous area there with the rights `like` could merge into it, it
    /// starts at or above `floor`, and `new_end` lies `room` bytes or more
    /// below the guard gap of the area after it: in a one-leaf tree in
    /// line, without a path kept; in a deeper one by a descent by address,
    /// the summaries on its path raised afterwards. Whether it grew. (The
    /// bounds and rights come as values, not as an area in memory that
    /// the deeper tree's call would have to be given.)
    #[inline(always)]
    pub fn grow_anon(
        &mut self,
        end: u64,
        new_end: u64,
        like: (Prot, VmFlags),
        floor: u64,
        room: u64,
    ) -> bool {
        debug_assert!(new_end > end);
        if let Some(Node::Leaf(v)) = &mut self.root {
            let grow = (end, new_end, like);
            let Some((p, start)) = grow_in_leaf(v, self.grown, grow, floor, room, u64::MAX) else {
                return false;
            };
            self.count_growth(p, start, grow);
            return true;
        }
        self.grow_anon_deep(end, new_end, like, floor, room)
    }

    /// [`Self::grow_anon`] in a tree of more than one leaf (or none): out
    /// of line, so that a one-leaf tree's growth keeps no path.
    #[inline(never)]
    fn grow_anon_deep(
        &mut self,
        end: u64,
        new_end: u64,
        like: (Prot, VmFlags),
        floor: u64,
        room: u64,
    ) -> bool {
        let mut path = [0u8; MAX_DEPTH];
        let mut depth = 0;
        let mut next = u64::MAX;
        let Some(mut node) = self.root.as_mut() else {
            return false;
        };
        let v = loop {
            match node {
                Node::Leaf(v) => break v,
                Node::Inner(k) => {
                    let mut j = 0;
                    while j + 1 < k.len() && k[j].sum.end < end {
                        j += 1;
                    }
                    if let Some(c) = k.get(j + 1) {
                        next = c.sum.start_gap;
                    }
                    path[depth] = j as u8;
                    depth += 1;
                    node = &mut k[j].node;
                }
            }
        };
        let grow = (end, new_end, like);
        let Some((p, start)) = grow_in_leaf(v, self.grown, grow, floor, room, next) else {
            return false;
        };
        let last = p + 1 == v.len();
        self.count_growth(p, start, grow);
        self.raise_ends(&path[..depth], new_end, last);
        true
    }

    /// The weights, hot copy and hint after the area at position `p` of
    /// its leaf, starting at `start`, grew by `grow` (`(end, new_end,
    /// like)`, its rights). No position moves: a hot copy of another area
    /// stays right, and this area's grows with it (a heap's next fault
    /// finds it hot).
    #[inline(always)]
    fn count_growth(&mut self, p: usize, start: u64, (end, new_end, like): Growth) {
        if self.hot.vma.start == start {
            self.hot.vma.end = new_end;
        }
        let more = new_end - end;
        self.bytes += more;
        if Vma::anon(end, new_end, like.0, like.1).is_data() {
            self.data_bytes += more;
        }
        self.grown = p;
    }

    /// Raise to `end` the summaries along `path` (child indices from the
    /// root) after the area at its end grew; `last`: the area is its
    /// leaf's last, so a finger on the next leaf has a stale `low`.
    fn raise_ends(&mut self, path: &[u8], end: u64, last: bool) {
        if last {
            self.forget_finger();
        }
        let mut node = self.root.as_mut();
        for &j in path {
            let Some(Node::Inner(k)) = node else {
                return;
            };
            let c = &mut k[usize::from(j)];
            c.sum.end = c.sum.end.max(end);
            node = Some(&mut c.node);
        }
    }

    /// Iterate over the areas in address order.
    pub fn iter(&self) -> Iter<'_> {
        let mut it = Iter {
            stack: [(&[], 0); MAX_DEPTH],
            depth: 0,
            leaf: &[],
            pos: 0,
        };
        if let Some(root) = &self.root {
            it.descend(root);
        }
        it
    }

    /// Hand the areas to `f` a leaf at a time, in order: a pass over
    /// every area without [`Iter`]'s state (a one-leaf tree, most address
    /// spaces', is one call).
    #[inline]
    pub fn for_each_leaf(&self, mut f: impl FnMut(&[Vma])) {
        match &self.root {
            None => {}
            Some(Node::Leaf(v)) => f(v),
            Some(node) => node.for_each_leaf(&mut f),
        }
    }

    /// Hand every area to `f` in order, a pass as
    /// [`Self::for_each_leaf`]'s, and mark [`VmFlags::UNCOPIED`] those for
    /// which it says true (a forked child's areas whose entries the fork
    /// left uncopied). Flags are in no summary; the hot copy is dropped.
    pub fn mark_uncopied_where(&mut self, mut f: impl FnMut(&Vma) -> bool) {
        match &mut self.root {
            None => {}
            Some(Node::Leaf(v)) => mark_uncopied_in(v, &mut f),
            Some(node) => node.mark_uncopied_where(&mut f),
        }
        self.hot = Hot::NONE;
    }

    /// The highest `len`-byte free range in `[low, high)` that respects
    /// stack guard gaps (Linux's `unmapped_area_topdown`, which checks the
    /// gap of the area just above a candidate). Returns its start.
    pub fn find_gap_top_down(&self, len: u64, low: u64, high: u64) -> Option<u64> {
        let fits = |bot: u64, top: u64| (top >= bot && top - bot >= len).then(|| top - len);
        let (first_gap, last_end) = match &self.root {
            None => return fits(low, high),
            Some(Node::Leaf(v)) => match (v.first(), v.last()) {
                (Some(f), Some(l)) => (f.start_gap(), l.end),
                _ => return fits(low, high),
            },
            Some(Node::Inner(k)) => match (k.first(), k.last()) {
                (Some(f), Some(l)) => (f.sum.start_gap, l.sum.end),
                _ => return fits(low, high),
            },
        };
        if let Some(a) = fits(last_end.max(low), high) {
            self.gap_pos.set(self.len);
            return Some(a);
        }
        if let Some(Node::Leaf(v)) = &self.root {
            // A small leaf is searched in a few steps, and keeps nothing.
            let found = match v.len() >= DENSE_MIN {
                true => self.leaf_gap_kept(v, len, low, high),
                false => leaf_gap::<false>(v, len, low, high).0,
            };
            if let Some((a, above)) = found {
                // The area above the gap: where one placed there goes.
                let pos = (above as *const Vma as usize - v.as_ptr() as usize)
                    / core::mem::size_of::<Vma>();
                self.gap_pos.set(pos);
                return Some(a);
            }
        } else if let Some(a) = self.root.as_ref().and_then(|r| gap_in(r, len, low, high)) {
            return Some(a);
        }
        self.gap_pos.set(0);
        fits(low, first_gap.min(high))
    }

    /// [`leaf_gap`] in leaf `v` below the areas the last search vouched
    /// for, if it did ([`Self::dense_top`]), what it learns kept.
    #[inline(always)]
    fn leaf_gap_kept<'a>(
        &self,
        v: &'a [Vma],
        len: u64,
        low: u64,
        high: u64,
    ) -> Option<(u64, &'a Vma)> {
        let top = self.dense_top(v, high);
        let (found, dense) = leaf_gap::<true>(&v[..top], len, low, high);
        let (_, above) = found?;
        self.dense.set(match dense {
            true => Dense {
                from: above.start,
                high,
            },
            false => Dense::NONE,
        });
        found
    }

    /// How many of leaf `v`'s areas a top-down search below `high` must
    /// look at, from the first: all of them, but when [`Dense`]
    /// vouches for those from the hot area up (as a rule the area the last
    /// search's mapping made, or one it was mapped over), checked from it
    /// up to the first area the last search vouched for. The hot area is
    /// a guess: the check makes any position right.
    #[inline(always)]
    fn dense_top(&self, v: &[Vma], high: u64) -> usize {
        let d = self.dense.get();
        let p = self.hot.pos;
        if high > d.high || p >= v.len() {
            return v.len();
        }
        let mut below = &v[p];
        for above in &v[p + 1..] {
            if below.start >= d.from {
                break;
            }
            if !no_room(below, above, high) {
                return v.len();
            }
            below = above;
        }
        p + 1
    }

    /// Where an area over `[start, end)` goes if the position of the last
    /// gap found ([`Self::find_gap_top_down`]) is right for it in a
    /// one-leaf tree: the area before it ends at or below `start` and the
    /// one at it starts at or above `end` (so no area overlaps, and the
    /// position is what a search would find). None otherwise.
    #[inline]
    pub fn hinted_slot(&self, start: u64, end: u64) -> Option<usize> {
        let Some(Node::Leaf(v)) = &self.root else {
            return None;
        };
        let i = self.gap_pos.get();
        let below_ok = match i.checked_sub(1) {
            Some(p) => v.get(p)?.end <= start,
            None => true,
        };
        let above_ok = v.get(i).is_none_or(|a| a.start >= end);
        (i <= v.len() && below_ok && above_ok).then_some(i)
    }
}

/// The position in leaf `v` of the first area ending after `addr` (`v`'s
/// length if none): a small leaf is scanned from its start, a comparison
/// an area, where a binary search costs some forty instructions wherever
/// the area lies; a larger one is bisected.
#[inline(always)]
fn leaf_seek(v: &[Vma], addr: u64) -> usize {
    if v.len() <= SCAN_MAX {
        return v.iter().position(|x| x.end > addr).unwrap_or(v.len());
    }
    v.partition_point(|x| x.end <= addr)
}

/// [`leaf_seek`] in leaf `v` with its hot copy `hot` as the hint: the hot
/// area's position if it holds `addr` (a segment mapped over the
/// reservation just made), else a
/// search from the area after it if `addr` lies above it (the next
/// segment), else from the start.
#[inline(always)]
fn seek_from_hot(v: &[Vma], hot: &Hot, addr: u64) -> usize {
    let known = hot.pos < v.len();
    if known && hot.vma.start <= addr && addr < hot.vma.end {
        return hot.pos;
    }
    let from = match known && addr >= hot.vma.end {
        true => hot.pos + 1,
        false => 0,
    };
    from + leaf_seek(&v[from..], addr)
}

/// Grow the area of leaf `v` that ends at `end` (at `hint`, if the hint is
/// right, else found by a search) to `new_end`, for `(end, new_end, like)`
/// in `grow`, if an anonymous area with the rights `like` could merge into
/// it (an anonymous area with them, whatever its anonymous memory: the new
/// part has none yet), it starts at or above `floor`, and `new_end` lies
/// `room` bytes or more below the guard gap of the area after it (`next`:
/// the gap's start past the leaf's last area). Its position and start, if
/// it grew.
#[inline(always)]
fn grow_in_leaf(
    v: &mut [Vma],
    hint: usize,
    (end, new_end, like): Growth,
    floor: u64,
    room: u64,
    next: u64,
) -> Option<(usize, u64)> {
    // One area ends at `end`: the hint is right if it ends there.
    let p = match v.get(hint) {
        Some(a) if a.end == end => hint,
        _ => v.partition_point(|a| a.end < end),
    };
    let (a, after) = v.get_mut(p..)?.split_first_mut()?;
    let next = after.first().map_or(next, Vma::start_gap);
    let fits = new_end.saturating_add(room) <= next;
    let anon = matches!(a.backing, Backing::Anon) && (a.prot, a.flags.kind()) == like;
    if a.end != end || a.start < floor || !fits || !anon {
        return None;
    }
    a.end = new_end;
    Some((p, a.start))
}

/// An anonymous area's growth: `(end, new_end, (prot, flags))`, the area
/// ending at `end` to end at `new_end`, if it has those rights.
type Growth = (u64, u64, (Prot, VmFlags));

/// The free gap between neighbouring areas `a` and `b` (0 if none).
fn gap_between(a: &Vma, b: &Vma) -> u64 {
    b.start_gap().saturating_sub(a.end)
}

/// The largest gap next to area `i` of a leaf.
fn gaps_around(v: &[Vma], i: usize) -> u64 {
    let below = i
        .checked_sub(1)
        .and_then(|p| Some(gap_between(v.get(p)?, v.get(i)?)));
    let above = v.get(i + 1).and_then(|n| Some(gap_between(v.get(i)?, n)));
    below.unwrap_or(0).max(above.unwrap_or(0))
}

/// The largest boundary gap next to child `j` of an inner node.
fn child_gaps_around(k: &[Child], j: usize) -> u64 {
    let g = |a: &Child, b: &Child| b.sum.start_gap.saturating_sub(a.sum.end);
    let below = j.checked_sub(1).and_then(|p| Some(g(k.get(p)?, k.get(j)?)));
    let above = k.get(j + 1).and_then(|n| Some(g(k.get(j)?, n)));
    below.unwrap_or(0).max(above.unwrap_or(0))
}

/// Child `j`'s summary after a change below it that left `count` areas
/// and may have made a gap as large as `new_gap`: its ends are read from
/// its first and last entries, its gap bound only grows (a gap that
/// shrank leaves it too large, which a search tolerates). Returns the
/// largest gap the change may have made at this level.
fn refresh_child(k: &mut [Child], j: usize, count: usize, new_gap: u64) -> u64 {
    let (start, start_gap, end) = match &k[j].node {
        Node::Leaf(v) => match (v.first(), v.last()) {
            (Some(f), Some(l)) => (f.start, f.start_gap(), l.end),
            _ => (0, 0, 0),
        },
        Node::Inner(c) => match (c.first(), c.last()) {
            (Some(f), Some(l)) => (f.sum.start, f.sum.start_gap, l.sum.end),
            _ => (0, 0, 0),
        },
    };
    let s = &mut k[j].sum;
    *s = Summary {
        count,
        start,
        start_gap,
        end,
        gap: s.gap.max(new_gap),
    };
    new_gap.max(child_gaps_around(k, j))
}

/// Insert into the subtree; returns a new right sibling if `node` split,
/// and the largest gap the insert may have made.
fn insert_rec(node: &mut Node, i: usize, vma: Vma, sp: &mut Spares) -> (Option<Child>, u64) {
    match node {
        Node::Leaf(v) => {
            if v.len() < LEAF_CAP {
                v.insert(i, vma);
                return (None, gaps_around(v, i));
            }
            // Split where the area goes, which then starts the right
            // leaf (at either end, a leaf of its own): areas added in
            // order, up or down, then fill whole leaves. The split point
            // keeps two areas on each side, so that no pattern of inserts
            // leaves a trail of one-area leaves.
            let mut r = sp.leaf();
            if i == 0 {
                r.append(v);
                v.push(vma);
            } else if i >= LEAF_CAP {
                r.push(vma);
            } else {
                let s = i.clamp(2, LEAF_CAP - 2);
                // One block copy (areas are plain data), not an area at a
                // time through a drain: some 1,200 instructions less a split.
                r.extend_from_slice(&v[s..]);
                v.truncate(s);
                if i < s {
                    v.insert(i, vma);
                } else {
                    r.insert(i - s, vma);
                }
            }
            let sum = leaf_summary(&r);
            (
                Some(Child {
                    sum,
                    node: Node::Leaf(r),
                }),
                sum.gap.max(leaf_summary(v).gap),
            )
        }
        Node::Inner(k) => {
            let (j, r) = insert_child(k, i);
            let count = k[j].sum.count + 1;
            let (split, below) = insert_rec(&mut k[j].node, r, vma, sp);
            let Some(new) = split else {
                return (None, refresh_child(k, j, count, below));
            };
            k[j].sum = k[j].node.summary();
            if k.len() < INNER_CAP {
                k.insert(j + 1, new);
                let made = k[j].sum.gap.max(k[j + 1].sum.gap);
                return (
                    None,
                    made.max(child_gaps_around(k, j + 1))
                        .max(child_gaps_around(k, j)),
                );
            }
            let half = INNER_CAP / 2;
            let mut right = sp.inner();
            if j + 1 == INNER_CAP {
                // Appended: the new child starts a node of its own.
                right.push(new);
            } else if j == 0 {
                // Growing at the front: the front keeps only the two.
                right.extend(k.drain(1..));
                k.push(new);
            } else {
                right.extend(k.drain(half..));
                if j < half {
                    k.insert(j + 1, new);
                } else {
                    right.insert(j + 1 - half, new);
                }
            }
            let sum = inner_summary(&right);
            let made = sum.gap.max(inner_summary(k).gap);
            (
                Some(Child {
                    sum,
                    node: Node::Inner(right),
                }),
                made,
            )
        }
    }
}

/// Remove position `i` of the subtree, refilling children that fall
/// below [`MIN_FILL`]; returns the area and the largest gap the removal
/// may have made.
fn remove_rec(node: &mut Node, i: usize) -> (Vma, u64) {
    match node {
        Node::Leaf(v) => {
            let out = v.remove(i);
            let joined = match (i.checked_sub(1).and_then(|p| v.get(p)), v.get(i)) {
                (Some(a), Some(b)) => gap_between(a, b),
                _ => 0,
            };
            (out, joined)
        }
        Node::Inner(k) => {
            let (j, r) = child_at(k, i, false);
            let count = k[j].sum.count - 1;
            let (out, below) = remove_rec(&mut k[j].node, r);
            if k[j].node.len() < MIN_FILL && k.len() > 1 {
                rebalance(k, j);
                return (out, inner_summary(k).gap);
            }
            // An only child (an insert past a full node starts one) goes
            // when it empties: an empty node's summary, ending at 0, would
            // show the gap search everything below as free. The parent
            // then merges this node, empty in turn, away.
            if k[j].node.len() == 0 {
                k.remove(j);
                return (out, 0);
            }
            (out, refresh_child(k, j, count, below))
        }
    }
}

/// Merge child `j` with a neighbour, or share their entries evenly when
/// together they do not fit in one node.
fn rebalance(k: &mut Vec<Child>, j: usize) {
    let a = if j + 1 < k.len() { j } else { j - 1 };
    let (lo, hi) = k.split_at_mut(a + 1);
    let (left, right) = (&mut lo[a].node, &mut hi[0].node);
    let merged = match (left, right) {
        (Node::Leaf(l), Node::Leaf(r)) => share(l, r, LEAF_CAP),
        (Node::Inner(l), Node::Inner(r)) => share(l, r, INNER_CAP),
        _ => false,
    };
    if merged {
        k.remove(a + 1);
    } else {
        k[a + 1].sum = k[a + 1].node.summary();
    }
    k[a].sum = k[a].node.summary();
}

/// Move all of `r` into `l` if they fit in `cap` (true), else even them.
fn share<T>(l: &mut Vec<T>, r: &mut Vec<T>, cap: usize) -> bool {
    let total = l.len() + r.len();
    if total <= cap {
        l.append(r);
        return true;
    }
    let want = total / 2;
    if l.len() < want {
        let n = want - l.len();
        l.extend(r.drain(..n));
    } else {
        // Move l's entries past `want` to the front of r, in order.
        r.splice(0..0, l.drain(want..));
    }
    false
}

/// Change position `i` of the subtree with `f`; whether its bounds or
/// guard gap moved (the summaries above then follow), and the largest gap
/// the change may have made.
/// [`VmaTree::attach_anon`]'s write below an inner node (out of line: a one-leaf
/// tree's write then saves no registers).
#[inline(never)]
fn set_anon_deep(mut node: &mut Node, mut i: usize, anon: u32) {
    loop {
        match node {
            Node::Leaf(v) => {
                if let Some(a) = v.get_mut(i) {
                    a.anon = anon;
                }
                return;
            }
            Node::Inner(k) => {
                let (j, r) = child_at(k, i, false);
                i = r;
                node = &mut k[j].node;
            }
        }
    }
}

/// The leaf below an inner node that holds the area at position `i`, and
/// the area's place in it.
fn leaf_mut_deep(mut node: &mut Node, mut i: usize) -> (&mut Vec<Vma>, usize) {
    loop {
        match node {
            Node::Leaf(v) => return (v, i),
            Node::Inner(k) => {
                let (j, r) = child_at(k, i, false);
                i = r;
                node = &mut k[j].node;
            }
        }
    }
}

/// [`VmaTree::mark_mapped`]'s write below an inner node.
fn set_mapped_deep(mut node: &mut Node, mut i: usize) {
    loop {
        match node {
            Node::Leaf(v) => {
                if let Some(a) = v.get_mut(i) {
                    a.flags = a.flags.kind();
                }
                return;
            }
            Node::Inner(k) => {
                let (j, r) = child_at(k, i, false);
                i = r;
                node = &mut k[j].node;
            }
        }
    }
}

fn update_rec<F: FnOnce(&mut Vma)>(node: &mut Node, i: usize, f: F) -> (bool, u64) {
    match node {
        Node::Leaf(v) => {
            let Some(a) = v.get_mut(i) else {
                return (false, 0);
            };
            let before = (a.start, a.end, a.start_gap());
            f(a);
            let moved = before != (a.start, a.end, a.start_gap());
            (moved, if moved { gaps_around(v, i) } else { 0 })
        }
        Node::Inner(k) => {
            let (j, r) = child_at(k, i, false);
            let (moved, below) = update_rec(&mut k[j].node, r, f);
            if !moved {
                return (false, 0);
            }
            let count = k[j].sum.count;
            (true, refresh_child(k, j, count, below))
        }
    }
}

/// The highest fitting start inside the gaps between neighbouring areas
/// of `node` (not the gaps before its first or after its last area).
fn gap_in(node: &Node, len: u64, low: u64, high: u64) -> Option<u64> {
    let fits = |bot: u64, top: u64| (top >= bot && top - bot >= len).then(|| top - len);
    let floor = low.saturating_add(len);
    match node {
        Node::Leaf(v) => leaf_gap::<false>(v, len, low, high).0.map(|(a, _)| a),
        Node::Inner(k) => {
            for j in (0..k.len()).rev() {
                let s = &k[j].sum;
                if s.gap >= len && s.start < high {
                    if let Some(a) = gap_in(&k[j].node, len, low, high) {
                        return Some(a);
                    }
                }
                if j > 0 {
                    let bot = k[j - 1].sum.end.max(low);
                    if let Some(a) = fits(bot, s.start_gap.min(high)) {
                        return Some(a);
                    }
                }
                if s.start < floor {
                    return None;
                }
            }
            None
        }
    }
}

/// [`gap_in`] of a leaf's areas `v`: the start found and the area above
/// the gap; with `KEEP`, also whether every two neighbours passed above
/// it leave no room ([`no_room`]).
fn leaf_gap<const KEEP: bool>(
    v: &[Vma],
    len: u64,
    low: u64,
    high: u64,
) -> (Option<(u64, &Vma)>, bool) {
    let fits = |bot: u64, top: u64| (top >= bot && top - bot >= len).then(|| top - len);
    let floor = low.saturating_add(len);
    // Each area with the one above it, from the top: two pointers walked
    // down, no index to check.
    let mut areas = v.iter().rev();
    let Some(mut above) = areas.next() else {
        return (None, false);
    };
    let mut dense = true;
    for below in areas {
        // Areas that touch leave no gap (a guard gap only shrinks one):
        // the common case of a library's segments, passed with one
        // comparison.
        if below.end != above.start {
            if let Some(a) = fits(below.end.max(low), above.start_gap().min(high)) {
                return (Some((a, above)), dense);
            }
            dense = KEEP && dense && no_room(below, above, high);
            // Every lower gap ends at or below this area's start.
            if below.start < floor {
                return (None, false);
            }
        }
        above = below;
    }
    (None, false)
}

/// Whether neighbouring areas `below` and `above` leave no room between
/// them for a top-down search below `high` (whatever its bottom), and
/// would not with any area put between them: the room reckoned up to
/// `above`'s start rather than its guard gap's (room below an area put in
/// a stack's guard gap is room the stack's gap no longer covers).
#[inline(always)]
fn no_room(below: &Vma, above: &Vma, high: u64) -> bool {
    // (Touching areas, the common case, first.)
    below.end == above.start || above.start.min(high) <= below.end
}

/// In-order iterator over a [`VmaTree`].
pub struct Iter<'a> {
    stack: [(&'a [Child], usize); MAX_DEPTH],
    depth: usize,
    leaf: &'a [Vma],
    pos: usize,
}

impl<'a> Iter<'a> {
    /// Go down the leftmost path of `node`.
    fn descend(&mut self, mut node: &'a Node) {
        loop {
            match node {
                Node::Leaf(v) => {
                    self.leaf = v;
                    self.pos = 0;
                    return;
                }
                Node::Inner(k) => {
                    if self.depth == MAX_DEPTH || k.is_empty() {
                        self.leaf = &[];
                        return;
                    }
                    self.stack[self.depth] = (k, 0);
                    self.depth += 1;
                    node = &k[0].node;
                }
            }
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Vma;

    fn next(&mut self) -> Option<&'a Vma> {
        loop {
            if let Some(v) = self.leaf.get(self.pos) {
                self.pos += 1;
                return Some(v);
            }
            // Climb to the first level with a next child, then go down it.
            loop {
                if self.depth == 0 {
                    self.leaf = &[];
                    return None;
                }
                let (k, j) = self.stack[self.depth - 1];
                if j + 1 < k.len() {
                    self.stack[self.depth - 1].1 = j + 1;
                    self.descend(&k[j + 1].node);
                    break;
                }
                self.depth -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(k: u64) -> Vma {
        let prot = if k.is_multiple_of(2) {
            Prot::READ
        } else {
            Prot::NONE
        };
        Vma::anon(k * 0x2000, k * 0x2000 + 0x1000, prot, VmFlags::NONE)
    }

    /// An area touching the one before it, both anonymous with the same
    /// flags (`k`'s area grown to the next one's start).
    fn touching(k: u64) -> Vma {
        Vma {
            end: (k + 1) * 0x2000,
            ..area(k)
        }
    }

    #[test]
    fn attach_anon_reuses_a_touching_neighbours_identity_in_one_leaf_and_deeper() {
        for n in [4u64, 3 * LEAF_CAP as u64] {
            let mut t = VmaTree::new();
            for k in 0..n {
                let v = if k == 1 { touching(1) } else { area(k) };
                t.insert_at(k as usize, v).unwrap();
            }
            let deep = !matches!(t.root, Some(Node::Leaf(_)));
            assert_eq!(deep, n > LEAF_CAP as u64);
            let mut last = 0;
            // Area 2 touches nothing: a fresh identity, in the hot copy too.
            t.find_hot(area(2).start);
            t.attach_anon(2, &mut last);
            assert_eq!((last, t.get(2).map(|v| v.anon)), (1, Some(1)));
            assert_eq!(t.find_hot(area(2).start).map(|(_, v)| v.anon), Some(1));
            // Area 1 touches area 2 (same flags, both anonymous): its.
            t.attach_anon(1, &mut last);
            assert_eq!((last, t.get(1).map(|v| v.anon)), (1, Some(1)));
            // Area 0 touches nothing: the next fresh one.
            t.attach_anon(0, &mut last);
            assert_eq!((last, t.get(0).map(|v| v.anon)), (2, Some(2)));
        }
    }

    #[test]
    fn nodes_fit_the_heap_blocks_they_are_counted_as() {
        assert!(core::mem::size_of::<Vma>() * LEAF_CAP <= LEAF_UNITS * NODE_BYTES);
        assert!(core::mem::size_of::<Child>() * INNER_CAP <= INNER_UNITS * NODE_BYTES);
        assert_eq!((LEAF_UNITS, INNER_UNITS), (2, 1));
    }

    #[test]
    fn each_leaf_is_handed_over_once_in_order() {
        let mut t = VmaTree::new();
        let mut calls = 0;
        t.for_each_leaf(|_| calls += 1);
        assert_eq!(calls, 0, "an empty tree has no leaf");
        for n in [1, LEAF_CAP as u64, 5 * LEAF_CAP as u64 + 3] {
            while (t.len() as u64) < n {
                t.insert_at(t.len(), area(t.len() as u64)).unwrap();
            }
            let (mut starts, mut leaves) = (Vec::new(), 0);
            t.for_each_leaf(|leaf| {
                assert!(!leaf.is_empty());
                starts.extend(leaf.iter().map(|v| v.start));
                leaves += 1;
            });
            assert!(
                starts.iter().copied().eq(t.iter().map(|v| v.start)),
                "{n} areas"
            );
            assert_eq!(starts.len() as u64, n);
            assert_eq!(
                leaves > 1,
                n > LEAF_CAP as u64,
                "{n} areas in {leaves} leaves"
            );
        }
    }

    #[test]
    fn inserts_into_a_one_leaf_tree_keep_order_counts_and_a_later_split() {
        let mut t = VmaTree::new();
        assert_eq!(t.last_end(), None);
        // Middle, front and back of a single leaf, then past its capacity.
        for (n, k) in [4u64, 0, 9, 2, 7].into_iter().enumerate() {
            let i = t.rank_start(area(k).start);
            t.insert_at(i, area(k)).unwrap();
            assert_eq!(t.len(), n + 1);
        }
        let starts: Vec<u64> = t.iter().map(|v| v.start / 0x2000).collect();
        assert_eq!(starts, [0, 2, 4, 7, 9]);
        assert_eq!(t.last_end(), Some(area(9).end));
        assert_eq!(t.bytes(), 5 * 0x1000);
        assert_eq!(t.data_bytes(), 0);
        // A lookup sets the finger; an insert must not leave it stale.
        assert_eq!(t.seek(area(9).start).0, 4);
        t.insert_at(4, area(8)).unwrap();
        assert_eq!(t.get(4).map(|v| v.start), Some(area(8).start));
        for k in 10..10 + LEAF_CAP as u64 {
            t.insert_at(t.len(), area(k)).unwrap();
        }
        assert_eq!(t.len(), 6 + LEAF_CAP);
        assert_eq!(t.last_end(), Some(area(9 + LEAF_CAP as u64).end));
        let starts: Vec<u64> = t.iter().map(|v| v.start).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(t.seek(area(12).start), (8, t.get(8)));
    }

    #[test]
    fn leaf_of_gives_the_leaf_holding_a_position_and_its_first_position() {
        let mut t = VmaTree::new();
        assert_eq!(t.leaf_of(0), (&[][..], 0));
        for k in 0..5 {
            t.insert_at(t.len(), area(k)).unwrap();
        }
        let (leaf, first) = t.leaf_of(3);
        assert_eq!((leaf.len(), first), (5, 0), "one leaf: all of it");
        for k in 5..3 * LEAF_CAP as u64 {
            t.insert_at(t.len(), area(k)).unwrap();
        }
        for i in [0, LEAF_CAP, 2 * LEAF_CAP + 3, t.len() - 1] {
            // From a fresh lookup and from the finger the first left.
            for _ in 0..2 {
                let (leaf, first) = t.leaf_of(i);
                assert_eq!(leaf.get(i - first), t.get(i), "position {i}");
                assert!(leaf.len() < t.len());
            }
        }
        assert_eq!(t.leaf_of(t.len()), (&[][..], 0), "past the end");
        let (leaf, first) = t.leaf_of(t.len() - 1);
        assert_eq!(first + leaf.len(), t.len());
    }

    #[test]
    fn areas_added_top_down_fill_whole_leaves() {
        let mut t = VmaTree::new();
        let n = 65_530u64;
        for k in (0..n).rev() {
            t.insert_at(0, area(k)).unwrap();
        }
        assert_eq!(t.len(), n as usize);
        let leaves = n as usize / LEAF_CAP;
        let nodes = count_nodes(t.root.as_ref().unwrap());
        assert!(
            nodes < leaves * 12 / 10,
            "{nodes} nodes for {leaves} full leaves"
        );
        assert!(t.iter().map(|v| v.start).eq((0..n).map(|k| k * 0x2000)));
    }

    #[test]
    fn areas_added_bottom_up_fill_whole_leaves() {
        let mut t = VmaTree::new();
        let n = 10_000u64;
        for k in 0..n {
            t.insert_at(k as usize, area(k)).unwrap();
        }
        let nodes = count_nodes(t.root.as_ref().unwrap());
        assert!(nodes < n as usize / LEAF_CAP * 12 / 10);
        for k in [0, 1, 20, 21, 5000, 9999] {
            assert_eq!(t.get(k as usize).map(|v| v.start), Some(k * 0x2000));
            assert_eq!(t.seek(k * 0x2000 + 0x1800).0, k as usize + 1);
        }
    }

    /// The pattern of a process mapping areas top down above a few areas
    /// of its own: each goes just below the one mapped before it.
    #[test]
    fn areas_added_below_the_last_one_above_others_fill_whole_leaves() {
        for below in [0u64, 2, 5, 30] {
            let mut t = VmaTree::new();
            for k in 0..below {
                t.insert_at(k as usize, area(k)).unwrap();
            }
            let n = 20_000u64;
            for k in 0..n {
                t.insert_at(below as usize, area(1_000_000 - k)).unwrap();
            }
            let nodes = count_nodes(t.root.as_ref().unwrap());
            let leaves = (n + below) as usize / LEAF_CAP;
            eprintln!("{below} areas below: {nodes} nodes for {leaves} full leaves");
            assert!(
                nodes < leaves * 12 / 10,
                "{below}: {nodes} nodes for {leaves} leaves"
            );
        }
    }

    /// A tree of `n` areas (several leaves when `n` > [`LEAF_CAP`]).
    fn tree_of(n: u64) -> VmaTree {
        let mut t = VmaTree::new();
        for k in 0..n {
            t.insert_at(k as usize, area(k)).unwrap();
        }
        t
    }

    #[test]
    fn copy_into_a_used_tree_makes_it_what_try_clone_makes() {
        for (n, m) in [(0, 5), (5, 0), (30, 3), (200, 50)] {
            let from = tree_of(n);
            let mut to = tree_of(m);
            to.find_hot(0);
            from.copy_into(&mut to).unwrap();
            let want = from.try_clone().unwrap();
            let areas = |t: &VmaTree| t.iter().copied().collect::<alloc::vec::Vec<_>>();
            assert_eq!(areas(&to), areas(&want), "{n} from {m}");
            assert_eq!(
                (to.len(), to.bytes(), to.data_bytes()),
                (want.len(), want.bytes(), want.data_bytes())
            );
            assert_eq!((to.hot.pos, to.grown, to.gap_pos.get()), (usize::MAX, 0, 0));
            assert_eq!(to.finger.get().len, 0);
            assert_eq!(to.dense.get().high, 0, "nothing vouched for");
        }
    }

    #[test]
    fn seek_from_any_hot_area_finds_what_a_search_from_the_start_finds() {
        // Small and large leaves, with no hot area and with each area hot;
        // addresses inside areas, in gaps, below and above them all.
        for n in [1, SCAN_MAX as u64, LEAF_CAP as u64] {
            let mut t = tree_of(n);
            let want = |addr: u64| (addr / 0x2000 + u64::from(addr % 0x2000 >= 0x1000)) as usize;
            let check = |t: &VmaTree| {
                for addr in (0..n * 0x2000 + 0x1000).step_by(0x800) {
                    let (i, v) = t.seek(addr);
                    assert_eq!(i, want(addr).min(n as usize), "{n} {addr:x}");
                    assert_eq!(v.copied(), (i < n as usize).then(|| area(i as u64)));
                }
            };
            check(&t);
            for k in 0..n {
                t.find_hot(k * 0x2000);
                assert_eq!(t.hot.pos, k as usize);
                check(&t);
            }
        }
    }

    #[test]
    fn find_hot_scans_a_small_leaf_and_bisects_a_larger_one_alike() {
        // One leaf each: scanned (up to SCAN_MAX areas) and bisected.
        for n in [1, SCAN_MAX as u64, SCAN_MAX as u64 + 1, LEAF_CAP as u64] {
            let mut t = tree_of(n);
            for k in 0..n {
                for (addr, want) in [
                    (k * 0x2000, Some(k as usize)),
                    (k * 0x2000 + 0xfff, Some(k as usize)),
                    (k * 0x2000 + 0x1000, None),
                ] {
                    // A fresh copy each time: no hot area answers.
                    t.drop_hot();
                    assert_eq!(
                        t.find_hot(addr).map(|(i, _)| i),
                        want,
                        "{n} areas, {addr:#x}"
                    );
                }
            }
            t.drop_hot();
            assert_eq!(t.find_hot(n * 0x2000), None, "past the last area");
        }
    }

    #[test]
    fn a_small_leaf_is_scanned_from_the_hot_area_up_or_from_its_start() {
        let n = SCAN_MAX as u64;
        let mut t = tree_of(n);
        for hot in 0..n {
            for k in 0..n {
                for (addr, want) in [
                    (k * 0x2000 + 0x10, Some(k as usize)),
                    (k * 0x2000 + 0x1000, None),
                ] {
                    // Each lookup from area `hot` (below, in or above it).
                    t.find_hot(hot * 0x2000);
                    let got = t.find_hot(addr).map(|(i, _)| i);
                    assert_eq!(got, want, "from {hot}, {addr:#x}");
                }
            }
        }
        // A hot area removed (its copy dropped) or moved down by a removal
        // before it: the next lookups above it are still right.
        t.find_hot(5 * 0x2000);
        t.remove_at(5);
        assert_eq!(t.find_hot(6 * 0x2000).map(|(i, _)| i), Some(5));
        t.find_hot(8 * 0x2000);
        t.remove_at(0);
        assert_eq!(t.find_hot(9 * 0x2000).map(|(i, _)| i), Some(7));
        assert_eq!(t.find_hot(0x10), None, "the removed first area");
    }

    #[test]
    fn find_hot_finds_the_containing_area_and_get_reads_its_copy() {
        for n in [3, 100] {
            let mut t = tree_of(n);
            let k = n - 2;
            let hit = t.find_hot(k * 0x2000 + 0x10).map(|(i, v)| (i, *v));
            assert_eq!(hit, Some((k as usize, area(k))));
            assert_eq!(t.get(k as usize), Some(&area(k)));
            // Again, from the copy; an address in the gap after it is in no area.
            assert_eq!(t.find_hot(k * 0x2000).map(|(i, _)| i), Some(k as usize));
            assert_eq!(t.find_hot(k * 0x2000 + 0x1000), None);
            assert_eq!(t.get(1), Some(&area(1)));
        }
    }

    #[test]
    fn an_area_inserted_into_one_leaf_is_the_hot_one() {
        let mut t = VmaTree::new();
        t.insert_at(0, area(1)).unwrap();
        for k in [3u64, 2, 0] {
            let i = t.rank_start(area(k).start);
            t.insert_at(i, area(k)).unwrap();
            assert_eq!((t.hot.pos, t.hot.vma.start), (i, area(k).start));
            // Every area, the new one and those it moved, is found right.
            for j in 0..t.len() {
                let start = t.get(j).map(|v| v.start).unwrap();
                assert_eq!(t.find_hot(start).map(|(p, _)| p), Some(j));
            }
            t.find_hot(area(k).start);
        }
        assert_eq!(t.find_hot(area(2).start + 0x1000), None, "a gap");
    }

    #[test]
    fn split_at_keeps_order_weight_and_drops_the_hot_copy() {
        for n in [4u64, 200] {
            let mut t = VmaTree::new();
            for k in 0..n {
                let v = Vma::anon(k * 0x4000, k * 0x4000 + 0x2000, Prot::RW, VmFlags::NONE);
                t.insert_at(k as usize, v).unwrap();
            }
            let (bytes, data) = (t.bytes(), t.data_bytes());
            t.find_hot(0x4000);
            let mut low = *t.get(1).unwrap();
            let mut high = low;
            low.end = 0x5000;
            high.start = 0x5000;
            t.split_at(1, low, high).unwrap();
            assert_eq!(t.len(), n as usize + 1);
            assert_eq!((t.bytes(), t.data_bytes()), (bytes, data));
            assert_eq!(t.hot.pos, usize::MAX);
            assert_eq!(
                t.find_hot(0x5800).map(|(i, v)| (i, v.start)),
                Some((2, 0x5000))
            );
            assert_eq!(
                t.find_hot(0x4800).map(|(i, v)| (i, v.end)),
                Some((1, 0x5000))
            );
            assert_eq!(t.find_hot(0x8000).map(|(i, _)| i), Some(3));
        }
    }

    #[test]
    fn the_gap_a_top_down_search_found_is_where_an_area_there_goes_and_a_stale_one_is_refused() {
        const P: u64 = 0x1000;
        // Areas k * 0x2000 .. + 0x1000: a page of gap between each.
        let mut t = tree_of(10);
        let seek = |t: &VmaTree, a: u64| t.seek(a).0;
        for (len, low, high) in [(P, P, 0x40_0000), (P, 0, 0x9000), (2 * P, P, 0x40_0000)] {
            let a = t.find_gap_top_down(len, low, high).unwrap();
            assert_eq!(
                t.hinted_slot(a, a + len),
                Some(seek(&t, a)),
                "{len:#x} {high:#x}"
            );
        }
        // Below the first area.
        let mut u = VmaTree::new();
        u.insert_at(0, area(4)).unwrap();
        let a = u.find_gap_top_down(P, P, 0x4000).unwrap();
        assert_eq!((a, u.hinted_slot(a, a + P)), (0x3000, Some(0)));
        // Every range: the hint is the search's answer or refused, and
        // never a place that overlaps an area.
        let a = t.find_gap_top_down(P, 0, 0x9000).unwrap();
        assert_eq!(a, 0x7000);
        t.insert_at(seek(&t, a), Vma::anon(a, a + P, Prot::READ, VmFlags::NONE))
            .unwrap();
        for start in (0..0x16000).step_by(P as usize) {
            for end in [start + P, start + 2 * P] {
                let (i, next) = t.seek(start);
                let free = next.is_none_or(|n| n.start >= end);
                match t.hinted_slot(start, end) {
                    Some(h) => assert!(free && h == i, "{start:#x}..{end:#x}"),
                    None => assert!(!free || i != t.gap_pos.get()),
                }
            }
        }
    }

    /// A one-leaf tree with a stack at pages 0x200-0x210, `extra`, an
    /// area at pages 0x10-0x20 and, from page 0x30 up, areas enough (one
    /// page each, a page apart) for a search to keep what it learns.
    fn dense_tree(extra: &[Vma]) -> VmaTree {
        const P: u64 = 0x1000;
        let at = |s: u64, e: u64| Vma::anon(s, e, Prot::READ, VmFlags::NONE);
        let mut t = VmaTree::new();
        t.insert_at(
            0,
            Vma::anon(0x200 * P, 0x210 * P, Prot::RW, VmFlags::GROWSDOWN),
        )
        .unwrap();
        for &v in extra {
            t.insert_merged_in_leaf(v).unwrap();
        }
        t.insert_merged_in_leaf(at(0x10 * P, 0x20 * P)).unwrap();
        for k in 0..DENSE_MIN as u64 {
            t.insert_merged_in_leaf(at((0x30 + 2 * k) * P, (0x31 + 2 * k) * P))
                .unwrap();
        }
        t
    }

    #[test]
    fn a_search_starts_below_the_areas_the_last_one_vouched_for_until_room_is_made() {
        const P: u64 = 0x1000;
        let high = 0x100 * P;
        let at = |s: u64, e: u64, prot| Vma::anon(s, e, prot, VmFlags::NONE);
        let map = |t: &mut VmaTree, len: u64, prot| {
            let a = t.find_gap_top_down(len, P, high).unwrap();
            t.insert_merged_in_leaf(at(a, a + len, prot)).unwrap();
            a
        };
        let mut t = dense_tree(&[]);
        // Each below the last, the tree's shape no longer searched above.
        assert_eq!(map(&mut t, 2 * P, Prot::RW), high - 2 * P);
        assert_eq!(map(&mut t, P, Prot::READ), high - 3 * P);
        assert_eq!(map(&mut t, P, Prot::RW), high - 4 * P);
        assert!(t.dense_top(t.leaf_of(0).0, high) < t.len(), "vouched for");
        // Room made among the areas vouched for, and an area put below
        // them (the hot one then): found, where it is the highest.
        t.remove_in_one_area(high - 2 * P, high - P, &mut |_| ())
            .unwrap();
        t.insert_merged_in_leaf(at(high - 5 * P, high - 4 * P, Prot::READ))
            .unwrap();
        assert_eq!(t.find_gap_top_down(P, P, high), Some(high - 2 * P));
        // Another search's bounds: the same answer as a copy's (which
        // knows nothing).
        let copy = t.try_clone().unwrap();
        for h in [high - P, high + P, 0x30 * P] {
            assert_eq!(
                t.find_gap_top_down(P, P, h),
                copy.find_gap_top_down(P, P, h),
                "{h:#x}"
            );
        }
    }

    #[test]
    fn room_a_stacks_guard_gap_hides_is_not_vouched_for() {
        const P: u64 = 0x1000;
        // The stack's guard gap reaches down to the area below it, above
        // which the search's top lies.
        let high = 0x180 * P;
        let at = |s: u64, e: u64, prot| Vma::anon(s, e, prot, VmFlags::NONE);
        let mut t = dense_tree(&[at(0xf0 * P, 0x100 * P, Prot::RW)]);
        let a = t.find_gap_top_down(P, P, high).unwrap();
        assert_eq!(a, 0xef * P, "below the area the guard gap reaches");
        t.insert_merged_in_leaf(at(a, a + P, Prot::READ)).unwrap();
        // An area put in the guard gap: room below it, then an area
        // below the others (the hot one).
        t.insert_merged_in_leaf(at(0x150 * P, 0x151 * P, Prot::READ))
            .unwrap();
        t.insert_merged_in_leaf(at(0xee * P, 0xef * P, Prot::RW))
            .unwrap();
        assert_eq!(t.find_gap_top_down(P, P, high), Some(0x14f * P));
    }

    /// [`VmFlags::FRESH`] if `fresh`, else no flags.
    fn fresh_if(fresh: bool) -> VmFlags {
        if fresh {
            VmFlags::FRESH
        } else {
            VmFlags::NONE
        }
    }

    #[test]
    fn split_in_two_makes_the_parts_split_at_makes_in_one_leaf_and_deeper() {
        for n in [4u64, 200] {
            let (mut t, mut u) = (VmaTree::new(), VmaTree::new());
            for k in 0..n {
                let v = Vma {
                    backing: Backing::File {
                        file: 1,
                        offset: k * 0x10_0000,
                        data_end: u64::MAX,
                    },
                    ..Vma::anon(k * 0x4000, k * 0x4000 + 0x2000, Prot::RW, fresh_if(k == 1))
                };
                t.insert_at(k as usize, v).unwrap();
                u.insert_at(k as usize, v).unwrap();
            }
            let (bytes, data) = (t.bytes(), t.data_bytes());
            t.find_hot(0x4000);
            t.split_in_two(1, 0x5000).unwrap();
            let mut low = *u.get(1).unwrap();
            let mut high = low;
            low.end = 0x5000;
            high.start_at(0x5000);
            u.split_at(1, low, high).unwrap();
            assert_eq!(t.len(), n as usize + 1);
            assert_eq!((t.bytes(), t.data_bytes()), (bytes, data));
            assert_eq!(t.hot.pos, usize::MAX, "the hot copy is dropped");
            let parts: Vec<Vma> = t.iter().copied().collect();
            assert_eq!(parts, u.iter().copied().collect::<Vec<_>>());
            assert_eq!(parts[2].file_offset(0x5000), Some(0x10_1000));
            assert!(parts[1].is_fresh() && parts[2].is_fresh() && !parts[3].is_fresh());
            assert_eq!(
                t.find_hot(0x5800).map(|(i, v)| (i, v.start)),
                Some((2, 0x5000))
            );
        }
    }

    #[test]
    fn split_at_with_new_rights_for_a_part_recounts_the_data_bytes() {
        // One leaf (split inline) and several (inserted, then updated).
        for n in [4u64, 200] {
            let mut t = VmaTree::new();
            for k in 0..n {
                let v = Vma::anon(k * 0x4000, k * 0x4000 + 0x2000, Prot::RW, VmFlags::NONE);
                t.insert_at(k as usize, v).unwrap();
            }
            let (bytes, data) = (t.bytes(), t.data_bytes());
            let v = *t.get(1).unwrap();
            let low = Vma { end: 0x5000, ..v };
            let high = Vma {
                start: 0x5000,
                prot: Prot::READ,
                ..v
            };
            t.split_at(1, low, high).unwrap();
            assert_eq!((t.bytes(), t.data_bytes()), (bytes, data - 0x1000));
            assert_eq!(
                t.get(2).map(|a| (a.start, a.prot)),
                Some((0x5000, Prot::READ))
            );
            // Both parts with new rights.
            let v = Vma {
                prot: Prot::READ,
                ..*t.get(3).unwrap()
            };
            let (low, high) = (Vma { end: 0x9000, ..v }, Vma { start: 0x9000, ..v });
            t.split_at(3, low, high).unwrap();
            assert_eq!((t.bytes(), t.data_bytes()), (bytes, data - 0x3000));
        }
    }

    #[test]
    fn an_area_replaced_in_place_is_the_hot_one() {
        let mut t = VmaTree::new();
        for k in 0..4 {
            t.insert_at(k as usize, area(k)).unwrap();
        }
        t.find_hot(area(0).start);
        let new = Vma {
            prot: Prot::RW,
            ..area(2)
        };
        t.replace_at(2, new);
        assert_eq!((t.hot.pos, t.hot.vma), (2, new));
        assert_eq!(
            t.find_hot(new.start).map(|(i, v)| (i, v.prot)),
            Some((2, Prot::RW))
        );
        assert_eq!(t.find_hot(area(0).start).map(|(i, _)| i), Some(0));
    }

    #[test]
    fn hot_area_is_dropped_by_every_change_to_the_tree() {
        for n in [3, 100] {
            let k = n - 2;
            let addr = k * 0x2000;
            let mut t = tree_of(n);
            t.find_hot(addr);
            t.update(k as usize, |v| v.end += 0x800);
            assert_eq!(t.get(k as usize).map(|v| v.end), Some(addr + 0x1800));
            assert_eq!(t.find_hot(addr + 0x1400).map(|(i, _)| i), Some(k as usize));

            grow_to(&mut t, k as usize, addr + 0x1c00);
            assert_eq!(
                t.find_hot(addr + 0x1a00).map(|(_, v)| v.end),
                Some(addr + 0x1c00)
            );
            // A growth keeps the copy, grown with its area.
            assert_eq!(t.hot.vma.end, addr + 0x1c00);
            grow_to(&mut t, k as usize, addr + 0x1e00);
            assert_eq!(
                t.find_hot(addr + 0x1d00).map(|(i, v)| (i, v.end)),
                Some((k as usize, addr + 0x1e00))
            );
            // Another area's growth leaves the copy as it was.
            grow_to(&mut t, k as usize - 1, (k - 1) * 0x2000 + 0x1800);
            assert_eq!(t.hot.pos, k as usize);
            assert_eq!(
                t.get(k as usize - 1).map(|v| v.end),
                Some((k - 1) * 0x2000 + 0x1800)
            );

            let mut last = 6;
            t.attach_anon(k as usize, &mut last);
            assert_eq!(t.get(k as usize).map(|v| v.anon), Some(7));
            assert_eq!(t.find_hot(addr).map(|(_, v)| v.anon), Some(7));

            // Positions move: the copy must not answer for the old one.
            t.remove_at(0);
            assert_eq!(t.get(k as usize).map(|v| v.start), Some((k + 1) * 0x2000));
            assert_eq!(t.find_hot(addr).map(|(i, _)| i), Some(k as usize - 1));
            t.insert_at(0, area(0)).unwrap();
            assert_eq!(
                t.get(k as usize - 1).map(|v| v.start),
                Some((k - 1) * 0x2000)
            );
            assert_eq!(t.find_hot(addr).map(|(i, _)| i), Some(k as usize));

            t.clear();
            assert_eq!(t.get(k as usize), None);
            assert_eq!(t.find_hot(addr), None);
        }
    }

    #[test]
    fn an_empty_tree_takes_a_loose_leaf_whole_and_a_one_leaf_tree_copies_it() {
        let append = |t: &mut VmaTree, l: &mut LooseLeaf| {
            let sum = |(b, d), v| (b + weight(v).0, d + weight(v).1);
            let w = l.areas().iter().fold((0, 0), sum);
            t.append_leaf(l, w)
        };
        let mut leaf = LooseLeaf::new();
        assert!((0..3).all(|k| leaf.push(area(k))));
        let mut t = VmaTree::new();
        assert!(append(&mut t, &mut leaf));
        assert!(leaf.areas().is_empty());
        assert_eq!(leaf.0.capacity(), 0, "the tree took the vector");
        assert_eq!((t.len(), t.bytes()), (3, 3 * 0x1000));
        assert!(t.is_hot(2), "the last area is the hot one");
        assert_eq!(
            t.find_hot(area(2).start).map(|(i, v)| (i, *v)),
            Some((2, area(2)))
        );
        // A second batch is copied into the leaf; the loose one keeps its
        // vector for more.
        assert!((3..5).all(|k| leaf.push(area(k))));
        assert!(append(&mut t, &mut leaf));
        assert!(leaf.areas().is_empty() && leaf.0.capacity() == LEAF_CAP);
        assert_eq!(
            t.iter().copied().collect::<Vec<_>>(),
            (0..5).map(area).collect::<Vec<_>>()
        );
        assert!(t.is_hot(4));
        // A leaf holds at most LEAF_CAP areas, and a tree leaf without room
        // for a batch takes none of it.
        assert!((5..LEAF_CAP as u64 + 5).all(|k| leaf.push(area(k))));
        assert!(
            !leaf.push(area(LEAF_CAP as u64 + 5)),
            "the loose leaf is full"
        );
        assert!(!append(&mut t, &mut leaf));
        assert_eq!(
            (t.len(), leaf.areas().len()),
            (5, LEAF_CAP),
            "nothing changed"
        );
    }

    #[test]
    fn make_hot_keeps_the_area_hot_until_the_next_change() {
        for n in [3, 100] {
            let mut t = tree_of(n);
            let new = area(n);
            t.insert_at(usize::MAX, new).unwrap();
            let at = n as usize;
            t.make_hot(at);
            assert_eq!(t.hot.pos, at);
            assert_eq!(t.get(at), Some(&new), "placed last, as insert_at places it");
            let hit = t.find_hot(new.start).map(|(i, v)| (i, *v));
            assert_eq!(hit, Some((at, new)));
            t.remove_at(0);
            assert_eq!(t.get(at), None, "the copy went with the change");
            assert_eq!(t.find_hot(new.start).map(|(i, _)| i), Some(at - 1));
        }
    }

    /// [`VmaTree::grow_anon`] of `t` by the anonymous area `more`.
    fn grow(t: &mut VmaTree, more: &Vma, floor: u64, room: u64) -> bool {
        let like = (more.prot, more.flags);
        t.grow_anon(more.start, more.end, like, floor, room)
    }

    /// Grow the area at position `i` to end at `end` with
    /// [`VmaTree::grow_anon`].
    fn grow_to(t: &mut VmaTree, i: usize, end: u64) {
        let v = *t.get(i).unwrap();
        let more = Vma {
            start: v.end,
            end,
            ..v
        };
        assert!(grow(t, &more, 0, 0), "{i}: {v:?} to {end:#x}");
    }

    /// An area that grows at the end of a leaf must be found by the next
    /// lookup of its new part, wherever the finger was left (its `low`
    /// was the area's old end).
    #[test]
    fn an_area_grown_at_a_leaf_end_is_found_after_a_lookup_in_the_next_leaf() {
        for k in 0..99u64 {
            for grow in [true, false] {
                let mut t = tree_of(100);
                t.seek((k + 1) * 0x2000);
                let new_end = k * 0x2000 + 0x1800;
                if grow {
                    grow_to(&mut t, k as usize, new_end);
                } else {
                    t.update(k as usize, |v| v.end = new_end);
                }
                let (i, v) = t.seek(k * 0x2000 + 0x1400);
                assert_eq!((i, v.map(|v| v.end)), (k as usize, Some(new_end)), "{k}");
                let hot = t.find_hot(k * 0x2000 + 0x1400).map(|(i, _)| i);
                assert_eq!(hot, Some(k as usize));
            }
        }
    }

    #[test]
    fn a_cloned_tree_keeps_no_hot_area_of_its_own_to_go_stale() {
        let mut t = tree_of(3);
        t.find_hot(0x10);
        let mut c = t.try_clone().unwrap();
        c.update(0, |v| v.end = 0x1800);
        assert_eq!(c.get(0).map(|v| v.end), Some(0x1800));
        assert_eq!(t.get(0).map(|v| v.end), Some(0x1000));
    }

    fn rw(start: u64, end: u64) -> Vma {
        Vma::anon(start, end, Prot::RW, VmFlags::NONE)
    }

    #[test]
    fn grow_anon_grows_the_area_ending_at_the_start_when_there_is_room() {
        let mut t = VmaTree::new();
        t.insert_at(0, rw(0x1000, 0x2000)).unwrap();
        t.insert_at(1, rw(0x10_000, 0x11_000)).unwrap();
        assert!(grow(&mut t, &rw(0x2000, 0x4000), 0, 0x1000));
        assert_eq!((t.get(0).unwrap().end, t.bytes()), (0x4000, 0x4000));
        assert_eq!(t.data_bytes(), 0x4000);
        assert!(!grow(&mut t, &rw(0x4000, 0xf001), 0, 0x1000), "no gap left");
        assert!(!grow(&mut t, &rw(0x4000, 0x5000), 0x2000, 0), "below floor");
        let ro = Vma::anon(0x4000, 0x5000, Prot::READ, VmFlags::NONE);
        assert!(!grow(&mut t, &ro, 0, 0), "cannot merge");
        assert!(
            !grow(&mut t, &rw(0x5000, 0x6000), 0, 0),
            "nothing ends there"
        );
        assert!(
            grow(&mut t, &rw(0x11_000, 0x20_000), 0, 0x1000),
            "last area"
        );
        assert_eq!(t.get(0).unwrap().end, 0x4000);
        assert_eq!(t.seek(0x1f_fff).0, 1);
    }

    #[test]
    fn grow_anon_grows_an_anonymous_area_with_memory_attached_but_no_file_area() {
        let mut t = VmaTree::new();
        let file = Vma {
            backing: Backing::File {
                file: 1,
                offset: 0,
                data_end: u64::MAX,
            },
            ..rw(0x1000, 0x2000)
        };
        t.insert_at(0, file).unwrap();
        t.insert_at(
            1,
            Vma {
                anon: 7,
                ..rw(0x4000, 0x5000)
            },
        )
        .unwrap();
        assert!(!grow(&mut t, &rw(0x2000, 0x3000), 0, 0), "a file area");
        assert!(grow(&mut t, &rw(0x5000, 0x6000), 0, 0));
        assert_eq!(t.get(1).map(|a| (a.end, a.anon)), Some((0x6000, 7)));
        assert_eq!((t.bytes(), t.data_bytes()), (0x3000, 0x3000));
    }

    #[test]
    fn grow_anon_finds_the_area_when_its_position_moved_since_the_last_growth() {
        let mut t = VmaTree::new();
        t.insert_at(0, rw(0x10_000, 0x11_000)).unwrap();
        assert!(grow(&mut t, &rw(0x11_000, 0x12_000), 0, 0));
        t.insert_at(0, rw(0x1000, 0x2000)).unwrap();
        assert!(grow(&mut t, &rw(0x2000, 0x3000), 0, 0));
        assert!(grow(&mut t, &rw(0x12_000, 0x13_000), 0, 0));
        let ends: Vec<u64> = t.iter().map(|v| v.end).collect();
        assert_eq!(ends, vec![0x3000, 0x13_000]);
    }

    #[test]
    fn pair_is_the_two_areas_get_finds_in_any_tree() {
        for n in [4u64, 200] {
            let mut t = tree_of(n);
            t.find_hot(area(1).start);
            for i in [0, 1, n as usize - 2, n as usize - 1, n as usize] {
                assert_eq!(t.pair(i), (t.get(i), t.get(i + 1)), "{n} areas, at {i}");
            }
        }
    }

    #[test]
    fn around_is_the_three_areas_get_finds_in_any_tree() {
        for n in [4u64, 200] {
            let mut t = tree_of(n);
            t.find_hot(area(1).start);
            for i in [0, 1, 41, 42, n as usize - 2, n as usize - 1, n as usize] {
                let prev = i.checked_sub(1).and_then(|p| t.get(p));
                let want = [prev, t.get(i), t.get(i + 1)];
                assert_eq!(t.around(i), want, "{n} areas, at {i}");
            }
        }
    }

    #[test]
    fn hint_growth_points_grow_anon_at_the_area_in_its_leaf() {
        // A deep tree: the hint is the area's position in its leaf.
        let mut t = tree_of(2000);
        let k = 1500u64;
        let v = area(k);
        t.hint_growth(k as usize);
        let (leaf, base) = t.leaf_of(k as usize);
        assert!(base > 0 && leaf[t.grown].start == v.start);
        let grown = Vma {
            start: v.end,
            end: v.end + 0x800,
            ..v
        };
        assert!(grow(&mut t, &grown, 0, 0));
        assert_eq!(t.get(k as usize).map(|a| a.end), Some(v.end + 0x800));
        // A stale hint (another area) only costs the search.
        t.hint_growth(3);
        let more = Vma {
            start: v.end + 0x800,
            end: v.end + 0x1000,
            ..v
        };
        assert!(grow(&mut t, &more, 0, 0));
        assert_eq!(t.get(k as usize).map(|a| a.end), Some(v.end + 0x1000));
        // One leaf: the position is the index; past the end, no harm.
        let mut t = tree_of(4);
        t.hint_growth(2);
        assert_eq!(t.grown, 2);
        t.hint_growth(9);
        let last = Vma {
            start: 0x7000,
            end: 0x8000,
            ..area(3)
        };
        assert!(grow(&mut t, &last, 0, 0));
        assert_eq!(t.get(3).map(|a| a.end), Some(0x8000));
    }

    #[test]
    fn grow_anon_in_a_deep_tree_raises_the_summaries_and_forgets_a_stale_finger() {
        let mut t = VmaTree::new();
        let n = 2000u64;
        for k in 0..n {
            t.insert_at(k as usize, area(k)).unwrap();
        }
        let Some(Node::Leaf(first)) = t.root.as_ref().map(|r| {
            let mut n = r;
            while let Node::Inner(k) = n {
                n = &k[0].node;
            }
            n
        }) else {
            panic!("a leaf")
        };
        // The last area of the first leaf, and the finger on the next leaf.
        let k = first.len() as u64 - 1;
        let v = area(k);
        assert_eq!(t.seek(v.end + 0x1000 + 1).0, k as usize + 1);
        let grown = Vma {
            start: v.end,
            end: v.end + 0x800,
            ..v
        };
        assert!(!grow(&mut t, &grown, 0, 0x1000), "unaligned end: no room");
        let grown = Vma {
            end: v.end + 0x1000,
            ..grown
        };
        assert!(grow(&mut t, &grown, 0, 0));
        let (i, found) = t.seek(v.end + 0x800);
        assert_eq!(
            (i, found.map(|a| a.end)),
            (k as usize, Some(v.end + 0x1000))
        );
        assert_eq!(t.seek(v.end + 0x1000).0, k as usize + 1);
        assert_eq!(t.bytes(), n * 0x1000 + 0x1000);
        assert_eq!(t.root.as_ref().unwrap().summary().end, area(n - 1).end);
    }

    /// Appending past a full tree starts a chain of only children down to
    /// a one-area leaf; removing that area must take the whole chain away,
    /// leaving no empty node whose summary (ending at 0) misleads the gap
    /// search.
    #[test]
    fn removing_the_area_appended_past_a_full_tree_leaves_no_empty_node() {
        fn no_empty_node(n: &Node) -> bool {
            match n {
                Node::Leaf(v) => !v.is_empty(),
                Node::Inner(k) => !k.is_empty() && k.iter().all(|c| no_empty_node(&c.node)),
            }
        }
        for full in [LEAF_CAP * INNER_CAP, LEAF_CAP * INNER_CAP * INNER_CAP] {
            let mut t = tree_of(full as u64 + 1);
            assert_eq!(t.remove_at(full), Some(area(full as u64)));
            assert!(no_empty_node(t.root.as_ref().unwrap()), "{full} areas");
            let last = area(full as u64 - 1);
            assert_eq!(t.root.as_ref().unwrap().summary().end, last.end);
            assert_eq!(
                t.find_gap_top_down(0x1000, 0, last.start),
                Some(last.start - 0x1000)
            );
            assert_eq!(
                t.find_gap_top_down(0x2000, 0, last.end + 0x2000),
                Some(last.end)
            );
            assert_eq!(t.find_gap_top_down(0x2000, 0, last.end + 0x1000), None);
        }
    }

    fn count_nodes(n: &Node) -> usize {
        match n {
            Node::Leaf(_) => 1,
            Node::Inner(k) => 1 + k.iter().map(|c| count_nodes(&c.node)).sum::<usize>(),
        }
    }
}

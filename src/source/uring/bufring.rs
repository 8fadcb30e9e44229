//! The provided-buffer ring of one io_uring worker (part of the `uring` module: `unsafe` inside).
//!
//! `count` buffers of `buf_size` bytes and the ring of entries the kernel picks them from. A
//! completion names the buffer it filled; `get` reads it and `push` gives it back.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{types, IoUring};

use super::BUF_GROUP;

/// The provided-buffer ring: `RING_BUFFERS` buffers of `buf_size` bytes, shared with the kernel.
pub(super) struct BufRing {
    entries: *mut types::BufRingEntry,
    entries_layout: std::alloc::Layout,
    bufs: *mut u8,
    bufs_layout: std::alloc::Layout,
    buf_size: usize,
    tail: u16,
}

impl BufRing {
    pub(super) fn new(ring: &IoUring, count: u16, buf_size: usize) -> io::Result<BufRing> {
        let entries_layout = std::alloc::Layout::from_size_align(count as usize * 16, 4096)
            .map_err(io::Error::other)?;
        let bufs_layout = std::alloc::Layout::from_size_align(count as usize * buf_size, 4096)
            .map_err(io::Error::other)?;
        // SAFETY: both layouts have non-zero size (count ≥ 1, buf_size ≥ 64).
        let (entries, bufs) = unsafe {
            (
                std::alloc::alloc_zeroed(entries_layout) as *mut types::BufRingEntry,
                std::alloc::alloc(bufs_layout),
            )
        };
        if entries.is_null() || bufs.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut br = BufRing {
            entries,
            entries_layout,
            bufs,
            bufs_layout,
            buf_size,
            tail: 0,
        };
        // SAFETY: `entries` is page-aligned memory of `count` entries that lives until `self` is
        // dropped, and `Worker` drops the ring (unregistering the group) before the BufRing.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, BUF_GROUP, 0)?;
        }
        for bid in 0..count {
            br.push(bid);
        }
        br.publish();
        Ok(br)
    }

    fn mask(&self) -> u16 {
        (self.entries_layout.size() / 16 - 1) as u16
    }

    /// Put buffer `bid` back at the ring's tail (visible to the kernel after `publish`).
    pub(super) fn push(&mut self, bid: u16) {
        let idx = (self.tail & self.mask()) as usize;
        // SAFETY: idx ≤ mask < count, so the entry is inside the allocation; the kernel only
        // reads entries between its head and our published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.entries.add(idx) };
        // SAFETY: bid < count, so the buffer lies inside `bufs`.
        entry.set_addr(unsafe { self.bufs.add(bid as usize * self.buf_size) } as u64);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    pub(super) fn publish(&self) {
        // SAFETY: the tail field of entry 0 is a u16 shared with the kernel; it is written only
        // here, with release ordering so the entries above are visible before the new tail.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The bytes a completion put in buffer `bid`.
    pub(super) fn get(&self, bid: u16, len: usize) -> &[u8] {
        assert!((bid as usize) < self.entries_layout.size() / 16 && len <= self.buf_size);
        // SAFETY: in bounds (asserted); the kernel wrote `len` bytes and will not touch this
        // buffer again until we push it back.
        unsafe { std::slice::from_raw_parts(self.bufs.add(bid as usize * self.buf_size), len) }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the ring that used them is gone.
        unsafe {
            std::alloc::dealloc(self.entries as *mut u8, self.entries_layout);
            std::alloc::dealloc(self.bufs, self.bufs_layout);
        }
    }
}

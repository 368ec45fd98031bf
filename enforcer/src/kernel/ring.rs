//! At-least-once reading of the kernel's `EVENTS` ring buffer (`BPF_MAP_TYPE_RINGBUF`).
//!
//! Nothing may be lost between the kernel and the audit log, a daemon killed with SIGKILL
//! included. So taking records and telling the kernel they are consumed are two steps:
//! [`EventRing::read`] walks the committed records from a read position kept in memory, without
//! touching the kernel's consumer position; [`EventRing::release`] publishes the read position
//! as the consumer position, which the caller does once everything read is in the audit log. A
//! daemon killed in between leaves the consumer position where its last release put it; the
//! ring buffer is pinned, so the next daemon reads those records again. Duplicates are possible,
//! loss is not. Every record is identified by its position in the ring (a byte offset that only
//! grows while the map exists), so a record read twice is recognisable (`ring_pos` in the log).
//!
//! Why not aya's `RingBuf`: its `next()` hands out one `RingBufItem` at a time and the item's
//! `Drop` stores the new consumer position (aya 0.14, `maps/ring_buf.rs`, `ConsumerPos::consume`).
//! There is no way to read a batch and advance later, or to learn a record's position.
//!
//! The kernel's layout (`kernel/bpf/ringbuf.c`), mapped from the map's fd:
//! - file offset 0, one page, read-write: `consumer_pos` (an `unsigned long`), the only thing
//!   user space may write;
//! - file offset one page, read-only: one page holding `producer_pos`, then the data pages,
//!   mapped twice in a row, so a record that wraps around the end is contiguous in memory;
//! - a record is an 8-byte header (`u32 len` with `BPF_RINGBUF_BUSY_BIT` while the producer still
//!   writes it and `BPF_RINGBUF_DISCARD_BIT` if it was discarded, then a `u32` page offset only
//!   the kernel uses), then `len` bytes, the whole rounded up to 8 bytes. Positions are byte
//!   counts that never wrap in practice (64 bits); the offset in the data area is `pos & mask`.
//!
//! Ordering, paired with the kernel's side: `producer_pos` is loaded with Acquire (the kernel
//! stores it with release after writing the new record's busy header); a header is loaded with
//! Acquire (the kernel clears the busy bit with a fully ordered `xchg` after writing the data);
//! `consumer_pos` is stored with Release (the kernel loads it with acquire before reusing space),
//! so every read of a record happens before the kernel may overwrite it.
//!
//! The daemon polls on a timer, not epoll: no wakeup bookkeeping is needed (the kernel's poll is
//! level-triggered on `producer_pos - consumer_pos` anyway).

use std::{
    os::fd::{AsFd, AsRawFd},
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

/// Bits of a record header's `len` (include/uapi/linux/bpf.h).
const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
/// `BPF_RINGBUF_HDR_SZ`.
const HEADER_BYTES: u64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("mapping the ring buffer: {0}")]
    Map(String),
    #[error("ring buffer corrupt at position {pos}: {what}")]
    Corrupt { pos: u64, what: String },
}

/// One `mmap` of the map's fd, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(fd: i32, len: usize, writable: bool, offset: usize) -> Result<Mapping, RingError> {
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: a fresh shared mapping of a ring buffer map fd; the kernel checks the length and
        // the offset (and refuses a writable mapping of anything but the consumer page).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(RingError::Map(format!(
                "mmap of {len} bytes at {offset}: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range mmap returned; nothing borrows it past the EventRing.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// SAFETY: the mappings are plain shared memory; all access goes through &self/&mut self of the
// EventRing and atomics where the kernel writes concurrently.
unsafe impl Send for Mapping {}

/// The consumer side of the ring buffer, owned by one reader (the daemon).
pub struct EventRing {
    consumer: Mapping,
    producer: Mapping,
    page: usize,
    mask: u64,
    /// Next record to read (in memory only).
    read_pos: u64,
    /// What the kernel's consumer position holds (the last release).
    released_pos: u64,
}

impl EventRing {
    /// Map the ring buffer behind `fd` (`size`: its data size, the map's max_entries). Reading
    /// starts at the kernel's consumer position: records a previous reader did not release are
    /// read again.
    pub fn new(fd: impl AsFd, size: u32) -> Result<EventRing, RingError> {
        let fd = fd.as_fd().as_raw_fd();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let size = size as usize;
        if !size.is_power_of_two() || !size.is_multiple_of(page) {
            return Err(RingError::Map(format!(
                "data size {size} is not a power-of-two multiple of the page size"
            )));
        }
        let consumer = Mapping::new(fd, page, true, 0)?;
        let producer = Mapping::new(fd, page + 2 * size, false, page)?;
        let mut ring = EventRing {
            consumer,
            producer,
            page,
            mask: size as u64 - 1,
            read_pos: 0,
            released_pos: 0,
        };
        ring.released_pos = ring.consumer_pos().load(Ordering::Acquire);
        ring.read_pos = ring.released_pos;
        Ok(ring)
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page is page-aligned, writable and lives as long as self; the
        // kernel accesses it atomically too.
        unsafe { AtomicU64::from_ptr(self.consumer.ptr.cast()) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: as above, read-only: only loads.
        unsafe { AtomicU64::from_ptr(self.producer.ptr.cast()) }
    }

    /// Visit, in order, up to `max` records the kernel has committed since the last read:
    /// `visit(position, bytes)`. Stops early at a record the producer is still writing. Nothing
    /// is released: the bytes stay valid, and are read again by a reader started later, until
    /// [`EventRing::release`]. Returns how many records were visited.
    pub fn read(
        &mut self,
        max: usize,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<usize, RingError> {
        let prod = self.producer_pos().load(Ordering::Acquire);
        // SAFETY: the data pages follow the producer page and are mapped twice (2 * size bytes).
        let data = unsafe { self.producer.ptr.add(self.page) };
        // SAFETY: `data` spans 2 * (mask + 1) bytes, 8-aligned; committed records stay unchanged
        // until released, which only this reader does.
        let (pos, n) = unsafe { scan(data, self.mask, self.read_pos, prod, max, visit) }?;
        self.read_pos = pos;
        Ok(n)
    }

    /// Everything read so far has been handled: let the kernel reuse its space.
    pub fn release(&mut self) {
        if self.released_pos != self.read_pos {
            self.consumer_pos().store(self.read_pos, Ordering::Release);
            self.released_pos = self.read_pos;
        }
    }

    /// The kernel's consumer position when this reader started or last released.
    pub fn released_pos(&self) -> u64 {
        self.released_pos
    }

    /// Bytes read but not released yet.
    pub fn unreleased_bytes(&self) -> u64 {
        self.read_pos - self.released_pos
    }
}

/// Walk records from `pos` towards `prod` over a double-mapped data area of `mask + 1` bytes.
/// Returns the position after the last record visited (or skipped: discarded) and the count.
///
/// # Safety
/// `data` must be valid for reads of `2 * (mask + 1)` bytes, 8-aligned, with the second half
/// mirroring the first, and committed records in `[pos, prod)` must not change during the call.
unsafe fn scan(
    data: *const u8,
    mask: u64,
    mut pos: u64,
    prod: u64,
    max: usize,
    visit: &mut dyn FnMut(u64, &[u8]),
) -> Result<(u64, usize), RingError> {
    let size = mask + 1;
    let pending = prod.wrapping_sub(pos);
    if pending > size || !pending.is_multiple_of(8) {
        return Err(RingError::Corrupt {
            pos,
            what: format!(
                "producer position {prod} is not within one ring ({size} bytes) after it"
            ),
        });
    }
    let mut visited = 0;
    while pos != prod && visited < max {
        let offset = (pos & mask) as usize;
        // SAFETY: offset < size and headers are 8-aligned; the kernel writes headers atomically.
        let header =
            unsafe { AtomicU32::from_ptr(data.add(offset) as *mut u32) }.load(Ordering::Acquire);
        if header & BUSY_BIT != 0 {
            // Reserved, not committed yet: records after it must wait (they are read in order).
            break;
        }
        let len = u64::from(header & !(BUSY_BIT | DISCARD_BIT));
        let total = (HEADER_BYTES + len).next_multiple_of(8);
        if total > prod.wrapping_sub(pos) {
            return Err(RingError::Corrupt {
                pos,
                what: format!("a record of {len} bytes runs past the producer position {prod}"),
            });
        }
        if header & DISCARD_BIT == 0 {
            // SAFETY: the record lies within [pos, prod), at most `size` bytes from `offset`: inside
            // the double mapping.
            let bytes = unsafe {
                std::slice::from_raw_parts(data.add(offset + HEADER_BYTES as usize), len as usize)
            };
            visit(pos, bytes);
            visited += 1;
        }
        pos = pos.wrapping_add(total);
    }
    Ok((pos, visited))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the fake ring's scan returns: where it stopped and each record (position, bytes).
    type Scanned = (u64, Vec<(u64, Vec<u8>)>);

    /// A fake ring: a data area of `size` bytes mapped twice (kept mirrored by hand), positions
    /// as the kernel assigns them.
    struct FakeRing {
        words: Vec<u64>,
        size: u64,
        prod: u64,
    }

    impl FakeRing {
        fn new(size: u64) -> FakeRing {
            FakeRing {
                words: vec![0; (2 * size / 8) as usize],
                size,
                prod: 0,
            }
        }

        fn start_at(size: u64, pos: u64) -> FakeRing {
            FakeRing {
                prod: pos,
                ..FakeRing::new(size)
            }
        }

        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: u64 storage viewed as bytes (alignment 8 is what the headers need).
            unsafe {
                std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.words.len() * 8)
            }
        }

        fn put(&mut self, at: u64, byte: u8) {
            let (size, i) = (self.size, (at & (self.size - 1)) as usize);
            let b = self.bytes();
            b[i] = byte;
            b[i + size as usize] = byte;
        }

        /// Reserve and write a record like bpf_ringbuf_output; `flags` are header bits left set.
        fn push(&mut self, payload: &[u8], flags: u32) -> u64 {
            let pos = self.prod;
            let header = (payload.len() as u32 | flags).to_le_bytes();
            for (i, b) in header.iter().chain([0u8; 4].iter()).enumerate() {
                self.put(pos + i as u64, *b);
            }
            for (i, b) in payload.iter().enumerate() {
                self.put(pos + 8 + i as u64, *b);
            }
            self.prod = pos + (8 + payload.len() as u64).next_multiple_of(8);
            pos
        }

        fn set_header(&mut self, pos: u64, header: u32) {
            for (i, b) in header.to_le_bytes().iter().enumerate() {
                self.put(pos + i as u64, *b);
            }
        }

        fn scan(&mut self, from: u64, max: usize) -> Result<Scanned, RingError> {
            let (mask, prod) = (self.size - 1, self.prod);
            let mut seen = Vec::new();
            let data = self.bytes().as_ptr();
            // SAFETY: the fake ring upholds scan's contract.
            let (pos, n) = unsafe {
                scan(data, mask, from, prod, max, &mut |p, b| {
                    seen.push((p, b.to_vec()))
                })
            }?;
            assert_eq!(n, seen.len());
            Ok((pos, seen))
        }
    }

    #[test]
    fn reads_records_in_order_with_their_positions_and_8_byte_padding() {
        let mut ring = FakeRing::new(256);
        let a = ring.push(b"abc", 0);
        let b = ring.push(b"0123456789", 0);
        let c = ring.push(b"", 0);
        assert_eq!(
            (a, b, c),
            (0, 16, 40),
            "header 8 bytes, records padded to 8"
        );
        let (pos, seen) = ring.scan(0, usize::MAX).unwrap();
        assert_eq!(pos, ring.prod);
        assert_eq!(
            seen,
            vec![
                (0, b"abc".to_vec()),
                (16, b"0123456789".to_vec()),
                (40, vec![])
            ]
        );
    }

    #[test]
    fn a_record_wrapping_around_the_end_is_read_whole_through_the_double_mapping() {
        // Start near the end of a 64-byte ring, as after a long run of a pinned ring buffer.
        let start = 10 * 64 + 48;
        let mut ring = FakeRing::start_at(64, start);
        let p = ring.push(b"wrapping-payload", 0); // 8 + 16 bytes from offset 48: wraps
        assert_eq!(p, start);
        let (pos, seen) = ring.scan(start, usize::MAX).unwrap();
        assert_eq!(seen, vec![(start, b"wrapping-payload".to_vec())]);
        assert_eq!(pos, start + 24);
    }

    #[test]
    fn reading_stops_at_a_record_still_being_written_and_resumes_after_its_commit() {
        let mut ring = FakeRing::new(256);
        ring.push(b"one", 0);
        let busy = ring.push(b"two", BUSY_BIT);
        ring.push(b"three", 0);
        let (pos, seen) = ring.scan(0, usize::MAX).unwrap();
        assert_eq!(
            (pos, seen.len()),
            (busy, 1),
            "nothing past a busy record may be read"
        );
        ring.set_header(busy, 3);
        let (pos, seen) = ring.scan(pos, usize::MAX).unwrap();
        assert_eq!(pos, ring.prod);
        assert_eq!(
            seen.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
            vec![b"two".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn discarded_records_are_skipped_but_consumed() {
        let mut ring = FakeRing::new(256);
        ring.push(b"gone", DISCARD_BIT);
        let kept = ring.push(b"kept", 0);
        let (pos, seen) = ring.scan(0, usize::MAX).unwrap();
        assert_eq!(pos, ring.prod);
        assert_eq!(seen, vec![(kept, b"kept".to_vec())]);
    }

    #[test]
    fn a_bounded_read_continues_where_it_stopped_and_rereading_from_a_position_repeats_it() {
        let mut ring = FakeRing::new(128);
        let positions: Vec<u64> = (0..5u8).map(|i| ring.push(&[i; 5], 0)).collect();
        let (mid, first) = ring.scan(0, 2).unwrap();
        let (end, rest) = ring.scan(mid, usize::MAX).unwrap();
        assert_eq!(end, ring.prod);
        let all: Vec<u64> = first.iter().chain(&rest).map(|(p, _)| *p).collect();
        assert_eq!(all, positions);
        // A reader restarted at an unreleased position sees the same records at the same positions.
        let (_, again) = ring.scan(0, usize::MAX).unwrap();
        assert_eq!(again.iter().map(|(p, _)| *p).collect::<Vec<_>>(), positions);
    }

    #[test]
    fn positions_keep_growing_over_many_laps_of_the_ring() {
        let mut ring = FakeRing::new(64);
        let mut pos = 0;
        for lap in 0..100u32 {
            let payload = lap.to_le_bytes();
            let at = ring.push(&payload, 0);
            let (next, seen) = ring.scan(pos, usize::MAX).unwrap();
            assert_eq!(seen, vec![(at, payload.to_vec())]);
            pos = next;
        }
        assert_eq!(pos, 100 * 16);
    }

    #[test]
    fn inconsistent_positions_and_lengths_are_errors_not_reads_out_of_bounds() {
        let mut ring = FakeRing::new(64);
        ring.push(b"x", 0);
        assert!(
            matches!(ring.scan(ring.prod + 8, 1), Err(RingError::Corrupt { .. })),
            "reader ahead of the producer"
        );
        ring.prod = 200;
        assert!(
            matches!(ring.scan(0, 1), Err(RingError::Corrupt { .. })),
            "more than one ring pending"
        );
        let mut ring = FakeRing::new(64);
        let at = ring.push(b"x", 0);
        ring.set_header(at, 60);
        assert!(
            matches!(ring.scan(0, 1), Err(RingError::Corrupt { .. })),
            "length past the producer"
        );
    }
}

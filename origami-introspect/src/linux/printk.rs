//! The kernel log: the records of the lockless printk ring buffer of Linux 5.10 and later
//! (`kernel/printk/printk_ringbuffer.[ch]`), as `dmesg` shows them.
//!
//! The ring (`*prb`) is two rings: descriptors (`desc_ring.descs`, each a state word and the
//! logical position of its text, with `desc_ring.infos` beside them holding sequence number,
//! time stamp, level and text length) and the text data ring, where each record's text is a
//! block headed by its descriptor id. Records are read from the tail descriptor to the head
//! one, in sequence order. As the kernel's own reader does, a descriptor is used only when
//! its state word carries the id asked for and a `committed` or `finalized` state (a record a
//! writer is still filling, or one already given back for reuse, is skipped and counted; a
//! committed record is the last one, which the kernel might still extend, and is kept: on a
//! panicked kernel it is the last words). A text block is used only when its logical
//! positions are aligned and describe a block inside the ring (wrapping blocks keep their
//! text at the ring's start), when it is long enough for the record's text and when it is
//! headed by the record's own id; anything else counts as invalid, never as text. On live
//! memory the descriptor is read again after its text and the record dropped if it changed.
//!
//! As `dmesg` does, a record whose text holds newlines becomes one frame item per line (all
//! with the record's sequence number, time, level and facility; see [`lines_of`]).
//!
//! Limits: the 5.10+ ring only (earlier kernels' `log_buf` of `struct printk_log` records is
//! not read); the record's device info (`SUBSYSTEM=`, `DEVICE=`) and caller id are not
//! read. Every walk is bounded by the ring's own size and by [`MAX_RECORDS`] and
//! [`MAX_TEXT_TOTAL`].

use origami_frame::KernelLogRecord;

use super::kernel::Kernel;
use super::kmem::{bad, Kmem};
use super::layout::FieldInfo;
use crate::error::{Error, Result};

/// The most records read.
pub const MAX_RECORDS: u64 = 1 << 22;

/// The most text bytes read over all records.
pub const MAX_TEXT_TOTAL: u64 = 256 << 20;

/// The most errors kept for invalid records (the rest are only counted).
const MAX_ERRORS: usize = 16;

/// `log_buf_len` is at most 2 GiB (`LOG_BUF_LEN_MAX`), so the text ring has at most 2^31
/// bytes and, at no less than 2^5 bytes a record on average, at most 2^26 descriptors.
const MAX_SIZE_BITS: u32 = 31;
const MAX_COUNT_BITS: u32 = 26;

/// The state word: the descriptor id in its low 62 bits, the state in the top two.
const FLAGS_SHIFT: u32 = 62;
const ID_MASK: u64 = (1 << FLAGS_SHIFT) - 1;

/// `enum desc_state` (3 is `desc_reusable`).
const STATE_RESERVED: u64 = 0;
const STATE_COMMITTED: u64 = 1;
const STATE_FINALIZED: u64 = 2;

/// Data-less blocks: text that could not be stored, and an empty text.
const FAILED_LPOS: u64 = 0x1;
const NO_LPOS: u64 = 0x3;

/// Bytes of the id that heads every data block.
const BLOCK_ID: u64 = 8;

/// Records passed over, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// A writer was still filling the descriptor (`reserved`).
    pub reserved: u64,
    /// The descriptor was given back for reuse (`reusable`): its record was dropped.
    pub reusable: u64,
    /// The descriptor holds another id than its place in the walk asks for.
    pub missing: u64,
    /// The record exists but its text was never stored (the ring had no room).
    pub lost_text: u64,
    /// The descriptor or its text block failed a check: torn or corrupt.
    pub invalid: u64,
}

impl Skipped {
    /// All records passed over.
    pub fn total(&self) -> u64 {
        self.reserved + self.reusable + self.missing + self.lost_text + self.invalid
    }
}

/// What [`kernel_log`] reads.
#[derive(Debug, Default)]
pub struct KernelLog {
    /// The records, in sequence order, one item per line of a record's text.
    pub records: Vec<KernelLogRecord>,
    /// Records passed over, by why.
    pub skipped: Skipped,
    /// Why the first invalid records were invalid (at most 16), naming their addresses.
    pub errors: Vec<Error>,
}

/// Where a record's text lies in the data ring, from its block's logical positions (the
/// kernel's `get_data()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// A data-less block for an empty text.
    Empty,
    /// A data-less block: the text was lost.
    Lost,
    /// A block at `index` in the ring, `len` bytes long including its id.
    Block {
        /// Byte index of the block (its id) in the ring.
        index: u64,
        /// Bytes from the block's id to the end of its text and padding.
        len: u64,
    },
}

/// The span of the block `[begin, next)` in a ring of `1 << size_bits` bytes, or why the
/// positions cannot be a block.
pub fn text_span(begin: u64, next: u64, size_bits: u32) -> std::result::Result<Span, String> {
    if begin & 1 == 1 && next & 1 == 1 {
        return Ok(if begin == NO_LPOS && next == NO_LPOS {
            Span::Empty
        } else if begin == FAILED_LPOS && next == FAILED_LPOS {
            Span::Lost
        } else {
            return Err(format!("data-less block {begin:#x}..{next:#x}"));
        });
    }
    if size_bits == 0 || size_bits > MAX_SIZE_BITS {
        return Err(format!("ring of 2^{size_bits} bytes"));
    }
    let size = 1u64 << size_bits;
    let wraps = |lpos: u64| lpos >> size_bits;
    let (index, len) = if wraps(begin) == wraps(next) && begin < next {
        (begin & (size - 1), next - begin)
    } else if wraps(begin.wrapping_add(size)) == wraps(next) {
        // A block that would cross the end of the ring is stored at its start.
        (0, next & (size - 1))
    } else {
        return Err(format!(
            "block {begin:#x}..{next:#x} is not inside the ring"
        ));
    };
    if !begin.is_multiple_of(BLOCK_ID) || !next.is_multiple_of(BLOCK_ID) {
        return Err(format!("block {begin:#x}..{next:#x} is not aligned"));
    }
    if len < BLOCK_ID {
        return Err(format!(
            "block {begin:#x}..{next:#x} has no room for its id"
        ));
    }
    Ok(Span::Block { index, len })
}

/// A record as the frame holds it: one item per line of its text (see
/// [`KernelLogRecord`]), numbered from 0.
pub fn lines_of(r: KernelLogRecord) -> Vec<KernelLogRecord> {
    if !r.message.contains('\n') {
        return vec![r];
    }
    r.message
        .split('\n')
        .zip(0u32..)
        .map(|(text, line)| KernelLogRecord {
            line,
            message: text.to_string(),
            extra: r.extra.clone(),
            ..r
        })
        .collect()
}

/// The `[%5lu.%06lu] ` time prefix `dmesg` puts before every line of a record.
pub fn dmesg_prefix(time_ns: u64) -> String {
    format!(
        "[{:5}.{:06}] ",
        time_ns / 1_000_000_000,
        (time_ns % 1_000_000_000) / 1000
    )
}

/// The lines `dmesg` prints for a record: each line of its text behind the time prefix.
pub fn dmesg_lines(r: &KernelLogRecord) -> Vec<String> {
    let prefix = dmesg_prefix(r.time);
    r.message
        .split('\n')
        .map(|l| format!("{prefix}{l}"))
        .collect()
}

/// The ring's geometry and the layout members a record read needs.
struct Ring {
    descs: u64,
    infos: u64,
    count_bits: u32,
    data: u64,
    size_bits: u32,
    desc_size: u64,
    info_size: u64,
    state_var: FieldInfo,
    begin: FieldInfo,
    next: FieldInfo,
    seq: FieldInfo,
    ts_nsec: FieldInfo,
    text_len: FieldInfo,
    facility: FieldInfo,
    level: FieldInfo,
}

/// The member `f` of a struct read into `buf` (checked to fit when the ring was read).
fn member(buf: &[u8], f: &FieldInfo) -> u64 {
    let at = f.offset as usize;
    f.value_in(
        buf.get(at..at.saturating_add(f.size.min(8) as usize))
            .unwrap_or_default(),
    )
}

impl Ring {
    fn read(k: &Kernel, km: &Kmem<'_>, rb: u64) -> Result<Ring> {
        let l = &k.layout;
        let dr = rb.wrapping_add(l.off("printk_ringbuffer.desc_ring")?);
        let tr = rb.wrapping_add(l.off("printk_ringbuffer.text_data_ring")?);
        let count_bits = km.u32(dr.wrapping_add(l.off("prb_desc_ring.count_bits")?))?;
        let size_bits = km.u32(tr.wrapping_add(l.off("prb_data_ring.size_bits")?))?;
        if count_bits > MAX_COUNT_BITS || size_bits == 0 || size_bits > MAX_SIZE_BITS {
            return Err(bad(
                "printk ring buffer",
                rb,
                format!("2^{count_bits} descriptors, 2^{size_bits} text bytes"),
            ));
        }
        let desc_size = l.sizes.get("prb_desc").copied().unwrap_or(0);
        let info_size = l.sizes.get("printk_info").copied().unwrap_or(0);
        let ring = Ring {
            descs: km.u64(dr.wrapping_add(l.off("prb_desc_ring.descs")?))?,
            infos: km.u64(dr.wrapping_add(l.off("prb_desc_ring.infos")?))?,
            count_bits,
            data: km.u64(tr.wrapping_add(l.off("prb_data_ring.data")?))?,
            size_bits,
            desc_size,
            info_size,
            state_var: l.field("prb_desc.state_var")?,
            begin: l.field("prb_desc.text_blk_lpos.begin")?,
            next: l.field("prb_desc.text_blk_lpos.next")?,
            seq: l.field("printk_info.seq")?,
            ts_nsec: l.field("printk_info.ts_nsec")?,
            text_len: l.field("printk_info.text_len")?,
            facility: l.field("printk_info.facility")?,
            level: l.field("printk_info.level")?,
        };
        // Every member must lie inside its struct, and the structs be of a sane size.
        let fits = |f: &FieldInfo, size: u64| f.offset.saturating_add(f.size) <= size;
        let ok = (8..=4096).contains(&desc_size)
            && (8..=4096).contains(&info_size)
            && [&ring.state_var, &ring.begin, &ring.next]
                .iter()
                .all(|f| fits(f, desc_size) && f.size == 8)
            && [&ring.seq, &ring.ts_nsec]
                .iter()
                .all(|f| fits(f, info_size) && f.size == 8)
            && [&ring.text_len, &ring.facility, &ring.level]
                .iter()
                .all(|f| fits(f, info_size));
        if !ok {
            return Err(Error::Malformed {
                file: "kernel BTF".into(),
                location: "struct prb_desc, struct printk_info".into(),
                what: format!("members do not fit structs of {desc_size} and {info_size} bytes"),
            });
        }
        Ok(ring)
    }

    fn desc(&self, id: u64) -> u64 {
        let idx = id & ((1u64 << self.count_bits) - 1);
        self.descs.wrapping_add(idx.wrapping_mul(self.desc_size))
    }

    fn info(&self, id: u64) -> u64 {
        let idx = id & ((1u64 << self.count_bits) - 1);
        self.infos.wrapping_add(idx.wrapping_mul(self.info_size))
    }
}

/// One record's outcome.
enum Read {
    Record(KernelLogRecord),
    Skip(fn(&mut Skipped)),
    Invalid(Error),
}

/// Reads the record of descriptor `id`: its descriptor, its info and its text block, one
/// read each (and the descriptor's state again on live memory).
fn read_record(km: &Kmem<'_>, ring: &Ring, id: u64) -> Result<Read> {
    let d = ring.desc(id);
    // Both sizes were checked to be at most 4096 bytes.
    let desc = km.bytes(d, ring.desc_size as usize)?;
    let sv = member(&desc, &ring.state_var);
    if sv & ID_MASK != id {
        return Ok(Read::Skip(|s| s.missing += 1));
    }
    match sv >> FLAGS_SHIFT {
        STATE_COMMITTED | STATE_FINALIZED => {}
        STATE_RESERVED => return Ok(Read::Skip(|s| s.reserved += 1)),
        // The only other two-bit state: STATE_REUSABLE.
        _ => return Ok(Read::Skip(|s| s.reusable += 1)),
    }
    let begin = member(&desc, &ring.begin);
    let next = member(&desc, &ring.next);
    let info = km.bytes(ring.info(id), ring.info_size as usize)?;
    let text_len = member(&info, &ring.text_len);
    let text = match text_span(begin, next, ring.size_bits) {
        Ok(Span::Empty) => Vec::new(),
        Ok(Span::Lost) => return Ok(Read::Skip(|s| s.lost_text += 1)),
        Err(why) => return Ok(Read::Invalid(bad("printk descriptor", d, why))),
        Ok(Span::Block { index, len }) => {
            if text_len > len - BLOCK_ID {
                return Ok(Read::Invalid(bad(
                    "printk descriptor",
                    d,
                    format!("text of {text_len} bytes in a block of {}", len - BLOCK_ID),
                )));
            }
            let at = ring.data.wrapping_add(index);
            // text_len is a u16 and within the block, so this read is small and bounded.
            let mut block = km.bytes(at, (BLOCK_ID + text_len) as usize)?;
            let block_id = block
                .get(..BLOCK_ID as usize)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            if block_id != id {
                return Ok(Read::Invalid(bad(
                    "printk text block",
                    at,
                    format!("headed by id {block_id:#x}, not its descriptor's {id:#x}"),
                )));
            }
            block.drain(..BLOCK_ID as usize);
            block
        }
    };
    if km.is_live() && km.u64(d.wrapping_add(ring.state_var.offset))? != sv {
        return Ok(Read::Invalid(bad(
            "printk descriptor",
            d,
            "changed while it was read",
        )));
    }
    Ok(Read::Record(KernelLogRecord {
        seq: member(&info, &ring.seq),
        time: member(&info, &ring.ts_nsec),
        level: (member(&info, &ring.level) & 7) as u8,
        facility: member(&info, &ring.facility) as u8,
        message: String::from_utf8_lossy(&text).into_owned(),
        ..KernelLogRecord::default()
    }))
}

/// Reads every record still in the ring, in sequence order, with what was passed over.
///
/// Fails only when the ring itself cannot be found or is implausible; a record that cannot
/// be read is counted (and, for the first few, explained in [`KernelLog::errors`]).
pub fn kernel_log(k: &Kernel, km: &Kmem<'_>) -> Result<KernelLog> {
    let l = &k.layout;
    let rb = km.u64(k.symbol("prb")?)?;
    let ring = Ring::read(k, km, rb)?;
    let dr = rb.wrapping_add(l.off("printk_ringbuffer.desc_ring")?);
    let head = km.u64(dr.wrapping_add(l.off("prb_desc_ring.head_id")?))? & ID_MASK;
    let tail = km.u64(dr.wrapping_add(l.off("prb_desc_ring.tail_id")?))? & ID_MASK;
    let count = 1u64 << ring.count_bits;
    // The tail is never more than the whole descriptor ring behind the head.
    let span = head.wrapping_sub(tail) & ID_MASK;
    if span >= count {
        return Err(bad(
            "printk ring buffer",
            dr,
            format!("head id {head:#x} is {span} descriptors past tail id {tail:#x}, in a ring of {count}"),
        ));
    }
    let mut log = KernelLog::default();
    let mut text_total = 0u64;
    let mut last_seq: Option<u64> = None;
    for i in 0..=span.min(MAX_RECORDS) {
        let id = tail.wrapping_add(i) & ID_MASK;
        let read = match read_record(km, &ring, id) {
            Ok(r) => r,
            Err(e) => Read::Invalid(e),
        };
        match read {
            Read::Record(r) => {
                // Sequence numbers rise with the ids; one that does not was torn or forged.
                if last_seq.is_some_and(|s| r.seq <= s) {
                    log.skipped.invalid += 1;
                    if log.errors.len() < MAX_ERRORS {
                        log.errors.push(bad(
                            "printk record",
                            ring.info(id),
                            format!("sequence {} after {}", r.seq, last_seq.unwrap_or(0)),
                        ));
                    }
                    continue;
                }
                text_total += r.message.len() as u64;
                if text_total > MAX_TEXT_TOTAL {
                    log.errors.push(Error::LimitExceeded {
                        what: "kernel log text".into(),
                        limit: MAX_TEXT_TOTAL,
                    });
                    break;
                }
                last_seq = Some(r.seq);
                log.records.extend(lines_of(r));
            }
            Read::Skip(count) => count(&mut log.skipped),
            Read::Invalid(e) => {
                log.skipped.invalid += 1;
                if log.errors.len() < MAX_ERRORS {
                    log.errors.push(e);
                }
            }
        }
    }
    if span > MAX_RECORDS {
        log.errors.push(Error::LimitExceeded {
            what: "kernel log records".into(),
            limit: MAX_RECORDS,
        });
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_follow_get_data() {
        // A ring of 256 bytes (size_bits 8).
        assert_eq!(
            text_span(0x100 + 16, 0x100 + 48, 8),
            Ok(Span::Block { index: 16, len: 32 })
        );
        // Wrapping: begins in wrap 1, its text is at the start of wrap 2.
        assert_eq!(
            text_span(0x1f0, 0x200 + 40, 8),
            Ok(Span::Block { index: 0, len: 40 })
        );
        // A block that would end exactly at the end of the ring is stored as a wrapping one:
        // the kernel moves its `next` to the next wrap's start plus the block's size.
        assert_eq!(
            text_span(0x1f0, 0x200 + 16, 8),
            Ok(Span::Block { index: 0, len: 16 })
        );
        assert_eq!(text_span(NO_LPOS, NO_LPOS, 8), Ok(Span::Empty));
        assert_eq!(text_span(FAILED_LPOS, FAILED_LPOS, 8), Ok(Span::Lost));
        assert!(text_span(FAILED_LPOS, NO_LPOS, 8).is_err());
        // Two wraps apart, backwards, misaligned, too short: not blocks.
        assert!(text_span(0x100, 0x300 + 8, 8).is_err());
        assert!(text_span(0x148, 0x140, 8).is_err());
        assert!(text_span(0x104, 0x120, 8).is_err());
        assert!(text_span(0x1f8, 0x200, 8).is_err());
        assert!(text_span(0x100, 0x104, 8).is_err());
        assert!(text_span(0, 8, 0).is_err());
        assert!(text_span(0, 8, 40).is_err());
        // Logical positions overflow: begin near u64::MAX, next past zero.
        let size = 256u64;
        let begin = 0u64.wrapping_sub(size) + 0xf0;
        assert_eq!(
            text_span(begin, 24, 8),
            Ok(Span::Block { index: 0, len: 24 })
        );
    }

    #[test]
    fn a_record_of_several_lines_is_one_item_a_line() {
        let r = KernelLogRecord {
            seq: 7,
            time: 9,
            level: 4,
            message: "first\n  second\n".into(),
            ..KernelLogRecord::default()
        };
        let lines = lines_of(r);
        let got: Vec<(u64, u32, u64, u8, &str)> = lines
            .iter()
            .map(|l| (l.seq, l.line, l.time, l.level, l.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, 0, 9, 4, "first"),
                (7, 1, 9, 4, "  second"),
                (7, 2, 9, 4, "")
            ]
        );
        let one = KernelLogRecord {
            message: "one".into(),
            ..KernelLogRecord::default()
        };
        assert_eq!(lines_of(one.clone()), vec![one]);
    }

    #[test]
    fn dmesg_formats_every_line_of_a_record() {
        let r = KernelLogRecord {
            time: 5_649_239_123,
            message: "one\ntwo".into(),
            ..KernelLogRecord::default()
        };
        assert_eq!(
            dmesg_lines(&r),
            vec!["[    5.649239] one", "[    5.649239] two"]
        );
        assert_eq!(dmesg_prefix(0), "[    0.000000] ");
        assert_eq!(dmesg_prefix(123_456_000_000_000), "[123456.000000] ");
    }
}

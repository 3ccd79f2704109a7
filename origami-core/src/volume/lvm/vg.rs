//! Volume groups and their logical volumes.
//!
//! [`assemble`] groups the PVs found on a machine's disks by the volume group their metadata
//! names (by VG UUID), takes the metadata copy with the highest `seqno`, matches the VG's
//! `physical_volumes` to the PVs found by UUID, and reads `logical_volumes`. Each visible LV
//! made only of `striped` segments (LVM writes linear LVs as one stripe) opens as a
//! [`LogicalVolume`]; every other kind is [`LvmError::Unsupported`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::label::PhysicalVolume;
use super::metadata::{Section, Value};
use super::LvmError;
use crate::error::{Error, Result};
use crate::read::{check_range, ReadAt};

const SECTOR: u64 = 512;
/// The most segments read for one LV.
pub const MAX_SEGMENTS: usize = 65_536;
/// The most stripes in one segment.
pub const MAX_STRIPES: usize = 128;
/// The most LVs read from one VG.
pub const MAX_LVS: usize = 4096;

/// One PV as the VG's metadata lists it, with its bytes when the PV was found.
#[derive(Clone)]
struct PvSlot {
    uuid: String,
    pe_start: u64,
    pe_count: u64,
    source: Option<Arc<dyn ReadAt>>,
}

/// A logical volume as the metadata describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LvDef {
    /// The LV's name.
    pub name: String,
    /// Its UUID as the metadata writes it (with dashes).
    pub uuid: String,
    /// Whether it is visible (hidden LVs are parts of thin pools, RAID, ...).
    pub visible: bool,
    /// Its metadata section.
    pub section: Section,
}

/// A volume group, assembled from the PVs of one machine.
pub struct VolumeGroup {
    /// The VG's name.
    pub name: String,
    /// Its UUID.
    pub uuid: String,
    /// The metadata's sequence number (the copy used is the highest found).
    pub seqno: u64,
    /// The extent size in bytes.
    pub extent_size: u64,
    /// Its logical volumes, in metadata order.
    pub lvs: Vec<LvDef>,
    pvs: BTreeMap<String, PvSlot>,
}

impl std::fmt::Debug for VolumeGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeGroup")
            .field("name", &self.name)
            .field("uuid", &self.uuid)
            .field("seqno", &self.seqno)
            .field("extent_size", &self.extent_size)
            .field("lvs", &self.lvs.iter().map(|l| &l.name).collect::<Vec<_>>())
            .field(
                "pvs",
                &self
                    .pvs
                    .iter()
                    .map(|(n, p)| (n, p.source.as_ref().map(|s| s.name())))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn undash(uuid: &str) -> String {
    uuid.chars().filter(|&c| c != '-').collect()
}

fn meta_err(vg: &str, what: impl Into<String>) -> LvmError {
    LvmError::Metadata {
        source_name: format!("volume group {vg}"),
        what: what.into(),
    }
}

/// Groups PVs into volume groups. PVs that belong to no VG are left out; a VG whose newest
/// metadata does not describe a usable VG is reported.
pub fn assemble(pvs: Vec<PhysicalVolume>) -> (Vec<VolumeGroup>, Vec<LvmError>) {
    let mut errors = Vec::new();
    // PVs by UUID (the first of duplicates kept).
    let mut by_uuid: BTreeMap<String, &PhysicalVolume> = BTreeMap::new();
    for pv in &pvs {
        if by_uuid.contains_key(&pv.uuid) {
            errors.push(LvmError::Corrupt {
                source_name: pv.source.name(),
                offset: 0,
                what: format!(
                    "PV UUID {} is also on another disk; this copy is ignored",
                    pv.uuid
                ),
            });
            continue;
        }
        by_uuid.insert(pv.uuid.clone(), pv);
    }
    // The newest metadata of each VG (by VG UUID).
    let mut newest: BTreeMap<String, (&str, u64, &Section)> = BTreeMap::new();
    for pv in by_uuid.values() {
        if let Some((name, seqno, section)) = &pv.metadata {
            let id = section.str("id").unwrap_or(name).to_string();
            if newest.get(&id).is_none_or(|n| *seqno > n.1) {
                newest.insert(id, (name, *seqno, section));
            }
        }
    }
    let mut vgs = Vec::new();
    for (_, (name, seqno, section)) in newest {
        match VolumeGroup::from_metadata(name, seqno, section, &by_uuid) {
            Ok(vg) => vgs.push(vg),
            Err(e) => errors.push(e),
        }
    }
    (vgs, errors)
}

fn sectors(vg: &str, what: &str, v: Option<i64>) -> Result<u64, LvmError> {
    let v = v.ok_or_else(|| meta_err(vg, format!("no {what}")))?;
    u64::try_from(v)
        .ok()
        .and_then(|s| s.checked_mul(SECTOR))
        .ok_or_else(|| meta_err(vg, format!("{what} {v} is out of range")))
}

impl VolumeGroup {
    fn from_metadata(
        name: &str,
        seqno: u64,
        s: &Section,
        found: &BTreeMap<String, &PhysicalVolume>,
    ) -> Result<VolumeGroup, LvmError> {
        let extent_size = sectors(name, "extent_size", s.int("extent_size"))?;
        if extent_size == 0 {
            return Err(meta_err(name, "extent_size 0"));
        }
        let mut pvs = BTreeMap::new();
        if let Some(list) = s.section("physical_volumes") {
            for (pv_name, p) in list.sections() {
                let uuid = p.str("id").unwrap_or_default().to_string();
                let pe_start = sectors(name, &format!("{pv_name} pe_start"), p.int("pe_start"))?;
                let pe_count = u64::try_from(p.int("pe_count").unwrap_or(-1))
                    .map_err(|_| meta_err(name, format!("{pv_name}: no pe_count")))?;
                let source = found.get(&undash(&uuid)).map(|pv| pv.source.clone());
                pvs.insert(
                    pv_name.to_string(),
                    PvSlot {
                        uuid,
                        pe_start,
                        pe_count,
                        source,
                    },
                );
            }
        }
        let mut lvs = Vec::new();
        if let Some(list) = s.section("logical_volumes") {
            for (lv_name, l) in list.sections() {
                if lvs.len() >= MAX_LVS {
                    return Err(meta_err(
                        name,
                        format!("more than {MAX_LVS} logical volumes"),
                    ));
                }
                lvs.push(LvDef {
                    name: lv_name.to_string(),
                    uuid: l.str("id").unwrap_or_default().to_string(),
                    visible: l.flags("status").contains(&"VISIBLE"),
                    section: l.clone(),
                });
            }
        }
        Ok(VolumeGroup {
            name: name.to_string(),
            uuid: s.str("id").unwrap_or_default().to_string(),
            seqno,
            extent_size,
            lvs,
            pvs,
        })
    }

    /// The UUIDs (label form: no dashes) of the PVs the metadata lists and that were found.
    pub fn pv_uuids(&self) -> Vec<String> {
        self.pvs
            .values()
            .filter(|p| p.source.is_some())
            .map(|p| undash(&p.uuid))
            .collect()
    }

    /// The visible logical volumes, each opened or with the reason it cannot be.
    pub fn logical_volumes(&self) -> Vec<(String, Result<LogicalVolume, LvmError>)> {
        self.lvs
            .iter()
            .filter(|l| l.visible)
            .map(|l| (l.name.clone(), self.open(&l.name)))
            .collect()
    }

    /// The names of the LVs that hold the copy-on-write data of an old-style snapshot.
    fn cow_stores(&self) -> Vec<&str> {
        self.lvs
            .iter()
            .flat_map(|l| l.section.sections())
            .filter(|(_, seg)| seg.str("type") == Some("snapshot"))
            .filter_map(|(_, seg)| seg.str("cow_store"))
            .collect()
    }

    /// Opens logical volume `name`.
    pub fn open(&self, name: &str) -> Result<LogicalVolume, LvmError> {
        let lv = self
            .lvs
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| meta_err(&self.name, format!("no logical volume {name}")))?;
        let unsupported = |kind: String| LvmError::Unsupported {
            vg: self.name.clone(),
            lv: name.to_string(),
            kind,
        };
        if self.cow_stores().contains(&name) {
            return Err(unsupported("snapshot (copy-on-write store)".into()));
        }
        let bad = |segment: &str, what: String| LvmError::BadSegment {
            vg: self.name.clone(),
            lv: name.to_string(),
            segment: segment.to_string(),
            what,
        };
        let mut raw: Vec<(&str, &Section)> = lv.section.sections().collect();
        if raw.is_empty() {
            return Err(meta_err(
                &self.name,
                format!("logical volume {name} has no segments"),
            ));
        }
        if raw.len() > MAX_SEGMENTS {
            return Err(meta_err(
                &self.name,
                format!("logical volume {name} has over {MAX_SEGMENTS} segments"),
            ));
        }
        // Every segment's type first: a thin or RAID LV is "unsupported", whatever else.
        for (seg_name, seg) in &raw {
            let kind = seg.str("type").unwrap_or("(no type)");
            if kind != "striped" && kind != "linear" {
                return Err(unsupported(format!("segment type {kind} ({seg_name})")));
            }
        }
        raw.sort_by_key(|(_, s)| s.int("start_extent"));
        let es = self.extent_size;
        let mut segments = Vec::with_capacity(raw.len());
        let mut next_extent = 0u64;
        for (seg_name, seg) in raw {
            let int = |k: &str| {
                seg.int(k)
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| bad(seg_name, format!("no valid {k}")))
            };
            let start = int("start_extent")?;
            let count = int("extent_count")?;
            if start != next_extent {
                return Err(bad(
                    seg_name,
                    format!("starts at extent {start}, where extent {next_extent} is expected (a gap or an overlap)"),
                ));
            }
            if count == 0 {
                return Err(bad(seg_name, "extent_count 0".into()));
            }
            next_extent = start
                .checked_add(count)
                .ok_or_else(|| bad(seg_name, "extent overflow".into()))?;
            let stripe_count = usize::try_from(seg.int("stripe_count").unwrap_or(1))
                .ok()
                .filter(|&n| (1..=MAX_STRIPES).contains(&n))
                .ok_or_else(|| bad(seg_name, "stripe_count out of range".into()))?;
            if !count.is_multiple_of(stripe_count as u64) {
                return Err(bad(
                    seg_name,
                    format!("{count} extents do not divide into {stripe_count} stripes"),
                ));
            }
            let area_extents = count / stripe_count as u64;
            let chunk = if stripe_count > 1 {
                let c = sectors(&self.name, "stripe_size", seg.int("stripe_size"))
                    .map_err(|e| bad(seg_name, e.to_string()))?;
                if c == 0 || !es.is_multiple_of(c) {
                    return Err(bad(
                        seg_name,
                        format!("stripe size {c} does not divide the extent size {es}"),
                    ));
                }
                c
            } else {
                es
            };
            let list = seg.list("stripes").unwrap_or_default();
            if list.len() != 2 * stripe_count {
                return Err(bad(
                    seg_name,
                    format!("{} stripes listed, {stripe_count} expected", list.len() / 2),
                ));
            }
            let mut stripes = Vec::with_capacity(stripe_count);
            for pair in list.chunks_exact(2) {
                let (Value::Str(pv_name), Value::Int(pe)) = (&pair[0], &pair[1]) else {
                    return Err(bad(seg_name, "a stripe is not \"pvN\", extent".into()));
                };
                let pe =
                    u64::try_from(*pe).map_err(|_| bad(seg_name, format!("stripe extent {pe}")))?;
                let pv = self.pvs.get(pv_name).ok_or_else(|| {
                    bad(
                        seg_name,
                        format!("names {pv_name}, which the VG does not list"),
                    )
                })?;
                let Some(source) = pv.source.clone() else {
                    return Err(unsupported(format!(
                        "segment {seg_name}: physical volume {pv_name} ({}) is missing from the target's disks",
                        pv.uuid
                    )));
                };
                let end_pe = pe.checked_add(area_extents);
                if end_pe.is_none_or(|e| e > pv.pe_count) {
                    return Err(bad(
                        seg_name,
                        format!(
                            "extents {pe}..{} of {pv_name} are past its {} extents",
                            pe.saturating_add(area_extents),
                            pv.pe_count
                        ),
                    ));
                }
                let start_byte = pe
                    .checked_mul(es)
                    .and_then(|b| b.checked_add(pv.pe_start))
                    .ok_or_else(|| bad(seg_name, "extent offset overflow".into()))?;
                let end_byte = area_extents
                    .checked_mul(es)
                    .and_then(|b| b.checked_add(start_byte));
                if end_byte.is_none_or(|e| e > source.len()) {
                    return Err(bad(
                        seg_name,
                        format!(
                            "extents {pe}..{} of {pv_name} end past the PV's {} bytes ({})",
                            pe + area_extents,
                            source.len(),
                            source.name()
                        ),
                    ));
                }
                stripes.push((source, start_byte));
            }
            let lv_start = start
                .checked_mul(es)
                .ok_or_else(|| bad(seg_name, "size overflow".into()))?;
            let len = count
                .checked_mul(es)
                .ok_or_else(|| bad(seg_name, "size overflow".into()))?;
            segments.push(Segment {
                lv_start,
                len,
                chunk,
                stripes,
            });
        }
        let size = next_extent
            .checked_mul(es)
            .ok_or_else(|| meta_err(&self.name, format!("{name}: size overflow")))?;
        Ok(LogicalVolume {
            name: format!("{}/{}", self.name, name),
            vg: self.name.clone(),
            lv: name.to_string(),
            uuid: lv.uuid.clone(),
            size,
            segments,
        })
    }
}

/// A segment of an LV: `len` bytes at `lv_start`, in chunks spread over its stripes
/// (one stripe: one contiguous run).
struct Segment {
    lv_start: u64,
    len: u64,
    chunk: u64,
    stripes: Vec<(Arc<dyn ReadAt>, u64)>,
}

/// A logical volume's bytes.
pub struct LogicalVolume {
    name: String,
    /// The volume group's name.
    pub vg: String,
    /// The LV's name.
    pub lv: String,
    /// The LV's UUID.
    pub uuid: String,
    size: u64,
    segments: Vec<Segment>,
}

impl std::fmt::Debug for LogicalVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicalVolume")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("segments", &self.segments.len())
            .finish()
    }
}

impl LogicalVolume {
    /// The device-mapper name (`/dev/mapper/NAME`): VG and LV joined by `-`, each `-` in them
    /// doubled.
    pub fn mapper_name(&self) -> String {
        format!(
            "{}-{}",
            self.vg.replace('-', "--"),
            self.lv.replace('-', "--")
        )
    }
}

impl ReadAt for LogicalVolume {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(|| self.name.clone(), offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let i = self.segments.partition_point(|s| s.lv_start + s.len <= pos);
            let seg = self.segments.get(i).ok_or_else(|| Error::Corrupt {
                source_name: self.name.clone(),
                offset: pos,
                reason: "no segment maps this offset".into(),
            })?;
            let in_seg = pos - seg.lv_start;
            let n = seg.stripes.len() as u64;
            let chunk_no = in_seg / seg.chunk;
            let within = in_seg % seg.chunk;
            let (src, base) = &seg.stripes[(chunk_no % n) as usize];
            let pv_off = base + (chunk_no / n) * seg.chunk + within;
            let take = ((seg.chunk - within) as usize)
                .min(buf.len() - done)
                .min((seg.len - in_seg) as usize);
            src.read_at(pv_off, &mut buf[done..done + take])?;
            done += take;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.size
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

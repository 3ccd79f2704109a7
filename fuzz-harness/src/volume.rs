//! LVM2 targets.

use std::sync::Arc;

use origami_core::volume::lvm::{self, lvm_crc, INITIAL_CRC};
use origami_core::{ReadAt, Slice};

/// The metadata area's offset and size in the PV built around the input.
const MDA_START: usize = 4096;
const MDA_SIZE: usize = 1 << 20;
/// Where the PV's extents start (pe_start = 2048 sectors in the usual metadata).
const DATA_START: usize = MDA_START + MDA_SIZE;
/// The PV's size: its extents are 4 MiB of zeros.
const PV_SIZE: usize = DATA_START + (4 << 20);

/// A PV image whose metadata area holds `text` as its committed metadata (label, PV header,
/// area header and checksums all valid), so that the fuzzer works on the text.
pub fn pv_with_metadata(text: &[u8]) -> Vec<u8> {
    let mut pv = vec![0u8; PV_SIZE];
    let text = &text[..text.len().min(MDA_SIZE - 1024)];
    // label in sector 1
    let l = 512;
    pv[l..l + 8].copy_from_slice(b"LABELONE");
    pv[l + 8..l + 16].copy_from_slice(&1u64.to_le_bytes());
    pv[l + 20..l + 24].copy_from_slice(&32u32.to_le_bytes());
    pv[l + 24..l + 32].copy_from_slice(b"LVM2 001");
    let h = l + 32;
    pv[h..h + 32].copy_from_slice(b"FuzzPVuuid000000000000000000abcd");
    pv[h + 32..h + 40].copy_from_slice(&(PV_SIZE as u64).to_le_bytes());
    // one data area, then one metadata area, each list ended by a zero pair
    pv[h + 40..h + 48].copy_from_slice(&(DATA_START as u64).to_le_bytes());
    pv[h + 72..h + 80].copy_from_slice(&(MDA_START as u64).to_le_bytes());
    pv[h + 80..h + 88].copy_from_slice(&(MDA_SIZE as u64).to_le_bytes());
    let crc = lvm_crc(INITIAL_CRC, &pv[l + 20..l + 512]);
    pv[l + 16..l + 20].copy_from_slice(&crc.to_le_bytes());
    // metadata area header and the text right after it
    let m = MDA_START;
    pv[m + 4..m + 20].copy_from_slice(b" LVM2 x[5A%r0N*>");
    pv[m + 20..m + 24].copy_from_slice(&1u32.to_le_bytes());
    pv[m + 24..m + 32].copy_from_slice(&(MDA_START as u64).to_le_bytes());
    pv[m + 32..m + 40].copy_from_slice(&(MDA_SIZE as u64).to_le_bytes());
    pv[m + 40..m + 48].copy_from_slice(&512u64.to_le_bytes());
    pv[m + 48..m + 56].copy_from_slice(&(text.len() as u64 + 1).to_le_bytes());
    pv[m + 512..m + 512 + text.len()].copy_from_slice(text);
    let mut with_nul = text.to_vec();
    with_nul.push(0);
    pv[m + 56..m + 60].copy_from_slice(&lvm_crc(INITIAL_CRC, &with_nul).to_le_bytes());
    let crc = lvm_crc(INITIAL_CRC, &pv[m + 4..m + 512]);
    pv[m..m + 4].copy_from_slice(&crc.to_le_bytes());
    pv
}

/// Any bytes as the LVM2 metadata text of a one-PV volume group (whose PV UUID is
/// `FuzzPV-uuid-0000-0000-0000-0000-00abcd`, 4 MiB of extents from sector 2048): parsed,
/// assembled, every visible LV opened and read at its start, middle and end. Errors, never
/// a panic; an LV that opens reads without error inside its length.
pub fn lvm_metadata(data: &[u8]) {
    let _ = lvm::metadata::parse(data);
    let pv = pv_with_metadata(data);
    let len = pv.len() as u64;
    let src: Arc<dyn ReadAt> = Arc::new(Slice::new(pv, 0, len, "fuzz-pv").unwrap());
    let Ok(Some(pv)) = lvm::probe(src) else {
        return;
    };
    let (vgs, _errors) = lvm::assemble(vec![pv]);
    for vg in vgs {
        for (_, lv) in vg.logical_volumes() {
            let Ok(lv) = lv else { continue };
            let mut buf = [0u8; 4096];
            let n = lv.len();
            for at in [0, n / 2, n.saturating_sub(4096)] {
                let want = (n - at).min(4096) as usize;
                lv.read_at(at, &mut buf[..want])
                    .expect("a read inside an opened LV");
            }
            assert!(lv.read_at(n, &mut buf[..1]).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-made seed opens its linear and striped LVs and refuses its thin pool: the
    /// PV built around a text is what the text's VG expects.
    #[test]
    fn hand_seed_opens_its_lvs() {
        let text = include_bytes!("../../fuzz/seeds/lvm_metadata/hand-linear-striped-thin.txt");
        let pv = pv_with_metadata(text);
        let len = pv.len() as u64;
        let pv = lvm::probe(Arc::new(Slice::new(pv, 0, len, "pv").unwrap()))
            .unwrap()
            .unwrap();
        assert!(pv.problems.is_empty(), "{:?}", pv.problems);
        let (vgs, e) = lvm::assemble(vec![pv]);
        assert!(e.is_empty(), "{e:?}");
        let lvs = vgs[0].logical_volumes();
        let names: Vec<(&str, bool)> = lvs.iter().map(|(n, r)| (n.as_str(), r.is_ok())).collect();
        assert_eq!(names, [("root", true), ("data-lv", true), ("pool", false)]);
        assert_eq!(lvs[1].1.as_ref().unwrap().mapper_name(), "fuzzvg-data--lv");
    }
}

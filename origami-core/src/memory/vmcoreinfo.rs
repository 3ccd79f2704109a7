//! The Linux kernel's `VMCOREINFO`: `KEY=VALUE` lines the kernel publishes for dump tools
//! (`OSRELEASE`, `KERNELOFFSET`, `SYMBOL(name)`, `NUMBER(name)`, `SIZE(type)`,
//! `OFFSET(type.member)`, `LENGTH(name)`, ...). QEMU copies it into a dump as a note when
//! the guest exposes it (`-device vmcoreinfo` with `qemu_fw_cfg` loaded).
//!
//! Limits: the text is capped at [`VmcoreInfo::MAX_LEN`] bytes (the kernel's own buffer is
//! one page); lines without `=` are skipped; values are kept as text and converted on demand
//! (`SYMBOL`, `KERNELOFFSET` and `PHYS_BASE` in hex, `NUMBER`, `SIZE`, `OFFSET` and
//! `LENGTH` in decimal, as the kernel prints them).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Parsed `VMCOREINFO` text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmcoreInfo {
    entries: BTreeMap<String, String>,
}

impl VmcoreInfo {
    /// The largest text accepted: the kernel's buffer is one page; more is not a VMCOREINFO.
    pub const MAX_LEN: usize = 1 << 20;

    /// Parses `KEY=VALUE` lines. The text ends at the first NUL (notes are NUL-padded).
    /// Fails when the text is larger than [`VmcoreInfo::MAX_LEN`] or holds no entry at all.
    pub fn parse(text: &[u8]) -> Result<VmcoreInfo> {
        let bad = |reason: String| Error::BadDump {
            source_name: "VMCOREINFO".into(),
            offset: 0,
            reason,
        };
        if text.len() > Self::MAX_LEN {
            return Err(bad(format!(
                "{} bytes is more than the {} a VMCOREINFO may hold",
                text.len(),
                Self::MAX_LEN
            )));
        }
        let text = match text.iter().position(|&c| c == 0) {
            Some(nul) => text.get(..nul).unwrap_or(text),
            None => text,
        };
        let mut entries = BTreeMap::new();
        for line in text.split(|&c| c == b'\n') {
            let line = String::from_utf8_lossy(line);
            let line = line.trim_end_matches('\r');
            if let Some((k, v)) = line.split_once('=') {
                if !k.is_empty() {
                    entries.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        if entries.is_empty() {
            return Err(bad("no KEY=VALUE line".into()));
        }
        Ok(VmcoreInfo { entries })
    }

    /// The raw value of `key`, e.g. `get("OSRELEASE")`, `get("SYMBOL(init_task)")`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// All entries, sorted by key.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no entry (never for a parsed value).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn keyed(&self, kind: &str, name: &str) -> Option<&str> {
        self.get(&format!("{kind}({name})"))
    }

    /// `SYMBOL(name)`: a kernel virtual address (hex).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        parse_hex(self.keyed("SYMBOL", name)?)
    }

    /// `NUMBER(name)`: a signed decimal (e.g. `NUMBER(phys_base)`, negative under KASLR).
    pub fn number(&self, name: &str) -> Option<i64> {
        self.keyed("NUMBER", name)?.trim().parse().ok()
    }

    /// `SIZE(type)`: a structure's size in bytes.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.keyed("SIZE", name)?.trim().parse().ok()
    }

    /// `OFFSET(type.member)`: a member's offset in bytes.
    pub fn offset(&self, name: &str) -> Option<u64> {
        self.keyed("OFFSET", name)?.trim().parse().ok()
    }

    /// `LENGTH(name)`: an array's length.
    pub fn length(&self, name: &str) -> Option<u64> {
        self.keyed("LENGTH", name)?.trim().parse().ok()
    }

    /// `OSRELEASE`, the kernel release (`uname -r`).
    pub fn osrelease(&self) -> Option<&str> {
        self.get("OSRELEASE")
    }

    /// `KERNELOFFSET`: the KASLR slide of the kernel image (hex); 0 without KASLR.
    pub fn kernel_offset(&self) -> Option<u64> {
        parse_hex(self.get("KERNELOFFSET")?)
    }

    /// `PAGESIZE`, in bytes.
    pub fn page_size(&self) -> Option<u64> {
        self.get("PAGESIZE")?.trim().parse().ok()
    }
}

fn parse_hex(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v
        .strip_prefix("0x")
        .or_else(|| v.strip_prefix("0X"))
        .unwrap_or(v);
    u64::from_str_radix(v, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_forms() {
        let text =
            b"OSRELEASE=6.1.0-56-amd64\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff86a10000\n\
NUMBER(phys_base)=-2063597568\nSIZE(list_head)=16\nOFFSET(list_head.next)=0\nKERNELOFFSET=4000000\n\
LENGTH(mem_section)=2048\nnot a pair\n\0\0\0";
        let v = VmcoreInfo::parse(text).unwrap();
        assert_eq!(v.osrelease(), Some("6.1.0-56-amd64"));
        assert_eq!(v.symbol("init_top_pgt"), Some(0xffffffff86a10000));
        assert_eq!(v.number("phys_base"), Some(-2063597568));
        assert_eq!(v.size("list_head"), Some(16));
        assert_eq!(v.offset("list_head.next"), Some(0));
        assert_eq!(v.length("mem_section"), Some(2048));
        assert_eq!(v.kernel_offset(), Some(0x4000000));
        assert_eq!(v.page_size(), Some(4096));
        assert_eq!(v.len(), 8);
        assert_eq!(v.symbol("missing"), None);
    }

    #[test]
    fn rejects_empty_and_oversized_text() {
        assert!(VmcoreInfo::parse(b"").is_err());
        assert!(VmcoreInfo::parse(b"\0OSRELEASE=1").is_err());
        assert!(VmcoreInfo::parse(&vec![b'a'; VmcoreInfo::MAX_LEN + 1]).is_err());
    }
}

//! The chunk map and the tree searches of a btrfs file system (see the parent module).

use super::*;

/// Parses one chunk item (at `at` of `b`, `size` bytes) into a chunk for device `devid`.
pub(super) fn parse_chunk(
    b: &[u8],
    at: usize,
    size: usize,
    logical: u64,
    devid: u64,
    dev_len: u64,
) -> BResult<Chunk> {
    let item = b
        .get(at..at + size)
        .ok_or_else(|| BErr::Bad(format!("chunk item at {logical:#x} past its block")))?;
    let len = le64(item, 0);
    let ty = le64(item, 24);
    let num_stripes = usize::from(le16(item, 44));
    if len == 0 || logical.checked_add(len).is_none() {
        return bad(format!("chunk at {logical:#x} of {len} bytes"));
    }
    if num_stripes == 0 || 48 + num_stripes * 32 > item.len() {
        return bad(format!(
            "chunk at {logical:#x}: {num_stripes} stripes in a {}-byte item",
            item.len()
        ));
    }
    // RAID0, RAID10, RAID5, RAID6: data striped across devices.
    const STRIPED: u64 = 8 | 64 | 128 | 256;
    let phys = if ty & STRIPED != 0 && num_stripes > 1 {
        Err(format!(
            "chunk at {logical:#x} uses a striped profile ({ty:#x}), which is not read"
        ))
    } else {
        let mine = (0..num_stripes)
            .map(|i| 48 + i * 32)
            .find(|&s| le64(item, s) == devid)
            .map(|s| le64(item, s + 8));
        match mine {
            Some(p) if p.checked_add(len).is_some_and(|e| e <= dev_len) => Ok(p),
            Some(p) => Err(format!(
                "chunk at {logical:#x} of {len} bytes maps to {p:#x}, past the device's {dev_len} bytes"
            )),
            None => Err(format!(
                "chunk at {logical:#x} is on another device of the file system"
            )),
        }
    };
    Ok(Chunk { logical, len, phys })
}

impl Inner {
    /// The chunk holding logical address `logical`, and the physical address.
    pub(super) fn map(&self, logical: u64) -> BResult<(u64, u64)> {
        let i = self
            .chunks
            .partition_point(|c| c.logical + c.len <= logical);
        match self.chunks.get(i) {
            Some(c) if c.logical <= logical => match &c.phys {
                Ok(p) => Ok((p + (logical - c.logical), c.logical + c.len - logical)),
                Err(e) => bad(e.clone()),
            },
            _ => bad(format!("logical address {logical:#x} is in no chunk")),
        }
    }

    /// Reads `buf.len()` bytes at logical address `logical` (across chunks).
    pub(super) fn read_logical(&self, logical: u64, buf: &mut [u8]) -> BResult<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let (phys, left) = self.map(logical + done as u64)?;
            let n = (buf.len() - done).min(usize::try_from(left).unwrap_or(usize::MAX));
            self.src.read_at(phys, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// The tree block at `logical`, which must have level `level`.
    pub(super) fn node(&self, logical: u64, level: u8) -> BResult<Arc<Vec<u8>>> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&logical)
            .cloned();
        let b = match cached {
            Some(b) => b,
            None => {
                let mut buf = vec![0u8; self.nodesize];
                self.read_logical(logical, &mut buf)?;
                self.check_node(logical, &buf)?;
                let b = Arc::new(buf);
                let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if c.len() >= CACHE_NODES {
                    c.clear();
                }
                c.insert(logical, b.clone());
                b
            }
        };
        if b[100] != level {
            return bad(format!(
                "tree block {logical:#x} has level {} where {level} is due (a loop?)",
                b[100]
            ));
        }
        Ok(b)
    }

    pub(super) fn check_node(&self, logical: u64, b: &[u8]) -> BResult<()> {
        if le64(b, 48) != logical {
            return bad(format!(
                "tree block {logical:#x} says it is block {:#x}",
                le64(b, 48)
            ));
        }
        if b[32..48] != self.fsid {
            return bad(format!("tree block {logical:#x}: another file system's id"));
        }
        let level = b[100];
        let n = le32(b, 96) as usize;
        let per = if level == 0 { 25 } else { 33 };
        if level >= MAX_LEVEL || HDR + n.saturating_mul(per) > b.len() {
            return bad(format!(
                "tree block {logical:#x}: level {level} with {n} items"
            ));
        }
        if self.verify {
            let want = le32(b, 0);
            let got = !crc32c_raw(!0, &b[32..]);
            if want != got {
                return bad(format!(
                    "tree block {logical:#x}: checksum {want:#010x}, computed {got:#010x}"
                ));
            }
        }
        Ok(())
    }

    /// Calls `f(key, data)` for every item of the tree at `root` whose key is in
    /// `min..=max`, in key order, until `f` returns `false`.
    pub(super) fn search(
        &self,
        root: (u64, u8),
        min: Key,
        max: Key,
        f: &mut dyn FnMut(Key, &[u8]) -> BResult<bool>,
    ) -> BResult<()> {
        let mut stack = vec![root];
        let mut visited = 0usize;
        while let Some((at, level)) = stack.pop() {
            visited += 1;
            if visited > MAX_NODES_PER_SEARCH {
                return Err(BErr::Limit(
                    "tree blocks visited by one search".into(),
                    MAX_NODES_PER_SEARCH as u64,
                ));
            }
            let b = self.node(at, level)?;
            let n = le32(&b, 96) as usize;
            if level == 0 {
                for i in 0..n {
                    let p = HDR + i * 25;
                    let k = Key::at(&b, p);
                    if k < min {
                        continue;
                    }
                    if k > max {
                        return Ok(());
                    }
                    let off = le32(&b, p + 17) as usize;
                    let size = le32(&b, p + 21) as usize;
                    let data = b.get(HDR + off..HDR + off + size).ok_or_else(|| {
                        BErr::Bad(format!(
                            "tree block {at:#x}: item {i} of {size} bytes at {off} past the block"
                        ))
                    })?;
                    if !f(k, data)? {
                        return Ok(());
                    }
                }
            } else {
                let mut children = Vec::new();
                for i in 0..n {
                    let p = HDR + i * 33;
                    let k = Key::at(&b, p);
                    if k > max {
                        break;
                    }
                    let next_above_min = i + 1 == n || Key::at(&b, p + 33) > min;
                    if next_above_min {
                        children.push((le64(&b, p + 17), level - 1));
                    }
                }
                stack.extend(children.into_iter().rev());
            }
        }
        Ok(())
    }

    /// The item with exactly `key`, if any.
    pub(super) fn get(&self, root: (u64, u8), key: Key) -> BResult<Option<Vec<u8>>> {
        let mut out = None;
        self.search(root, key, key, &mut |_, d| {
            out = Some(d.to_vec());
            Ok(false)
        })?;
        Ok(out)
    }

    /// The root of subvolume (tree) `id`.
    pub(super) fn tree_root(&self, id: u64) -> BResult<Root> {
        let mut found = None;
        self.search(
            self.root_tree,
            Key {
                obj: id,
                ty: ROOT_ITEM,
                off: 0,
            },
            Key {
                obj: id,
                ty: ROOT_ITEM,
                off: u64::MAX,
            },
            &mut |_, d| {
                found = Some(d.to_vec());
                Ok(true)
            },
        )?;
        let d = found.ok_or_else(|| BErr::Bad(format!("no subvolume {id}")))?;
        if d.len() < 239 {
            return bad(format!("root item of subvolume {id}: {} bytes", d.len()));
        }
        let level = d[238];
        if level >= MAX_LEVEL {
            return bad(format!("root item of subvolume {id}: level {level}"));
        }
        Ok(Root {
            id,
            bytenr: le64(&d, 176),
            level,
            dir: le64(&d, 168),
        })
    }

    /// The default subvolume's id: the root tree's `default` entry, else the top level.
    pub(super) fn default_subvolume(&self) -> BResult<u64> {
        let mut id = None;
        self.search(
            self.root_tree,
            Key {
                obj: ROOT_TREE_DIR,
                ty: DIR_ITEM,
                off: 0,
            },
            Key {
                obj: ROOT_TREE_DIR,
                ty: DIR_ITEM,
                off: u64::MAX,
            },
            &mut |_, d| {
                for (name, loc) in dir_items(d)? {
                    if name == b"default" {
                        id = Some(loc.obj);
                    }
                }
                Ok(id.is_none())
            },
        )?;
        Ok(id.unwrap_or(FS_TREE))
    }
}

pub(super) fn open_inner(src: Arc<dyn ReadAt>, verify: bool) -> BResult<Inner> {
    if src.len() < SUPER_OFFSET + 0x1000 {
        return bad(format!("image of {} bytes is too small", src.len()));
    }
    let mut sb = vec![0u8; 0x1000];
    src.read_at(SUPER_OFFSET, &mut sb)?;
    if &sb[0x40..0x48] != MAGIC {
        return bad("bad superblock magic at offset 0x10040");
    }
    let sectorsize = le32(&sb, 0x90);
    let nodesize = le32(&sb, 0x94);
    let sys_len = le32(&sb, 0xa0) as usize;
    let csum_type = le16(&sb, 0xc4);
    let root_level = sb[0xc6];
    let chunk_level = sb[0xc7];
    if !sectorsize.is_power_of_two() || !(512..=65536).contains(&sectorsize) {
        return bad(format!("sector size {sectorsize}"));
    }
    if !nodesize.is_power_of_two() || !(4096..=65536).contains(&nodesize) || nodesize < sectorsize {
        return bad(format!("node size {nodesize}"));
    }
    if sys_len > 2048 {
        return bad(format!("system chunk array of {sys_len} bytes"));
    }
    if root_level >= MAX_LEVEL || chunk_level >= MAX_LEVEL {
        return bad(format!("tree levels {root_level}, {chunk_level}"));
    }
    if verify && csum_type == 0 {
        let want = le32(&sb, 0);
        let got = !crc32c_raw(!0, &sb[32..]);
        if want != got {
            return bad(format!(
                "superblock checksum {want:#010x}, computed {got:#010x}"
            ));
        }
    }
    // Tree blocks carry the metadata uuid when the METADATA_UUID feature is on.
    let incompat = le64(&sb, 0xbc);
    let mut fsid = [0u8; 16];
    if incompat & (1 << 10) != 0 {
        fsid.copy_from_slice(&sb[0x23b..0x24b]);
    } else {
        fsid.copy_from_slice(&sb[0x20..0x30]);
    }
    let devid = le64(&sb, 0xc9);
    let dev_len = src.len();
    // Bootstrap: the system chunks of the superblock.
    let arr = &sb[0x32b..0x32b + sys_len];
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut p = 0usize;
    while p < arr.len() {
        let k = Key::at(arr, p);
        if k.ty != CHUNK_ITEM || p + 17 + 48 > arr.len() {
            return bad(format!("system chunk array: bad entry at byte {p}"));
        }
        let n = usize::from(le16(arr, p + 17 + 44));
        let size = 48 + n * 32;
        chunks.push(parse_chunk(arr, p + 17, size, k.off, devid, dev_len)?);
        p += 17 + size;
    }
    let name = src.name();
    let mut inner = Inner {
        src,
        name,
        nodesize: nodesize as usize,
        sectorsize: u64::from(sectorsize),
        fsid,
        root_tree: (le64(&sb, 0x50), root_level),
        chunks,
        verify,
        cache: Mutex::new(HashMap::new()),
    };
    sort_chunks(&mut inner.chunks)?;
    // The chunk tree, read through the bootstrap chunks.
    let mut all = Vec::new();
    inner.search(
        (le64(&sb, 0x58), chunk_level),
        Key {
            obj: FIRST_CHUNK_TREE,
            ty: CHUNK_ITEM,
            off: 0,
        },
        Key {
            obj: FIRST_CHUNK_TREE,
            ty: CHUNK_ITEM,
            off: u64::MAX,
        },
        &mut |k, d| {
            if all.len() >= MAX_CHUNKS {
                return Err(BErr::Limit("chunks".into(), MAX_CHUNKS as u64));
            }
            all.push(parse_chunk(d, 0, d.len(), k.off, devid, dev_len)?);
            Ok(true)
        },
    )?;
    if all.is_empty() {
        return bad("the chunk tree holds no chunk");
    }
    sort_chunks(&mut all)?;
    inner.chunks = all;
    inner
        .cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    Ok(inner)
}

/// Sorts chunks by logical address, refusing overlaps.
pub(super) fn sort_chunks(chunks: &mut [Chunk]) -> BResult<()> {
    chunks.sort_by_key(|c| c.logical);
    for w in chunks.windows(2) {
        if w[0].logical + w[0].len > w[1].logical {
            return bad(format!(
                "chunks at {:#x} and {:#x} overlap",
                w[0].logical, w[1].logical
            ));
        }
    }
    Ok(())
}

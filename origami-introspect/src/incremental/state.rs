//! The crawl state: what one crawl learnt of each ext4 volume, saved so that the next crawl
//! reads only what changed.
//!
//! A state file is self-describing and checked before anything in it is believed:
//!
//! ```text
//! offset  size  field
//! 0       16    magic "ORIGAMI-CRAWLST\n"
//! 16      4     format version, little-endian (this build writes and reads 4)
//! 20      4     reserved, 0
//! 24      8     payload length in bytes, little-endian
//! 32      32    BLAKE3 of the payload
//! 64      ...   payload: zstd-compressed (level 1) records of [`CrawlState`]
//! ```
//!
//! The records are fixed-layout little-endian fields written by hand (no serde): numbers
//! as `u8`/`u32`/`u64`, byte strings (names, link targets, file contents, UTF-8 text) as a
//! `u32` length and the bytes, digests as raw bytes, every list as a `u32` count and its
//! elements, in the order of the structs' fields below (a `bool` as one byte, 0 or 1).
//! Versions 1 (zstd JSON with bytes as hex, a sha256), 2 (no `files_complete`) and 3
//! (digests not keyed, no block digests) are refused as foreign: the crawl after an upgrade
//! is a full one.
//!
//! A file of another program, another version, a wrong length or digest, a payload that
//! does not inflate within [`MAX_DECODED`] bytes or does not decode, or whose numbers do
//! not hang together, is a [`StateError`]: the caller crawls in full and says why. Every
//! count read is checked against the bytes left before anything is allocated for it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use origami_frame::{FileItem, FileType};

/// The first 16 bytes of every state file.
pub const MAGIC: &[u8; 16] = b"ORIGAMI-CRAWLST\n";
/// The format version this build writes and reads.
pub const VERSION: u32 = 4;
/// The largest state file read (bytes on disk).
pub const MAX_FILE: u64 = 256 << 20;
/// The largest payload once inflated.
pub const MAX_DECODED: u64 = 512 << 20;
/// The most volumes one state describes.
pub const MAX_VOLUMES: usize = 256;
const HEADER: usize = 64;

/// Why a state file cannot be used (the crawl then reads everything and says so).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The host could not read or write the file.
    #[error("{}: crawl state: {source}", path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// The host's error.
        source: std::io::Error,
    },
    /// Not an Origami crawl state, or one of another format version.
    #[error("{}: not a crawl state of this format: {what}", path.display())]
    Foreign {
        /// The state file.
        path: PathBuf,
        /// What was found instead.
        what: String,
    },
    /// A crawl state damaged or inconsistent (cut short, bytes changed, numbers that do
    /// not hang together).
    #[error("{}: corrupt crawl state at offset {offset:#x}: {what}", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Where (in the file; 64 and on is the payload).
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// Raw bytes (guest names, link targets, file contents).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

/// Everything a crawl keeps for the next one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrawlState {
    /// A digest of the crawl options that shape the `file` section: events are computed
    /// only between crawls made with the same options.
    pub options: String,
    /// The key of every digest in the state (inodes, inode-table blocks, directory
    /// blocks): drawn at random by the crawl that made the first state and kept by the
    /// ones after it. A guest that writes its own inode tables never sees it, so it
    /// cannot make a change whose 64-bit digest equals the previous one (with unkeyed
    /// digests two such inodes could be searched for offline).
    pub key: [u8; 32],
    /// The ext4 volumes read, by UUID (shared: a crawl that reads the state does not copy
    /// it).
    pub volumes: Vec<Arc<VolumeState>>,
    /// The previous frame's `file` section, each item with its inode where known: what
    /// the next crawl's file events are computed against (shared: the items a crawl
    /// carries over from the previous state are not copied).
    pub files: Vec<Arc<FileRecord>>,
    /// Whether `files` is the whole `file` section of a crawl whose walk met no error or
    /// bound: only then may the next crawl patch it instead of walking the tree again.
    pub files_complete: bool,
}

/// What one crawl learnt of one ext4 volume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeState {
    /// The file-system UUID.
    pub uuid: String,
    /// Bytes per block.
    pub block_size: u64,
    /// Blocks in the file system.
    pub blocks: u64,
    /// Inodes per block group.
    pub inodes_per_group: u32,
    /// Bytes per inode.
    pub inode_size: u32,
    /// Per block group, the digests of the used part of its inode table.
    pub groups: Vec<GroupDigests>,
    /// What the crawl derived from each inode it read, by inode number: a persistent map
    /// (`imbl`), so that the next crawl's state shares every record and tree node that
    /// did not change instead of copying them.
    pub inodes: imbl::OrdMap<u64, Arc<InodeRecord>>,
}

/// The digests of one group's used inodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupDigests {
    /// Per inode of the used part of the table: the digest of its raw bytes (access time
    /// left out, see [`super::ext4_raw::digest_inode`]).
    pub digests: Vec<u64>,
    /// Per inode: the digest of what says where its content lies and when it was last
    /// written (size, flags, block map or extent root, modification time, generation; see
    /// [`super::ext4_raw::digest_inode`]): an inode whose metadata alone changed (chmod,
    /// chown) keeps its content's records.
    pub content: Vec<u64>,
    /// Per inode: its generation (`i_generation`), which tells a reused inode number from
    /// the same file.
    pub generations: Vec<u32>,
    /// Per block of the used part of the inode table (the last one holding only the used
    /// inodes' bytes): the digest of its raw bytes. A block that holds what it held has
    /// inodes whose digests are the previous ones, so they are not digested one by one.
    pub blocks: Vec<u64>,
}

/// What a crawl derived from one inode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InodeRecord {
    /// A directory's entries (without `.` and `..`), as listed.
    pub listing: Option<Vec<EntryRecord>>,
    /// A symlink's target.
    pub link: Option<Bytes>,
    /// A regular file's sha256.
    pub sha256: Option<[u8; 32]>,
    /// A small regular file's whole content, as read (config text, package databases).
    pub content: Option<Bytes>,
    /// A directory's blocks (and extent-tree blocks below its inode), as byte ranges of the
    /// volume, and the digest of what they held: a listing is reused only when they still
    /// hold the same bytes, whatever wrote them.
    pub dir_blocks: Option<DirBlocks>,
}

/// Where a directory's blocks lie and the digest of their bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirBlocks {
    /// Byte ranges of the volume, `[start, end)`.
    pub ranges: Vec<(u64, u64)>,
    /// The digest of their bytes, in order.
    pub digest: u64,
}

/// One directory entry: a name and what `lstat` gave for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryRecord {
    /// The name.
    pub name: Bytes,
    /// Its inode.
    pub ino: u64,
    /// Its type.
    pub file_type: FileType,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size.
    pub size: u64,
    /// Modification time (seconds).
    pub mtime: i64,
}

/// Which inode a frame item is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeKey {
    /// The volume's UUID.
    pub volume: String,
    /// The inode number.
    pub ino: u64,
    /// Its generation.
    pub generation: u32,
}

/// A `file` item of the previous frame, with its inode where known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileRecord {
    /// The item as the frame had it.
    pub item: FileItem,
    /// Its inode (ext4 volumes only).
    pub key: Option<InodeKey>,
}

const FILE_TYPES: [FileType; 7] = [
    FileType::File,
    FileType::Dir,
    FileType::Symlink,
    FileType::Char,
    FileType::Block,
    FileType::Fifo,
    FileType::Socket,
];

fn type_code(t: FileType) -> u8 {
    FILE_TYPES.iter().position(|&x| x == t).unwrap_or(0) as u8
}

// Record flags of an inode.
const HAS_LISTING: u8 = 1;
const HAS_LINK: u8 = 2;
const HAS_SHA: u8 = 4;
const HAS_CONTENT: u8 = 8;
const HAS_DIR_BLOCKS: u8 = 16;
// Item flags of a file record.
const ITEM_LINK: u8 = 1;
const ITEM_SHA_RAW: u8 = 2;
const ITEM_SHA_TEXT: u8 = 4;
const ITEM_EXTRA: u8 = 8;
const ITEM_KEY: u8 = 16;

/// The 32 bytes of a lowercase hex sha256, when `s` is one.
pub(crate) fn sha_from_hex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(b[2 * i])? << 4) | digit(b[2 * i + 1])?;
    }
    Some(out)
}

impl CrawlState {
    fn encode(&self, e: &mut Enc) {
        e.bytes(self.options.as_bytes());
        e.0.extend_from_slice(&self.key);
        e.u8(u8::from(self.files_complete));
        e.len(self.volumes.len());
        for v in &self.volumes {
            e.bytes(v.uuid.as_bytes());
            e.u64(v.block_size);
            e.u64(v.blocks);
            e.u32(v.inodes_per_group);
            e.u32(v.inode_size);
            e.len(v.groups.len());
            for g in &v.groups {
                e.len(g.digests.len());
                for (i, d) in g.digests.iter().enumerate() {
                    e.u64(*d);
                    e.u64(g.content.get(i).copied().unwrap_or(0));
                    e.u32(g.generations.get(i).copied().unwrap_or(0));
                }
                e.len(g.blocks.len());
                for b in &g.blocks {
                    e.u64(*b);
                }
            }
            e.len(v.inodes.len());
            for (ino, r) in &v.inodes {
                e.u64(*ino);
                let mut flags = 0;
                for (has, bit) in [
                    (r.listing.is_some(), HAS_LISTING),
                    (r.link.is_some(), HAS_LINK),
                    (r.sha256.is_some(), HAS_SHA),
                    (r.content.is_some(), HAS_CONTENT),
                    (r.dir_blocks.is_some(), HAS_DIR_BLOCKS),
                ] {
                    if has {
                        flags |= bit;
                    }
                }
                e.u8(flags);
                if let Some(list) = &r.listing {
                    e.len(list.len());
                    for x in list {
                        e.bytes(&x.name.0);
                        e.u64(x.ino);
                        e.u8(type_code(x.file_type));
                        e.u32(x.mode);
                        e.u32(x.uid);
                        e.u32(x.gid);
                        e.u64(x.size);
                        e.u64(x.mtime as u64);
                    }
                }
                if let Some(l) = &r.link {
                    e.bytes(&l.0);
                }
                if let Some(s) = &r.sha256 {
                    e.0.extend_from_slice(s);
                }
                if let Some(c) = &r.content {
                    e.bytes(&c.0);
                }
                if let Some(b) = &r.dir_blocks {
                    e.len(b.ranges.len());
                    for (s, t) in &b.ranges {
                        e.u64(*s);
                        e.u64(*t);
                    }
                    e.u64(b.digest);
                }
            }
        }
        e.len(self.files.len());
        for f in &self.files {
            let it = &f.item;
            let raw_sha = it.sha256.as_deref().and_then(sha_from_hex);
            let mut flags = 0;
            if it.link_target.is_some() {
                flags |= ITEM_LINK;
            }
            match (&it.sha256, raw_sha) {
                (Some(_), Some(_)) => flags |= ITEM_SHA_RAW,
                (Some(_), None) => flags |= ITEM_SHA_TEXT,
                _ => {}
            }
            if !it.extra.is_empty() {
                flags |= ITEM_EXTRA;
            }
            if f.key.is_some() {
                flags |= ITEM_KEY;
            }
            e.u8(flags);
            e.bytes(it.path.as_bytes());
            e.u8(type_code(it.file_type));
            e.u32(it.mode);
            e.u32(it.uid);
            e.u32(it.gid);
            e.u64(it.size);
            e.u64(it.mtime as u64);
            if let Some(l) = &it.link_target {
                e.bytes(l.as_bytes());
            }
            match (&it.sha256, raw_sha) {
                (Some(_), Some(raw)) => e.0.extend_from_slice(&raw),
                (Some(s), None) => e.bytes(s.as_bytes()),
                _ => {}
            }
            if !it.extra.is_empty() {
                // Serialising a JSON map cannot fail.
                e.bytes(&serde_json::to_vec(&it.extra).unwrap_or_default());
            }
            if let Some(k) = &f.key {
                e.bytes(k.volume.as_bytes());
                e.u64(k.ino);
                e.u32(k.generation);
            }
        }
    }

    fn decode(d: &mut Dec<'_>) -> DecResult<CrawlState> {
        let options = d.string()?;
        let key = d.digest()?;
        let files_complete = match d.u8()? {
            0 => false,
            1 => true,
            b => return Err(format!("files_complete byte {b}")),
        };
        let nvol = d.count(32)?;
        if nvol > MAX_VOLUMES {
            return Err(format!("{nvol} volumes"));
        }
        let mut volumes = Vec::with_capacity(nvol);
        for _ in 0..nvol {
            let uuid = d.string()?;
            let block_size = d.u64()?;
            let blocks = d.u64()?;
            let inodes_per_group = d.u32()?;
            let inode_size = d.u32()?;
            let ngroups = d.count(4)?;
            let mut groups = Vec::with_capacity(ngroups);
            for _ in 0..ngroups {
                let n = d.count(20)?;
                let mut g = GroupDigests {
                    digests: Vec::with_capacity(n),
                    content: Vec::with_capacity(n),
                    generations: Vec::with_capacity(n),
                    blocks: Vec::new(),
                };
                for _ in 0..n {
                    g.digests.push(d.u64()?);
                    g.content.push(d.u64()?);
                    g.generations.push(d.u32()?);
                }
                let nb = d.count(8)?;
                if nb > n {
                    return Err(format!(
                        "{nb} inode-table block digests for {n} inodes (byte {} of the \
                         inflated payload)",
                        d.at
                    ));
                }
                g.blocks.reserve_exact(nb);
                for _ in 0..nb {
                    g.blocks.push(d.u64()?);
                }
                groups.push(g);
            }
            let ninodes = d.count(9)?;
            let mut inodes = imbl::OrdMap::new();
            for _ in 0..ninodes {
                let at = d.at;
                let ino = d.u64()?;
                let flags = d.u8()?;
                if flags & !0x1F != 0 {
                    return Err(format!(
                        "inode record flags {flags:#x} at byte {at} of the inflated payload"
                    ));
                }
                let mut r = InodeRecord::default();
                if flags & HAS_LISTING != 0 {
                    let n = d.count(41)?;
                    let mut list = Vec::with_capacity(n);
                    for _ in 0..n {
                        list.push(EntryRecord {
                            name: Bytes(d.bytes()?),
                            ino: d.u64()?,
                            file_type: d.file_type()?,
                            mode: d.u32()?,
                            uid: d.u32()?,
                            gid: d.u32()?,
                            size: d.u64()?,
                            mtime: d.i64()?,
                        });
                    }
                    r.listing = Some(list);
                }
                if flags & HAS_LINK != 0 {
                    r.link = Some(Bytes(d.bytes()?));
                }
                if flags & HAS_SHA != 0 {
                    r.sha256 = Some(d.digest()?);
                }
                if flags & HAS_CONTENT != 0 {
                    r.content = Some(Bytes(d.bytes()?));
                }
                if flags & HAS_DIR_BLOCKS != 0 {
                    let n = d.count(16)?;
                    let mut ranges = Vec::with_capacity(n);
                    for _ in 0..n {
                        ranges.push((d.u64()?, d.u64()?));
                    }
                    r.dir_blocks = Some(DirBlocks {
                        ranges,
                        digest: d.u64()?,
                    });
                }
                if inodes.insert(ino, Arc::new(r)).is_some() {
                    return Err(format!(
                        "inode {ino} recorded twice (byte {at} of the inflated payload)"
                    ));
                }
            }
            volumes.push(Arc::new(VolumeState {
                uuid,
                block_size,
                blocks,
                inodes_per_group,
                inode_size,
                groups,
                inodes,
            }));
        }
        let nfiles = d.count(42)?;
        let mut files = Vec::with_capacity(nfiles);
        for _ in 0..nfiles {
            let at = d.at;
            let flags = d.u8()?;
            if flags & !0x1F != 0 || flags & (ITEM_SHA_RAW | ITEM_SHA_TEXT) == 0x6 {
                return Err(format!(
                    "file record flags {flags:#x} at byte {at} of the inflated payload"
                ));
            }
            let mut item = FileItem {
                path: d.string()?,
                file_type: d.file_type()?,
                mode: d.u32()?,
                uid: d.u32()?,
                gid: d.u32()?,
                size: d.u64()?,
                mtime: d.i64()?,
                ..FileItem::default()
            };
            if flags & ITEM_LINK != 0 {
                item.link_target = Some(d.string()?);
            }
            if flags & ITEM_SHA_RAW != 0 {
                item.sha256 = Some(crate::disk::file::hex(&d.digest()?));
            }
            if flags & ITEM_SHA_TEXT != 0 {
                item.sha256 = Some(d.string()?);
            }
            if flags & ITEM_EXTRA != 0 {
                let at = d.at;
                let raw = d.bytes()?;
                item.extra = serde_json::from_slice(&raw).map_err(|e| {
                    format!("item extras at byte {at} of the inflated payload: {e}")
                })?;
            }
            let key = if flags & ITEM_KEY != 0 {
                Some(InodeKey {
                    volume: d.string()?,
                    ino: d.u64()?,
                    generation: d.u32()?,
                })
            } else {
                None
            };
            files.push(Arc::new(FileRecord { item, key }));
        }
        if d.at != d.buf.len() {
            return Err(format!(
                "{} bytes after the last record of the inflated payload",
                d.buf.len() - d.at
            ));
        }
        Ok(CrawlState {
            options,
            key,
            volumes,
            files,
            files_complete,
        })
    }

    /// The state as the bytes of a state file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Enc(Vec::with_capacity(1 << 20));
        self.encode(&mut body);
        // Compressing into a Vec cannot fail.
        let payload = zstd::bulk::compress(&body.0, 1).unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(blake3::hash(&payload).as_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Reads a state from the bytes of a state file (`path` names it in errors).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<CrawlState, StateError> {
        let corrupt = |offset: u64, what: String| StateError::Corrupt {
            path: path.to_path_buf(),
            offset,
            what,
        };
        if !bytes.starts_with(MAGIC) {
            return Err(StateError::Foreign {
                path: path.to_path_buf(),
                what: "no crawl-state magic at offset 0".into(),
            });
        }
        if bytes.len() < HEADER {
            return Err(corrupt(
                bytes.len() as u64,
                format!("{} bytes, shorter than the 64-byte header", bytes.len()),
            ));
        }
        let word =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let version = word(16);
        if version != VERSION {
            return Err(StateError::Foreign {
                path: path.to_path_buf(),
                what: format!("format version {version}, this build reads {VERSION}"),
            });
        }
        if word(20) != 0 {
            return Err(corrupt(20, "reserved field is not 0".into()));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[24..32]);
        let len = u64::from_le_bytes(len);
        let have = (bytes.len() - HEADER) as u64;
        if len != have {
            return Err(corrupt(
                24,
                format!("payload length {len} but {have} bytes follow the header"),
            ));
        }
        let payload = &bytes[HEADER..];
        if blake3::hash(payload).as_bytes()[..] != bytes[32..64] {
            return Err(corrupt(32, "the payload's BLAKE3 does not match".into()));
        }
        let mut body = Vec::new();
        let inflated = zstd::stream::read::Decoder::new(payload)
            .and_then(|d| d.take(MAX_DECODED + 1).read_to_end(&mut body));
        if let Err(e) = inflated {
            return Err(corrupt(
                HEADER as u64,
                format!("payload does not inflate: {e}"),
            ));
        }
        if body.len() as u64 > MAX_DECODED {
            return Err(corrupt(
                HEADER as u64,
                format!("payload inflates past {MAX_DECODED} bytes"),
            ));
        }
        let state = CrawlState::decode(&mut Dec { buf: &body, at: 0 })
            .map_err(|what| corrupt(HEADER as u64, format!("payload does not decode: {what}")))?;
        state.check().map_err(|what| corrupt(HEADER as u64, what))?;
        Ok(state)
    }

    /// Whether the numbers hang together (a state parsed from a file is checked so).
    fn check(&self) -> Result<(), String> {
        if self.volumes.len() > MAX_VOLUMES {
            return Err(format!("{} volumes", self.volumes.len()));
        }
        for v in &self.volumes {
            if !v.block_size.is_power_of_two() || !(1024..=65536).contains(&v.block_size) {
                return Err(format!("volume {}: block size {}", v.uuid, v.block_size));
            }
            if v.inodes_per_group == 0 || v.inode_size < 128 {
                return Err(format!("volume {}: inode geometry", v.uuid));
            }
            for (g, d) in v.groups.iter().enumerate() {
                if d.digests.len() != d.generations.len()
                    || d.digests.len() != d.content.len()
                    || d.digests.len() > v.inodes_per_group as usize
                {
                    return Err(format!("volume {}: group {g}'s digests", v.uuid));
                }
            }
        }
        Ok(())
    }

    /// Reads the state file at `path` (at most [`MAX_FILE`] bytes).
    pub fn load(path: &Path) -> Result<CrawlState, StateError> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(StateError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                what: format!("larger than {MAX_FILE} bytes"),
            });
        }
        Self::from_bytes(path, &bytes)
    }

    /// Writes the state to `path` atomically: a temporary file in the same folder, synced,
    /// then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            name.unwrap_or_else(|| "state".into()),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.to_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

mod codec;
use codec::{Dec, DecResult, Enc};

#[cfg(test)]
mod tests;

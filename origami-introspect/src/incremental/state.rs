//! The crawl state: what one crawl learnt of each ext4 volume, saved so that the next crawl
//! reads only what changed.
//!
//! A state file is self-describing and checked before anything in it is believed:
//!
//! ```text
//! offset  size  field
//! 0       16    magic "ORIGAMI-CRAWLST\n"
//! 16      4     format version, little-endian (this build writes and reads 1)
//! 20      4     reserved, 0
//! 24      8     payload length in bytes, little-endian
//! 32      32    sha256 of the payload
//! 64      ...   payload: zstd-compressed JSON of [`CrawlState`]
//! ```
//!
//! A file of another program, another version, a wrong length or digest, a payload that
//! does not inflate within [`MAX_DECODED`] bytes or does not parse, or whose numbers do not
//! hang together, is a [`StateError`]: the caller crawls in full and says why. Nothing read
//! sizes an allocation beyond those bounds.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use origami_frame::{FileItem, FileType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first 16 bytes of every state file.
pub const MAGIC: &[u8; 16] = b"ORIGAMI-CRAWLST\n";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
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

/// Raw bytes (guest names, link targets, file contents), stored as hex.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::disk::file::hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd hex length"));
        }
        s.as_bytes()
            .chunks_exact(2)
            .map(|p| Some((digit(p[0])? << 4) | digit(p[1])?))
            .collect::<Option<Vec<u8>>>()
            .map(Bytes)
            .ok_or_else(|| serde::de::Error::custom("not hex"))
    }
}

/// Everything a crawl keeps for the next one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CrawlState {
    /// A digest of the crawl options that shape the `file` section: events are computed
    /// only between crawls made with the same options.
    pub options: String,
    /// The ext4 volumes read, by UUID.
    pub volumes: Vec<VolumeState>,
    /// The previous frame's `file` section, each item with its inode where known: what
    /// the next crawl's file events are computed against.
    pub files: Vec<FileRecord>,
}

/// What one crawl learnt of one ext4 volume.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
    /// What the crawl derived from each inode it read, by inode number.
    pub inodes: BTreeMap<u64, InodeRecord>,
}

/// The digests of one group's used inodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GroupDigests {
    /// Per inode of the used part of the table: the digest of its raw bytes (access time
    /// left out, see [`super::ext4_raw::digest_inode`]).
    pub digests: Vec<u64>,
    /// Per inode: its generation (`i_generation`), which tells a reused inode number from
    /// the same file.
    pub generations: Vec<u32>,
}

/// What a crawl derived from one inode.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InodeRecord {
    /// A directory's entries (without `.` and `..`), as listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<Vec<EntryRecord>>,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Bytes>,
    /// A regular file's sha256 (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A small regular file's whole content, as read (config text, package databases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Bytes>,
    /// A directory's blocks (and extent-tree blocks below its inode), as byte ranges of the
    /// volume, and the digest of what they held: a listing is reused only when they still
    /// hold the same bytes, whatever wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_blocks: Option<DirBlocks>,
}

/// Where a directory's blocks lie and the digest of their bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DirBlocks {
    /// Byte ranges of the volume, `[start, end)`.
    pub ranges: Vec<(u64, u64)>,
    /// The digest of their bytes, in order.
    pub digest: u64,
}

/// One directory entry: a name and what `lstat` gave for it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EntryRecord {
    /// The name.
    pub name: Bytes,
    /// Its inode.
    pub ino: u64,
    /// Its type.
    #[serde(rename = "type")]
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InodeKey {
    /// The volume's UUID.
    pub volume: String,
    /// The inode number.
    pub ino: u64,
    /// Its generation.
    pub generation: u32,
}

/// A `file` item of the previous frame, with its inode where known.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    /// The item as the frame had it.
    pub item: FileItem,
    /// Its inode (ext4 volumes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<InodeKey>,
}

impl CrawlState {
    /// The state as the bytes of a state file.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data to JSON cannot fail; compressing into a Vec cannot either.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let payload = zstd::bulk::compress(&json, 3).unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&payload));
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
        if Sha256::digest(payload)[..] != bytes[32..64] {
            return Err(corrupt(32, "the payload's sha256 does not match".into()));
        }
        let mut json = Vec::new();
        let inflated = zstd::stream::read::Decoder::new(payload)
            .and_then(|d| d.take(MAX_DECODED + 1).read_to_end(&mut json));
        if let Err(e) = inflated {
            return Err(corrupt(
                HEADER as u64,
                format!("payload does not inflate: {e}"),
            ));
        }
        if json.len() as u64 > MAX_DECODED {
            return Err(corrupt(
                HEADER as u64,
                format!("payload inflates past {MAX_DECODED} bytes"),
            ));
        }
        let state: CrawlState = serde_json::from_slice(&json)
            .map_err(|e| corrupt(HEADER as u64, format!("payload does not parse: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CrawlState {
        let mut v = VolumeState {
            uuid: "u".into(),
            block_size: 4096,
            blocks: 10,
            inodes_per_group: 16,
            inode_size: 256,
            groups: vec![GroupDigests {
                digests: vec![1, 2],
                generations: vec![0, 9],
            }],
            ..VolumeState::default()
        };
        v.inodes.insert(
            2,
            InodeRecord {
                link: Some(Bytes(vec![0, 255, b'a'])),
                ..InodeRecord::default()
            },
        );
        CrawlState {
            options: "o".into(),
            volumes: vec![v],
            files: Vec::new(),
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        let b = s.to_bytes();
        assert_eq!(CrawlState::from_bytes(Path::new("s"), &b).unwrap(), s);
    }

    #[test]
    fn every_damage_is_an_error() {
        let b = sample().to_bytes();
        for cut in [0, 10, 16, 63, 64, b.len() - 1] {
            assert!(
                CrawlState::from_bytes(Path::new("s"), &b[..cut]).is_err(),
                "cut {cut}"
            );
        }
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(
                CrawlState::from_bytes(Path::new("s"), &c).is_err(),
                "flip {i}"
            );
        }
        let mut huge = b.clone();
        huge[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            CrawlState::from_bytes(Path::new("s"), &huge),
            Err(StateError::Corrupt { offset: 24, .. })
        ));
        assert!(matches!(
            CrawlState::from_bytes(Path::new("s"), b"{\"volumes\": []}"),
            Err(StateError::Foreign { .. })
        ));
    }
}

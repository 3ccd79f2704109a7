// Copyright 2024 Google LLC
//
// Licensed under the Apache License, Version 2.0 <LICENSE-APACHE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license
// <LICENSE-MIT or https://opensource.org/licenses/MIT>, at your
// option. This file may not be copied, modified, or distributed
// except according to those terms.

use crate::Ext4;
use crate::block_index::FsBlockIndex;
use crate::checksum::Checksum;
use crate::error::{CorruptKind, Ext4Error};
use crate::file_type::FileType;
use crate::metadata::Metadata;
use crate::path::PathBuf;
use crate::timestamp::Timestamp;
use crate::util::{
    read_u16le, read_u32le, u32_from_hilo, u64_from_hilo, usize_from_u32,
};
use alloc::vec;
use alloc::vec::Vec;
use bitflags::bitflags;
use core::num::NonZeroU32;

/// Inode index.
///
/// This is always nonzero.
pub(crate) type InodeIndex = NonZeroU32;

bitflags! {
    /// Inode flags.
    #[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
    pub(crate) struct InodeFlags: u32 {
        /// File is immutable.
        const IMMUTABLE = 0x10;

        /// Directory is encrypted.
        const DIRECTORY_ENCRYPTED = 0x800;

        /// Directory has hashed indexes.
        const DIRECTORY_HTREE = 0x1000;

        /// File is huge.
        const HUGE_FILE = 0x4_0000;

        /// Inode uses extents.
        const EXTENTS = 0x8_0000;

        /// Verity protected data.
        const VERITY = 0x10_0000;

        /// Inode stores a large extended attribute value in its data blocks.
        const EXTENDED_ATTRIBUTES = 0x20_0000;

        /// Inode has inline data.
        const INLINE_DATA = 0x1000_0000;

        // TODO: other flags
    }
}

bitflags! {
    /// Inode mode.
    ///
    /// The mode bitfield stores file permissions in the lower bits and
    /// file type in the upper bits.
    #[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
    pub(crate) struct InodeMode: u16 {
        const S_IXOTH = 0x0001;
        const S_IWOTH = 0x0002;
        const S_IROTH = 0x0004;

        const S_IXGRP = 0x0008;
        const S_IWGRP = 0x0010;
        const S_IRGRP = 0x0020;

        const S_IXUSR = 0x0040;
        const S_IWUSR = 0x0080;
        const S_IRUSR = 0x0100;

        const S_ISVTX = 0x0200;

        const S_ISGID = 0x0400;
        const S_ISUID = 0x0800;

        // Mutually-exclusive file types:
        const S_IFIFO = 0x1000;
        const S_IFCHR = 0x2000;
        const S_IFDIR = 0x4000;
        const S_IFBLK = 0x6000;
        const S_IFREG = 0x8000;
        const S_IFLNK = 0xA000;
        const S_IFSOCK = 0xC000;
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Inode {
    /// This inode's index.
    pub(crate) index: InodeIndex,

    /// Various kinds of file data can be stored within the inode, including:
    /// * The root node of the extent tree.
    /// * Target path for symlinks.
    pub(crate) inline_data: [u8; Self::INLINE_DATA_LEN],

    pub(crate) metadata: Metadata,

    /// Internal inode flags.
    pub(crate) flags: InodeFlags,

    /// Checksum seed used in various places.
    pub(crate) checksum_base: Checksum,

    /// Number of blocks in the file (including holes).
    file_size_in_blocks: u32,

    /// Origami patch (`inline_data`): for an inode with the
    /// `INLINE_DATA` flag, the value of its in-inode `system.data`
    /// extended attribute, which holds the content past the 60 bytes of
    /// `inline_data`. Empty otherwise.
    pub(crate) inline_extra: Vec<u8>,
}

impl Inode {
    const INLINE_DATA_LEN: usize = 60;
    const L_I_CHECKSUM_LO_OFFSET: usize = 0x74 + 0x8;
    const I_CHECKSUM_HI_OFFSET: usize = 0x82;
    const I_CTIME_EXTRA_OFFSET: usize = 0x84;
    const I_MTIME_EXTRA_OFFSET: usize = 0x88;
    const I_ATIME_EXTRA_OFFSET: usize = 0x8c;
    const I_CRTIME_OFFSET: usize = 0x90;
    const I_CRTIME_EXTRA_OFFSET: usize = 0x94;

    /// Load an inode from `bytes`.
    ///
    /// If successful, returns a tuple containing the inode and its
    /// checksum field.
    fn from_bytes(
        ext4: &Ext4,
        index: InodeIndex,
        data: &[u8],
    ) -> Result<(Self, u32), Ext4Error> {
        // Inodes must be at least 128 bytes.
        if data.len() < 128 {
            return Err(CorruptKind::InodeTruncated {
                inode: index,
                size: data.len(),
            }
            .into());
        }

        // If metadata checksums are enabled, the inode must be big
        // enough to include the checksum fields.
        if ext4.has_metadata_checksums()
            && data.len() < (Self::I_CHECKSUM_HI_OFFSET + 2)
        {
            return Err(CorruptKind::InodeTruncated {
                inode: index,
                size: data.len(),
            }
            .into());
        }

        let i_mode = read_u16le(data, 0x0);
        let i_uid = read_u16le(data, 0x2);
        let i_size_lo = read_u32le(data, 0x4);
        let i_atime = read_u32le(data, 0x8);
        let i_ctime = read_u32le(data, 0xc);
        let i_mtime = read_u32le(data, 0x10);
        let i_gid = read_u16le(data, 0x18);
        let i_flags = read_u32le(data, 0x20);
        // OK to unwrap: already checked the length.
        let i_block = data.get(0x28..0x28 + Self::INLINE_DATA_LEN).unwrap();
        let i_generation = read_u32le(data, 0x64);
        let i_size_high = read_u32le(data, 0x6c);
        let l_i_uid_high = read_u16le(data, 0x74 + 0x4);
        let l_i_gid_high = read_u16le(data, 0x74 + 0x6);
        let (l_i_checksum_lo, i_checksum_hi) = if ext4.has_metadata_checksums()
        {
            (
                read_u16le(data, Self::L_I_CHECKSUM_LO_OFFSET),
                read_u16le(data, Self::I_CHECKSUM_HI_OFFSET),
            )
        } else {
            // If metadata checksums aren't enabled then these values
            // aren't used; arbitrarily set to zero.
            (0, 0)
        };

        // Extra timestamps fields & creation time if inode large enough.
        let (i_atime_extra, i_ctime_extra, i_mtime_extra, crtime) = if data
            .len()
            >= Self::I_CRTIME_EXTRA_OFFSET + 4
        {
            let i_atime_extra = read_u32le(data, Self::I_ATIME_EXTRA_OFFSET);
            let i_ctime_extra = read_u32le(data, Self::I_CTIME_EXTRA_OFFSET);
            let i_mtime_extra = read_u32le(data, Self::I_MTIME_EXTRA_OFFSET);
            let i_crtime = read_u32le(data, Self::I_CRTIME_OFFSET);
            let i_crtime_extra = read_u32le(data, Self::I_CRTIME_EXTRA_OFFSET);
            let crtime = Timestamp::from_raw(i_crtime, Some(i_crtime_extra))
                .map_err(|_| CorruptKind::InodeTimestamp { inode: index })?;
            (
                Some(i_atime_extra),
                Some(i_ctime_extra),
                Some(i_mtime_extra),
                Some(crtime),
            )
        } else {
            (None, None, None, None)
        };

        let atime = Timestamp::from_raw(i_atime, i_atime_extra)
            .map_err(|_| CorruptKind::InodeTimestamp { inode: index })?;
        let ctime = Timestamp::from_raw(i_ctime, i_ctime_extra)
            .map_err(|_| CorruptKind::InodeTimestamp { inode: index })?;
        let mtime = Timestamp::from_raw(i_mtime, i_mtime_extra)
            .map_err(|_| CorruptKind::InodeTimestamp { inode: index })?;

        let size_in_bytes = u64_from_hilo(i_size_high, i_size_lo);
        let uid = u32_from_hilo(l_i_uid_high, i_uid);
        let gid = u32_from_hilo(l_i_gid_high, i_gid);
        let checksum = u32_from_hilo(i_checksum_hi, l_i_checksum_lo);
        let mode = InodeMode::from_bits_retain(i_mode);

        let mut checksum_base =
            Checksum::with_seed(ext4.0.superblock.checksum_seed);
        checksum_base.update_u32_le(index.get());
        checksum_base.update_u32_le(i_generation);

        let file_size_in_blocks: u32 = size_in_bytes
            // Round up.
            .div_ceil(ext4.0.superblock.block_size.to_u64())
            // Ext4 allows at most `2^32` blocks in a file.
            .try_into()
            .map_err(|_| CorruptKind::TooManyBlocksInFile)?;

        Ok((
            Self {
                index,
                // OK to unwap, we know `i_block` is 60 bytes.
                inline_data: i_block.try_into().unwrap(),
                metadata: Metadata {
                    size_in_bytes,
                    mode,
                    uid,
                    gid,
                    file_type: FileType::try_from(mode).map_err(|_| {
                        CorruptKind::InodeFileType { inode: index, mode }
                    })?,
                    atime,
                    ctime,
                    mtime,
                    crtime,
                },
                flags: InodeFlags::from_bits_retain(i_flags),
                checksum_base,
                file_size_in_blocks,
                inline_extra: if i_flags & InodeFlags::INLINE_DATA.bits() != 0 {
                    system_data_xattr(data)
                        .ok_or(CorruptKind::InodeInlineData(index))?
                        .to_vec()
                } else {
                    Vec::new()
                },
            },
            checksum,
        ))
    }

    /// Origami patch (`inline_data`): the whole content of an inode with
    /// the `INLINE_DATA` flag (the 60 bytes of `i_block`, then the
    /// `system.data` attribute), cut to the file size; an error if the
    /// size is larger than what the inode holds.
    pub(crate) fn inline_content(&self) -> Result<Vec<u8>, Ext4Error> {
        let mut content = Vec::with_capacity(
            self.inline_data
                .len()
                .saturating_add(self.inline_extra.len()),
        );
        content.extend_from_slice(&self.inline_data);
        content.extend_from_slice(&self.inline_extra);
        let size = usize::try_from(self.metadata.size_in_bytes)
            .map_err(|_| CorruptKind::InodeInlineData(self.index))?;
        if size > content.len() {
            return Err(CorruptKind::InodeInlineData(self.index).into());
        }
        // A directory's size counts both regions, like a file's.
        content.truncate(size);
        Ok(content)
    }

    /// Whether the content is stored in the inode (`inline_data`).
    pub(crate) fn is_inline(&self) -> bool {
        self.flags.contains(InodeFlags::INLINE_DATA)
    }

    /// Read an inode.
    pub(crate) fn read(
        ext4: &Ext4,
        inode: InodeIndex,
    ) -> Result<Self, Ext4Error> {
        let (block_index, offset_within_block) =
            get_inode_location(ext4, inode)?;

        let mut data = vec![0; usize::from(ext4.0.superblock.inode_size)];
        ext4.read_from_block(block_index, offset_within_block, &mut data)?;

        let (inode, expected_checksum) = Self::from_bytes(ext4, inode, &data)?;

        // Verify the inode checksum.
        if ext4.has_metadata_checksums() {
            let mut checksum = inode.checksum_base.clone();

            // Hash all the inode data, but treat the two checksum
            // fields as zeroes.

            // Up to the l_i_checksum_lo field.
            checksum.update(&data[..Self::L_I_CHECKSUM_LO_OFFSET]);

            // Zero'd field.
            checksum.update_u16_le(0);

            // Up to the i_checksum_hi field.
            checksum.update(
                &data[Self::L_I_CHECKSUM_LO_OFFSET + 2
                    ..Self::I_CHECKSUM_HI_OFFSET],
            );

            // Zero'd field.
            checksum.update_u16_le(0);

            // Rest of the inode.
            checksum.update(&data[Self::I_CHECKSUM_HI_OFFSET + 2..]);

            let actual_checksum = checksum.finalize();
            if actual_checksum != expected_checksum {
                return Err(CorruptKind::InodeChecksum(inode.index).into());
            }
        }

        Ok(inode)
    }

    /// Longest symlink target read (Linux's `PATH_MAX`; origami patch).
    const MAX_SYMLINK_LEN: u64 = 4096;

    pub(crate) fn symlink_target(
        &self,
        ext4: &Ext4,
    ) -> Result<PathBuf, Ext4Error> {
        if !self.metadata.is_symlink() {
            return Err(Ext4Error::NotASymlink);
        }

        // An empty symlink target is not allowed. Origami patch: nor one
        // longer than Linux's PATH_MAX (4096): the target was read whole
        // into a vector of the inode's size, so a hostile size of 4 GiB
        // made a 4 GiB allocation (found by origami's fs_ext4 fuzz target).
        if self.metadata.size_in_bytes == 0
            || self.metadata.size_in_bytes > Self::MAX_SYMLINK_LEN
        {
            return Err(CorruptKind::SymlinkTarget(self.index).into());
        }

        // Symlink targets of up to 59 bytes are stored inline. Longer
        // targets are stored as regular file data.
        const MAX_INLINE_SYMLINK_LEN: u64 = 59;

        if self.metadata.size_in_bytes <= MAX_INLINE_SYMLINK_LEN {
            // OK to unwrap since we checked the size above.
            let len = usize::try_from(self.metadata.size_in_bytes).unwrap();
            let target = &self.inline_data[..len];

            PathBuf::try_from(target)
                .map_err(|_| CorruptKind::SymlinkTarget(self.index).into())
        } else {
            let data = ext4.read_inode_file(self)?;
            PathBuf::try_from(data)
                .map_err(|_| CorruptKind::SymlinkTarget(self.index).into())
        }
    }

    /// Get the number of blocks in the file.
    ///
    /// If the file size is not an even multiple of the block size,
    /// round up.
    ///
    /// # Errors
    ///
    /// Ext4 allows at most `2^32` blocks in a file. Returns
    /// `CorruptKind::TooManyBlocksInFile` if that limit is exceeded.
    pub(crate) fn file_size_in_blocks(&self) -> u32 {
        self.file_size_in_blocks
    }
}

/// Origami patch (`inline_data`): the value of the `system.data`
/// extended attribute stored in the inode's extra space (after
/// `128 + i_extra_isize` bytes: a 0xEA020000 magic, then entries of
/// 16 bytes plus the name, padded to 4, ended by 4 zero bytes; values
/// at offsets from the first entry). `Some(&[])` when the inode has no
/// such attribute (small inline files do not), `None` when the
/// attribute area is corrupt. Every offset is checked against `data`.
fn system_data_xattr(data: &[u8]) -> Option<&[u8]> {
    if data.len() < 132 {
        return Some(&[]);
    }
    let extra_isize = usize::from(read_u16le(data, 0x80));
    let start = 128usize.checked_add(extra_isize)?;
    let base = start.checked_add(4)?;
    match data.get(start..base) {
        Some(magic) if magic == 0xEA02_0000u32.to_le_bytes() => {}
        _ => return Some(&[]),
    }
    let mut pos = base;
    // Each entry takes at least 16 bytes, so this ends within data.len() / 16 steps.
    while let Some(entry) = data.get(pos..pos.checked_add(16)?) {
        if read_u32le(entry, 0) == 0 {
            break;
        }
        let name_len = usize::from(entry[0]);
        let name_index = entry[1];
        let value_offs = usize::from(read_u16le(entry, 2));
        let value_inum = read_u32le(entry, 4);
        let value_size = usize::try_from(read_u32le(entry, 8)).ok()?;
        let name_start = pos.checked_add(16)?;
        let name_end = name_start.checked_add(name_len)?;
        let name = data.get(name_start..name_end)?;
        if name_index == 7 && name == b"data" {
            if value_inum != 0 {
                return None;
            }
            let from = base.checked_add(value_offs)?;
            return data.get(from..from.checked_add(value_size)?);
        }
        // The next entry starts at the next multiple of 4.
        pos = name_end.checked_add(3)? & !3;
    }
    Some(&[])
}

/// Get an inode's location: block index and offset within that block.
/// Note that this is the location of the inode itself, not the file
/// data associated with the inode.
fn get_inode_location(
    ext4: &Ext4,
    inode: InodeIndex,
) -> Result<(FsBlockIndex, u32), Ext4Error> {
    let sb = &ext4.0.superblock;

    // OK to unwrap: `inode` is nonzero.
    let inode_minus_1 = inode.get().checked_sub(1).unwrap();

    let block_group_index = inode_minus_1 / sb.inodes_per_block_group;

    let group = ext4
        .0
        .block_group_descriptors
        .get(usize_from_u32(block_group_index))
        .ok_or(CorruptKind::InodeBlockGroup {
            inode,
            block_group: block_group_index,
            num_block_groups: ext4.0.block_group_descriptors.len(),
        })?;

    let index_within_group = inode_minus_1 % sb.inodes_per_block_group;

    let err = || CorruptKind::InodeLocation {
        inode,
        block_group: block_group_index,
        inodes_per_block_group: sb.inodes_per_block_group,
        inode_size: sb.inode_size,
        block_size: sb.block_size,
        inode_table_first_block: group.inode_table_first_block,
    };

    let byte_offset_within_group = u64::from(index_within_group)
        .checked_mul(u64::from(sb.inode_size))
        .ok_or_else(err)?;

    let byte_offset_of_group = sb
        .block_size
        .to_u64()
        .checked_mul(group.inode_table_first_block)
        .ok_or_else(err)?;

    // Absolute byte index of the inode.
    let start_byte = byte_offset_of_group
        .checked_add(byte_offset_within_group)
        .ok_or_else(err)?;

    let block_index = start_byte / sb.block_size.to_nz_u64();
    let offset_within_block =
        u32::try_from(start_byte % sb.block_size.to_nz_u64())
            .map_err(|_| err())?;

    Ok((block_index, offset_within_block))
}

//! Disk images: a guest disk's bytes, whatever file format holds them.
//!
//! [`Image::open`] sniffs the format by its magic, never by the file name: qcow2 (v2, v3,
//! with backing chains followed), VMDK (sparse extents, and descriptor files naming their
//! extents), VHDX, or raw. VHD, VDI, QED and qcow version 1 are recognised and refused with
//! [`Error::UnsupportedFormat`] rather than read as raw bytes.
//!
//! An image name that is an NBD URI (`nbd+unix:///EXPORT?socket=PATH`,
//! `nbd://127.0.0.1:PORT/EXPORT`) opens that export through [`crate::nbd::NbdClient`]
//! instead of a file.
//!
//! A file an image names (a qcow2 backing file, a VMDK extent) is opened only when it lies,
//! symlinks followed, in the folder of the image that names it or in a folder
//! [`ImageOptions::allow_dir`] allows; `json:` and protocol names are never opened (see
//! [`ImageOptions`]). A relative name is resolved against the folder of the image that
//! names it. A backing chain is followed at most [`MAX_BACKING_DEPTH`] images deep, and a
//! chain that comes back to an image already in it is an error.
//!
//! ```no_run
//! use origami_core::partition::read_partitions;
//! use origami_core::{Image, ReadAt};
//!
//! let disk = Image::open("vm.qcow2")?;
//! for p in read_partitions(&disk)?.partitions {
//!     let part = p.open(&disk)?; // a ReadAt of the partition's bytes
//!     let mut superblock = [0u8; 1024];
//!     part.read_at(1024, &mut superblock)?;
//!     println!("p{} {} {} bytes", p.number, p.type_name, part.len());
//! }
//! # Ok::<(), origami_core::Error>(())
//! ```

mod named;
pub mod qcow2;
pub mod vhdx;
pub mod vmdk;
mod vmdk_descriptor;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::read::{FileSource, ReadAt};

pub use named::ImageOptions;
pub use qcow2::{Compression, Qcow2Header, Qcow2Image};
pub use vhdx::VhdxImage;
pub use vmdk::VmdkImage;
use vmdk_descriptor::VmdkDescriptorImage;
pub use vmdk_descriptor::MAX_EXTENTS;

/// How deep a backing chain may go (qemu sets no limit; real chains are a few images).
pub const MAX_BACKING_DEPTH: usize = 32;

/// The container format of an [`Image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageFormat {
    /// The guest's bytes as they are.
    Raw,
    /// QEMU copy-on-write, version 2 or 3.
    Qcow2,
    /// VMware VMDK: a hosted sparse extent (`monolithicSparse`, `streamOptimized`), or a
    /// descriptor file naming flat, sparse or zero extents.
    Vmdk,
    /// Hyper-V VHDX, fixed or dynamic.
    Vhdx,
    /// An NBD export (the image name is an NBD URI, see [`crate::nbd`]): the guest's
    /// bytes as the server serves them.
    Nbd,
}

enum Inner {
    Raw(FileSource),
    Qcow2(Box<Qcow2Image>),
    Vmdk(Box<VmdkImage>),
    VmdkDescriptor(Box<VmdkDescriptorImage>),
    Vhdx(Box<VhdxImage>),
    Nbd(Box<crate::nbd::NbdClient>),
}

/// A disk image opened read-only: reads give the guest-visible bytes.
pub struct Image {
    path: PathBuf,
    format: ImageFormat,
    backing: Option<PathBuf>,
    inner: Inner,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("backing", &self.backing)
            .finish_non_exhaustive()
    }
}

/// The first line of a VMDK descriptor file.
const DESCRIPTOR_MAGIC: &[u8] = b"# Disk DescriptorFile";

fn is_vmdk_descriptor(src: &FileSource) -> Result<bool> {
    let mut head = [0u8; DESCRIPTOR_MAGIC.len()];
    if src.len() < head.len() as u64 {
        return Ok(false);
    }
    src.read_at(0, &mut head)?;
    Ok(head == DESCRIPTOR_MAGIC)
}

/// What the first bytes of a file say it is.
fn sniff(src: &FileSource) -> Result<ImageFormat> {
    let mut head = [0u8; 512];
    let n = src.len().min(head.len() as u64) as usize;
    src.read_at(0, &mut head[..n])?;
    let head = &head[..n];
    let unsupported = |format: &str| Error::UnsupportedFormat {
        path: src.path().to_path_buf(),
        format: format.into(),
    };
    if head.starts_with(&qcow2::QCOW2_MAGIC) {
        let version = head
            .get(4..8)
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        return match version {
            Some(1) => Err(unsupported("qcow (version 1)")),
            _ => Ok(ImageFormat::Qcow2),
        };
    }
    if head.starts_with(&vmdk::VMDK_MAGIC) {
        return Ok(ImageFormat::Vmdk);
    }
    if head.starts_with(b"COWD") {
        return Err(unsupported("VMDK (ESX COW sparse)"));
    }
    if head.starts_with(DESCRIPTOR_MAGIC) {
        return Ok(ImageFormat::Vmdk);
    }
    if head.starts_with(&vhdx::VHDX_MAGIC) {
        return Ok(ImageFormat::Vhdx);
    }
    if head.starts_with(b"conectix") {
        return Err(unsupported("VHD (dynamic)"));
    }
    if head.starts_with(b"QED\0") {
        return Err(unsupported("QED"));
    }
    if head.get(0x40..0x44) == Some(&[0x7f, 0x10, 0xda, 0xbe]) {
        return Err(unsupported("VDI"));
    }
    Ok(ImageFormat::Raw)
}

impl Image {
    /// Opens the image at `path`, sniffing its format and following its backing chain, with
    /// the default [`ImageOptions`]: files the image names (backing files, VMDK extents)
    /// must lie in the folder of the image that names them.
    pub fn open(path: impl AsRef<Path>) -> Result<Image> {
        Self::open_with(path, &ImageOptions::default())
    }

    /// Opens the image at `path` like [`Image::open`], letting the files it names lie in the
    /// folders `options` allows too. A named file outside them, or a `json:` or protocol
    /// name, is refused with [`Error::RefusedFile`] before it is opened.
    pub fn open_with(path: impl AsRef<Path>, options: &ImageOptions) -> Result<Image> {
        let path = path.as_ref();
        if let Some(uri) = path.to_str().filter(|p| crate::nbd::is_nbd_uri(p)) {
            let client = crate::nbd::NbdClient::open(uri, options.nbd())?;
            return Ok(Image {
                path: path.to_path_buf(),
                format: ImageFormat::Nbd,
                backing: None,
                inner: Inner::Nbd(Box::new(client)),
            });
        }
        let allowed = options.resolve()?;
        let mut chain = Vec::new();
        let file = FileSource::open(path)?;
        Self::open_in_chain(path, file, None, &allowed, &mut chain)
    }

    /// Opens a file `image` names as its `what`, after checking it against the rule.
    fn open_named(
        image: &Path,
        what: &'static str,
        name: &str,
        allowed: &[PathBuf],
    ) -> Result<(PathBuf, FileSource)> {
        let named = named::resolve_named(image, what, name, allowed)?;
        let meta = std::fs::metadata(&named.canonical).map_err(|source| Error::Io {
            path: named.joined.clone(),
            offset: 0,
            source,
        })?;
        let kind = meta.file_type();
        // A FIFO would block the open, a character device is no disk.
        if !kind.is_file() && !kind.is_block_device() {
            return Err(Error::RefusedFile {
                image: image.to_path_buf(),
                what,
                name: name.to_string(),
                rule: format!(
                    "{} is not a regular file or a block device",
                    named.canonical.display()
                ),
            });
        }
        let file = FileSource::open_named(&named.canonical, &named.joined)?;
        Ok((named.joined, file))
    }

    fn open_in_chain(
        path: &Path,
        file: FileSource,
        forced: Option<ImageFormat>,
        allowed: &[PathBuf],
        chain: &mut Vec<PathBuf>,
    ) -> Result<Image> {
        let canonical = std::fs::canonicalize(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            offset: 0,
            source,
        })?;
        if let Some(first) = chain.first() {
            if chain.contains(&canonical) {
                return Err(Error::BackingChain {
                    path: first.clone(),
                    reason: format!("the chain loops back to {}", canonical.display()),
                });
            }
            if chain.len() >= MAX_BACKING_DEPTH {
                return Err(Error::BackingChain {
                    path: first.clone(),
                    reason: format!("more than {MAX_BACKING_DEPTH} images deep"),
                });
            }
        }
        chain.push(canonical);
        let format = match forced {
            Some(f) => f,
            None => sniff(&file)?,
        };
        let image = |backing, inner| Image {
            path: path.to_path_buf(),
            format,
            backing,
            inner,
        };
        match format {
            // An NBD export is named by a URI, never found in a file or a backing chain.
            ImageFormat::Nbd => Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                format: "an NBD export inside a file".into(),
            }),
            ImageFormat::Raw => Ok(image(None, Inner::Raw(file))),
            ImageFormat::Vmdk if is_vmdk_descriptor(&file)? => {
                let name = file.name();
                let len = file.len();
                if len > vmdk_descriptor::MAX_DESCRIPTOR {
                    return Err(Error::Corrupt {
                        source_name: name,
                        offset: 0,
                        reason: format!("VMDK descriptor of {len} bytes"),
                    });
                }
                let mut text = vec![0u8; len as usize];
                file.read_at(0, &mut text)?;
                let lines = vmdk_descriptor::parse(&String::from_utf8_lossy(&text), &name)?;
                let mut open = |extent: &str| {
                    Self::open_named(path, "extent", extent, allowed).map(|(_, f)| f)
                };
                let disk = VmdkDescriptorImage::open(name, &lines, &mut open)?;
                Ok(image(None, Inner::VmdkDescriptor(Box::new(disk))))
            }
            ImageFormat::Vmdk => Ok(image(
                None,
                Inner::Vmdk(Box::new(VmdkImage::from_source(file)?)),
            )),
            ImageFormat::Vhdx => Ok(image(
                None,
                Inner::Vhdx(Box::new(VhdxImage::from_source(file)?)),
            )),
            ImageFormat::Qcow2 => {
                let mut qcow2 = Qcow2Image::from_source(file)?;
                let mut backing_path = None;
                if let Some(name) = qcow2.header().backing_file.clone() {
                    let backing_format = match qcow2.header().backing_format.as_deref() {
                        None => None,
                        Some("raw") => Some(ImageFormat::Raw),
                        Some("qcow2") => Some(ImageFormat::Qcow2),
                        Some(other) => {
                            return Err(Error::BackingChain {
                                path: path.to_path_buf(),
                                reason: format!("backing file format {other:?} is not supported"),
                            })
                        }
                    };
                    let (joined, file) = Self::open_named(path, "backing file", &name, allowed)?;
                    let backing =
                        Self::open_in_chain(&joined, file, backing_format, allowed, chain)?;
                    qcow2 = qcow2.with_backing(Box::new(backing));
                    backing_path = Some(joined);
                }
                Ok(image(backing_path, Inner::Qcow2(Box::new(qcow2))))
            }
        }
    }

    /// The container format.
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// The path the image was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backing file this image reads unallocated clusters from, resolved, if any.
    pub fn backing_file(&self) -> Option<&Path> {
        self.backing.as_deref()
    }

    /// Fails with [`Error::ChangedWhileRead`] when this qcow2 image's metadata changed
    /// since it was opened and read: something writes it, and what was read may mix two
    /// states (see [`Qcow2Image::check_unchanged`]; backing images, which a running VM does
    /// not write, are not checked). Other formats: `Ok`.
    pub fn check_unchanged(&self) -> Result<()> {
        if let Inner::Qcow2(q) = &self.inner {
            q.check_unchanged()?;
        }
        Ok(())
    }

    /// The NBD client, when the image is an NBD export (for its block status and dirty
    /// bitmaps).
    pub fn nbd(&self) -> Option<&crate::nbd::NbdClient> {
        match &self.inner {
            Inner::Nbd(c) => Some(c),
            _ => None,
        }
    }

    /// The qcow2 layer, when the image is qcow2.
    pub fn qcow2(&self) -> Option<&Qcow2Image> {
        match &self.inner {
            Inner::Qcow2(q) => Some(q),
            _ => None,
        }
    }
}

impl ReadAt for Image {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match &self.inner {
            Inner::Raw(f) => f.read_at(offset, buf),
            Inner::Qcow2(q) => q.read_at(offset, buf),
            Inner::Vmdk(v) => v.read_at(offset, buf),
            Inner::VmdkDescriptor(v) => v.read_at(offset, buf),
            Inner::Vhdx(v) => v.read_at(offset, buf),
            Inner::Nbd(n) => n.read_at(offset, buf),
        }
    }

    fn len(&self) -> u64 {
        match &self.inner {
            Inner::Raw(f) => f.len(),
            Inner::Qcow2(q) => q.len(),
            Inner::Vmdk(v) => v.len(),
            Inner::VmdkDescriptor(v) => v.len(),
            Inner::Vhdx(v) => v.len(),
            Inner::Nbd(n) => n.len(),
        }
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

//! rpm header blobs, as every rpm database stores them (the header without its 8-byte magic):
//!
//! ```text
//! u32 BE  il   number of index entries
//! u32 BE  dl   length of the data store
//! il x { u32 tag, u32 type, u32 offset, u32 count }   (16 bytes each, big-endian)
//! dl bytes of data                                     (strings NUL-terminated)
//! ```
//!
//! The counts are bounded as rpm bounds them (`HEADER_TAGS_MAX`, `HEADER_DATA_MAX`) before
//! anything is sized by them, and every entry's offset and count are checked against the data
//! store when the entry is read, so a hostile blob ends in a [`HeaderError`], never a panic or
//! a large allocation.

/// The most index entries rpm accepts in one header (`HEADER_TAGS_MAX`).
pub const MAX_INDEX_ENTRIES: u32 = 0xffff;
/// The largest data store rpm accepts in one header (`HEADER_DATA_MAX`, 256 MiB).
pub const MAX_DATA_LEN: u32 = 0x0fff_ffff;
/// The most strings read from one string-array entry.
const MAX_ARRAY: u32 = 1 << 20;
/// The most files listed for one package (rpm's own bound on an array).
pub const MAX_FILES: u32 = MAX_ARRAY;
/// The most bytes of file paths built for one package (directory names are shared by the
/// files of a directory, so a small header can name many long paths).
pub const MAX_FILE_LIST_BYTES: usize = 64 << 20;

/// Tags read from a header (rpmtag.h).
pub mod tag {
    /// `RPMTAG_NAME`.
    pub const NAME: u32 = 1000;
    /// `RPMTAG_VERSION`.
    pub const VERSION: u32 = 1001;
    /// `RPMTAG_RELEASE`.
    pub const RELEASE: u32 = 1002;
    /// `RPMTAG_EPOCH`.
    pub const EPOCH: u32 = 1003;
    /// `RPMTAG_SIZE` (installed size, 32 bits).
    pub const SIZE: u32 = 1009;
    /// `RPMTAG_VENDOR`.
    pub const VENDOR: u32 = 1011;
    /// `RPMTAG_LICENSE`.
    pub const LICENSE: u32 = 1014;
    /// `RPMTAG_ARCH`.
    pub const ARCH: u32 = 1022;
    /// `RPMTAG_SOURCERPM`.
    pub const SOURCERPM: u32 = 1044;
    /// `RPMTAG_DIRINDEXES`.
    pub const DIRINDEXES: u32 = 1116;
    /// `RPMTAG_BASENAMES`.
    pub const BASENAMES: u32 = 1117;
    /// `RPMTAG_DIRNAMES`.
    pub const DIRNAMES: u32 = 1118;
    /// `RPMTAG_OLDFILENAMES` (whole paths, in headers older than rpm 4.1).
    pub const OLDFILENAMES: u32 = 1027;
    /// `RPMTAG_LONGSIZE` (installed size, 64 bits, for packages over 4 GiB).
    pub const LONGSIZE: u32 = 5009;
}

/// Entry data types (rpmtag.h `rpmTagType`).
mod kind {
    pub const INT32: u32 = 4;
    pub const INT64: u32 = 5;
    pub const STRING: u32 = 6;
    pub const STRING_ARRAY: u32 = 8;
    pub const I18NSTRING: u32 = 9;
}

/// What is wrong with a header blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The blob is shorter than its preamble, index or data store.
    #[error("header blob of {len} bytes is shorter than the {need} bytes its counts need")]
    Truncated {
        /// The blob's length.
        len: usize,
        /// The length its preamble says it has.
        need: u64,
    },
    /// The index count is over rpm's bound.
    #[error("index count {count} is over rpm's bound of {MAX_INDEX_ENTRIES}")]
    IndexCount {
        /// The count in the blob.
        count: u32,
    },
    /// The data length is over rpm's bound.
    #[error("data length {len} is over rpm's bound of {MAX_DATA_LEN}")]
    DataLength {
        /// The length in the blob.
        len: u32,
    },
    /// An index entry's type, offset or count does not fit the data store.
    #[error("index entry {entry} (tag {tag}): {what}")]
    BadEntry {
        /// The entry's position in the index.
        entry: u32,
        /// Its tag.
        tag: u32,
        /// What is wrong.
        what: String,
    },
    /// A tag every package has is missing.
    #[error("no {what} tag ({tag})")]
    Missing {
        /// The tag.
        tag: u32,
        /// Its name.
        what: &'static str,
    },
}

/// A header blob whose preamble and index were checked; entries are read on demand.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    index: &'a [u8],
    data: &'a [u8],
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(w)
}

impl<'a> Header<'a> {
    /// Checks a blob's preamble against rpm's bounds and its length.
    pub fn parse(blob: &'a [u8]) -> Result<Header<'a>, HeaderError> {
        if blob.len() < 8 {
            return Err(HeaderError::Truncated {
                len: blob.len(),
                need: 8,
            });
        }
        let il = be32(blob, 0);
        let dl = be32(blob, 4);
        if il > MAX_INDEX_ENTRIES {
            return Err(HeaderError::IndexCount { count: il });
        }
        if dl > MAX_DATA_LEN {
            return Err(HeaderError::DataLength { len: dl });
        }
        let need = 8 + 16 * u64::from(il) + u64::from(dl);
        if (blob.len() as u64) < need {
            return Err(HeaderError::Truncated {
                len: blob.len(),
                need,
            });
        }
        let index_end = 8 + 16 * il as usize;
        Ok(Header {
            index: &blob[8..index_end],
            data: &blob[index_end..index_end + dl as usize],
        })
    }

    /// The number of index entries.
    pub fn len(&self) -> usize {
        self.index.len() / 16
    }

    /// True when the header has no entries.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The first index entry with this tag: (position, type, offset, count).
    fn find(&self, tag: u32) -> Option<(u32, u32, u32, u32)> {
        self.index.chunks_exact(16).enumerate().find_map(|(i, e)| {
            (be32(e, 0) == tag).then(|| (i as u32, be32(e, 4), be32(e, 8), be32(e, 12)))
        })
    }

    fn bad(entry: u32, tag: u32, what: impl Into<String>) -> HeaderError {
        HeaderError::BadEntry {
            entry,
            tag,
            what: what.into(),
        }
    }

    /// The NUL-terminated string starting at `offset` of the data store.
    fn c_string(
        &self,
        entry: u32,
        tag: u32,
        offset: u32,
    ) -> Result<(&'a [u8], usize), HeaderError> {
        let start = offset as usize;
        let rest = self
            .data
            .get(start..)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                Self::bad(
                    entry,
                    tag,
                    format!(
                        "offset {offset} is past the {}-byte data store",
                        self.data.len()
                    ),
                )
            })?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Self::bad(entry, tag, format!("string at {offset} has no NUL")))?;
        Ok((&rest[..end], start + end + 1))
    }

    /// A string tag (`STRING`, or the first string of `I18NSTRING` / `STRING_ARRAY`).
    pub fn string(&self, tag: u32) -> Result<Option<String>, HeaderError> {
        let Some((i, ty, offset, _count)) = self.find(tag) else {
            return Ok(None);
        };
        if !matches!(ty, kind::STRING | kind::I18NSTRING | kind::STRING_ARRAY) {
            return Err(Self::bad(
                i,
                tag,
                format!("type {ty} where a string is expected"),
            ));
        }
        let (s, _) = self.c_string(i, tag, offset)?;
        Ok(Some(String::from_utf8_lossy(s).into_owned()))
    }

    /// A string-array tag, at most `limit` strings.
    pub fn strings(&self, tag: u32, limit: u32) -> Result<Vec<String>, HeaderError> {
        Ok(self
            .strings_raw(tag, limit)?
            .into_iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    /// The first value of an integer tag (`INT32` or `INT64`).
    pub fn number(&self, tag: u32) -> Result<Option<u64>, HeaderError> {
        let Some((i, ty, offset, count)) = self.find(tag) else {
            return Ok(None);
        };
        let width = match ty {
            kind::INT32 => 4,
            kind::INT64 => 8,
            _ => {
                return Err(Self::bad(
                    i,
                    tag,
                    format!("type {ty} where an integer is expected"),
                ))
            }
        };
        if count == 0 {
            return Err(Self::bad(i, tag, "integer entry with count 0"));
        }
        let start = offset as usize;
        let b = self
            .data
            .get(start..start.saturating_add(width))
            .filter(|b| b.len() == width)
            .ok_or_else(|| {
                Self::bad(
                    i,
                    tag,
                    format!(
                        "integer at {offset} is past the {}-byte data store",
                        self.data.len()
                    ),
                )
            })?;
        Ok(Some(if width == 4 {
            u64::from(be32(b, 0))
        } else {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            u64::from_be_bytes(w)
        }))
    }

    /// The integer array of a tag (`INT32`), at most `limit` values.
    pub fn numbers32(&self, tag: u32, limit: u32) -> Result<Vec<u32>, HeaderError> {
        let Some((i, ty, offset, count)) = self.find(tag) else {
            return Ok(Vec::new());
        };
        if ty != kind::INT32 {
            return Err(Self::bad(
                i,
                tag,
                format!("type {ty} where INT32 is expected"),
            ));
        }
        if count > limit {
            return Err(Self::bad(
                i,
                tag,
                format!("{count} values is over the bound"),
            ));
        }
        let start = offset as usize;
        let len = 4 * count as usize;
        let b = self
            .data
            .get(start..start.saturating_add(len))
            .filter(|b| b.len() == len)
            .ok_or_else(|| {
                Self::bad(
                    i,
                    tag,
                    format!("{count} integers at {offset} overrun the data store"),
                )
            })?;
        Ok(b.chunks_exact(4).map(|c| be32(c, 0)).collect())
    }
}

/// The fields of an installed package read from its header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpmPackage {
    /// `NAME`.
    pub name: String,
    /// `EPOCH`, when the package has one.
    pub epoch: Option<u64>,
    /// `VERSION`.
    pub version: String,
    /// `RELEASE`.
    pub release: String,
    /// `ARCH` (absent in `gpg-pubkey` pseudo-packages).
    pub arch: Option<String>,
    /// `SOURCERPM`, the source package's file name (`bash-5.1.8-1.cm2.src.rpm`).
    pub source_rpm: Option<String>,
    /// Installed size in bytes (`LONGSIZE`, else `SIZE`).
    pub size: Option<u64>,
    /// `LICENSE`.
    pub license: Option<String>,
    /// `VENDOR`.
    pub vendor: Option<String>,
    /// The package's files and directories, whole paths in the header's order (as `rpm
    /// -ql` lists them): `DIRNAMES[DIRINDEXES[i]] + BASENAMES[i]`, or `OLDFILENAMES`.
    pub files: Vec<String>,
}

impl Header<'_> {
    /// The file list: `DIRNAMES[DIRINDEXES[i]] + BASENAMES[i]` for each basename (rpm 4.1
    /// and later), else `OLDFILENAMES`; at most [`MAX_FILES`] paths of at most
    /// [`MAX_FILE_LIST_BYTES`] together.
    pub fn file_list(&self) -> Result<Vec<String>, HeaderError> {
        let bad = |tag: u32, what: String| {
            let entry = self.find(tag).map_or(0, |(i, ..)| i);
            Self::bad(entry, tag, what)
        };
        let bases = self.strings_raw(tag::BASENAMES, MAX_FILES)?;
        if bases.is_empty() {
            let old = self.strings_raw(tag::OLDFILENAMES, MAX_FILES)?;
            let total: usize = old.iter().map(|s| s.len()).sum();
            if total > MAX_FILE_LIST_BYTES {
                return Err(bad(
                    tag::OLDFILENAMES,
                    format!("{total} bytes of paths is over the bound"),
                ));
            }
            return Ok(old
                .into_iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect());
        }
        let dirs = self.strings_raw(tag::DIRNAMES, MAX_FILES)?;
        let index = self.numbers32(tag::DIRINDEXES, MAX_FILES)?;
        if index.len() != bases.len() {
            return Err(bad(
                tag::DIRINDEXES,
                format!(
                    "{} directory indexes for {} basenames",
                    index.len(),
                    bases.len()
                ),
            ));
        }
        let mut total = 0usize;
        let mut out = Vec::with_capacity(bases.len());
        for (base, &d) in bases.iter().zip(&index) {
            let dir = dirs.get(d as usize).ok_or_else(|| {
                bad(
                    tag::DIRINDEXES,
                    format!(
                        "directory index {d} past the {} directory names",
                        dirs.len()
                    ),
                )
            })?;
            total = total.saturating_add(dir.len() + base.len());
            if total > MAX_FILE_LIST_BYTES {
                return Err(bad(
                    tag::BASENAMES,
                    format!("over {MAX_FILE_LIST_BYTES} bytes of paths"),
                ));
            }
            let mut path = Vec::with_capacity(dir.len() + base.len());
            path.extend_from_slice(dir);
            path.extend_from_slice(base);
            out.push(String::from_utf8_lossy(&path).into_owned());
        }
        Ok(out)
    }

    /// A string-array tag's strings as bytes, at most `limit` of them.
    fn strings_raw(&self, tag: u32, limit: u32) -> Result<Vec<&[u8]>, HeaderError> {
        let Some((i, ty, offset, count)) = self.find(tag) else {
            return Ok(Vec::new());
        };
        if ty != kind::STRING_ARRAY {
            return Err(Self::bad(
                i,
                tag,
                format!("type {ty} where a string array is expected"),
            ));
        }
        if count > limit.min(MAX_ARRAY) || count as usize > self.data.len() {
            return Err(Self::bad(
                i,
                tag,
                format!("{count} strings is over the bound"),
            ));
        }
        let mut out = Vec::with_capacity(count as usize);
        let mut at = offset;
        for _ in 0..count {
            let (s, next) = self.c_string(i, tag, at)?;
            out.push(s);
            at = u32::try_from(next).map_err(|_| Self::bad(i, tag, "offset overflow"))?;
        }
        Ok(out)
    }
}

/// Reads a package's fields from a header blob.
pub fn parse_package(blob: &[u8]) -> Result<RpmPackage, HeaderError> {
    let h = Header::parse(blob)?;
    let need = |tag: u32, what: &'static str| -> Result<String, HeaderError> {
        h.string(tag)?.ok_or(HeaderError::Missing { tag, what })
    };
    let size = match h.number(tag::LONGSIZE)? {
        Some(s) => Some(s),
        None => h.number(tag::SIZE)?,
    };
    Ok(RpmPackage {
        name: need(tag::NAME, "NAME")?,
        epoch: h.number(tag::EPOCH)?,
        version: need(tag::VERSION, "VERSION")?,
        release: need(tag::RELEASE, "RELEASE")?,
        arch: h.string(tag::ARCH)?,
        source_rpm: h.string(tag::SOURCERPM)?,
        size,
        license: h.string(tag::LICENSE)?,
        vendor: h.string(tag::VENDOR)?,
        files: h.file_list()?,
    })
}

/// The source package's name in a source rpm's file name: `util-linux-2.32.1-42.el8_8.src.rpm`
/// is `util-linux` (the name is what precedes the last two `-`).
pub fn source_name(source_rpm: &str) -> Option<&str> {
    let stem = source_rpm
        .strip_suffix(".src.rpm")
        .or_else(|| source_rpm.strip_suffix(".nosrc.rpm"))?;
    let (nv, _release) = stem.rsplit_once('-')?;
    let (name, _version) = nv.rsplit_once('-')?;
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob built from (tag, type, data) entries.
    pub(crate) fn blob(entries: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, ty, count, bytes) in entries {
            while ty == &kind::INT32 && data.len() % 4 != 0 {
                data.push(0);
            }
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&ty.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&count.to_be_bytes());
            data.extend_from_slice(bytes);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((index.len() / 16) as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&index);
        out.extend_from_slice(&data);
        out
    }

    fn s(v: &str) -> Vec<u8> {
        let mut b = v.as_bytes().to_vec();
        b.push(0);
        b
    }

    #[test]
    fn reads_a_package() {
        let b = blob(&[
            (tag::NAME, kind::STRING, 1, s("bash")),
            (tag::VERSION, kind::STRING, 1, s("5.1")),
            (tag::RELEASE, kind::STRING, 1, s("2.el9")),
            (tag::EPOCH, kind::INT32, 1, 3u32.to_be_bytes().to_vec()),
            (tag::SIZE, kind::INT32, 1, 1234u32.to_be_bytes().to_vec()),
            (tag::ARCH, kind::STRING, 1, s("x86_64")),
            (tag::LICENSE, kind::STRING, 1, s("GPLv3+")),
            (tag::SOURCERPM, kind::STRING, 1, s("bash-5.1-2.el9.src.rpm")),
            (
                tag::BASENAMES,
                kind::STRING_ARRAY,
                2,
                [s("a"), s("b")].concat(),
            ),
            (
                tag::DIRNAMES,
                kind::STRING_ARRAY,
                2,
                [s("/usr/bin/"), s("/etc/")].concat(),
            ),
            (
                tag::DIRINDEXES,
                kind::INT32,
                2,
                [1u32.to_be_bytes(), 0u32.to_be_bytes()].concat(),
            ),
        ]);
        let p = parse_package(&b).unwrap();
        assert_eq!(p.files, ["/etc/a", "/usr/bin/b"]);
        assert_eq!(p.name, "bash");
        assert_eq!(p.epoch, Some(3));
        assert_eq!(p.size, Some(1234));
        assert_eq!(p.arch.as_deref(), Some("x86_64"));
        assert_eq!(p.vendor, None);
        assert_eq!(
            Header::parse(&b)
                .unwrap()
                .strings(tag::BASENAMES, 10)
                .unwrap(),
            ["a", "b"]
        );
        assert_eq!(source_name(p.source_rpm.as_deref().unwrap()), Some("bash"));
    }

    #[test]
    fn bad_file_lists_are_typed_errors() {
        let base = |dirs: Vec<u8>, index: Vec<u32>| {
            let n = index.len() as u32;
            blob(&[
                (tag::NAME, kind::STRING, 1, s("x")),
                (tag::VERSION, kind::STRING, 1, s("1")),
                (tag::RELEASE, kind::STRING, 1, s("1")),
                (
                    tag::BASENAMES,
                    kind::STRING_ARRAY,
                    2,
                    [s("a"), s("b")].concat(),
                ),
                (tag::DIRNAMES, kind::STRING_ARRAY, 1, dirs),
                (
                    tag::DIRINDEXES,
                    kind::INT32,
                    n,
                    index.iter().flat_map(|i| i.to_be_bytes()).collect(),
                ),
            ])
        };
        // an index past the directory names, and fewer indexes than basenames
        for b in [base(s("/"), vec![0, 7]), base(s("/"), vec![0])] {
            assert!(matches!(
                parse_package(&b),
                Err(HeaderError::BadEntry {
                    tag: tag::DIRINDEXES,
                    ..
                })
            ));
        }
        // one long directory name shared by many basenames: the total is bounded
        let long = s(&"d".repeat(1 << 20));
        let names: Vec<u8> = (0..100).flat_map(|i| s(&format!("f{i}"))).collect();
        let b = blob(&[
            (tag::NAME, kind::STRING, 1, s("x")),
            (tag::VERSION, kind::STRING, 1, s("1")),
            (tag::RELEASE, kind::STRING, 1, s("1")),
            (tag::BASENAMES, kind::STRING_ARRAY, 100, names),
            (tag::DIRNAMES, kind::STRING_ARRAY, 1, long),
            (tag::DIRINDEXES, kind::INT32, 100, vec![0; 400]),
        ]);
        assert!(matches!(
            parse_package(&b),
            Err(HeaderError::BadEntry {
                tag: tag::BASENAMES,
                ..
            })
        ));
        // whole paths of rpm older than 4.1
        let b = blob(&[
            (tag::NAME, kind::STRING, 1, s("x")),
            (tag::VERSION, kind::STRING, 1, s("1")),
            (tag::RELEASE, kind::STRING, 1, s("1")),
            (
                tag::OLDFILENAMES,
                kind::STRING_ARRAY,
                2,
                [s("/a"), s("/b/c")].concat(),
            ),
        ]);
        assert_eq!(parse_package(&b).unwrap().files, ["/a", "/b/c"]);
    }

    #[test]
    fn index_count_2_pow_31_is_a_typed_error() {
        let mut b = vec![0x80, 0, 0, 0, 0, 0, 0, 16];
        b.extend_from_slice(&[0; 64]);
        assert_eq!(
            Header::parse(&b).unwrap_err(),
            HeaderError::IndexCount { count: 1 << 31 }
        );
    }

    #[test]
    fn entries_out_of_bounds_are_typed_errors() {
        // a string whose offset is past the data store
        let mut b = blob(&[(tag::NAME, kind::STRING, 1, s("x"))]);
        b[8 + 8..8 + 12].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            parse_package(&b),
            Err(HeaderError::BadEntry { tag: tag::NAME, .. })
        ));
        // a string without its NUL
        let b = blob(&[(tag::NAME, kind::STRING, 1, b"abc".to_vec())]);
        assert!(matches!(
            parse_package(&b),
            Err(HeaderError::BadEntry { .. })
        ));
        // an integer overrunning the store
        let b = blob(&[
            (tag::NAME, kind::STRING, 1, s("n")),
            (tag::EPOCH, kind::INT32, 1, vec![0, 0]),
        ]);
        assert!(matches!(
            parse_package(&b),
            Err(HeaderError::BadEntry {
                tag: tag::EPOCH,
                ..
            })
        ));
        // a string array claiming 2^31 strings
        let b = blob(&[(tag::BASENAMES, kind::STRING_ARRAY, 1 << 31, s("a"))]);
        assert!(Header::parse(&b)
            .unwrap()
            .strings(tag::BASENAMES, u32::MAX)
            .is_err());
        // data length over the bound, and a blob shorter than its counts
        assert_eq!(
            Header::parse(&[0, 0, 0, 1, 0x10, 0, 0, 0]).unwrap_err(),
            HeaderError::DataLength { len: 0x1000_0000 }
        );
        assert!(matches!(
            Header::parse(&[0, 0, 0, 1, 0, 0, 0, 0]),
            Err(HeaderError::Truncated { need: 24, .. })
        ));
        assert!(matches!(
            parse_package(&blob(&[(tag::VERSION, kind::STRING, 1, s("1"))])),
            Err(HeaderError::Missing { tag: tag::NAME, .. })
        ));
    }

    #[test]
    fn source_names() {
        assert_eq!(
            source_name("util-linux-2.32.1-42.el8_8.src.rpm"),
            Some("util-linux")
        );
        assert_eq!(source_name("x.src.rpm"), None);
        assert_eq!(source_name("bash-5.1"), None);
    }
}

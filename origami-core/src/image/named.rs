//! The rule for files an image names: which host files a qcow2 backing file or a VMDK
//! extent may be, and the [`ImageOptions`] that widen it.
//!
//! An image's header is data from whoever made the image (an upload, an import, another
//! tenant), so it must not choose which host file we read. By default a named file must
//! resolve, after following every symlink, inside the folder of the image that names it;
//! folders added with [`ImageOptions::allow_dir`] are allowed too. `json:` names and
//! protocol names (`nbd:`, `http:`, `file:`, any `scheme:` before the first `/`, as qemu
//! reads them) are always refused: they name network servers or arbitrary files.
//!
//! The check is made twice: first on the name alone (joined to the image's canonical
//! folder, `..` resolved lexically), so an absolute host path or a climb out of the folder
//! is refused without the host file being touched at all; then on the canonical path
//! (symlinks followed), which is the path then opened, so a symlink inside the folder that
//! points out of it is refused too.
//!
//! Limits: the path is checked, then opened; a process that can rename folders inside the
//! allowed folders between the two steps could still swap what is opened (it could as
//! well replace the image itself). A symlink inside the folder whose target does not exist
//! gives an I/O error naming the symlink.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// How [`crate::Image::open_with`] opens the files an image names (qcow2 backing files,
/// VMDK extents).
///
/// The default allows only files inside the folder of the image that names them:
///
/// ```no_run
/// use origami_core::{Image, ImageOptions};
///
/// // The base images of this VM live in a shared folder next to its overlay's.
/// let options = ImageOptions::default().allow_dir("/var/lib/images/base");
/// let disk = Image::open_with("/var/lib/images/vm1/disk.qcow2", &options)?;
/// # Ok::<(), origami_core::Error>(())
/// ```
///
/// An image name may also be an NBD URI (`nbd+unix:///EXPORT?socket=PATH`,
/// `nbd://127.0.0.1:PORT/EXPORT`, see [`crate::nbd`]); TCP to a host that is not loopback
/// is refused unless [`ImageOptions::allow_remote_nbd`] allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOptions {
    allowed_dirs: Vec<PathBuf>,
    nbd: crate::nbd::NbdOptions,
}

impl ImageOptions {
    /// Also allows files named by an image to lie in `dir` (or below it). The folder is
    /// resolved (symlinks followed) when an image is opened; a folder that does not exist
    /// makes the open fail with an I/O error naming it.
    pub fn allow_dir(mut self, dir: impl Into<PathBuf>) -> ImageOptions {
        self.allowed_dirs.push(dir.into());
        self
    }

    /// Lets an image name be an NBD URI over TCP to a host that is not loopback (off by
    /// default: NBD without TLS is not authenticated, and an image name is user input).
    pub fn allow_remote_nbd(mut self, yes: bool) -> ImageOptions {
        self.nbd = self.nbd.allow_remote(yes);
        self
    }

    /// The options of the NBD client for images named by an NBD URI.
    pub fn nbd_options(mut self, nbd: crate::nbd::NbdOptions) -> ImageOptions {
        self.nbd = nbd;
        self
    }

    /// The NBD client options in force.
    pub fn nbd(&self) -> &crate::nbd::NbdOptions {
        &self.nbd
    }

    /// The folders allowed besides each image's own, as given.
    pub fn allowed_dirs(&self) -> &[PathBuf] {
        &self.allowed_dirs
    }

    /// The allowed folders resolved once for one open.
    pub(crate) fn resolve(&self) -> Result<Vec<PathBuf>> {
        self.allowed_dirs
            .iter()
            .map(|d| canonical(d, d))
            .collect::<Result<_>>()
    }
}

fn canonical(path: &Path, name_in_error: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|source| Error::Io {
        path: name_in_error.to_path_buf(),
        offset: 0,
        source,
    })
}

/// The text of the rule, for errors.
const HOW_TO_ALLOW: &str = "a file an image names must lie in the folder of the image that \
names it; to allow another folder, add it with ImageOptions::allow_dir (on the command \
line --allow-backing DIR, in a fleet manifest backing_dirs)";

/// True when qemu would read `name` as a protocol (`nbd:...`, `file:...`): a `:` before any
/// `/` (qemu's `path_has_protocol`).
fn has_protocol(name: &str) -> bool {
    match name.find(':') {
        Some(colon) => !name[..colon].contains('/'),
        None => false,
    }
}

/// `base.join(name)` with `.` and `..` resolved on the text alone (nothing is read).
fn lexical_join(base: &Path, name: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(name).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A file named by an image that may be opened.
#[derive(Debug)]
pub(crate) struct NamedFile {
    /// The name joined to the naming image's folder, as the user would write it (for
    /// [`crate::Image::backing_file`] and messages).
    pub(crate) joined: PathBuf,
    /// The resolved path, checked against the rule: the path to open.
    pub(crate) canonical: PathBuf,
}

/// Checks `name`, which the image at `image` names as its `what` (`"backing file"`,
/// `"extent"`), against the rule and `allowed` (already resolved folders). Returns the path
/// to open, or [`Error::RefusedFile`] without having touched the named file when the name
/// alone breaks the rule.
pub(crate) fn resolve_named(
    image: &Path,
    what: &'static str,
    name: &str,
    allowed: &[PathBuf],
) -> Result<NamedFile> {
    let refuse = |rule: String| Error::RefusedFile {
        image: image.to_path_buf(),
        what,
        name: name.to_string(),
        rule,
    };
    if name.is_empty() || name.contains('\0') {
        return Err(refuse("an empty name or one holding a NUL byte".into()));
    }
    if name.starts_with("json:") {
        return Err(refuse(
            "json: names are never opened (they can name any host file or a network server)".into(),
        ));
    }
    if has_protocol(name) {
        return Err(refuse(
            "protocol names (nbd:, http:, file:, ...) are never opened; only plain file names \
             are"
            .into(),
        ));
    }
    // The image itself was opened, so its folder exists.
    let folder = match image.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = canonical(folder, folder)?;
    let inside = |p: &Path| p.starts_with(&folder) || allowed.iter().any(|d| p.starts_with(d));
    let folders = || {
        let mut s = folder.display().to_string();
        for d in allowed {
            s.push_str(", ");
            s.push_str(&d.display().to_string());
        }
        s
    };
    let lexical = lexical_join(&folder, Path::new(name));
    if !inside(&lexical) {
        return Err(refuse(format!(
            "it points to {}, outside the allowed folders ({}); {HOW_TO_ALLOW}",
            lexical.display(),
            folders()
        )));
    }
    let joined = match image.parent() {
        Some(dir) if Path::new(name).is_relative() => dir.join(name),
        _ => PathBuf::from(name),
    };
    // What the kernel opens for the name (symlinks followed, `..` after them too).
    let resolved = canonical(&folder.join(name), &joined)?;
    if !inside(&resolved) {
        return Err(refuse(format!(
            "it resolves (through a symlink) to {}, outside the allowed folders ({}); \
             {HOW_TO_ALLOW}",
            resolved.display(),
            folders()
        )));
    }
    Ok(NamedFile {
        joined,
        canonical: resolved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_told_from_paths_as_qemu_does() {
        for p in ["nbd:localhost:10809", "http://x/y", "file:a.qcow2", "c:x"] {
            assert!(has_protocol(p), "{p}");
        }
        for p in ["a.qcow2", "/abs/a:b", "./x:y", "dir/x:y", ""] {
            assert!(!has_protocol(p), "{p}");
        }
    }

    #[test]
    fn lexical_join_never_climbs_above_the_root() {
        let base = Path::new("/a/b");
        assert_eq!(lexical_join(base, Path::new("../c")), Path::new("/a/c"));
        assert_eq!(
            lexical_join(base, Path::new("../../../../etc/x")),
            Path::new("/etc/x")
        );
        assert_eq!(
            lexical_join(base, Path::new("./c/./d")),
            Path::new("/a/b/c/d")
        );
        assert_eq!(lexical_join(base, Path::new("/etc/x")), Path::new("/etc/x"));
    }
}

//! The `config` section: the text of configuration files, so that an address in
//! `/etc/hosts` or a port in a service's config is searchable.
//!
//! Every regular file under `/etc` is taken when it is text (UTF-8 without NUL bytes),
//! plus the files matching the caller's globs anywhere in the tree. Content is cut at a
//! size bound (64 KiB by default; the item is then marked `truncated`). Symlinks are not
//! followed, so a file is listed once, under its real path.

use std::collections::BTreeMap;

use globset::{GlobSet, GlobSetBuilder};
use origami_frame::{ConfigItem, FileType};

use crate::error::{Error, Result};
use crate::fs::{display_path, GuestTree, WalkControl, WalkLimits};
use crate::limits::{Budget, Deadline};

/// The default bound on one file's content.
pub const DEFAULT_MAX_SIZE: u64 = crate::Limits::DEFAULT.config_file;
/// The most per-file errors reported.
const MAX_REPORTED: usize = 20;

/// What the config crawler takes.
#[derive(Debug, Clone)]
pub struct ConfigOptions {
    /// The bound on one file's content, in bytes.
    pub max_size: u64,
    /// Take the text files under `/etc`.
    pub etc: bool,
    /// Further files to take, as absolute guest-path globs (`/home/*/.bashrc`).
    pub globs: Vec<String>,
    /// Bounds of each walk.
    pub limits: WalkLimits,
    /// The crawl's memory budget: each text taken is reserved on it (and kept, as the
    /// frame holds it); a text it cannot hold stops the section.
    pub budget: Budget,
    /// When the section must stop (checked at each entry walked).
    pub deadline: Deadline,
}

impl Default for ConfigOptions {
    fn default() -> Self {
        ConfigOptions {
            max_size: DEFAULT_MAX_SIZE,
            etc: true,
            globs: Vec::new(),
            limits: WalkLimits::default(),
            budget: Budget::unlimited(),
            deadline: Deadline::none(),
        }
    }
}

/// The text of `data`, or `None` when it is binary. When the content was cut
/// (`truncated`), a character split by the cut is dropped.
pub fn as_text(data: &[u8], truncated: bool) -> Option<String> {
    if data.contains(&0) {
        return None;
    }
    match std::str::from_utf8(data) {
        Ok(s) => Some(s.to_string()),
        Err(e) if truncated && e.error_len().is_none() => {
            Some(String::from_utf8_lossy(&data[..e.valid_up_to()]).into_owned())
        }
        Err(_) => None,
    }
}

/// The directory to walk for a glob: its leading components free of glob syntax.
fn literal_prefix(glob: &str) -> String {
    let mut prefix = String::from("/");
    let parts: Vec<&str> = glob.split('/').filter(|c| !c.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() || part.contains(['*', '?', '[', '{', '\\']) {
            break;
        }
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix.push_str(part);
    }
    prefix
}

/// Builds a glob set from absolute guest-path globs; `*` does not cross `/`.
pub fn glob_set(globs: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::Malformed {
                file: "glob".into(),
                location: g.clone(),
                what: e.to_string(),
            })?;
        b.add(glob);
    }
    b.build().map_err(|e| Error::Malformed {
        file: "glob set".into(),
        location: String::new(),
        what: e.to_string(),
    })
}

/// Reads the configuration files of the guest, with the problems met.
pub fn crawl(tree: &GuestTree, options: &ConfigOptions) -> (Vec<ConfigItem>, Vec<Error>) {
    let mut found: BTreeMap<Vec<u8>, ConfigItem> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut roots: Vec<(String, Option<GlobSet>)> = Vec::new();
    if options.etc {
        roots.push(("/etc".into(), None));
    }
    for g in &options.globs {
        match glob_set(std::slice::from_ref(g)) {
            Ok(set) => roots.push((literal_prefix(g), Some(set))),
            Err(e) => errors.push(e),
        }
    }
    // A bound of the whole section (time, memory) met in one walk ends them all.
    let mut stopped: Option<Error> = None;
    for (root, set) in roots {
        if stopped.is_some() {
            break;
        }
        let walk_errors = tree.walk(root.as_bytes(), &options.limits, &mut |entry| {
            if let Err(e) = options.deadline.check() {
                stopped = Some(e);
                return WalkControl::Stop;
            }
            if entry.stat.file_type != FileType::File || found.contains_key(entry.path) {
                return WalkControl::Continue;
            }
            let text_path = display_path(entry.path);
            if let Some(set) = &set {
                if !set.is_match(&text_path) {
                    return WalkControl::Continue;
                }
            }
            let held = match options
                .budget
                .reserve(&text_path, entry.stat.size.min(options.max_size))
            {
                Ok(r) => r,
                Err(e) => {
                    stopped = Some(e);
                    return WalkControl::Stop;
                }
            };
            match tree.read_prefix_by_inode(entry.path, entry.stat.ino, options.max_size) {
                Ok((data, truncated)) => {
                    if let Some(content) = as_text(&data, truncated) {
                        held.keep();
                        found.insert(
                            entry.path.to_vec(),
                            ConfigItem {
                                path: text_path,
                                content,
                                truncated,
                                extra: Default::default(),
                            },
                        );
                    }
                }
                Err(e) => {
                    if errors.len() < MAX_REPORTED {
                        errors.push(e);
                    }
                }
            }
            WalkControl::Continue
        });
        // A glob whose directory does not exist is not a problem.
        errors.extend(
            walk_errors
                .into_iter()
                .filter(|e| set.is_none() || !matches!(e, Error::NotFound { .. })),
        );
    }
    errors.extend(stopped);
    (found.into_values().collect(), errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_detection() {
        assert_eq!(as_text(b"a=1\n", false).as_deref(), Some("a=1\n"));
        assert!(as_text(b"a\0b", false).is_none());
        assert!(as_text(&[0xff, 0xfe], false).is_none());
        // "é" cut in half by the bound.
        assert_eq!(as_text(&[b'a', 0xc3], true).as_deref(), Some("a"));
    }

    #[test]
    fn glob_prefixes() {
        assert_eq!(literal_prefix("/home/*/.bash_history"), "/home");
        assert_eq!(literal_prefix("/srv/fixture/readme.txt"), "/srv/fixture");
        assert_eq!(literal_prefix("*.conf"), "/");
        let s = glob_set(&["/home/*/.bash_history".into()]).unwrap();
        assert!(s.is_match("/home/alice/.bash_history"));
        assert!(!s.is_match("/home/a/b/.bash_history"));
    }
}

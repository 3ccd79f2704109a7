//! Byte paths of the guest: guest names need not be UTF-8, so paths are `[u8]`, shown
//! lossily where a person or a frame needs text.

/// A guest path as text (invalid UTF-8 replaced by U+FFFD), for messages and frames.
pub fn display_path(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// `dir` + `/` + `name`, without doubling the slash after the root.
pub fn join_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The non-empty components of `path` (`.` kept: resolution decides what it means).
pub(crate) fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// Builds the absolute path of `parts` (`/` when empty).
pub(crate) fn from_components<T: AsRef<[u8]>>(parts: &[T]) -> Vec<u8> {
    if parts.is_empty() {
        return b"/".to_vec();
    }
    let mut p = Vec::new();
    for c in parts {
        p.push(b'/');
        p.extend_from_slice(c.as_ref());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_splits() {
        assert_eq!(join_path(b"/", b"etc"), b"/etc");
        assert_eq!(join_path(b"/etc", b"hosts"), b"/etc/hosts");
        let c: Vec<&[u8]> = components(b"//a/./b/").collect();
        assert_eq!(c, vec![&b"a"[..], b".", b"b"]);
        assert_eq!(from_components::<&[u8]>(&[]), b"/");
        assert_eq!(from_components(&[b"a", b"b"]), b"/a/b");
    }
}

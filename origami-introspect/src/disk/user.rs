//! The `user` section: accounts from `/etc/passwd`, with their groups from `/etc/group`.
//!
//! Both files are read whole under a bound (4 MiB by default: a system with 40,000
//! accounts fits). A line that is not a valid entry is reported with its line number and
//! skipped; NIS `+`/`-` lines are skipped silently. A user's groups list its primary group
//! first, then every group naming it as a member.

use std::collections::BTreeMap;

use origami_frame::User;

use crate::error::{Error, Result};
use crate::fs::GuestTree;

/// The default bound on `/etc/passwd` and `/etc/group`.
pub const DEFAULT_MAX_SIZE: u64 = crate::Limits::DEFAULT.passwd;
/// The most problems reported per file.
const MAX_REPORTED: usize = 10;

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// GECOS field.
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Member login names.
    pub members: Vec<String>,
}

fn malformed(file: &str, line: usize, what: String) -> Error {
    Error::Malformed {
        file: file.to_string(),
        location: format!("line {line}"),
        what,
    }
}

/// Splits a colon-separated file into fields of each meaningful line.
fn records<'a>(
    data: &'a [u8],
    file: &'a str,
    fields: usize,
    errors: &'a mut Vec<Error>,
) -> impl Iterator<Item = (usize, Vec<String>)> + 'a {
    data.split(|&b| b == b'\n')
        .enumerate()
        .filter_map(move |(i, raw)| {
            let line = String::from_utf8_lossy(raw);
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty()
                || line.starts_with('#')
                || line.starts_with('+')
                || line.starts_with('-')
            {
                return None;
            }
            let f: Vec<String> = line.splitn(fields, ':').map(str::to_string).collect();
            if f.len() != fields || f[0].is_empty() {
                if errors.len() < MAX_REPORTED {
                    errors.push(malformed(
                        file,
                        i + 1,
                        format!("{} fields where {fields} are needed", f.len()),
                    ));
                }
                return None;
            }
            Some((i + 1, f))
        })
}

fn id(file: &str, line: usize, what: &str, v: &str) -> Result<u32> {
    v.trim()
        .parse()
        .map_err(|_| malformed(file, line, format!("{what} {v:?} is not a number")))
}

/// Parses `/etc/passwd` text.
pub fn parse_passwd(data: &[u8], file: &str) -> (Vec<PasswdEntry>, Vec<Error>) {
    let mut errors = Vec::new();
    let mut bad = Vec::new();
    let mut out = Vec::new();
    for (line, f) in records(data, file, 7, &mut errors) {
        let (uid, gid) = match (id(file, line, "uid", &f[2]), id(file, line, "gid", &f[3])) {
            (Ok(u), Ok(g)) => (u, g),
            (Err(e), _) | (_, Err(e)) => {
                bad.push(e);
                continue;
            }
        };
        out.push(PasswdEntry {
            name: f[0].clone(),
            uid,
            gid,
            gecos: f[4].clone(),
            home: f[5].clone(),
            shell: f[6].clone(),
        });
    }
    errors.extend(bad.into_iter().take(MAX_REPORTED));
    (out, errors)
}

/// Parses `/etc/group` text.
pub fn parse_group(data: &[u8], file: &str) -> (Vec<GroupEntry>, Vec<Error>) {
    let mut errors = Vec::new();
    let mut bad = Vec::new();
    let mut out = Vec::new();
    for (line, f) in records(data, file, 4, &mut errors) {
        let gid = match id(file, line, "gid", &f[2]) {
            Ok(g) => g,
            Err(e) => {
                bad.push(e);
                continue;
            }
        };
        out.push(GroupEntry {
            name: f[0].clone(),
            gid,
            members: f[3]
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    errors.extend(bad.into_iter().take(MAX_REPORTED));
    (out, errors)
}

/// The users of the guest with their groups, and the problems met. A missing
/// `/etc/passwd` gives no users, a missing `/etc/group` empty group lists.
pub fn crawl(tree: &GuestTree, max_size: u64) -> (Vec<User>, Vec<Error>) {
    crawl_with(tree, max_size, &crate::Budget::unlimited())
}

/// As [`crawl`], each file's bytes reserved on the crawl's memory `budget` while they are
/// parsed.
pub fn crawl_with(
    tree: &GuestTree,
    max_size: u64,
    budget: &crate::Budget,
) -> (Vec<User>, Vec<Error>) {
    let mut errors = Vec::new();
    let passwd = match super::read_whole(tree, b"/etc/passwd", max_size, budget) {
        Ok(d) => d,
        // No passwd (a data volume, an appliance): no users, nothing wrong.
        Err(Error::NotFound { .. }) => return (Vec::new(), Vec::new()),
        Err(e) => return (Vec::new(), vec![e]),
    };
    let (entries, e) = parse_passwd(&passwd.0, "/etc/passwd");
    errors.extend(e);
    drop(passwd);
    let groups = match super::read_whole(tree, b"/etc/group", max_size, budget) {
        Ok((d, _held)) => {
            let (g, e) = parse_group(&d, "/etc/group");
            errors.extend(e);
            g
        }
        Err(Error::NotFound { .. }) => Vec::new(),
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    };
    let by_gid: BTreeMap<u32, &str> = groups.iter().map(|g| (g.gid, g.name.as_str())).collect();
    let mut supplementary: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for g in &groups {
        for m in &g.members {
            supplementary.entry(m.as_str()).or_default().push(&g.name);
        }
    }
    let users = entries
        .into_iter()
        .map(|p| {
            let mut groups: Vec<String> = Vec::new();
            if let Some(name) = by_gid.get(&p.gid) {
                groups.push((*name).to_string());
            }
            for g in supplementary.get(p.name.as_str()).into_iter().flatten() {
                if !groups.iter().any(|x| x == g) {
                    groups.push((*g).to_string());
                }
            }
            User {
                name: p.name,
                uid: p.uid,
                gid: p.gid,
                description: (!p.gecos.is_empty()).then_some(p.gecos),
                home: p.home,
                shell: p.shell,
                groups,
                extra: Default::default(),
            }
        })
        .collect();
    (users, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_group() {
        let (p, e) = parse_passwd(
            b"root:x:0:0:root:/root:/bin/bash\n+nis\nbad:line\nx:x:y:0::/:/bin/sh\nalice:x:1001:2000:Alice,,,:/home/alice:/bin/bash\n",
            "passwd",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(e.len(), 2);
        assert_eq!(p[1].gecos, "Alice,,,");
        let (g, e) = parse_group(b"fixture:x:2000:alice,bob\nroot:x:0:\n", "group");
        assert!(e.is_empty());
        assert_eq!(g[0].members, vec!["alice", "bob"]);
        assert!(g[1].members.is_empty());
    }
}

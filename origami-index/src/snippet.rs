//! What a hit shows: its key and a one-line snippet, or for a config file the line that
//! holds a query term.

use origami_frame::{
    join_host_port, ConfigItem, Connection, FileItem, Item, KernelLogRecord, Module, Mount, Os,
    Package, Process, Section, Service, User,
};

/// What a snippet looks for: the positive words and values of the query.
#[derive(Debug, Default, Clone)]
pub(crate) struct SnippetTerms {
    /// Whole tokens (lowercased).
    pub(crate) exact: Vec<String>,
    /// Wildcard patterns (lowercased, `*` and `?`).
    pub(crate) globs: Vec<String>,
}

impl SnippetTerms {
    fn matches(&self, token: &str) -> bool {
        self.exact.iter().any(|t| t == token) || self.globs.iter().any(|g| glob_match(g, token))
    }
}

/// `*`/`?` wildcard match, iterative (no recursion, linear backtracking).
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == '*')
}

const SNIPPET_MAX: usize = 200;

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.len() <= SNIPPET_MAX {
        return s.to_string();
    }
    let mut end = SNIPPET_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The key of a stored item (its JSON).
pub(crate) fn item_key(section: Section, item_json: &str) -> serde_json::Result<String> {
    fn key<T: Item + serde::de::DeserializeOwned>(s: &str) -> serde_json::Result<String> {
        serde_json::from_str::<T>(s).map(|x| x.key())
    }
    match section {
        Section::Os => key::<Os>(item_json),
        Section::File => key::<FileItem>(item_json),
        Section::Config => key::<ConfigItem>(item_json),
        Section::Package => key::<Package>(item_json),
        Section::User => key::<User>(item_json),
        Section::Process => key::<Process>(item_json),
        Section::Connection => key::<Connection>(item_json),
        Section::Module => key::<Module>(item_json),
        Section::Mount => key::<Mount>(item_json),
        Section::KernelLog => key::<KernelLogRecord>(item_json),
        Section::Service => key::<Service>(item_json),
    }
}

/// A one-line summary of a stored item, or for a config file the first line that holds a
/// query term (`L12: Listen 10.20.30.40:80`).
pub(crate) fn snippet(section: Section, item_json: &str, terms: &SnippetTerms) -> String {
    fn get<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
        serde_json::from_str(s).ok()
    }
    match section {
        Section::Config => {
            let Some(c) = get::<ConfigItem>(item_json) else {
                return clip(item_json);
            };
            let mut first_text = None;
            for (n, line) in c.content.lines().enumerate() {
                if first_text.is_none() && !line.trim().is_empty() {
                    first_text = Some((n, line));
                }
                if crate::tokenizer::tokens(line)
                    .iter()
                    .any(|t| terms.matches(t))
                {
                    return clip(&format!("L{}: {}", n + 1, line.trim()));
                }
            }
            match first_text {
                Some((n, line)) => clip(&format!("L{}: {}", n + 1, line.trim())),
                None => String::from("(empty)"),
            }
        }
        Section::Connection => get::<Connection>(item_json).map_or_else(
            || clip(item_json),
            |c| {
                clip(&format!(
                    "{} {} -> {} {}{}",
                    c.protocol,
                    join_host_port(&c.local_address, c.local_port),
                    join_host_port(&c.remote_address, c.remote_port),
                    c.state,
                    c.pid.map(|p| format!(" pid {p}")).unwrap_or_default()
                ))
            },
        ),
        Section::Process => get::<Process>(item_json).map_or_else(
            || clip(item_json),
            |p| {
                let cmd = if p.cmdline.is_empty() {
                    format!("[{}]", p.name)
                } else {
                    p.cmdline.join(" ")
                };
                clip(&format!("pid {} {}: {cmd}", p.pid, p.name))
            },
        ),
        Section::Package => get::<Package>(item_json).map_or_else(
            || clip(item_json),
            |p| {
                clip(&format!(
                    "{} {} {} ({})",
                    p.name, p.version, p.arch, p.manager
                ))
            },
        ),
        Section::File => get::<FileItem>(item_json).map_or_else(
            || clip(item_json),
            |f| {
                let link = f
                    .link_target
                    .map(|t| format!(" -> {t}"))
                    .unwrap_or_default();
                clip(&format!(
                    "{} {} {:o} uid {} size {}{link}",
                    f.path,
                    f.file_type.name(),
                    f.mode,
                    f.uid,
                    f.size
                ))
            },
        ),
        Section::User => get::<User>(item_json).map_or_else(
            || clip(item_json),
            |u| {
                clip(&format!(
                    "{} uid {} gid {} {} {}",
                    u.name, u.uid, u.gid, u.home, u.shell
                ))
            },
        ),
        Section::Module => get::<Module>(item_json).map_or_else(
            || clip(item_json),
            |m| clip(&format!("{} size {} {}", m.name, m.size, m.state)),
        ),
        Section::Service => get::<Service>(item_json).map_or_else(
            || clip(item_json),
            |v| clip(&format!("{} {} ({})", v.name, v.path, v.start_type)),
        ),
        Section::Mount => get::<Mount>(item_json).map_or_else(
            || clip(item_json),
            |m| {
                clip(&format!(
                    "{} on {} type {} ({})",
                    m.device, m.path, m.fs_type, m.options
                ))
            },
        ),
        Section::KernelLog => get::<KernelLogRecord>(item_json).map_or_else(
            || clip(item_json),
            |r| {
                clip(&format!(
                    "[{:5}.{:06}] {}",
                    r.time / 1_000_000_000,
                    r.time % 1_000_000_000 / 1_000,
                    r.message
                ))
            },
        ),
        Section::Os => get::<Os>(item_json).map_or_else(
            || clip(item_json),
            |o| {
                let parts: Vec<String> = [o.pretty_name.or(o.name), o.kernel, o.arch]
                    .into_iter()
                    .flatten()
                    .collect();
                clip(&parts.join(" "))
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("web-*", "web-01"));
        assert!(glob_match("*ssh*", "openssh-server"));
        assert!(glob_match("10.20.30.4?", "10.20.30.40"));
        assert!(!glob_match("10.20.30.4?", "10.20.30.4"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
    }

    #[test]
    fn config_snippet_shows_the_matching_line() {
        let c = ConfigItem {
            path: "/etc/hosts".into(),
            content: "127.0.0.1 localhost\n10.20.30.40\tvmi-fixture\n".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        let terms = SnippetTerms {
            exact: vec!["10.20.30.40".into()],
            globs: vec![],
        };
        assert_eq!(
            snippet(Section::Config, &json, &terms),
            "L2: 10.20.30.40\tvmi-fixture"
        );
    }
}

//! What a QEMU command line says about the guest's RAM: its size (`-m`, or the size of the
//! memory backend `-machine memory-backend=ID` names), the machine type and its
//! `max-ram-below-4g`.
//!
//! Options are read as QEMU reads them: `-opt` or `--opt`, the value in the next argument,
//! later `-machine` options adding to (and overriding) earlier ones; sizes with QEMU's
//! suffixes (`K M G T P E`, `-m` defaulting to MiB); `-object` in the `key=value` form or
//! the JSON form libvirt writes.
//!
//! Limits: memory set from a `-readconfig` file, hot-plugged DIMMs and NUMA nodes with
//! several memory backends are not read (the guest's base RAM must be one block).

/// The guest RAM facts of one QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QemuConfig {
    /// The machine type (`q35`, `pc-q35-8.2`, `pc`, `pc-i440fx-9.0`, `microvm`, ...);
    /// `pc` when none is given (qemu-system-x86_64's default).
    pub(crate) machine: String,
    /// The RAM size in bytes.
    pub(crate) ram_size: u64,
    /// Where `ram_size` came from, for messages (`-m 256M`, `memory-backend ram (size=1G)`).
    pub(crate) ram_from: String,
    /// `-machine max-ram-below-4g=...`, when given.
    pub(crate) max_ram_below_4g: Option<u64>,
}

/// QEMU's default RAM size for x86 machines when `-m` is not given.
const DEFAULT_RAM: u64 = 128 << 20;

/// A size as `qemu_strtosz` reads it: a decimal number (a fraction allowed) or a `0x` hex
/// integer, then an optional suffix `B K M G T P E` (either case); `default_shift` applies
/// when there is no suffix (20 for `-m`'s MiB, 0 for bytes).
pub(crate) fn parse_size(text: &str, default_shift: u32) -> Option<u64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        let end = hex
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(hex.len());
        let v = u64::from_str_radix(&hex[..end], 16).ok()?;
        let shift = suffix_shift(&hex[end..], default_shift)?;
        return v.checked_mul(1u64.checked_shl(shift)?);
    }
    let end = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(end);
    let shift = suffix_shift(suffix, default_shift)?;
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || frac.contains('.') {
        return None;
    }
    let whole: u64 = int.parse().ok()?;
    let unit = 1u64.checked_shl(shift)?;
    let mut bytes = whole.checked_mul(unit)?;
    if !frac.is_empty() {
        // At most 9 fractional digits count; `unit` is at most 2^60, so this stays in u128.
        let digits = &frac[..frac.len().min(9)];
        let f: u128 = digits.parse().ok()?;
        let scale = 10u128.pow(digits.len() as u32);
        let extra = u64::try_from(f * u128::from(unit) / scale).ok()?;
        bytes = bytes.checked_add(extra)?;
    }
    Some(bytes)
}

fn suffix_shift(suffix: &str, default_shift: u32) -> Option<u32> {
    Some(match suffix {
        "" => default_shift,
        "b" | "B" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        "p" | "P" => 50,
        "e" | "E" => 60,
        _ => return None,
    })
}

/// Splits a QEMU option string `a,b=c,d=e` into its parts; `,,` is a literal comma.
fn split_opts(s: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut push = |cur: &mut String| {
        let part = std::mem::take(cur);
        match part.split_once('=') {
            Some((k, v)) => out.push((Some(k.to_string()), v.to_string())),
            None => out.push((None, part)),
        }
    };
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                push(&mut cur);
            }
        } else {
            cur.push(c);
        }
    }
    push(&mut cur);
    out
}

/// The string and number members of a flat JSON object (`-object {"qom-type":...}`).
/// Nested values end the parse (`None`): backends that matter here are flat.
fn flat_json(s: &str) -> Option<Vec<(String, String)>> {
    let mut it = s.trim().chars().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
    };
    let string = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Option<String> {
        if it.next()? != '"' {
            return None;
        }
        let mut out = String::new();
        loop {
            match it.next()? {
                '"' => return Some(out),
                '\\' => out.push(it.next()?),
                c => out.push(c),
            }
        }
    };
    if it.next()? != '{' {
        return None;
    }
    let mut members = Vec::new();
    loop {
        skip_ws(&mut it);
        if it.peek() == Some(&'}') {
            return Some(members);
        }
        let key = string(&mut it)?;
        skip_ws(&mut it);
        if it.next()? != ':' {
            return None;
        }
        skip_ws(&mut it);
        let value = if it.peek() == Some(&'"') {
            string(&mut it)?
        } else {
            let mut v = String::new();
            while let Some(&c) = it.peek() {
                if c == ',' || c == '}' || c.is_whitespace() {
                    break;
                }
                if c == '{' || c == '[' {
                    return None;
                }
                v.push(c);
                it.next();
            }
            v
        };
        members.push((key, value));
        skip_ws(&mut it);
        match it.next()? {
            ',' => continue,
            '}' => return Some(members),
            _ => return None,
        }
    }
}

/// Reads the RAM facts from a QEMU process's arguments (`/proc/PID/cmdline` split at NULs;
/// the program name first).
pub(crate) fn parse(args: &[String]) -> QemuConfig {
    let mut machine: Option<String> = None;
    let mut machine_backend: Option<String> = None;
    let mut max_below: Option<u64> = None;
    let mut m: Option<(u64, String)> = None;
    // id -> size of each memory backend object.
    let mut backends: Vec<(String, u64)> = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let opt = args[i].trim_start_matches('-');
        let is_opt = args[i].starts_with('-');
        let value = args.get(i + 1).map(String::as_str);
        i += 1;
        if !is_opt {
            continue;
        }
        let Some(value) = value else { break };
        match opt {
            "m" => {
                i += 1;
                for (k, v) in split_opts(value) {
                    if matches!(k.as_deref(), None | Some("size")) {
                        if let Some(size) = parse_size(&v, 20) {
                            m = Some((size, format!("-m {value}")));
                        }
                    }
                }
            }
            "M" | "machine" => {
                i += 1;
                for (k, v) in split_opts(value) {
                    match k.as_deref() {
                        None | Some("type") if !v.is_empty() => machine = Some(v),
                        Some("memory-backend") => machine_backend = Some(v),
                        Some("max-ram-below-4g") => max_below = parse_size(&v, 0),
                        _ => {}
                    }
                }
            }
            "object" => {
                i += 1;
                let members = if value.trim_start().starts_with('{') {
                    flat_json(value).unwrap_or_default()
                } else {
                    split_opts(value)
                        .into_iter()
                        .map(|(k, v)| match k {
                            Some(k) => (k, v),
                            None => ("qom-type".to_string(), v),
                        })
                        .collect()
                };
                let get = |key: &str| {
                    members
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.as_str())
                };
                if get("qom-type").is_some_and(|t| t.starts_with("memory-backend-")) {
                    if let (Some(id), Some(size)) = (get("id"), get("size")) {
                        if let Some(size) = parse_size(size, 0) {
                            backends.push((id.to_string(), size));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let (ram_size, ram_from) = match (&machine_backend, m) {
        // QEMU checks that -m and the backend agree; the backend is what is mapped.
        (Some(id), m) => match backends.iter().rev().find(|(b, _)| b == id) {
            Some((_, size)) => (*size, format!("memory-backend {id} (size {size})")),
            None => m.unwrap_or((DEFAULT_RAM, "QEMU's default of 128 MiB".into())),
        },
        (None, Some(m)) => m,
        (None, None) => (DEFAULT_RAM, "QEMU's default of 128 MiB (no -m)".into()),
    };
    QemuConfig {
        machine: machine.unwrap_or_else(|| "pc".into()),
        ram_size,
        ram_from,
        max_ram_below_4g: max_below,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn sizes_read_as_qemu_reads_them() {
        assert_eq!(parse_size("256", 20), Some(256 << 20));
        assert_eq!(parse_size("256M", 20), Some(256 << 20));
        assert_eq!(parse_size("4G", 20), Some(4 << 30));
        assert_eq!(parse_size("1.5g", 20), Some(3 << 29));
        assert_eq!(parse_size("1048576k", 20), Some(1 << 30));
        assert_eq!(parse_size("1073741824", 0), Some(1 << 30));
        assert_eq!(parse_size("0x40000000", 0), Some(1 << 30));
        assert_eq!(parse_size("2048B", 20), Some(2048));
        assert_eq!(parse_size("12Q", 20), None);
        assert_eq!(parse_size("", 20), None);
        assert_eq!(parse_size("1.2.3G", 20), None);
        assert_eq!(parse_size("99999999999E", 20), None);
    }

    #[test]
    fn reads_the_ram_size_machine_and_backend() {
        let c = parse(&args(&[
            "qemu-system-x86_64",
            "-machine",
            "q35",
            "-m",
            "256M",
            "-object",
            "memory-backend-file,id=ram,size=256M,mem-path=/tmp/x,share=on",
            "-machine",
            "memory-backend=ram",
        ]));
        assert_eq!(c.machine, "q35");
        assert_eq!(c.ram_size, 256 << 20);
        assert!(c.ram_from.contains("memory-backend ram"), "{}", c.ram_from);

        // libvirt: JSON objects, size= in -m, a versioned machine, options after it.
        let c = parse(&args(&[
            "/usr/bin/qemu-system-x86_64",
            "-name",
            "guest=vm1,debug-threads=on",
            "-machine",
            "pc-q35-8.2,usb=off,dump-guest-core=off,memory-backend=pc.ram,max-ram-below-4g=1G",
            "-m",
            "size=8388608k",
            "-object",
            r#"{"qom-type":"memory-backend-memfd","id":"pc.ram","share":true,"size":8589934592}"#,
        ]));
        assert_eq!(c.machine, "pc-q35-8.2");
        assert_eq!(c.ram_size, 8 << 30);
        assert_eq!(c.max_ram_below_4g, Some(1 << 30));

        // No -m, no -machine: QEMU's defaults; -m without a unit is MiB; --opt works.
        let c = parse(&args(&["qemu-system-x86_64", "-enable-kvm"]));
        assert_eq!((c.machine.as_str(), c.ram_size), ("pc", 128 << 20));
        let c = parse(&args(&[
            "qemu-kvm",
            "--m",
            "1024",
            "--M",
            "type=pc-i440fx-9.0",
        ]));
        assert_eq!((c.machine.as_str(), c.ram_size), ("pc-i440fx-9.0", 1 << 30));
        // A trailing option without a value is ignored, not a panic.
        let c = parse(&args(&["qemu", "-m"]));
        assert_eq!(c.ram_size, 128 << 20);
    }

    #[test]
    fn option_strings_and_json_split_like_qemus() {
        assert_eq!(
            split_opts("a,b=c,,d,e="),
            vec![
                (None, "a".into()),
                (Some("b".into()), "c,d".into()),
                (Some("e".into()), "".into())
            ]
        );
        assert_eq!(
            flat_json(r#" { "a" : "x\"y", "b": 12 ,"c":true} "#),
            Some(vec![
                ("a".into(), "x\"y".into()),
                ("b".into(), "12".into()),
                ("c".into(), "true".into())
            ])
        );
        assert_eq!(flat_json(r#"{"a":{"b":1}}"#), None);
        assert_eq!(flat_json(r#"{"a":"#), None);
    }
}

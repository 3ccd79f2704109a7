//! Windows guests from disk: the registry hives of the system volume (SOFTWARE, SYSTEM,
//! SAM, each user's NTUSER.DAT) read by [`hive`], and the `hosts` file.
//!
//! - `os`: product name, edition, display version, build, install date, architecture, the
//!   host name from the current control set's `ComputerName`, and the drive letters of
//!   `SYSTEM\MountedDevices` (extra `drive_letters`: [`drive_letters`]);
//! - `package`: the `Uninstall` keys of the 64-bit and 32-bit (`WOW6432Node`) views and of
//!   each user's NTUSER.DAT (name, version, publisher, install date);
//! - `user`: the SAM's local accounts (name, RID, disabled) with their profile paths;
//! - `service`: the current control set's services and drivers;
//! - `config`: the `hosts` file and one item per TCP/IP interface (static addresses, DNS
//!   servers), so that an IP query finds Windows machines too.
//!
//! The current control set is the one `SYSTEM\Select\Current` names. Transaction logs are
//! not applied: a dirty hive (see [`hive::Hive::is_dirty`]) and the logs present are
//! reported in the `os` item (`registry_dirty`, `registry_logs`).

pub mod hive;

use origami_frame::{ConfigItem, Os, Package, Service, User};
use serde_json::Value;

use crate::error::Error;
use crate::fs::GuestTree;
use hive::{Data, Hive, Key};

/// The largest hive read.
pub const MAX_HIVE: u64 = 512 << 20;
/// The largest `hosts` file read.
pub const MAX_HOSTS: u64 = 1 << 20;
/// The most user profiles whose NTUSER.DAT is read.
const MAX_PROFILES: usize = 1024;
/// Where Windows keeps the machine hives.
pub const CONFIG_DIR: &str = "/Windows/System32/config";
/// The `hosts` file.
pub const HOSTS: &str = "/Windows/System32/drivers/etc/hosts";

/// True when `tree` is a Windows system volume (it has the SYSTEM hive).
pub fn is_windows(tree: &GuestTree) -> bool {
    tree.lstat(format!("{CONFIG_DIR}/SYSTEM").as_bytes())
        .is_ok()
}

fn hive_err(e: hive::HiveError) -> Error {
    Error::FileSystem {
        source_name: e.file.clone(),
        fs: "regf",
        path: Some(e.file.clone()),
        what: format!("offset {:#x}: {}", e.offset, e.what),
    }
}

/// Reads and checks the hive at guest `path`.
pub fn read_hive(tree: &GuestTree, path: &str) -> Result<Hive, Error> {
    let data = tree.read_file(path.as_bytes(), MAX_HIVE)?;
    Hive::parse(path, data).map_err(hive_err)
}

/// What the registry said, section by section, and the problems met.
#[derive(Debug, Default)]
pub struct WindowsFacts {
    /// The `os` item.
    pub os: Os,
    /// Installed programs.
    pub packages: Vec<Package>,
    /// Local accounts.
    pub users: Vec<User>,
    /// Services and drivers.
    pub services: Vec<Service>,
    /// `hosts` and the TCP/IP interfaces.
    pub config: Vec<ConfigItem>,
    /// Problems (an unreadable hive, a malformed key), per section name.
    pub errors: Vec<(&'static str, Error)>,
}

fn text(k: &Key<'_>, name: &str) -> Option<String> {
    k.text(name).ok().flatten()
}

fn number(k: &Key<'_>, name: &str) -> Option<u64> {
    k.value(name).ok().flatten().and_then(|d| d.number())
}

/// The current control set of SYSTEM (`ControlSet00N`, N from `Select\Current`).
fn control_set<'h>(system: &'h Hive) -> Result<Option<Key<'h>>, hive::HiveError> {
    let root = system.root();
    let n = root
        .path("Select")?
        .and_then(|s| number(&s, "Current"))
        .unwrap_or(1);
    root.path(&format!("ControlSet{n:03}"))
}

/// Days since the epoch to a civil date, for RFC 3339 install dates.
fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Crawls a Windows guest tree.
pub fn crawl(tree: &GuestTree) -> WindowsFacts {
    let mut f = WindowsFacts::default();
    let system = read_hive(tree, &format!("{CONFIG_DIR}/SYSTEM"));
    let software = read_hive(tree, &format!("{CONFIG_DIR}/SOFTWARE"));
    let sam = read_hive(tree, &format!("{CONFIG_DIR}/SAM"));
    let mut logs = Vec::new();
    let mut dirty = Vec::new();
    for name in ["SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT"] {
        for ext in ["LOG", "LOG1", "LOG2"] {
            let p = format!("{CONFIG_DIR}/{name}.{ext}");
            if tree.lstat(p.as_bytes()).is_ok_and(|s| s.size > 0) {
                logs.push(Value::String(p));
            }
        }
    }
    for h in [&system, &software, &sam].into_iter().flatten() {
        if h.is_dirty() {
            dirty.push(Value::String(h.name().to_string()));
        }
    }
    let arch = match &system {
        Ok(sys) => os_from_system(sys, &mut f),
        Err(_) => None,
    };
    match &software {
        Ok(sw) => {
            os_from_software(sw, &mut f.os);
            if let Err(e) = packages(tree, sw, arch.as_deref(), &mut f.packages) {
                f.errors.push(("package", e));
            }
        }
        Err(e) => f.errors.push(("os", clone_err(e))),
    }
    if let Err(e) = &system {
        f.errors.push(("os", clone_err(e)));
    }
    f.os.id = Some("windows".into());
    f.os.arch = arch;
    if !logs.is_empty() {
        f.os.extra
            .insert("registry_logs".into(), Value::Array(logs));
    }
    if !dirty.is_empty() {
        f.os.extra
            .insert("registry_dirty".into(), Value::Array(dirty));
    }
    match (&sam, &software) {
        (Ok(sam), sw) => {
            if let Err(e) = users(sam, sw.as_ref().ok(), &mut f.users) {
                f.errors.push(("user", hive_err(e)));
            }
        }
        (Err(e), _) => f.errors.push(("user", clone_err(e))),
    }
    match tree.read_file(HOSTS.as_bytes(), MAX_HOSTS) {
        Ok(b) => f.config.push(ConfigItem {
            path: HOSTS.into(),
            content: String::from_utf8_lossy(&b).into_owned(),
            ..ConfigItem::default()
        }),
        Err(Error::NotFound { .. }) => {}
        Err(e) => f.errors.push(("config", e)),
    }
    if let Ok(sys) = &system {
        if let Err(e) = network(sys, &mut f.config) {
            f.errors.push(("config", hive_err(e)));
        }
    }
    f
}

fn clone_err(e: &Error) -> Error {
    Error::FileSystem {
        source_name: String::new(),
        fs: "regf",
        path: None,
        what: e.to_string(),
    }
}

/// What one drive letter of `MountedDevices` names: `{"partition_guid": ...}` (a GPT
/// partition: `DMIO:ID:` and the partition's GUID), `{"disk_signature": "1a2b3c4d",
/// "offset": N}` (a partition of an MBR disk: its 32-bit signature and byte offset), or
/// `{"device": ...}` (a device path in UTF-16, such as an optical drive's).
fn mounted_device(data: &[u8]) -> Value {
    let mut m = serde_json::Map::new();
    if let (Some(b"DMIO:ID:"), Some(g)) = (data.get(..8), data.get(8..24)) {
        if data.len() == 24 {
            // a GUID as Windows stores it: three little-endian fields, then 8 bytes
            let guid = format!(
                "{:08x}-{:04x}-{:04x}-{}-{}",
                u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
                u16::from_le_bytes([g[4], g[5]]),
                u16::from_le_bytes([g[6], g[7]]),
                hex(&g[8..10]),
                hex(&g[10..16])
            );
            m.insert("partition_guid".into(), guid.into());
            return Value::Object(m);
        }
    }
    if data.len() == 12 {
        let sig = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let mut off = [0u8; 8];
        off.copy_from_slice(&data[4..12]);
        m.insert("disk_signature".into(), format!("{sig:08x}").into());
        m.insert("offset".into(), u64::from_le_bytes(off).into());
        return Value::Object(m);
    }
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16_lossy(&units);
    m.insert("device".into(), text.trim_end_matches('\0').into());
    Value::Object(m)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The drive letters of SYSTEM's `MountedDevices` (`\DosDevices\C:` values), letter ->
/// what `mounted_device` makes of its data; `None` when the key is missing or names no
/// letter.
pub fn drive_letters(sys: &Hive) -> Result<Option<Value>, hive::HiveError> {
    let Some(k) = sys.root().path("MountedDevices")? else {
        return Ok(None);
    };
    let mut out = serde_json::Map::new();
    for (name, _, data) in k.values()? {
        let Some(letter) = name
            .strip_prefix(r"\DosDevices\")
            .filter(|l| l.len() == 2 && l.ends_with(':'))
        else {
            continue;
        };
        let bytes = match &data {
            Data::Bytes(_, b) => b.as_slice(),
            _ => continue,
        };
        out.insert(letter.to_ascii_uppercase(), mounted_device(bytes));
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// Host name, architecture and services from SYSTEM; returns the architecture.
fn os_from_system(sys: &Hive, f: &mut WindowsFacts) -> Option<String> {
    match drive_letters(sys) {
        Ok(Some(v)) => {
            f.os.extra.insert("drive_letters".into(), v);
        }
        Ok(None) => {}
        Err(e) => f.errors.push(("os", hive_err(e))),
    }
    let cs = match control_set(sys) {
        Ok(Some(cs)) => cs,
        Ok(None) => return None,
        Err(e) => {
            f.errors.push(("os", hive_err(e)));
            return None;
        }
    };
    if let Ok(Some(k)) = cs.path(r"Control\ComputerName\ComputerName") {
        f.os.hostname = text(&k, "ComputerName");
    }
    let arch = cs
        .path(r"Control\Session Manager\Environment")
        .ok()
        .flatten()
        .and_then(|k| text(&k, "PROCESSOR_ARCHITECTURE"))
        .map(|a| match a.as_str() {
            "AMD64" => "x86_64".to_string(),
            "ARM64" => "aarch64".to_string(),
            _ => a,
        });
    if let Err(e) = services(&cs, &mut f.services) {
        f.errors.push(("service", hive_err(e)));
    }
    arch
}

fn os_from_software(sw: &Hive, os: &mut Os) {
    let Ok(Some(cv)) = sw.root().path(r"Microsoft\Windows NT\CurrentVersion") else {
        return;
    };
    os.name = text(&cv, "ProductName");
    os.version = text(&cv, "DisplayVersion").or_else(|| text(&cv, "ReleaseId"));
    let build = text(&cv, "CurrentBuildNumber").or_else(|| text(&cv, "CurrentBuild"));
    os.pretty_name = match (&os.name, &os.version) {
        (Some(n), Some(v)) => Some(format!("{n} {v}")),
        (n, _) => n.clone(),
    };
    if let (Some(major), Some(minor), Some(b)) = (
        number(&cv, "CurrentMajorVersionNumber"),
        number(&cv, "CurrentMinorVersionNumber"),
        &build,
    ) {
        os.kernel = Some(match number(&cv, "UBR") {
            Some(ubr) => format!("{major}.{minor}.{b}.{ubr}"),
            None => format!("{major}.{minor}.{b}"),
        });
    }
    if let Some(e) = text(&cv, "EditionID") {
        os.extra.insert("edition".into(), e.into());
    }
    if let Some(v) = text(&cv, "DisplayVersion") {
        os.extra.insert("display_version".into(), v.into());
    }
    if let Some(b) = build {
        os.extra.insert("build".into(), b.into());
    }
    if let Some(d) = number(&cv, "InstallDate") {
        os.extra
            .insert("install_date".into(), rfc3339(d as i64).into());
    }
}

fn uninstall(key: Option<Key<'_>>, arch: &str, user: Option<&str>, out: &mut Vec<Package>) {
    let Some(key) = key else { return };
    let Ok(subkeys) = key.subkeys() else { return };
    for k in subkeys {
        let Some(name) = text(&k, "DisplayName") else {
            continue;
        };
        let mut p = Package {
            name,
            version: text(&k, "DisplayVersion").unwrap_or_default(),
            arch: arch.to_string(),
            manager: "windows".into(),
            ..Package::default()
        };
        for (field, value) in [("Publisher", "publisher"), ("InstallDate", "install_date")] {
            if let Some(v) = text(&k, field) {
                p.extra.insert(value.into(), v.into());
            }
        }
        if let Ok(key_name) = k.name() {
            p.extra.insert("key".into(), key_name.into());
        }
        if let Some(u) = user {
            p.extra.insert("user".into(), u.into());
        }
        out.push(p);
    }
}

fn packages(
    tree: &GuestTree,
    sw: &Hive,
    arch: Option<&str>,
    out: &mut Vec<Package>,
) -> Result<(), Error> {
    let native = match arch {
        Some("x86_64") => "x64",
        Some("aarch64") => "arm64",
        Some(a) => a,
        None => "",
    };
    let root = sw.root();
    const U: &str = r"Microsoft\Windows\CurrentVersion\Uninstall";
    uninstall(root.path(U).map_err(hive_err)?, native, None, out);
    uninstall(
        root.path(&format!(r"WOW6432Node\{U}")).map_err(hive_err)?,
        "x86",
        None,
        out,
    );
    // Each user's NTUSER.DAT, found through the profile list.
    for (_, home) in profiles(sw).into_iter().take(MAX_PROFILES) {
        let Some(guest) = guest_path(&home) else {
            continue;
        };
        let user = guest.rsplit('/').next().unwrap_or_default().to_string();
        let path = format!("{guest}/NTUSER.DAT");
        match read_hive(tree, &path) {
            Ok(h) => {
                let per_user = h.root().path(&format!(r"Software\{U}")).map_err(hive_err)?;
                uninstall(per_user, "", Some(&user), out);
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `C:\Users\alice` -> `/Users/alice` (the system volume is the guest's root); `None` for
/// other drives and variables (`%systemroot%\...`).
fn guest_path(win: &str) -> Option<String> {
    let rest = win
        .strip_prefix("C:\\")
        .or_else(|| win.strip_prefix("c:\\"))?;
    Some(format!(
        "/{}",
        rest.replace('\\', "/").trim_end_matches('/')
    ))
}

/// ProfileList: (SID, profile path) of the domain/local accounts (`S-1-5-21-...`).
fn profiles(sw: &Hive) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(Some(list)) = sw
        .root()
        .path(r"Microsoft\Windows NT\CurrentVersion\ProfileList")
    {
        for k in list.subkeys().unwrap_or_default() {
            let (Ok(sid), Some(path)) = (k.name(), text(&k, "ProfileImagePath")) else {
                continue;
            };
            if sid.starts_with("S-1-5-21-") {
                out.push((sid, path));
            }
        }
    }
    out
}

fn users(sam: &Hive, sw: Option<&Hive>, out: &mut Vec<User>) -> Result<(), hive::HiveError> {
    let Some(users) = sam.root().path(r"SAM\Domains\Account\Users")? else {
        return Ok(());
    };
    let profiles = sw.map(profiles).unwrap_or_default();
    let Some(names) = users.subkey("Names")? else {
        return Ok(());
    };
    for k in names.subkeys()? {
        let name = k.name()?;
        let Some(rid) = k.value_type("")? else {
            continue;
        };
        let mut u = User {
            name,
            uid: rid,
            gid: 513,
            ..User::default()
        };
        if let Some(acct) = users.subkey(&format!("{rid:08X}"))? {
            if let Some(Data::Bytes(_, f)) = acct.value("F")? {
                if let Some(acb) = f.get(0x38..0x3A) {
                    let acb = u16::from_le_bytes([acb[0], acb[1]]);
                    u.extra.insert("disabled".into(), (acb & 1 != 0).into());
                }
            }
        }
        if let Some((sid, home)) = profiles
            .iter()
            .find(|(sid, _)| sid.rsplit('-').next() == Some(&rid.to_string()))
        {
            u.home = home.clone();
            u.extra.insert("sid".into(), sid.clone().into());
        }
        u.extra.insert("rid".into(), rid.into());
        out.push(u);
    }
    Ok(())
}

fn start_type(n: Option<u64>) -> String {
    match n {
        Some(0) => "boot".into(),
        Some(1) => "system".into(),
        Some(2) => "auto".into(),
        Some(3) => "demand".into(),
        Some(4) => "disabled".into(),
        Some(n) => n.to_string(),
        None => String::new(),
    }
}

fn service_type(n: u64) -> String {
    match n {
        1 => "kernel_driver".into(),
        2 => "fs_driver".into(),
        0x10 => "own_process".into(),
        0x20 => "share_process".into(),
        0x50 => "user_own_process".into(),
        0x60 => "user_share_process".into(),
        n => format!("{n:#x}"),
    }
}

fn services(cs: &Key<'_>, out: &mut Vec<Service>) -> Result<(), hive::HiveError> {
    let Some(svcs) = cs.subkey("Services")? else {
        return Ok(());
    };
    for k in svcs.subkeys()? {
        let Some(ty) = number(&k, "Type") else {
            continue;
        };
        out.push(Service {
            name: k.name()?,
            display_name: text(&k, "DisplayName"),
            path: text(&k, "ImagePath").unwrap_or_default(),
            start_type: start_type(number(&k, "Start")),
            account: text(&k, "ObjectName"),
            service_type: service_type(ty),
            ..Service::default()
        });
    }
    Ok(())
}

fn list(k: &Key<'_>, name: &str) -> Vec<String> {
    match k.value(name).ok().flatten() {
        Some(Data::Multi(v)) => v,
        Some(Data::String(s)) => s
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// One config item per TCP/IP interface of the current control set.
fn network(sys: &Hive, out: &mut Vec<ConfigItem>) -> Result<(), hive::HiveError> {
    let Some(cs) = control_set(sys)? else {
        return Ok(());
    };
    let Some(ifaces) = cs.path(r"Services\Tcpip\Parameters\Interfaces")? else {
        return Ok(());
    };
    for k in ifaces.subkeys()? {
        let guid = k.name()?;
        let dhcp = number(&k, "EnableDHCP").unwrap_or(0) != 0;
        let addresses = if dhcp {
            Vec::new()
        } else {
            list(&k, "IPAddress")
        };
        let masks = if dhcp {
            Vec::new()
        } else {
            list(&k, "SubnetMask")
        };
        let gateways = list(&k, "DefaultGateway");
        let dns = list(&k, "NameServer");
        let mut content = format!("EnableDHCP={}\n", u8::from(dhcp));
        for (name, v) in [
            ("IPAddress", &addresses),
            ("SubnetMask", &masks),
            ("DefaultGateway", &gateways),
            ("NameServer", &dns),
        ] {
            if !v.is_empty() {
                content.push_str(&format!("{name}={}\n", v.join(" ")));
            }
        }
        for name in ["DhcpIPAddress", "DhcpNameServer"] {
            if let Some(v) = text(&k, name).filter(|v| !v.is_empty()) {
                content.push_str(&format!("{name}={v}\n"));
            }
        }
        let mut item = ConfigItem {
            path: format!(
                r"HKLM\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces\{guid}"
            ),
            content,
            ..ConfigItem::default()
        };
        let strings = |v: &[String]| Value::Array(v.iter().map(|s| s.clone().into()).collect());
        item.extra.insert("interface".into(), guid.into());
        item.extra.insert("dhcp".into(), dhcp.into());
        item.extra.insert("addresses".into(), strings(&addresses));
        item.extra.insert("dns".into(), strings(&dns));
        out.push(item);
    }
    Ok(())
}

//! Tree assembly from the guest's own `/etc/fstab`, on two-disk guests built at test time
//! with `mkfs.ext4 -d`: a data disk named by LABEL, by UUID and by device name lands at
//! its mount point, and a line naming no disk is reported in `_frame.errors`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use origami_introspect::{Crawler, Target};

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mkfs(root: &Path, img: &Path, label: &str, uuid: &str) {
    let st = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-E",
            "root_owner=0:0",
            "-L",
            label,
            "-U",
            uuid,
            "-d",
        ])
        .arg(root)
        .arg(img)
        .arg("8M")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

fn two_disk_guest(name: &str, fstab: &str) -> Option<(Scratch, PathBuf, PathBuf)> {
    if !origami_testsupport::require_program("mkfs.ext4") {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("origami-fstab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = Scratch(dir.clone());
    let root = dir.join("root");
    let data = dir.join("data");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("srv/data")).unwrap();
    std::fs::create_dir_all(data.join("www")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=two\nVERSION_ID=2\n").unwrap();
    std::fs::write(root.join("etc/fstab"), fstab).unwrap();
    std::fs::write(data.join("www/index.html"), "served from the data disk\n").unwrap();
    let (a, b) = (dir.join("vda.img"), dir.join("vdb.img"));
    mkfs(&root, &a, "root", "0d1e0000-0000-4000-8000-000000000001");
    mkfs(&data, &b, "data", "0d1e0000-0000-4000-8000-0000000000da");
    Some((s, a, b))
}

#[test]
fn data_disk_is_mounted_where_fstab_says() {
    for spec in [
        "LABEL=data",
        "UUID=0D1E0000-0000-4000-8000-0000000000DA",
        "/dev/vdb",
        "/dev/disk/by-uuid/0d1e0000-0000-4000-8000-0000000000da",
    ] {
        let fstab = format!(
            "# <file system> <mount point> <type> <options> <dump> <pass>\n\
             LABEL=root / ext4 defaults 0 1\n{spec} /srv/data ext4 defaults 0 2\n\
             proc /proc proc defaults 0 0\n"
        );
        let Some((_s, vda, vdb)) = two_disk_guest("ok", &fstab) else {
            return;
        };
        let frame = Crawler::default()
            .crawl(&Target::disk(&vda).with_disk(&vdb))
            .unwrap();
        assert!(
            frame.meta.errors.is_empty(),
            "{spec}: {:?}",
            frame.meta.errors
        );
        let f = frame
            .file
            .iter()
            .find(|f| f.path == "/srv/data/www/index.html")
            .unwrap_or_else(|| panic!("{spec}: data disk not mounted"));
        assert_eq!(f.size, 26);
        assert_eq!(frame.os.id.as_deref(), Some("two"));
    }
}

#[test]
fn an_fstab_line_naming_no_disk_is_reported() {
    let fstab = "LABEL=root / ext4 defaults 0 1\nUUID=ffffffff-0000-4000-8000-000000000000 /srv/data ext4 defaults 0 2\n";
    let Some((_s, vda, _vdb)) = two_disk_guest("missing", fstab) else {
        return;
    };
    let frame = Crawler::default().crawl(&Target::disk(&vda)).unwrap();
    let disk_errors: Vec<&str> = frame
        .meta
        .errors
        .iter()
        .filter(|e| e.feature == "disk")
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(disk_errors.len(), 1, "{disk_errors:?}");
    assert!(disk_errors[0].contains("line 2") && disk_errors[0].contains("/srv/data"));
    assert!(frame.file.iter().any(|f| f.path == "/srv/data"));
    assert!(!frame.file.iter().any(|f| f.path.starts_with("/srv/data/")));
}

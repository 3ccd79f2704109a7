//! The fixture guest booted with a disk: the fixture kernel under QEMU TCG with a copy of a
//! disk image attached as virtio-blk (`-blockdev ... node-name=disk0 -device
//! virtio-blk-pci,drive=disk0,id=vd0`), a QMP socket, and a console shell that has loaded
//! the virtio and ext4 modules (from the fixture's module tarball, put in the initramfs)
//! and mounted the disk's second partition (the Debian root) read-write on `/mnt`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::qemu::{FixtureVm, RamBacking, VmOptions, CONSOLE_SHELL};
use crate::Fixtures;

/// The modules loaded, dependencies first (the fixture's `load-order.txt` order).
pub const MODULES: [&str; 11] = [
    "crc32c_generic",
    "virtio_ring",
    "virtio",
    "virtio_blk",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "crc16",
    "mbcache",
    "jbd2",
    "ext4",
];

/// A booted guest with a disk and a QMP socket.
#[derive(Debug)]
pub struct DiskVm {
    /// The guest (its console shell is ready, the disk mounted on `/mnt`).
    pub vm: FixtureVm,
    /// The QMP socket (`-qmp unix:PATH,server=on,wait=off`).
    pub qmp: PathBuf,
    /// The disk image QEMU writes.
    pub disk: PathBuf,
    dir: PathBuf,
}

impl Drop for DiskVm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `.ko` files of [`MODULES`] as initramfs entries under `/m`.
fn module_files(fx: &Fixtures, dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let tar = crate::qemu::find_file(&fx.path("memdump/kernel"), "modules-");
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(dir)
        .status()
        .expect("tar");
    assert!(st.success(), "unpacking {}", tar.display());
    let root = crate::qemu::find_file(&dir.join("lib/modules"), "6.");
    let order = std::fs::read_to_string(root.join("load-order.txt")).expect("load-order.txt");
    let mut files = vec![("m".to_string(), 0o040755, Vec::new())];
    for m in MODULES {
        let rel = order
            .lines()
            .find(|l| l.rsplit('/').next() == Some(&format!("{m}.ko")))
            .unwrap_or_else(|| panic!("{m}.ko not in load-order.txt"));
        let data = std::fs::read(root.join(rel)).expect("module file");
        files.push((format!("m/{m}.ko"), 0o100644, data));
    }
    files
}

impl DiskVm {
    /// Copies `image` (qcow2) to a scratch folder and boots the guest on it; panics when
    /// the guest does not reach its shell or cannot mount the disk within `timeout`.
    pub fn boot(fx: &Fixtures, name: &str, image: &Path, timeout: Duration) -> DiskVm {
        let dir = std::env::temp_dir().join(format!("origami-{name}-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let disk = dir.join("disk.qcow2");
        std::fs::copy(image, &disk).expect("disk copy");
        let qmp = dir.join("qmp.sock");
        let options = VmOptions {
            backing: RamBacking::Anonymous,
            console_shell: true,
            extra_args: vec![
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", qmp.display()),
                "-blockdev".into(),
                format!(
                    "driver=qcow2,node-name=disk0,file.driver=file,file.filename={}",
                    disk.display()
                ),
                "-device".into(),
                "virtio-blk-pci,drive=disk0,id=vd0".into(),
            ],
            extra_files: module_files(fx, &dir),
            ..VmOptions::default()
        };
        let mut vm = FixtureVm::boot_with(fx, name, "", timeout, &options);
        vm.wait_for_console(CONSOLE_SHELL, timeout);
        let load = MODULES
            .iter()
            .map(|m| format!("insmod /m/{m}.ko"))
            .collect::<Vec<_>>()
            .join("; ");
        let out = vm.console_run(
            &format!(
                "{load}; mkdir -p /mnt; mount -t ext4 /dev/vda2 /mnt && echo MOUNTED-$((40+2))"
            ),
            Duration::from_secs(120),
        );
        assert!(out.contains("MOUNTED-42"), "mounting the disk: {out}");
        DiskVm { vm, qmp, disk, dir }
    }
}

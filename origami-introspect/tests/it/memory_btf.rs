//! The BTF parser against the fixture kernel's own `vmlinux.btf`: the layouts the memory
//! crawlers rely on must come out as this kernel (6.1, Debian) defines them. The expected
//! offsets are the ones the kernel itself publishes in its VMCOREINFO note, plus facts of
//! the C declarations (comm is 16 bytes, `new_utsname` fields are 65 bytes).

use origami_introspect::linux::btf::Btf;

fn load() -> Option<Btf> {
    let fx = origami_testsupport::fixtures()?;
    let blob = std::fs::read(fx.path("memdump/kernel/vmlinux.btf")).expect("vmlinux.btf");
    Some(Btf::parse(&blob).expect("parse BTF"))
}

fn vmcoreinfo_offset(key: &str) -> u64 {
    let fx = origami_testsupport::fixtures().unwrap();
    let text = std::fs::read_to_string(fx.path("memdump/vmcoreinfo.txt")).unwrap();
    let want = format!("OFFSET({key})=");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .unwrap_or_else(|| panic!("{key} not in vmcoreinfo"))
        .parse()
        .unwrap()
}

#[test]
fn layouts_match_the_kernels_own_vmcoreinfo() {
    let Some(btf) = load() else { return };
    assert!(btf.type_count() > 100_000, "{} types", btf.type_count());
    for key in [
        "page._refcount",
        "page.mapping",
        "page.lru",
        "pglist_data.node_start_pfn",
        "zone.free_area",
        "printk_ringbuffer.text_data_ring",
        "prb_desc_ring.head_id",
        "vmap_area.list",
        "uts_namespace.name",
    ] {
        let (ty, path) = key.split_once('.').unwrap();
        let f = btf
            .member(ty, path)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(f.offset, vmcoreinfo_offset(key), "{key}");
    }
}

#[test]
fn task_struct_and_friends() {
    let Some(btf) = load() else { return };
    let comm = btf.member("task_struct", "comm").unwrap();
    assert_eq!(comm.size, 16);
    let tasks = btf.member("task_struct", "tasks").unwrap();
    assert_eq!(tasks.size, 16);
    let pid = btf.member("task_struct", "pid").unwrap();
    let tgid = btf.member("task_struct", "tgid").unwrap();
    assert_eq!((pid.size, tgid.size, tgid.offset - pid.offset), (4, 4, 4));
    for p in [
        "real_parent",
        "mm",
        "cred",
        "files",
        "start_boottime",
        "flags",
    ] {
        let f = btf.member("task_struct", p).unwrap();
        assert!(f.offset > 0 && f.offset < 10_000, "{p}");
    }
    let arg_start = btf.member("mm_struct", "arg_start").unwrap();
    let arg_end = btf.member("mm_struct", "arg_end").unwrap();
    assert_eq!(arg_end.offset - arg_start.offset, 8);
    // `skc_num` sits in an anonymous union inside an anonymous struct of sock_common.
    let dport = btf.member("sock", "__sk_common.skc_dport").unwrap();
    let num = btf.member("sock", "__sk_common.skc_num").unwrap();
    assert_eq!(num.offset, dport.offset + 2);
    assert_eq!(btf.member("sock", "__sk_common").unwrap().offset, 0);
    let uts = btf.member("uts_namespace", "name.nodename").unwrap();
    assert_eq!((uts.offset, uts.size), (65, 65));
    assert!(btf.member("task_struct", "no_such_member").is_err());
    assert!(btf.member("no_such_struct", "x").is_err());
}

#[test]
fn every_truncation_fails_cleanly() {
    let Some(fx) = origami_testsupport::fixtures() else {
        return;
    };
    let blob = std::fs::read(fx.path("memdump/kernel/vmlinux.btf")).unwrap();
    for cut in [0, 10, 24, 25, 1000, blob.len() / 2, blob.len() - 1] {
        assert!(Btf::parse(&blob[..cut]).is_err(), "cut at {cut}");
    }
}

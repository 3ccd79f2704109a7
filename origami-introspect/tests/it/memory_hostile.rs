//! Hostile or broken guest memory: list pointers that leave RAM, lists that loop, memory
//! with no kernel at all. Each ends its walk with a recorded error naming the address;
//! nothing hangs, panics or makes up a process.

use origami_core::memory::{MemoryDump, PhysRange, PhysicalMemory};
use origami_introspect::frame::Frame;
use origami_introspect::linux::{crawl_kernel, discover, Kernel, LinuxOptions};

/// A dump with some bytes overwritten.
struct Patched<'a> {
    inner: &'a MemoryDump,
    patches: Vec<(u64, [u8; 8])>,
}

impl PhysicalMemory for Patched<'_> {
    fn read_phys(&self, addr: u64, buf: &mut [u8]) -> origami_core::Result<()> {
        self.inner.read_phys(addr, buf)?;
        for (at, bytes) in &self.patches {
            for (i, b) in bytes.iter().enumerate() {
                let a = at + i as u64;
                if a >= addr && a < addr + buf.len() as u64 {
                    buf[(a - addr) as usize] = *b;
                }
            }
        }
        Ok(())
    }
    fn ranges(&self) -> Vec<PhysRange> {
        self.inner.ranges()
    }
    fn name(&self) -> String {
        format!("patched {}", self.inner.name())
    }
}

fn setup() -> Option<(MemoryDump, Kernel, usize)> {
    let fx = origami_testsupport::fixtures()?;
    let dump = MemoryDump::open(fx.path("memdump/memory.elf")).unwrap();
    let k = discover(&dump, &LinuxOptions::default().no_cache()).unwrap();
    let n = fx.json("memdump/truth.json")["processes"]
        .as_array()
        .unwrap()
        .len();
    Some((dump, k, n))
}

/// The task-list nodes (`task_struct.tasks` addresses), head first.
fn task_nodes(k: &Kernel, dump: &MemoryDump) -> Vec<u64> {
    let km = k.kmem(dump);
    let head = k.symbol("init_task").unwrap() + k.layout.off("task_struct.tasks").unwrap();
    let (nodes, err) = km.list("tasks", head, 10_000);
    assert!(err.is_none());
    std::iter::once(head).chain(nodes).collect()
}

#[test]
fn a_pointer_out_of_ram_ends_the_walk_with_an_error() {
    let Some((dump, k, n)) = setup() else { return };
    let nodes = task_nodes(&k, &dump);
    let km = k.kmem(&dump);
    let bad = 0xffff_dead_beef_0000u64;
    let patched = Patched {
        inner: &dump,
        patches: vec![(km.translate(nodes[20]).unwrap(), bad.to_le_bytes())],
    };
    let mut f = Frame::new("t");
    crawl_kernel(&k, &patched, &LinuxOptions::default()).merge_into(&mut f);
    assert_eq!(
        f.process.len(),
        20,
        "the walk keeps what it read before the bad pointer"
    );
    assert!(f.process.len() < n);
    let e = f
        .meta
        .errors
        .iter()
        .find(|e| e.feature == "process")
        .expect("an error");
    assert!(e.message.contains("0xffffdeadbeef0000"), "{}", e.message);
    // Features that do not depend on the task list still ran.
    assert_eq!(f.module.len(), 3);
}

#[test]
fn a_looping_list_ends_with_an_error() {
    let Some((dump, k, _)) = setup() else { return };
    let nodes = task_nodes(&k, &dump);
    let km = k.kmem(&dump);
    // nodes[30].next = nodes[10], nodes[10].prev = nodes[30]: a loop that never returns to
    // the head. The back-link check catches it where the loop joins the list (node 9's
    // successor no longer points back at it); the cycle check behind it is what stops a
    // loop that live memory changes under the walk.
    let patched = Patched {
        inner: &dump,
        patches: vec![
            (km.translate(nodes[30]).unwrap(), nodes[10].to_le_bytes()),
            (
                km.translate(nodes[10] + 8).unwrap(),
                nodes[30].to_le_bytes(),
            ),
        ],
    };
    let mut f = Frame::new("t");
    crawl_kernel(&k, &patched, &LinuxOptions::default()).merge_into(&mut f);
    assert_eq!(f.process.len(), 9);
    let e = f
        .meta
        .errors
        .iter()
        .find(|e| e.feature == "process")
        .expect("an error");
    assert!(e.message.contains("prev"), "{}", e.message);
}

#[test]
fn a_broken_back_link_is_reported_not_followed() {
    let Some((dump, k, _)) = setup() else { return };
    let nodes = task_nodes(&k, &dump);
    let km = k.kmem(&dump);
    // nodes[5].next points into the middle of another task: its prev does not match.
    let patched = Patched {
        inner: &dump,
        patches: vec![(
            km.translate(nodes[5]).unwrap(),
            (nodes[40] + 64).to_le_bytes(),
        )],
    };
    let mut f = Frame::new("t");
    crawl_kernel(&k, &patched, &LinuxOptions::default()).merge_into(&mut f);
    assert_eq!(f.process.len(), 5);
    assert!(f
        .meta
        .errors
        .iter()
        .any(|e| e.feature == "process" && e.message.contains("prev")));
}

#[test]
fn memory_without_a_kernel_is_an_error_not_a_panic() {
    let dump = MemoryDump::from_bytes(vec![0u8; 4 << 20], "zeros").unwrap();
    let mut f = Frame::new("t");
    origami_introspect::linux::crawl(&dump, &LinuxOptions::default().no_cache()).merge_into(&mut f);
    assert!(f.process.is_empty());
    assert_eq!(f.meta.errors.len(), 1);
    assert_eq!(f.meta.errors[0].feature, "kernel");
    // A banner alone, with nothing of a kernel around it.
    let mut ram = vec![0u8; 4 << 20];
    let banner = b"Linux version 6.1.0-56-amd64 (x) #1 SMP\n\0";
    ram[0x10_0000..0x10_0000 + banner.len()].copy_from_slice(banner);
    let dump = MemoryDump::from_bytes(ram, "banner only").unwrap();
    let mut f = Frame::new("t");
    origami_introspect::linux::crawl(&dump, &LinuxOptions::default().no_cache()).merge_into(&mut f);
    assert!(f.process.is_empty());
    assert_eq!(f.meta.errors[0].feature, "kernel");
}

//! Kernel modules: the `modules` list, as `/proc/modules` shows it (name, size, state).
//!
//! Module structures live in module (vmalloc) space, so every read here goes through the
//! kernel's page tables. Size is `core_layout.size + init_layout.size` on kernels before
//! 6.4 and the sum of `mem[].size` after. The walk is bounded to [`MAX_MODULES`].

use origami_frame::Module;

use super::kernel::Kernel;
use super::kmem::Kmem;
use crate::error::{Error, Result};
use crate::limits::{Bounds, Limits};

/// The most modules walked by default ([`Limits::modules`]).
pub const MAX_MODULES: usize = Limits::DEFAULT.modules;

/// `enum module_state` as `/proc/modules` names it.
pub fn module_state(s: u32) -> &'static str {
    match s {
        0 => "Live",
        1 => "Loading",
        2 => "Unloading",
        3 => "Unformed",
        _ => "Unknown",
    }
}

fn module_size(k: &Kernel, km: &Kmem<'_>, m: u64) -> Result<u64> {
    let l = &k.layout;
    let f = l.field("module.core_layout.size|mem")?;
    if f.alt == 0 {
        let mut size = u64::from(km.u32(m.wrapping_add(f.offset))?);
        if let Ok(i) = l.off("module.init_layout.size") {
            size += u64::from(km.u32(m.wrapping_add(i))?);
        }
        return Ok(size);
    }
    // 6.4+: `struct module_memory mem[MOD_MEM_NUM_TYPES]`.
    let elem = l.sizes.get("module_memory").copied().unwrap_or(0);
    let inner = l.off("module_memory.size")?;
    if elem == 0 || f.size % elem != 0 || f.size / elem > 16 {
        return Err(Error::Malformed {
            file: "kernel BTF".into(),
            location: "module.mem".into(),
            what: format!("array of {} bytes with {elem}-byte elements", f.size),
        });
    }
    let mut size = 0;
    for i in 0..f.size / elem {
        size += u64::from(km.u32(m.wrapping_add(f.offset + i * elem + inner))?);
    }
    Ok(size)
}

/// The frame's modules, with the errors met.
pub fn modules(k: &Kernel, km: &Kmem<'_>) -> Result<(Vec<Module>, Vec<Error>)> {
    modules_with(k, km, &Bounds::none())
}

/// As [`modules`], within `bounds`: at most [`Limits::modules`] modules (a longer list is
/// an [`Error::LimitExceeded`], the modules before the bound kept), stopping at the
/// deadline.
pub fn modules_with(
    k: &Kernel,
    km: &Kmem<'_>,
    bounds: &Bounds,
) -> Result<(Vec<Module>, Vec<Error>)> {
    let l = &k.layout;
    let head = k.symbol("modules")?;
    let list = l.off("module.list")?;
    let name_f = l.field("module.name")?;
    let state_off = l.off("module.state")?;
    let (nodes, err) = km.list_until("module.list", head, bounds.limits.modules, &bounds.deadline);
    let mut errors: Vec<Error> = err.into_iter().collect();
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        if bounds.deadline.passed() {
            if !errors.iter().any(|e| matches!(e, Error::OverTime { .. })) {
                errors.push(bounds.deadline.error());
            }
            break;
        }
        let m = node.wrapping_sub(list);
        let read = || -> Result<Module> {
            Ok(Module {
                name: km.cstr(
                    m.wrapping_add(name_f.offset),
                    name_f.size.clamp(1, 256) as usize,
                )?,
                size: module_size(k, km, m)?,
                state: module_state(km.u32(m.wrapping_add(state_off))?).to_string(),
                ..Module::default()
            })
        };
        match read() {
            Ok(md) => out.push(md),
            Err(e) => errors.push(e),
        }
    }
    Ok((out, errors))
}

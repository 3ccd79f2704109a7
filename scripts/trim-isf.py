#!/usr/bin/env python3
"""Trim a Volatility 3 ISF (dwarf2json's output) to what origami's layout table reads.

Usage: trim-isf.py LINUX_SRC_DIR FULL.json OUT.json

Keeps `metadata`, every `base_types` entry, each `user_types` entry whose name a string
literal of the Rust sources in LINUX_SRC_DIR names (`"task_struct.pid"`, `"module_memory"`:
the layout tables and the optional members other files ask for), together with every
struct/union they embed (members, arrays; not what pointers point to), the `enums` those
use, and each symbol a string literal names. Each kept entry is byte
for byte what dwarf2json wrote: this only leaves entries out.
"""
import json
import re
import sys

import glob
import os

src_dir, full, out = sys.argv[1:4]
literals = set()
for path in glob.glob(os.path.join(src_dir, "*.rs")):
    for lit in re.findall(r'"([A-Za-z0-9_.|]+)"', open(path).read()):
        for alt in lit.split("|"):
            literals.add(alt)
symbols = set(["linux_banner", "_text"]) | literals
types = set(lit.split(".")[0] for lit in literals)

isf = json.load(open(full))
user, enums = isf["user_types"], isf.get("enums", {})
keep_user, keep_enum = set(), set()
todo = [t for t in types if t in user]



def visit(t):
    """Follows a member's type to the named types whose layout it embeds."""
    kind = t.get("kind")
    if kind in ("struct", "union"):
        if t["name"] not in keep_user and t["name"] in user:
            todo.append(t["name"])
    elif kind == "enum":
        keep_enum.add(t["name"])
    elif kind == "array":
        visit(t["subtype"])
    # pointers, functions and base types need nothing more


while todo:
    name = todo.pop()
    if name in keep_user:
        continue
    keep_user.add(name)
    for field in user[name].get("fields", {}).values():
        visit(field["type"])

trimmed = {
    "metadata": isf["metadata"],
    "base_types": isf["base_types"],
    "user_types": {k: user[k] for k in sorted(keep_user)},
    "enums": {k: enums[k] for k in sorted(keep_enum) if k in enums},
    "symbols": {k: v for k, v in sorted(isf["symbols"].items()) if k in symbols},
}
json.dump(trimmed, open(out, "w"), indent=1, sort_keys=True)
print(f"kept {len(keep_user)} user types, {len(trimmed['enums'])} enums, "
      f"{len(trimmed['symbols'])} symbols")

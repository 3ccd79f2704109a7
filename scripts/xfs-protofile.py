#!/usr/bin/env python3
"""xfs-protofile.py TREE: prints a mkfs.xfs protofile (`mkfs.xfs -p FILE`) that copies TREE
(modes, owners, symlinks, devices, fifos; names as raw bytes). The format has no sockets,
sticky bits, hard links, times or extended attributes: a socket is an error, the rest
is lost (each hard link becomes a copy; mkfs stamps every inode with its own time)."""
import os, stat, sys
root = sys.argv[1].encode()
out = sys.stdout.buffer
def mode_str(st, kind):
    m = st.st_mode
    return (kind + ("u" if m & stat.S_ISUID else "-") + ("g" if m & stat.S_ISGID else "-")
            + "%03o" % (m & 0o777)).encode()
def emit(d, depth):
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        st = os.lstat(p)
        ids = b" %d %d" % (st.st_uid, st.st_gid)
        pre = b" " * depth + name + b" "
        m = st.st_mode
        if stat.S_ISDIR(m):
            out.write(pre + mode_str(st, "d") + ids + b"\n")
            emit(p, depth + 1)
            out.write(b" " * depth + b"$\n")
        elif stat.S_ISREG(m):
            out.write(pre + mode_str(st, "-") + ids + b" " + os.path.abspath(p) + b"\n")
        elif stat.S_ISLNK(m):
            out.write(pre + mode_str(st, "l") + ids + b" " + os.readlink(p) + b"\n")
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
            k = "c" if stat.S_ISCHR(m) else "b"
            out.write(pre + mode_str(st, k) + ids + b" %d %d\n" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
        elif stat.S_ISFIFO(m):
            out.write(pre + mode_str(st, "p") + ids + b"\n")
        else:
            raise SystemExit(f"protofile: cannot express {p!r}")
st = os.lstat(root)
out.write(b"/dev/null\n0 0\n" + mode_str(st, "d") + b" %d %d\n" % (st.st_uid, st.st_gid))
emit(root, 1)
out.write(b"$\n")

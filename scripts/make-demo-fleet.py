#!/usr/bin/env python3
"""Builds the demo fleet that `origami demo` crawls: small, real guest disk images.

    scripts/make-demo-fleet.py [OUTDIR]      (default: examples/demo-fleet)

Each machine is a real ext4 root file system made by mkfs.ext4 -d from a generated tree
(os-release, hostname, hosts, passwd/group, a dpkg status database, service configs, a
shell history), put on a disk the way clouds do: GPT with an EFI system partition, MBR, a
bare file system, or qcow2. One machine's disk is deliberately broken. Several machines
mention the same address, 10.20.30.40, in different places.

The images are compressed with zstd and committed (a few hundred KiB in all), so the demo
needs nothing but cargo. `fleet.json` lists the machines and what each one is meant to
show; the demo's test reads it as ground truth. Needs: e2fsprogs, dosfstools, mtools,
fdisk (sfdisk), qemu-utils, zstd. Runs as root (file ownership in the images).
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "examples", "demo-fleet"))
IP = "10.20.30.40"
MiB = 1 << 20

BASE_PKGS = [
    ("base-files", "12.4+deb12u5", "amd64", None, 345),
    ("bash", "5.2.15-2+b7", "amd64", None, 7164),
    ("coreutils", "9.1-1", "amd64", None, 18062),
    ("libc6", "2.36-9+deb12u7", "amd64", "glibc", 12988),
    ("libssl3", "3.0.13-1~deb12u1", "amd64", "openssl", 6236),
    ("openssl", "3.0.13-1~deb12u1", "amd64", None, 2300),
    ("openssh-server", "1:9.2p1-2+deb12u3", "amd64", "openssh", 1882),
    ("sudo", "1.9.13p3-1+deb12u1", "amd64", None, 6385),
    ("tzdata", "2024a-0+deb12u1", "all", None, 3276),
    ("zlib1g", "1:1.2.13.dfsg-1", "amd64", "zlib", 168),
]
ROLE_PKGS = {
    "web": [("nginx-light", "1.22.1-9", "amd64", "nginx", 1204), ("php8.2-fpm", "8.2.20-1~deb12u1", "amd64", "php8.2", 5720)],
    "db": [("postgresql-15", "15.7-0+deb12u1", "amd64", None, 51234), ("postgresql-client-15", "15.7-0+deb12u1", "amd64", "postgresql-15", 4290)],
    "cache": [("redis-server", "5:7.0.15-1~deb12u1", "amd64", "redis", 240), ("redis-tools", "5:7.0.15-1~deb12u1", "amd64", "redis", 7123)],
    "lb": [("haproxy", "2.6.12-1+deb12u1", "amd64", None, 4398)],
    "build": [("gcc-12", "12.2.0-14", "amd64", None, 63461), ("make", "4.3-4.1", "amd64", None, 1512), ("git", "1:2.39.2-1.1", "amd64", None, 39000)],
    "mail": [("postfix", "3.7.11-0+deb12u1", "amd64", None, 4400), ("dovecot-imapd", "1:2.3.19.1+dfsg1-2.1", "amd64", "dovecot", 393)],
    "mon": [("prometheus", "2.42.0+ds-5+b5", "amd64", None, 123000), ("grafana-agent", "0.32.1-1", "amd64", None, 98000)],
}
# name, role, disk layout, which files mention the IP, extra users
MACHINES = [
    ("web-01", "web", "gpt-esp", ["/etc/hosts", "/etc/nginx/sites-enabled/default"], ["alice"]),
    ("web-02", "web", "bare", ["/etc/nginx/sites-enabled/default"], ["alice"]),
    ("db-01", "db", "mbr", ["/etc/postgresql/15/main/pg_hba.conf"], ["postgres", "bob"]),
    ("cache-01", "cache", "qcow2", [], ["redis"]),
    ("lb-01", "lb", "gpt", ["/etc/haproxy/haproxy.cfg", "/etc/hosts"], ["haproxy"]),
    ("build-01", "build", "gpt", [], ["ci", "alice", "bob"]),
    ("mail-01", "mail", "mbr", ["/etc/postfix/main.cf"], ["postfix"]),
    ("mon-01", "mon", "gpt-esp", ["/etc/prometheus/prometheus.yml"], ["prometheus"]),
]
BROKEN = "legacy-01"


def run(*cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def write(root, path, text, mode=0o644, uid=0, gid=0):
    p = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, mode)
    os.chown(p, uid, gid)


def dpkg_status(pkgs):
    out = []
    for name, version, arch, source, size in sorted(pkgs):
        s = [f"Package: {name}", "Status: install ok installed", "Priority: optional",
             "Section: misc", f"Installed-Size: {size}", "Maintainer: Debian <debian@example.invalid>",
             f"Architecture: {arch}"]
        if source:
            s.append(f"Source: {source}")
        s += [f"Version: {version}", f"Description: {name} (demo fleet)",
              " A package entry as dpkg writes it; this line is the long description."]
        out.append("\n".join(s))
    # A removed package whose config files remain: dpkg keeps it, it is not installed.
    out.append("Package: telnet\nStatus: deinstall ok config-files\nPriority: optional\n"
               "Architecture: amd64\nVersion: 0.17+2.4-2\nDescription: removed\n")
    return "\n\n".join(out) + "\n"


def configs(name, role, mentions, rng):
    own_ip = f"10.0.{rng.randint(1, 9)}.{rng.randint(10, 250)}"
    c = {}
    hosts = f"127.0.0.1\tlocalhost\n{own_ip}\t{name}.dc1.example {name}\n"
    if "/etc/hosts" in mentions:
        hosts += f"{IP}\tbackend.dc1.example backend\n"
    hosts += "10.20.30.4\told-backend.dc1.example\n"  # a near miss: must not match the IP query
    c["/etc/hosts"] = hosts
    c["/etc/ssh/sshd_config"] = f"Port 22\nListenAddress {own_ip}\nPermitRootLogin no\nPasswordAuthentication no\n"
    c["/etc/resolv.conf"] = "nameserver 10.0.0.2\nsearch dc1.example\n"
    if role == "web":
        upstream = IP if "/etc/nginx/sites-enabled/default" in mentions else "10.0.5.17"
        c["/etc/nginx/sites-enabled/default"] = (
            "server {\n    listen 80 default_server;\n    server_name _;\n"
            f"    location /api/ {{\n        proxy_pass http://{upstream}:8080;\n    }}\n}}\n")
    if role == "db":
        extra = f"host    all    all    {IP}/32    scram-sha-256\n" if "/etc/postgresql/15/main/pg_hba.conf" in mentions else ""
        c["/etc/postgresql/15/main/pg_hba.conf"] = (
            "local   all    postgres                 peer\nhost    all    all    10.0.0.0/16    scram-sha-256\n" + extra)
        c["/etc/postgresql/15/main/postgresql.conf"] = "listen_addresses = '*'\nport = 5432\nmax_connections = 200\n"
    if role == "cache":
        c["/etc/redis/redis.conf"] = f"bind {own_ip}\nport 6379\nmaxmemory 2gb\n"
    if role == "lb":
        c["/etc/haproxy/haproxy.cfg"] = (
            "frontend www\n    bind *:443\n    default_backend api\n\nbackend api\n"
            f"    server api1 {IP}:8080 check\n    server api2 10.0.5.18:8080 check\n")
    if role == "mail":
        relay = f"[{IP}]:25" if "/etc/postfix/main.cf" in mentions else "[10.0.7.1]:25"
        c["/etc/postfix/main.cf"] = f"myhostname = {name}.dc1.example\nrelayhost = {relay}\ninet_interfaces = all\n"
    if role == "mon":
        c["/etc/prometheus/prometheus.yml"] = (
            "scrape_configs:\n  - job_name: node\n    static_configs:\n"
            f"      - targets: ['{IP}:9100', '10.0.5.17:9100']\n")
    if role == "build":
        c["/etc/gitconfig"] = "[core]\n    autocrlf = false\n"
    return c


def make_tree(root, name, role, mentions, users, rng):
    for d in ["etc", "root", "home", "var/lib/dpkg", "usr/lib", "usr/bin", "tmp", "boot/efi", "lib/modules/6.1.0-21-amd64"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    write(root, "/usr/lib/os-release",
          'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
          'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL="https://www.debian.org/"\n')
    os.symlink("../usr/lib/os-release", os.path.join(root, "etc/os-release"))
    write(root, "/etc/hostname", name + "\n")
    write(root, "/etc/debian_version", "12.6\n")
    passwd = ["root:x:0:0:root:/root:/bin/bash", "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"]
    group = ["root:x:0:", "daemon:x:1:", "sudo:x:27:" + ",".join(u for u in users if u in ("alice", "bob")),
             "nogroup:x:65534:"]
    for i, u in enumerate(users):
        uid = 1001 + i if u in ("alice", "bob", "ci") else 120 + i
        home = f"/home/{u}" if uid >= 1000 else f"/var/lib/{u}"
        shell = "/bin/bash" if uid >= 1000 else "/usr/sbin/nologin"
        passwd.append(f"{u}:x:{uid}:{uid}:{u.capitalize()}:{home}:{shell}")
        group.append(f"{u}:x:{uid}:")
        if uid >= 1000:
            os.makedirs(os.path.join(root, home.lstrip("/")), exist_ok=True)
            os.chown(os.path.join(root, home.lstrip("/")), uid, uid)
            hist = "ls -la\nsudo systemctl status\n"
            if u == "alice":
                hist += f"ssh admin@{IP}\n"
            write(root, home + "/.bash_history", hist, 0o600, uid, uid)
    write(root, "/etc/passwd", "\n".join(passwd) + "\n")
    write(root, "/etc/group", "\n".join(group) + "\n")
    write(root, "/etc/shadow", "".join(f"{l.split(':')[0]}:*:19800:0:99999:7:::\n" for l in passwd), 0o640, 0, 42)
    pkgs = BASE_PKGS + ROLE_PKGS[role]
    write(root, "/var/lib/dpkg/status", dpkg_status(pkgs))
    for path, text in configs(name, role, mentions, rng).items():
        write(root, path, text)
    write(root, "/usr/bin/app-" + role, "#!/bin/sh\necho demo\n", 0o755)
    return pkgs


def mkfs_ext4(tree, out, size_mib, label, uuid):
    with open(out, "wb") as f:
        f.truncate(size_mib * MiB)
    run("mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", "-L", label, "-U", uuid,
        "-E", "root_owner=0:0,lazy_itable_init=0", "-d", tree, out)


def mkfs_esp(out, size_mib, volid):
    with open(out, "wb") as f:
        f.truncate(size_mib * MiB)
    run("mkfs.vfat", "-F", "12", "-i", volid, "-n", "DEMO-ESP", out)
    run("mmd", "-i", out, "::/EFI", "::/EFI/debian")
    with tempfile.NamedTemporaryFile("w", delete=False) as t:
        t.write("search.fs_uuid demo root\n")
    run("mcopy", "-i", out, t.name, "::/EFI/debian/grub.cfg")
    os.unlink(t.name)


def assemble(disk, parts, label):
    """parts: list of (fs image path or None for empty, size MiB, type). Writes a disk."""
    total = 1 + sum(p[1] for p in parts) + 1
    with open(disk, "wb") as f:
        f.truncate(total * MiB)
    lines = [f"label: {label}", "unit: sectors"]
    start = 2048
    for img, size, ptype in parts:
        lines.append(f"start={start}, size={size * 2048}, type={ptype}")
        start += size * 2048
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", disk],
                   input=("\n".join(lines) + "\n").encode(), check=True, stdout=subprocess.DEVNULL)
    start = 2048
    with open(disk, "r+b") as f:
        for img, size, _ in parts:
            if img:
                with open(img, "rb") as src:
                    f.seek(start * 512)
                    f.write(src.read())
            start += size * 2048


def main():
    rng = random.Random(20261126)
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="demo-fleet-")
    fleet = []
    try:
        for idx, (name, role, layout, mentions, users) in enumerate(MACHINES):
            tree = os.path.join(work, name)
            os.makedirs(tree)
            root_uuid = f"0de30000-0000-4000-8000-{idx:012x}"
            esp_id = f"DE{idx:02X}0E5F"
            if layout == "gpt-esp":
                fstab = (f"UUID={root_uuid} / ext4 errors=remount-ro 0 1\n"
                         f"UUID={esp_id[:4]}-{esp_id[4:]} /boot/efi vfat umask=0077 0 1\n")
            else:
                fstab = f"LABEL=root-{name} / ext4 defaults 0 1\n"
            write(tree, "/etc/fstab", fstab)
            pkgs = make_tree(tree, name, role, mentions, users, rng)
            rootfs = os.path.join(work, name + ".ext4")
            mkfs_ext4(tree, rootfs, 8, f"root-{name}", root_uuid)
            disk = os.path.join(work, name + ".img")
            if layout == "bare":
                shutil.copy(rootfs, disk)
            elif layout == "gpt-esp":
                esp = os.path.join(work, name + ".esp")
                mkfs_esp(esp, 2, esp_id)
                assemble(disk, [(esp, 2, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), (rootfs, 8, "0FC63DAF-8483-4772-8E79-3D69D8477DE4")], "gpt")
            elif layout == "gpt" or layout == "qcow2":
                assemble(disk, [(rootfs, 8, "0FC63DAF-8483-4772-8E79-3D69D8477DE4")], "gpt")
            elif layout == "mbr":
                assemble(disk, [(rootfs, 8, "83")], "dos")
            if layout == "qcow2":
                q = os.path.join(work, name + ".qcow2")
                run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", disk, q)
                disk = q
            ext = ".qcow2" if layout == "qcow2" else ".img"
            fname = name + ext + ".zst"
            run("zstd", "-q", "-19", "-f", disk, "-o", os.path.join(OUT, fname))
            fleet.append({"name": name, "role": role, "layout": layout, "disk": fname,
                          "mentions_ip": sorted(mentions + ([f"/home/alice/.bash_history"] if "alice" in users else [])),
                          "packages": sorted(p[0] for p in pkgs), "users": users})
        # The broken machine: a GPT disk whose root file system's superblock is overwritten.
        disk = os.path.join(work, BROKEN + ".img")
        tree = os.path.join(work, BROKEN)
        os.makedirs(tree)
        make_tree(tree, BROKEN, "web", [], [], rng)
        rootfs = os.path.join(work, BROKEN + ".ext4")
        mkfs_ext4(tree, rootfs, 8, "root-legacy", "0de30000-0000-4000-8000-0000000000ff")
        with open(rootfs, "r+b") as f:
            f.seek(1024)
            f.write(bytes(rng.getrandbits(8) for _ in range(4096)))
        assemble(disk, [(rootfs, 8, "0FC63DAF-8483-4772-8E79-3D69D8477DE4")], "gpt")
        run("zstd", "-q", "-19", "-f", disk, "-o", os.path.join(OUT, BROKEN + ".img.zst"))
        fleet.append({"name": BROKEN, "role": "web", "layout": "gpt", "disk": BROKEN + ".img.zst",
                      "broken": True, "mentions_ip": [], "packages": [], "users": []})
        with open(os.path.join(OUT, "fleet.json"), "w") as f:
            json.dump({"schema": "origami-demo-fleet/1", "ip": IP, "machines": fleet}, f, indent=1)
            f.write("\n")
    finally:
        shutil.rmtree(work)
    total = sum(os.path.getsize(os.path.join(OUT, m["disk"])) for m in fleet)
    print(f"demo fleet: {len(fleet)} machines, {total} bytes compressed, in {OUT}")


if __name__ == "__main__":
    main()

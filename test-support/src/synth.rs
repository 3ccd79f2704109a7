//! A synthetic fleet: realistic, deterministic frames for benchmarks, tests and demos.
//!
//! Machine `i` of a [`Fleet`] has a role (web, app, db, cache, lb, dns, mon, build), a
//! host name in one of four data centers, an OS, an address `10.<dc>.<i/250>.<i%250+1>`,
//! a package set (a base set plus its role's), users, kernel modules, processes (kernel
//! threads and role daemons with real-looking command lines), connections to its peers'
//! addresses (app -> db:5432, web -> app:8080, everyone -> dns:53, mon -> everyone:9100),
//! configuration files that name those peers, and a file inventory filling up to
//! `items_per_machine` items. [`Fleet::frame`] at a later `epoch` is the same machine a
//! little later: some processes restarted, connections churned, a package upgraded, a config
//! edited, so consecutive epochs differ by a few percent of their items.
//!
//! Everything derives from the seed and the machine number (a splitmix64 generator), so two
//! runs produce the same frames; no external randomness is used.

use origami_frame::{
    ConfigItem, Connection, FileItem, FileType, Frame, Module, Package, Process, User,
};
use time::OffsetDateTime;

/// The fleet's shape.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// How many machines.
    pub machines: usize,
    /// About how many items each frame holds (at least the non-file items).
    pub items_per_machine: usize,
    /// The seed every frame derives from.
    pub seed: u64,
    /// The time of epoch 0; epoch `n` is `n` hours later.
    pub start: OffsetDateTime,
}

impl Fleet {
    /// A fleet of `machines` machines with about `items_per_machine` items each.
    pub fn new(machines: usize, items_per_machine: usize) -> Fleet {
        Fleet {
            machines,
            items_per_machine,
            seed: 0x0516_a311,
            // 2026-11-01T00:00:00Z
            start: OffsetDateTime::from_unix_timestamp(1_793_491_200)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }
    }

    /// The role of machine `i`.
    pub fn role(&self, i: usize) -> &'static str {
        ROLES[i % ROLES.len()]
    }

    /// The IPv4 address of machine `i`.
    pub fn address(&self, i: usize) -> String {
        format!(
            "10.{}.{}.{}",
            1 + i % DCS.len(),
            (i / 250) % 250,
            i % 250 + 1
        )
    }

    /// The host name of machine `i`.
    pub fn hostname(&self, i: usize) -> String {
        format!(
            "{}-{:03}.{}.example.com",
            self.role(i),
            i / ROLES.len(),
            DCS[i % DCS.len()]
        )
    }

    /// The system id of machine `i`.
    pub fn system(&self, i: usize) -> String {
        format!("vm-{i:05}")
    }

    /// Machines of `role`, in order.
    fn of_role(&self, role: &str) -> impl Iterator<Item = usize> + '_ {
        let role = role.to_string();
        (0..self.machines).filter(move |&j| self.role(j) == role)
    }

    /// Up to `n` peers of machine `i` with `role`, chosen deterministically.
    fn peers(&self, i: usize, role: &str, n: usize) -> Vec<usize> {
        let all: Vec<usize> = self.of_role(role).filter(|&j| j != i).collect();
        if all.is_empty() {
            return all;
        }
        (0..n.min(all.len()))
            .map(|k| all[(i * 7 + k * 13) % all.len()])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Machine `i` at `epoch` (0 = its first crawl).
    pub fn frame(&self, i: usize, epoch: u32) -> Frame {
        let mut rng = Rng::new(self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let role = self.role(i);
        let host = self.hostname(i);
        let ip = self.address(i);
        let mut f = Frame::new(self.system(i));
        f.meta.timestamp = self.start + time::Duration::hours(i64::from(epoch));
        f.meta.hostname = Some(host.clone());
        f.meta.source = vec![format!("/var/lib/libvirt/images/{}.qcow2", self.system(i))];
        let (os_id, os_name, os_ver) = OSES[rng.below(OSES.len())];
        f.os.id = Some(os_id.into());
        f.os.name = Some(os_name.into());
        f.os.version = Some(os_ver.into());
        f.os.pretty_name = Some(format!("{os_name} {os_ver}"));
        f.os.kernel = Some(format!("6.1.0-{}-amd64", 20 + rng.below(8)));
        f.os.arch = Some("x86_64".into());
        f.os.hostname = Some(host.clone());

        // Users.
        let mut users: Vec<(&str, u32)> = BASE_USERS.iter().map(|(n, u)| (*n, *u)).collect();
        for (n, u) in role_users(role) {
            users.push((n, *u));
        }
        for (n, (name, uid)) in users.iter().enumerate() {
            let home = if *uid >= 1000 {
                format!("/home/{name}")
            } else if *uid == 0 {
                "/root".into()
            } else {
                format!("/var/lib/{name}")
            };
            f.user.push(User {
                name: (*name).into(),
                uid: *uid,
                gid: *uid,
                home,
                shell: if *uid == 0 || *uid >= 1000 {
                    "/bin/bash"
                } else {
                    "/usr/sbin/nologin"
                }
                .into(),
                description: Some(format!("{name} account {n}")),
                ..Default::default()
            });
        }
        let n_staff = 5 + rng.below(10);
        for k in 0..n_staff {
            let name = format!("{}{}", STAFF[(i + k) % STAFF.len()], k);
            f.user.push(User {
                uid: 1000 + k as u32,
                gid: 1000 + k as u32,
                home: format!("/home/{name}"),
                shell: "/bin/bash".into(),
                name,
                ..Default::default()
            });
        }

        // Packages: base, role, and some extras; one upgrade per epoch.
        let mut pkgs: Vec<&str> = BASE_PACKAGES.to_vec();
        pkgs.extend(role_packages(role));
        let extra = 100 + rng.below(200);
        for _ in 0..extra {
            pkgs.push(EXTRA_PACKAGES[rng.below(EXTRA_PACKAGES.len())]);
        }
        pkgs.sort_unstable();
        pkgs.dedup();
        let upgraded = if epoch > 0 {
            Some((i + epoch as usize * 31) % pkgs.len())
        } else {
            None
        };
        for (k, name) in pkgs.iter().enumerate() {
            let h = hash_str(name);
            let mut version = format!(
                "{}.{}.{}-{}",
                1 + h % 4,
                (h >> 8) % 20,
                (h >> 16) % 30,
                1 + (h >> 24) % 3
            );
            if upgraded == Some(k) {
                version.push_str(&format!("+deb12u{epoch}"));
            }
            f.package.push(Package {
                name: (*name).into(),
                version,
                arch: if h.is_multiple_of(5) { "all" } else { "amd64" }.into(),
                manager: "dpkg".into(),
                size: Some(1024 * (1 + h % 4096)),
                status: Some("install ok installed".into()),
                ..Default::default()
            });
        }

        // Kernel modules.
        let n_mod = 50 + rng.below(40);
        for m in MODULES.iter().take(n_mod) {
            f.module.push(Module {
                name: (*m).into(),
                size: 4096 * (1 + hash_str(m) % 200),
                state: "Live".into(),
                ..Default::default()
            });
        }

        // Processes: kernel threads, base daemons, role daemons; epoch restarts some.
        let mut pid = 1u32;
        let push_proc =
            |f: &mut Frame, pid: &mut u32, name: &str, cmd: &[String], uid: u32, kthread: bool| {
                let pid_now = *pid;
                f.process.push(Process {
                    pid: pid_now,
                    ppid: if pid_now == 1 {
                        0
                    } else if kthread {
                        2
                    } else {
                        1
                    },
                    name: name.chars().take(15).collect(),
                    cmdline: cmd.to_vec(),
                    uid,
                    state: Some("S".into()),
                    start_time: Some(u64::from(pid_now) * 10),
                    rss: (!kthread).then_some(4096 * u64::from(pid_now % 997 + 100)),
                    kernel_thread: kthread,
                    ..Default::default()
                });
                *pid += 1;
            };
        push_proc(
            &mut f,
            &mut pid,
            "systemd",
            &["/sbin/init".into()],
            0,
            false,
        );
        push_proc(&mut f, &mut pid, "kthreadd", &[], 0, true);
        for cpu in 0..4 {
            for kt in ["ksoftirqd", "migration", "cpuhp", "kworker"] {
                push_proc(&mut f, &mut pid, &format!("{kt}/{cpu}"), &[], 0, true);
            }
        }
        let n_kw = 60 + rng.below(60);
        for k in 0..n_kw {
            push_proc(
                &mut f,
                &mut pid,
                &format!("kworker/u{}:{}", k % 8, k),
                &[],
                0,
                true,
            );
        }
        for (name, cmd, uid) in BASE_DAEMONS {
            let cmd: Vec<String> = cmd.split(' ').map(String::from).collect();
            push_proc(&mut f, &mut pid, name, &cmd, *uid, false);
        }
        // A restarted daemon gets a new pid at each epoch.
        pid += epoch * 7;
        let (dname, dcmd, duid, workers) = role_daemon(role);
        let dcmd: Vec<String> = dcmd
            .replace("{ip}", &ip)
            .split(' ')
            .map(String::from)
            .collect();
        let daemon_pid = pid;
        push_proc(&mut f, &mut pid, dname, &dcmd, duid, false);
        for w in 0..workers {
            push_proc(
                &mut f,
                &mut pid,
                dname,
                &[format!("{dname}: worker process {w}")],
                duid,
                false,
            );
        }

        // Connections: listeners, then to peers.
        let port = role_port(role);
        let mut conns = vec![
            listen(
                "0.0.0.0",
                22,
                Some(3 + BASE_DAEMONS.iter().position(|d| d.0 == "sshd").unwrap_or(0) as u32),
            ),
            listen(&ip, port, Some(daemon_pid)),
            listen("127.0.0.1", 9100, None),
        ];
        let mut eph = 32768u16 + (epoch as u16).wrapping_mul(101);
        let mut connect = |conns: &mut Vec<Connection>, to: String, port: u16, pid: Option<u32>| {
            eph = eph.wrapping_add(1).max(32768);
            conns.push(Connection {
                protocol: "tcp".into(),
                family: "ipv4".into(),
                local_address: ip.clone(),
                local_port: eph,
                remote_address: to,
                remote_port: port,
                state: "ESTABLISHED".into(),
                pid,
                ..Default::default()
            });
        };
        let targets: &[(&str, u16, usize)] = match role {
            "web" => &[("app", 8080, 6)],
            "app" => &[("db", 5432, 3), ("cache", 6379, 2)],
            "lb" => &[("web", 443, 8)],
            "mon" => &[("web", 9100, 20), ("app", 9100, 20), ("db", 9100, 20)],
            _ => &[],
        };
        for (trole, tport, n) in targets {
            for j in self.peers(i, trole, *n) {
                for _ in 0..(3 + (i + j) % 5) {
                    connect(&mut conns, self.address(j), *tport, Some(daemon_pid));
                }
            }
        }
        for j in self.peers(i, "dns", 1) {
            connect(&mut conns, self.address(j), 53, None);
        }
        let n_churn = 20 + rng.below(40);
        for k in 0..n_churn {
            // Short-lived client connections: different at every epoch.
            let j = (i + k * 17 + epoch as usize * 5) % self.machines.max(1);
            if j != i {
                connect(&mut conns, self.address(j), 443, Some(daemon_pid));
            }
        }
        f.connection = conns;

        // Configs that name the peers.
        let mut hosts = String::from("127.0.0.1\tlocalhost\n");
        hosts.push_str(&format!("{ip}\t{host} {}\n", self.role(i)));
        for (trole, _, n) in targets {
            for j in self.peers(i, trole, *n) {
                hosts.push_str(&format!("{}\t{}\n", self.address(j), self.hostname(j)));
            }
        }
        let dns: Vec<String> = self
            .peers(i, "dns", 2)
            .iter()
            .map(|&j| self.address(j))
            .collect();
        let mut configs = vec![
            ("/etc/hosts", hosts),
            (
                "/etc/resolv.conf",
                dns.iter().map(|d| format!("nameserver {d}\n")).collect::<String>()
                    + "search example.com\n",
            ),
            (
                "/etc/ssh/sshd_config",
                format!(
                    "Include /etc/ssh/sshd_config.d/*.conf\nListenAddress {ip}\nPort 22\nPermitRootLogin {}\nPasswordAuthentication no\nX11Forwarding yes\nAcceptEnv LANG LC_*\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
                    if i % 10 == 3 { "yes" } else { "prohibit-password" }
                ),
            ),
            (
                "/etc/network/interfaces",
                format!("auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n    address {ip}/16\n    gateway 10.{}.0.1\n", 1 + i % DCS.len()),
            ),
            ("/etc/fstab", "UUID=7d1e0000-0000-0000-0000-00000000b007 / ext4 errors=remount-ro 0 1\n/dev/vda3 none swap sw 0 0\n".into()),
            ("/etc/crontab", format!("SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n{} 3 * * * backup /usr/local/bin/backup.sh\n", i % 60)),
        ];
        match role {
            "web" | "lb" => {
                let ups: String = self
                    .peers(i, if role == "web" { "app" } else { "web" }, 6)
                    .iter()
                    .map(|&j| {
                        format!(
                            "    server {}:{};\n",
                            self.address(j),
                            if role == "web" { 8080 } else { 443 }
                        )
                    })
                    .collect();
                configs.push((
                    "/etc/nginx/sites-available/default",
                    format!("upstream backend {{\n{ups}}}\nserver {{\n    listen {ip}:{port};\n    server_name {host};\n    location / {{ proxy_pass http://backend; }}\n}}\n"),
                ));
            }
            "db" => configs.push((
                "/etc/postgresql/15/main/pg_hba.conf",
                format!(
                    "local all postgres peer\nhost all all 10.{}.0.0/16 scram-sha-256\n",
                    1 + i % DCS.len()
                ),
            )),
            "app" => configs.push((
                "/etc/app/app.yaml",
                format!(
                    "database:\n  host: {}\n  port: 5432\ncache: {}:6379\nlisten: {ip}:8080\n",
                    self.peers(i, "db", 1)
                        .first()
                        .map_or("localhost".into(), |&j| self.address(j)),
                    self.peers(i, "cache", 1)
                        .first()
                        .map_or("localhost".into(), |&j| self.address(j)),
                ),
            )),
            _ => {}
        }
        if epoch > 0 {
            let (_, c) = &mut configs[5];
            c.push_str(&format!("# edited at epoch {epoch}\n"));
        }
        for (path, content) in configs {
            f.config.push(ConfigItem {
                path: path.into(),
                content,
                ..Default::default()
            });
        }

        // Files: fill up to the item budget.
        let have = f.item_count();
        let want = self.items_per_machine.saturating_sub(have);
        let mut k = 0usize;
        'fill: for p in &f.package.clone() {
            for tmpl in FILE_TEMPLATES {
                if k >= want {
                    break 'fill;
                }
                let path = tmpl.replace("{p}", &p.name);
                let h = hash_str(&path);
                f.file.push(FileItem {
                    path,
                    file_type: FileType::File,
                    mode: if tmpl.starts_with("/usr/bin") {
                        0o755
                    } else {
                        0o644
                    },
                    size: h % 200_000,
                    mtime: 1_780_000_000 + (h % 10_000_000) as i64,
                    ..Default::default()
                });
                k += 1;
            }
        }
        let mut n = 0usize;
        while k < want {
            // The rest: data files (logs, caches, home files).
            let owner = f.user.get(n % f.user.len().max(1)).map_or(0, |u| u.uid);
            f.file.push(FileItem {
                path: format!("/var/lib/{role}/data/{:02x}/{:06}.dat", n % 256, n),
                file_type: FileType::File,
                mode: 0o640,
                uid: owner,
                gid: owner,
                size: (n as u64 * 7919) % 1_000_000,
                mtime: 1_780_000_000 + n as i64,
                ..Default::default()
            });
            k += 1;
            n += 1;
        }
        f
    }
}

fn listen(addr: &str, port: u16, pid: Option<u32>) -> Connection {
    Connection {
        protocol: "tcp".into(),
        family: "ipv4".into(),
        local_address: addr.into(),
        local_port: port,
        remote_address: "0.0.0.0".into(),
        remote_port: 0,
        state: "LISTEN".into(),
        pid,
        ..Default::default()
    }
}

/// splitmix64: small, fast and good enough for test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn hash_str(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

const ROLES: [&str; 8] = ["web", "app", "db", "cache", "lb", "dns", "mon", "build"];
const DCS: [&str; 4] = ["fra1", "ams2", "nyc3", "sfo1"];
const OSES: [(&str, &str, &str); 4] = [
    ("debian", "Debian GNU/Linux", "12"),
    ("ubuntu", "Ubuntu", "22.04"),
    ("rhel", "Red Hat Enterprise Linux", "9.4"),
    ("debian", "Debian GNU/Linux", "11"),
];
const STAFF: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

const BASE_USERS: [(&str, u32); 14] = [
    ("root", 0),
    ("daemon", 1),
    ("bin", 2),
    ("sys", 3),
    ("sync", 4),
    ("games", 5),
    ("man", 6),
    ("lp", 7),
    ("mail", 8),
    ("news", 9),
    ("www-data", 33),
    ("backup", 34),
    ("nobody", 65534),
    ("sshd", 105),
];

fn role_users(role: &str) -> &'static [(&'static str, u32)] {
    match role {
        "db" => &[("postgres", 110)],
        "cache" => &[("redis", 111)],
        "web" | "lb" => &[("nginx", 112)],
        "app" => &[("app", 999)],
        "dns" => &[("bind", 113)],
        "mon" => &[("prometheus", 114)],
        "build" => &[("jenkins", 115)],
        _ => &[],
    }
}

const BASE_DAEMONS: &[(&str, &str, u32)] = &[
    ("systemd-journal", "/lib/systemd/systemd-journald", 0),
    ("systemd-udevd", "/lib/systemd/systemd-udevd", 0),
    ("sshd", "/usr/sbin/sshd -D", 0),
    ("cron", "/usr/sbin/cron -f", 0),
    ("rsyslogd", "/usr/sbin/rsyslogd -n -iNONE", 0),
    (
        "dbus-daemon",
        "/usr/bin/dbus-daemon --system --address=systemd: --nofork",
        101,
    ),
    (
        "node_exporter",
        "/usr/bin/prometheus-node-exporter --web.listen-address=127.0.0.1:9100",
        65534,
    ),
    ("agetty", "/sbin/agetty -o -p -- \\u --noclear - linux", 0),
];

fn role_daemon(role: &str) -> (&'static str, &'static str, u32, usize) {
    match role {
        "web" => ("nginx", "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;", 0, 4),
        "lb" => ("haproxy", "/usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid", 0, 2),
        "app" => ("java", "/usr/bin/java -Xmx4g -Dserver.address={ip} -jar /opt/app/app.jar", 999, 8),
        "db" => ("postgres", "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main -c config_file=/etc/postgresql/15/main/postgresql.conf", 110, 12),
        "cache" => ("redis-server", "/usr/bin/redis-server {ip}:6379", 111, 1),
        "dns" => ("named", "/usr/sbin/named -f -u bind", 113, 2),
        "mon" => ("prometheus", "/usr/bin/prometheus --config.file=/etc/prometheus/prometheus.yml", 114, 1),
        _ => ("java", "/usr/bin/java -jar /usr/share/jenkins/jenkins.war --httpPort=8080", 115, 3),
    }
}

fn role_port(role: &str) -> u16 {
    match role {
        "web" | "lb" => 443,
        "app" | "build" => 8080,
        "db" => 5432,
        "cache" => 6379,
        "dns" => 53,
        "mon" => 9090,
        _ => 80,
    }
}

fn role_packages(role: &str) -> &'static [&'static str] {
    match role {
        "web" => &[
            "nginx",
            "nginx-common",
            "libnginx-mod-http-geoip",
            "certbot",
            "python3-certbot-nginx",
        ],
        "lb" => &["haproxy", "keepalived", "libssl3"],
        "app" => &[
            "openjdk-17-jre-headless",
            "ca-certificates-java",
            "java-common",
            "libpq5",
        ],
        "db" => &[
            "postgresql-15",
            "postgresql-client-15",
            "postgresql-common",
            "libpq5",
            "pgbackrest",
        ],
        "cache" => &["redis-server", "redis-tools", "libjemalloc2"],
        "dns" => &["bind9", "bind9-utils", "dns-root-data"],
        "mon" => &["prometheus", "prometheus-alertmanager", "grafana"],
        _ => &[
            "jenkins",
            "git",
            "build-essential",
            "docker-ce",
            "containerd.io",
        ],
    }
}

const BASE_PACKAGES: &[&str] = &[
    "adduser",
    "apt",
    "base-files",
    "base-passwd",
    "bash",
    "bsdutils",
    "ca-certificates",
    "coreutils",
    "cron",
    "curl",
    "dash",
    "debconf",
    "debianutils",
    "diffutils",
    "dpkg",
    "e2fsprogs",
    "findutils",
    "gcc-12-base",
    "gpgv",
    "grep",
    "gzip",
    "hostname",
    "init-system-helpers",
    "iproute2",
    "iputils-ping",
    "less",
    "libacl1",
    "libapt-pkg6.0",
    "libattr1",
    "libaudit1",
    "libblkid1",
    "libbz2-1.0",
    "libc-bin",
    "libc6",
    "libcap-ng0",
    "libcap2",
    "libcom-err2",
    "libcrypt1",
    "libcurl4",
    "libdb5.3",
    "libdebconfclient0",
    "libext2fs2",
    "libffi8",
    "libgcc-s1",
    "libgcrypt20",
    "libgmp10",
    "libgnutls30",
    "libgpg-error0",
    "libgssapi-krb5-2",
    "libhogweed6",
    "libidn2-0",
    "libk5crypto3",
    "libkeyutils1",
    "libkrb5-3",
    "libkrb5support0",
    "liblz4-1",
    "liblzma5",
    "libmd0",
    "libmount1",
    "libncursesw6",
    "libnettle8",
    "libnsl2",
    "libp11-kit0",
    "libpam-modules",
    "libpam-runtime",
    "libpam0g",
    "libpcre2-8-0",
    "libselinux1",
    "libsemanage2",
    "libsepol2",
    "libsmartcols1",
    "libss2",
    "libssl3",
    "libstdc++6",
    "libsystemd0",
    "libtasn1-6",
    "libtinfo6",
    "libudev1",
    "libunistring2",
    "libuuid1",
    "libxxhash0",
    "libzstd1",
    "login",
    "logrotate",
    "lsb-release",
    "mawk",
    "mount",
    "ncurses-base",
    "ncurses-bin",
    "netbase",
    "openssh-client",
    "openssh-server",
    "openssh-sftp-server",
    "openssl",
    "passwd",
    "perl-base",
    "procps",
    "python3",
    "python3-minimal",
    "readline-common",
    "rsyslog",
    "sed",
    "sensible-utils",
    "systemd",
    "systemd-sysv",
    "sudo",
    "sysvinit-utils",
    "tar",
    "tzdata",
    "udev",
    "util-linux",
    "vim-tiny",
    "wget",
    "zlib1g",
    "prometheus-node-exporter",
    "dbus",
    "libdbus-1-3",
    "libexpat1",
    "libsqlite3-0",
    "libreadline8",
];

const EXTRA_PACKAGES: &[&str] = &[
    "htop",
    "iotop",
    "strace",
    "ltrace",
    "tcpdump",
    "nmap",
    "jq",
    "rsync",
    "tmux",
    "screen",
    "git",
    "unzip",
    "zip",
    "bzip2",
    "xz-utils",
    "zstd",
    "lsof",
    "psmisc",
    "dnsutils",
    "net-tools",
    "traceroute",
    "mtr-tiny",
    "socat",
    "netcat-openbsd",
    "telnet",
    "ftp",
    "ethtool",
    "pciutils",
    "usbutils",
    "dmidecode",
    "smartmontools",
    "lvm2",
    "mdadm",
    "parted",
    "gdisk",
    "xfsprogs",
    "btrfs-progs",
    "nfs-common",
    "cifs-utils",
    "autofs",
    "chrony",
    "ntpsec",
    "auditd",
    "apparmor",
    "fail2ban",
    "ufw",
    "iptables",
    "nftables",
    "libnftnl11",
    "libmnl0",
    "libxtables12",
    "libip4tc2",
    "libip6tc2",
    "libelf1",
    "libbpf1",
    "bpftrace",
    "linux-perf",
    "sysstat",
    "atop",
    "nload",
    "iftop",
    "vnstat",
    "python3-yaml",
    "python3-requests",
    "python3-urllib3",
    "python3-certifi",
    "python3-idna",
    "python3-chardet",
    "python3-six",
    "python3-dateutil",
    "python3-jinja2",
    "python3-markupsafe",
    "python3-cryptography",
    "python3-cffi-backend",
    "python3-openssl",
    "python3-setuptools",
    "python3-pip",
    "python3-venv",
    "perl",
    "perl-modules-5.36",
    "libperl5.36",
    "liberror-perl",
    "libjson-perl",
    "libwww-perl",
    "libyaml-0-2",
    "libjson-c5",
    "libxml2",
    "libxslt1.1",
    "libicu72",
    "libpcre3",
    "libonig5",
    "libgd3",
    "libpng16-16",
    "libjpeg62-turbo",
    "libtiff6",
    "libwebp7",
    "libfreetype6",
    "libfontconfig1",
    "fontconfig-config",
    "fonts-dejavu-core",
    "libx11-6",
    "libxext6",
    "libxrender1",
    "libxau6",
    "libxdmcp6",
    "libxcb1",
    "libbsd0",
    "libevent-2.1-7",
    "libuv1",
    "libnghttp2-14",
    "librtmp1",
    "libssh2-1",
    "libpsl5",
    "libbrotli1",
    "libldap-2.5-0",
    "libsasl2-2",
    "libsasl2-modules-db",
    "libkmod2",
    "libcryptsetup12",
    "libdevmapper1.02.1",
    "libargon2-1",
    "libjson-glib-1.0-0",
    "libglib2.0-0",
    "libgirepository-1.0-1",
    "gir1.2-glib-2.0",
    "libpolkit-gobject-1-0",
    "policykit-1",
    "libnss3",
    "libnspr4",
    "libsnappy1v5",
    "libprotobuf32",
    "libgrpc29",
    "libre2-9",
    "libabsl20220623",
    "libcares2",
    "libmaxminddb0",
    "libgeoip1",
    "geoip-database",
    "libmagic1",
    "libmagic-mgc",
    "file",
    "bash-completion",
    "command-not-found",
    "man-db",
    "manpages",
    "groff-base",
    "libpipeline1",
    "libgdbm6",
    "libgdbm-compat4",
    "libtirpc3",
    "libtirpc-common",
    "rpcbind",
    "keyutils",
    "libnfsidmap1",
    "libwrap0",
    "tcpd",
    "libedit2",
    "libbpf0",
    "libpcap0.8",
    "libibverbs1",
    "libnl-3-200",
    "libnl-route-3-200",
    "ibverbs-providers",
    "libfido2-1",
    "libcbor0.8",
    "libsodium23",
    "libqrencode4",
];

const MODULES: &[&str] = &[
    "nf_tables",
    "nfnetlink",
    "nf_conntrack",
    "nf_defrag_ipv4",
    "nf_defrag_ipv6",
    "libcrc32c",
    "crc32c_generic",
    "ip_tables",
    "x_tables",
    "autofs4",
    "ext4",
    "crc16",
    "mbcache",
    "jbd2",
    "crc32c_intel",
    "virtio_net",
    "net_failover",
    "failover",
    "virtio_blk",
    "virtio_scsi",
    "virtio_pci",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_ring",
    "virtio",
    "virtio_balloon",
    "virtio_console",
    "virtio_rng",
    "scsi_mod",
    "scsi_common",
    "sd_mod",
    "sr_mod",
    "cdrom",
    "ata_generic",
    "ata_piix",
    "libata",
    "i2c_piix4",
    "i2c_core",
    "psmouse",
    "serio_raw",
    "evdev",
    "joydev",
    "input_leds",
    "button",
    "pcspkr",
    "qemu_fw_cfg",
    "drm",
    "drm_kms_helper",
    "bochs",
    "drm_vram_helper",
    "drm_ttm_helper",
    "ttm",
    "fb_sys_fops",
    "syscopyarea",
    "sysfillrect",
    "sysimgblt",
    "floppy",
    "rng_core",
    "efi_pstore",
    "configfs",
    "loop",
    "dm_mod",
    "bridge",
    "stp",
    "llc",
    "overlay",
    "br_netfilter",
    "veth",
    "xt_conntrack",
    "xt_MASQUERADE",
    "nf_nat",
    "xt_addrtype",
    "nft_compat",
    "nft_chain_nat",
    "tun",
    "tap",
    "vhost",
    "vhost_net",
    "kvm",
    "kvm_intel",
    "irqbypass",
    "ghash_clmulni_intel",
    "sha512_ssse3",
    "sha256_ssse3",
    "sha1_ssse3",
    "aesni_intel",
    "crypto_simd",
    "cryptd",
    "rapl",
    "binfmt_misc",
    "fuse",
    "sunrpc",
    "nfsd",
    "lockd",
    "grace",
];

const FILE_TEMPLATES: &[&str] = &[
    "/usr/share/doc/{p}/copyright",
    "/usr/share/doc/{p}/changelog.Debian.gz",
    "/usr/share/doc/{p}/README.gz",
    "/var/lib/dpkg/info/{p}.list",
    "/var/lib/dpkg/info/{p}.md5sums",
    "/usr/bin/{p}",
    "/usr/lib/x86_64-linux-gnu/{p}.so.1",
    "/usr/share/man/man1/{p}.1.gz",
    "/usr/share/lintian/overrides/{p}",
    "/etc/{p}/{p}.conf",
    "/usr/share/{p}/README",
    "/usr/share/{p}/examples/example.conf",
    "/usr/lib/{p}/plugins/default.so",
    "/usr/share/locale/de/LC_MESSAGES/{p}.mo",
    "/usr/share/locale/fr/LC_MESSAGES/{p}.mo",
    "/usr/share/bash-completion/completions/{p}",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_deterministic_sized_and_evolve_a_little() {
        let fleet = Fleet::new(40, 3000);
        let a = fleet.frame(5, 0);
        assert_eq!(a, fleet.frame(5, 0));
        assert!(
            a.item_count() >= 3000 && a.item_count() < 3100,
            "{}",
            a.item_count()
        );
        let b = fleet.frame(5, 1);
        let d = b.diff(&a);
        let changed: usize = origami_frame::Section::ALL
            .iter()
            .map(|s| {
                let c = d.counts(*s);
                c.added + c.removed + c.changed
            })
            .sum();
        assert!(changed > 0 && changed < a.item_count() / 10, "{changed}");
        assert_ne!(fleet.hostname(1), fleet.hostname(2));
    }
}

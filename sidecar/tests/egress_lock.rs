//! `dbward-sidecar egress-lock` in real network namespaces: a "pod" namespace and a "database"
//! namespace joined by a veth pair, TCP listeners in both, the lock installed in the pod namespace,
//! and connections tried as the sidecar's uid (47301), an app's (1000) and root.
//!
//! Needs root, `ip netns`, iptables (nft and legacy), setpriv and /usr/bin/python3; without them the
//! tests fail, they do not skip (CI runs them as root). Each test has namespaces of its own, so the
//! fixed ports and addresses below cannot collide.
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
};

const BIN: &str = env!("CARGO_BIN_EXE_dbward-sidecar");
const PYTHON: &str = "/usr/bin/python3";
const SIDECAR: Uid = Uid(Some(47301));
const APP: Uid = Uid(Some(1000));
const ROOT: Uid = Uid(None);
const POD_V4: &str = "10.99.0.1";
const DB_V4: &str = "10.99.0.2";
/// Another address of the database host, which the name does not resolve to (yet): where a failover
/// could move the database.
const DB_V4_OTHER: &str = "10.99.0.3";
const POD_V6: &str = "fd00:99::1";
const DB_V6: &str = "fd00:99::2";
const DB_NAME: &str = "db.egress-lock.test";
const DB_PORT: u16 = 5432;
/// Another port on the database host, which no --allow names.
const OTHER_PORT: u16 = 6543;

/// Listens on every given port (IPv6 and IPv4), prints `ready`, accepts and closes forever.
const LISTEN: &str = r#"
import select, socket, sys
socks = []
for port in sys.argv[1:]:
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", int(port)))
    except OSError:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("0.0.0.0", int(port)))
    s.listen(128)
    socks.append(s)
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        s.accept()[0].close()
"#;

/// One connection attempt, 3 s at most: prints `connected`, `refused` or what else happened.
const CONNECT: &str = r#"
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(f"failed: {e!r}")
"#;

/// Who connects: a uid set with setpriv, or root (None).
#[derive(Debug, Clone, Copy)]
struct Uid(Option<u32>);

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(uid) => write!(f, "uid {uid}"),
            None => f.write_str("root"),
        }
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails loudly when the machine cannot run these tests.
fn preflight() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().next(),
        Some("0"),
        "the egress-lock tests must run as root: they create network namespaces and iptables rules"
    );
    assert!(Path::new(PYTHON).exists(), "the egress-lock tests need {PYTHON}");
}

fn ipv6_in_kernel() -> bool {
    Path::new("/proc/sys/net/ipv6").exists()
}

/// A pod namespace and a database namespace joined by a veth pair, with listeners on both sides;
/// everything is removed when dropped.
struct Bed {
    pod: String,
    db: String,
    etc: PathBuf,
    listeners: Vec<Child>,
}

impl Bed {
    fn new() -> Bed {
        preflight();
        let id = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let pod = format!("dbw-pod-{id}");
        let mut bed = Bed {
            etc: Path::new("/etc/netns").join(&pod),
            db: format!("dbw-db-{id}"),
            pod,
            listeners: Vec::new(),
        };
        let (pod, db) = (bed.pod.clone(), bed.db.clone());
        must(&["ip", "netns", "add", &pod]);
        must(&["ip", "netns", "add", &db]);
        must(&["ip", "-n", &pod, "link", "set", "lo", "up"]);
        must(&["ip", "-n", &db, "link", "set", "lo", "up"]);
        // Made inside the namespaces, so the names cannot clash with other tests'.
        must(&[
            "ip", "-n", &pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &db,
        ]);
        must(&[
            "ip",
            "-n",
            &pod,
            "addr",
            "add",
            &format!("{POD_V4}/24"),
            "dev",
            "eth0",
        ]);
        must(&[
            "ip",
            "-n",
            &db,
            "addr",
            "add",
            &format!("{DB_V4}/24"),
            "dev",
            "eth0",
        ]);
        must(&[
            "ip",
            "-n",
            &db,
            "addr",
            "add",
            &format!("{DB_V4_OTHER}/24"),
            "dev",
            "eth0",
        ]);
        let mut hosts = format!("{DB_V4} {DB_NAME}\n");
        if ipv6_in_kernel() {
            must(&[
                "ip",
                "-n",
                &pod,
                "addr",
                "add",
                &format!("{POD_V6}/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            must(&[
                "ip",
                "-n",
                &db,
                "addr",
                "add",
                &format!("{DB_V6}/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            hosts.push_str(&format!("{DB_V6} {DB_NAME}\n"));
        }
        must(&["ip", "-n", &pod, "link", "set", "eth0", "up"]);
        must(&["ip", "-n", &db, "link", "set", "eth0", "up"]);
        // `ip netns exec` mounts /etc/netns/<name>/hosts over /etc/hosts: the name resolves in the pod.
        std::fs::create_dir_all(&bed.etc).unwrap();
        std::fs::write(bed.etc.join("hosts"), hosts).unwrap();
        bed.listen(&db, &[DB_PORT, OTHER_PORT]);
        // In the pod, the sidecar's side: the app reaches it on loopback, on the upstream's port.
        bed.listen(&pod, &[DB_PORT]);
        bed
    }

    fn listen(&mut self, ns: &str, ports: &[u16]) {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, PYTHON, "-c", LISTEN])
            .args(&ports)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.listeners.push(child);
        assert_eq!(line.trim(), "ready", "listener in {ns} on {ports:?}");
    }

    /// Tries a connection from the pod namespace: `connected`, `refused` or what else happened.
    fn connect(&self, who: Uid, host: &str, port: u16) -> String {
        let mut args = vec!["ip".to_owned(), "netns".into(), "exec".into(), self.pod.clone()];
        if let Uid(Some(uid)) = who {
            args.extend([
                "setpriv".into(),
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
            ]);
            args.push("--clear-groups".into());
        }
        args.extend([
            PYTHON.into(),
            "-c".into(),
            CONNECT.into(),
            host.into(),
            port.to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        must(&args).trim().to_owned()
    }

    fn expect(&self, who: Uid, host: &str, port: u16, outcome: &str) {
        let got = self.connect(who, host, port);
        assert_eq!(got, outcome, "{who} connecting to {host} port {port}");
    }

    /// `dbward-sidecar egress-lock ARGS` in the pod namespace, as root (logs without colours).
    fn lock(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "ip",
            "netns",
            "exec",
            &self.pod,
            "env",
            "NO_COLOR=1",
            BIN,
            "egress-lock",
        ];
        all.extend_from_slice(args);
        run(&all)
    }

    fn lock_ok(&self, args: &[&str]) -> String {
        let out = self.lock(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "egress-lock {args:?} failed ({}): {stderr}",
            out.status
        );
        stderr
    }

    /// `COMMAND -S` in the pod namespace (`iptables-nft`, `ip6tables-legacy`...).
    fn listing(&self, command: &str) -> String {
        must(&["ip", "netns", "exec", &self.pod, command, "-w", "10", "-S"])
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for child in &mut self.listeners {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run(&["ip", "netns", "del", &self.pod]);
        let _ = run(&["ip", "netns", "del", &self.db]);
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

fn count(listing: &str, line: &str) -> usize {
    listing.lines().filter(|l| l.trim_end() == line).count()
}

const JUMP: &str = "-A OUTPUT -j DBWARD-EGRESS";

fn ipv4_address(backend: &str) {
    let bed = Bed::new();
    // Without the lock everyone gets through: the refusals below are the lock's doing.
    bed.expect(APP, DB_V4, DB_PORT, "connected");
    bed.expect(ROOT, DB_V4, DB_PORT, "connected");

    let allow = format!("{DB_V4}:{DB_PORT}");
    let log = bed.lock_ok(&["--uid", "47301", "--allow", &allow, "--backend", backend]);
    assert!(log.contains(&format!("backend=\"{backend}\"")), "{log}");
    assert!(log.contains(&allow) && log.contains("uid=47301"), "{log}");

    bed.expect(SIDECAR, DB_V4, DB_PORT, "connected");
    bed.expect(APP, DB_V4, DB_PORT, "refused");
    bed.expect(ROOT, DB_V4, DB_PORT, "refused");
    if ipv6_in_kernel() {
        // The same IPv4 address through an IPv6 socket leaves as IPv4.
        bed.expect(APP, &format!("::ffff:{DB_V4}"), DB_PORT, "refused");
        bed.expect(APP, "::1", DB_PORT, "connected");
    }
    // The app still reaches the sidecar on loopback, on the same port.
    bed.expect(APP, "127.0.0.1", DB_PORT, "connected");
    // An address locks that address and port only.
    bed.expect(APP, DB_V4, OTHER_PORT, "connected");
    bed.expect(APP, DB_V4_OTHER, DB_PORT, "connected");

    let command = format!("iptables-{backend}");
    let first = bed.listing(&command);
    assert_eq!(count(&first, JUMP), 1, "{first}");
    let rule = format!(
        "-A DBWARD-EGRESS -d {DB_V4}/32 -p tcp -m tcp --dport {DB_PORT} --tcp-flags SYN SYN -j REJECT --reject-with tcp-reset"
    );
    assert_eq!(count(&first, &rule), 1, "{first}");

    // Run again, as after a pod restart: the same rules, once.
    bed.lock_ok(&["--uid", "47301", "--allow", &allow, "--backend", backend]);
    assert_eq!(bed.listing(&command), first);
    bed.expect(APP, DB_V4, DB_PORT, "refused");
    bed.expect(SIDECAR, DB_V4, DB_PORT, "connected");
}

#[test]
fn ipv4_address_nft() {
    ipv4_address("nft");
}

#[test]
fn ipv4_address_legacy() {
    ipv4_address("legacy");
}

#[test]
fn host_name_refuses_its_port_everywhere() {
    let bed = Bed::new();
    bed.expect(APP, DB_V4_OTHER, DB_PORT, "connected");
    let allow = format!("{DB_NAME}:{DB_PORT}");
    let log = bed.lock_ok(&["--uid", "47301", "--allow", &allow]);
    assert!(
        log.contains("backend=\"nft\""),
        "auto picks nft where it works: {log}"
    );
    assert!(log.contains(DB_V4), "the resolved address is logged: {log}");

    bed.expect(SIDECAR, DB_NAME, DB_PORT, "connected");
    bed.expect(APP, DB_NAME, DB_PORT, "refused");
    bed.expect(ROOT, DB_V4, DB_PORT, "refused");
    // The name may move after a failover: its port is refused on addresses it does not resolve to.
    bed.expect(APP, DB_V4_OTHER, DB_PORT, "refused");
    bed.expect(SIDECAR, DB_V4_OTHER, DB_PORT, "connected");
    bed.expect(APP, "127.0.0.1", DB_PORT, "connected");
    bed.expect(APP, DB_V4, OTHER_PORT, "connected");
    if ipv6_in_kernel() {
        assert!(log.contains(DB_V6), "{log}");
        bed.expect(APP, DB_V6, DB_PORT, "refused");
        bed.expect(SIDECAR, DB_V6, DB_PORT, "connected");
        bed.expect(APP, "::1", DB_PORT, "connected");
        bed.expect(APP, DB_V6, OTHER_PORT, "connected");
        assert_eq!(count(&bed.listing("ip6tables-nft"), JUMP), 1);
    }
}

#[test]
fn ipv6_address() {
    if !ipv6_in_kernel() {
        eprintln!("no IPv6 in this kernel: the IPv6 case cannot run");
        return;
    }
    let bed = Bed::new();
    bed.expect(APP, DB_V6, DB_PORT, "connected");
    let allow = format!("[{DB_V6}]:{DB_PORT}");
    bed.lock_ok(&["--uid", "47301", "--allow", &allow]);
    bed.expect(SIDECAR, DB_V6, DB_PORT, "connected");
    bed.expect(APP, DB_V6, DB_PORT, "refused");
    bed.expect(ROOT, DB_V6, DB_PORT, "refused");
    bed.expect(APP, "::1", DB_PORT, "connected");
    // Only that address: the host's IPv4 address is not locked, and no IPv4 rule was needed.
    bed.expect(APP, DB_V4, DB_PORT, "connected");
    assert!(!bed.listing("iptables-nft").contains("DBWARD-EGRESS"));
    let v6 = bed.listing("ip6tables-nft");
    assert_eq!(count(&v6, JUMP), 1, "{v6}");
    assert!(v6.contains(&format!("-d {DB_V6}/128 -p tcp")), "{v6}");
}

#[test]
fn repairs_leftover_rules() {
    let bed = Bed::new();
    // An earlier, broken state: the chain lets everyone through, OUTPUT jumps to it twice, late.
    let leftover = "*filter\n:DBWARD-EGRESS - [0:0]\n-A DBWARD-EGRESS -j ACCEPT\n-A OUTPUT -p udp -j ACCEPT\n\
                    -A OUTPUT -j DBWARD-EGRESS\n-A OUTPUT -p tcp -j DBWARD-EGRESS\nCOMMIT\n";
    let mut restore = Command::new("ip")
        .args(["netns", "exec", &bed.pod, "iptables-nft-restore", "--noflush"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut restore.stdin.take().unwrap(), leftover.as_bytes()).unwrap();
    assert!(restore.wait().unwrap().success());
    bed.expect(APP, DB_V4, DB_PORT, "connected");

    bed.lock_ok(&[
        "--uid",
        "47301",
        "--allow",
        &format!("{DB_V4}:{DB_PORT}"),
        "--backend",
        "nft",
    ]);
    let listing = bed.listing("iptables-nft");
    let output: Vec<&str> = listing.lines().filter(|l| l.starts_with("-A OUTPUT")).collect();
    assert_eq!(output, [JUMP, "-A OUTPUT -p udp -j ACCEPT"], "{listing}");
    assert!(!listing.contains("-A DBWARD-EGRESS -j ACCEPT"), "{listing}");
    bed.expect(APP, DB_V4, DB_PORT, "refused");
    bed.expect(SIDECAR, DB_V4, DB_PORT, "connected");
}

#[test]
fn dry_run_changes_nothing_and_needs_no_privileges() {
    let bed = Bed::new();
    let out = run(&[
        "ip",
        "netns",
        "exec",
        &bed.pod,
        "setpriv",
        "--reuid=1000",
        "--regid=1000",
        "--clear-groups",
        BIN,
        "egress-lock",
        "--uid",
        "47301",
        "--allow",
        &format!("{DB_V4}:{DB_PORT}"),
        "--allow",
        &format!("{DB_NAME}:{OTHER_PORT}"),
        "--dry-run",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "-A DBWARD-EGRESS -m owner --uid-owner 47301 -j RETURN",
        "-A DBWARD-EGRESS -d 10.99.0.2/32 -p tcp -m tcp --dport 5432 --tcp-flags SYN SYN -j REJECT --reject-with tcp-reset",
        "-A DBWARD-EGRESS -p tcp -m tcp --dport 6543 --tcp-flags SYN SYN -j REJECT --reject-with tcp-reset",
        "-I OUTPUT 1 -j DBWARD-EGRESS",
    ] {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?} in\n{stdout}");
    }
    assert!(stdout.contains("# IPv6: ip6tables-nft-restore"), "{stdout}");
    for command in ["iptables-nft", "iptables-legacy"] {
        assert!(!bed.listing(command).contains("DBWARD"), "{command}");
    }
    bed.expect(APP, DB_V4, DB_PORT, "connected");
}

#[test]
fn bad_arguments_fail_naming_them() {
    let cases: &[(&[&str], &str)] = &[
        (&["--allow", "db.example"], "\"db.example\": missing :PORT"),
        (
            &["--allow", "10.0.0.5:0"],
            "\"10.0.0.5:0\": the port must be a number from 1 to 65535",
        ),
        (
            &["--allow", "2001:db8::5:5432"],
            "\"2001:db8::5:5432\": write an IPv6 address in brackets",
        ),
        (
            &["--allow", "127.0.0.1:5432"],
            "\"127.0.0.1:5432\": 127.0.0.1 is inside the pod",
        ),
        (
            &["--allow", "10.0.0.5:5432", "--allow", "10.0.0.300:5432"],
            "\"10.0.0.300:5432\": not a valid IPv4",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["egress-lock", "--uid", "47301", "--dry-run"];
        all.extend_from_slice(args);
        let out = Command::new(BIN).args(&all).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let out = Command::new(BIN)
        .args([
            "egress-lock",
            "--uid",
            "0",
            "--allow",
            "10.0.0.5:5432",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--uid 0 would let every root process through"));
}

#[test]
fn fails_closed_without_iptables() {
    let out = Command::new(BIN)
        .args(["egress-lock", "--uid", "47301", "--allow", "10.0.0.5:5432"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no iptables backend works here"), "{stderr}");
}

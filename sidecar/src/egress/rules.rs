//! The rule sets: what the `DBWARD-EGRESS` chain holds for each address family, the
//! `iptables-restore` input that installs it, and the checks of what the kernel lists afterwards.
//!
//! The chain, jumped to from the first rule of the filter table's OUTPUT chain:
//!
//! ```text
//! -A DBWARD-EGRESS -m owner --uid-owner 47301 -j RETURN
//! -A DBWARD-EGRESS -d 127.0.0.0/8 -j RETURN
//! -A DBWARD-EGRESS -d 10.0.0.5/32 -p tcp -m tcp --dport 5432 --tcp-flags SYN SYN -j REJECT --reject-with tcp-reset
//! -A DBWARD-EGRESS -p tcp -m tcp --dport 6432 --tcp-flags SYN SYN -j REJECT --reject-with tcp-reset
//! ```
//!
//! The third line is an upstream given as an address; the fourth, one given as a name (its port is
//! refused toward every destination but loopback, because the name may point elsewhere tomorrow).
//! The rules match connection openings (packets with SYN set): a TCP connection cannot start
//! without one, and later packets of the sidecar's own connections may be sent by the kernel after
//! the sidecar closed its socket (retransmitted FINs, TIME_WAIT acks), when they carry no owner.
//! `RETURN`, not `ACCEPT`: the lock only refuses, it never lets through what another rule refuses.

use std::{collections::BTreeSet, fmt, fmt::Write as _, net::IpAddr};

use super::{Error, Result, target::Resolved};

/// The chain holding the lock's rules, in the filter table.
pub const CHAIN: &str = "DBWARD-EGRESS";

/// An address family: its own rules, its own command (`iptables` or `ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The command's base name: `iptables` or `ip6tables`.
    pub fn command(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// Why a family's rules are there, which decides whether a pod without that family may go without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// An upstream has an address of this family now: the rules must be installed.
    Addresses,
    /// Only names need it (one may gain an address of this family later). In a pod whose kernel has
    /// no such family nothing can reach one, so the rules may be skipped there.
    NamesOnly,
}

/// One family's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRules {
    pub family: Family,
    pub need: Need,
    /// Each rule as `iptables -S` lists it, without the leading `-A DBWARD-EGRESS`.
    pub rules: Vec<String>,
}

/// The rules for every family that has something to refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub uid: u32,
    pub families: Vec<FamilyRules>,
}

/// Refuses uid 0 as the one let through: every root process would be, the app's among them.
pub fn check_uid(uid: u32) -> Result<()> {
    if uid == 0 {
        return Err(Error::RootUid);
    }
    Ok(())
}

impl Plan {
    /// The rules keeping `upstreams` to `uid`.
    pub fn new(uid: u32, upstreams: &[Resolved]) -> Self {
        let families = [Family::V4, Family::V6]
            .into_iter()
            .filter_map(|family| family_rules(uid, family, upstreams))
            .collect();
        Plan { uid, families }
    }
}

fn family_rules(uid: u32, family: Family, upstreams: &[Resolved]) -> Option<FamilyRules> {
    let named_ports: BTreeSet<u16> = upstreams
        .iter()
        .filter(|r| r.is_name())
        .map(|r| r.upstream.port)
        .collect();
    // An address whose port is refused everywhere anyway needs no rule of its own.
    let addrs: BTreeSet<(IpAddr, u16)> = upstreams
        .iter()
        .filter(|r| !r.is_name() && !named_ports.contains(&r.upstream.port))
        .flat_map(|r| r.addrs.iter().map(move |ip| (*ip, r.upstream.port)))
        .filter(|(ip, _)| Family::of(*ip) == family)
        .collect();
    if named_ports.is_empty() && addrs.is_empty() {
        return None;
    }
    let has_address = upstreams
        .iter()
        .flat_map(|r| &r.addrs)
        .any(|ip| Family::of(*ip) == family);
    let need = if has_address {
        Need::Addresses
    } else {
        Need::NamesOnly
    };
    let tcp_port = "-p tcp -m tcp --dport";
    let reset_openings = "--tcp-flags SYN SYN -j REJECT --reject-with tcp-reset";
    let prefix = match family {
        Family::V4 => 32,
        Family::V6 => 128,
    };
    let mut rules = vec![
        format!("-m owner --uid-owner {uid} -j RETURN"),
        format!("-d {} -j RETURN", family.loopback()),
    ];
    rules.extend(
        addrs
            .iter()
            .map(|(ip, port)| format!("-d {ip}/{prefix} {tcp_port} {port} {reset_openings}")),
    );
    rules.extend(
        named_ports
            .iter()
            .map(|port| format!("{tcp_port} {port} {reset_openings}")),
    );
    Some(FamilyRules { family, need, rules })
}

/// What OUTPUT needs so that it jumps to the chain exactly once, as its first rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpFix {
    /// Rule numbers of the jumps there now, highest first (so deleting one keeps the others' numbers).
    pub delete: Vec<usize>,
    /// Whether to insert the jump as rule 1.
    pub insert: bool,
}

/// Reads `iptables -S OUTPUT`: nothing to do when the one jump is already the first rule; otherwise
/// delete every jump there is and insert one at the top.
pub fn jump_fix(output_listing: &str) -> JumpFix {
    let rules = chain_rules(output_listing, "OUTPUT");
    let jumps: Vec<usize> = rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| jumps_to_chain(rule))
        .map(|(i, _)| i + 1)
        .collect();
    if jumps == [1] && rules[0] == jump() {
        return JumpFix {
            delete: Vec::new(),
            insert: false,
        };
    }
    JumpFix {
        delete: jumps.into_iter().rev().collect(),
        insert: true,
    }
}

fn jump() -> String {
    format!("-j {CHAIN}")
}

fn jumps_to_chain(rule: &str) -> bool {
    let tokens: Vec<&str> = rule.split_whitespace().collect();
    tokens
        .windows(2)
        .any(|w| matches!(w[0], "-j" | "-g" | "--jump" | "--goto") && w[1] == CHAIN)
}

/// The rules of `chain` in an `iptables -S` listing, without their `-A CHAIN`.
fn chain_rules<'a>(listing: &'a str, chain: &str) -> Vec<&'a str> {
    let prefix = format!("-A {chain} ");
    listing
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix(prefix.as_str()))
        .collect()
}

/// `iptables-restore --noflush` input: one transaction that (re)creates the chain with exactly
/// `rules` and leaves OUTPUT jumping to it once, first. Running it again changes nothing.
pub fn restore_input(rules: &FamilyRules, fix: &JumpFix) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# dbward egress lock ({}): only the sidecar's uid opens these connections",
        rules.family
    );
    let _ = writeln!(out, "*filter");
    // Declaring an existing chain under --noflush empties it; the explicit flush says so.
    let _ = writeln!(out, ":{CHAIN} - [0:0]");
    let _ = writeln!(out, "-F {CHAIN}");
    for rule in &rules.rules {
        let _ = writeln!(out, "-A {CHAIN} {rule}");
    }
    for number in &fix.delete {
        let _ = writeln!(out, "-D OUTPUT {number}");
    }
    if fix.insert {
        let _ = writeln!(out, "-I OUTPUT 1 {}", jump());
    }
    let _ = writeln!(out, "COMMIT");
    out
}

/// Checks `iptables -S DBWARD-EGRESS` against the rules meant: the same rules, in the same order.
pub fn check_chain(listing: &str, expected: &[String]) -> Result<(), String> {
    let found = chain_rules(listing, CHAIN);
    if found == expected {
        return Ok(());
    }
    Err(format!(
        "chain {CHAIN} should hold\n  {}\nbut holds\n  {}",
        expected.join("\n  "),
        if found.is_empty() {
            "nothing".to_owned()
        } else {
            found.join("\n  ")
        }
    ))
}

/// Checks `iptables -S OUTPUT`: its first rule jumps to the chain, and no other rule does.
pub fn check_output(listing: &str) -> Result<(), String> {
    let rules = chain_rules(listing, "OUTPUT");
    let jumps = rules.iter().filter(|rule| jumps_to_chain(rule)).count();
    if jumps == 1 && rules.first().is_some_and(|first| *first == jump()) {
        return Ok(());
    }
    let first = rules.first().copied().unwrap_or("nothing");
    Err(format!(
        "OUTPUT should start with `-j {CHAIN}` and jump there once, but has {jumps} jump(s) and starts \
         with {first:?}"
    ))
}

/// What `--dry-run` prints: for each family, the command and the input it would be given.
pub fn dry_run_text(plan: &Plan, restore_command: impl Fn(Family) -> String) -> String {
    let mut out = String::new();
    for rules in &plan.families {
        let _ = writeln!(
            out,
            "# {}: {} -w 10 --noflush <<EOF",
            rules.family,
            restore_command(rules.family)
        );
        let _ = writeln!(
            out,
            "# (any jump to {CHAIN} already in OUTPUT is deleted in the same transaction: one remains)"
        );
        if rules.need == Need::NamesOnly {
            let _ = writeln!(out, "# (skipped when the pod's kernel has no {})", rules.family);
        }
        out.push_str(&restore_input(
            rules,
            &JumpFix {
                delete: Vec::new(),
                insert: true,
            },
        ));
        let _ = writeln!(out, "EOF");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::target::{Host, Upstream};

    const REFUSE: &str = "-p tcp -m tcp --dport";
    const TAIL: &str = "--tcp-flags SYN SYN -j REJECT --reject-with tcp-reset";

    fn literal(ip: &str, port: u16) -> Resolved {
        let ip: IpAddr = ip.parse().unwrap();
        let upstream = Upstream {
            arg: format!("{ip}:{port}"),
            host: Host::Ip(ip),
            port,
        };
        Resolved {
            upstream,
            addrs: vec![ip],
        }
    }

    fn name(host: &str, port: u16, addrs: &[&str]) -> Resolved {
        let upstream = Upstream {
            arg: format!("{host}:{port}"),
            host: Host::Name(host.into()),
            port,
        };
        Resolved {
            upstream,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn head(uid: u32, lo: &str) -> Vec<String> {
        vec![
            format!("-m owner --uid-owner {uid} -j RETURN"),
            format!("-d {lo} -j RETURN"),
        ]
    }

    fn with(mut rules: Vec<String>, more: &[String]) -> Vec<String> {
        rules.extend_from_slice(more);
        rules
    }

    #[test]
    fn plans_rules_per_family() {
        let v4 = |rules: &[String]| FamilyRules {
            family: Family::V4,
            need: Need::Addresses,
            rules: with(head(47301, "127.0.0.0/8"), rules),
        };
        let v6 = |need, rules: &[String]| FamilyRules {
            family: Family::V6,
            need,
            rules: with(head(47301, "::1/128"), rules),
        };
        let cases: Vec<(&str, Vec<Resolved>, Vec<FamilyRules>)> = vec![
            (
                "an IPv4 address locks that address and port only",
                vec![literal("10.0.0.5", 5432)],
                vec![v4(&[format!("-d 10.0.0.5/32 {REFUSE} 5432 {TAIL}")])],
            ),
            (
                "an IPv6 address needs only IPv6 rules",
                vec![literal("2001:db8::5", 5432)],
                vec![v6(
                    Need::Addresses,
                    &[format!("-d 2001:db8::5/128 {REFUSE} 5432 {TAIL}")],
                )],
            ),
            (
                "a name refuses its port everywhere, in both families",
                vec![name("db.example", 5432, &["10.0.0.7"])],
                vec![
                    v4(&[format!("{REFUSE} 5432 {TAIL}")]),
                    v6(Need::NamesOnly, &[format!("{REFUSE} 5432 {TAIL}")]),
                ],
            ),
            (
                "a name with an AAAA record makes the IPv6 rules a must",
                vec![name("db.example", 5432, &["10.0.0.7", "2001:db8::7"])],
                vec![
                    v4(&[format!("{REFUSE} 5432 {TAIL}")]),
                    v6(Need::Addresses, &[format!("{REFUSE} 5432 {TAIL}")]),
                ],
            ),
            (
                "addresses are sorted, duplicates merged, and ones a name's port covers dropped",
                vec![
                    literal("10.0.0.9", 6432),
                    literal("10.0.0.5", 5432),
                    literal("10.0.0.5", 5432),
                    literal("10.0.0.6", 7000),
                    name("db.example", 7000, &["10.0.0.8"]),
                ],
                vec![
                    v4(&[
                        format!("-d 10.0.0.5/32 {REFUSE} 5432 {TAIL}"),
                        format!("-d 10.0.0.9/32 {REFUSE} 6432 {TAIL}"),
                        format!("{REFUSE} 7000 {TAIL}"),
                    ]),
                    v6(Need::NamesOnly, &[format!("{REFUSE} 7000 {TAIL}")]),
                ],
            ),
        ];
        for (why, upstreams, expected) in cases {
            let plan = Plan::new(47301, &upstreams);
            assert_eq!(plan.families, expected, "{why}");
        }
        let plan = Plan::new(1000, &[literal("10.0.0.5", 5432)]);
        assert_eq!(plan.families[0].rules[0], "-m owner --uid-owner 1000 -j RETURN");
    }

    #[test]
    fn refuses_root_as_the_uid() {
        assert!(matches!(check_uid(0), Err(Error::RootUid)));
        check_uid(47301).unwrap();
    }

    #[test]
    fn fixes_the_jump_from_output() {
        let cases: &[(&str, &str, &[usize], bool)] = &[
            ("empty", "-P OUTPUT ACCEPT\n", &[], true),
            (
                "already right",
                "-P OUTPUT ACCEPT\n-A OUTPUT -j DBWARD-EGRESS\n-A OUTPUT -p udp -j ACCEPT\n",
                &[],
                false,
            ),
            (
                "not first",
                "-P OUTPUT ACCEPT\n-A OUTPUT -p udp -j ACCEPT\n-A OUTPUT -j DBWARD-EGRESS\n",
                &[2],
                true,
            ),
            (
                "twice",
                "-P OUTPUT ACCEPT\n-A OUTPUT -j DBWARD-EGRESS\n-A OUTPUT -p udp -j ACCEPT\n-A OUTPUT -j DBWARD-EGRESS\n",
                &[3, 1],
                true,
            ),
            (
                "conditional",
                "-P OUTPUT ACCEPT\n-A OUTPUT -p tcp -j DBWARD-EGRESS\n",
                &[1],
                true,
            ),
            (
                "goto",
                "-P OUTPUT ACCEPT\n-A OUTPUT -g DBWARD-EGRESS\n",
                &[1],
                true,
            ),
            (
                "other chain of a similar name",
                "-A OUTPUT -j DBWARD-EGRESS-OLD\n",
                &[],
                true,
            ),
        ];
        for (why, listing, delete, insert) in cases {
            assert_eq!(
                jump_fix(listing),
                JumpFix {
                    delete: delete.to_vec(),
                    insert: *insert
                },
                "{why}"
            );
        }
    }

    #[test]
    fn renders_one_restore_transaction() {
        let plan = Plan::new(47301, &[literal("10.0.0.5", 5432)]);
        let input = restore_input(
            &plan.families[0],
            &JumpFix {
                delete: vec![3, 1],
                insert: true,
            },
        );
        let body: Vec<&str> = input.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                "*filter",
                ":DBWARD-EGRESS - [0:0]",
                "-F DBWARD-EGRESS",
                "-A DBWARD-EGRESS -m owner --uid-owner 47301 -j RETURN",
                "-A DBWARD-EGRESS -d 127.0.0.0/8 -j RETURN",
                "-A DBWARD-EGRESS -d 10.0.0.5/32 -p tcp -m tcp --dport 5432 --tcp-flags SYN SYN -j REJECT --reject-with tcp-reset",
                "-D OUTPUT 3",
                "-D OUTPUT 1",
                "-I OUTPUT 1 -j DBWARD-EGRESS",
                "COMMIT",
            ]
        );
        let input = restore_input(
            &plan.families[0],
            &JumpFix {
                delete: vec![],
                insert: false,
            },
        );
        assert!(!input.contains("OUTPUT"), "{input}");
    }

    #[test]
    fn checks_what_the_kernel_lists() {
        let plan = Plan::new(47301, &[literal("10.0.0.5", 5432)]);
        let expected = &plan.families[0].rules;
        let listing = |rules: &[String]| {
            let mut s = format!("-N {CHAIN}\n");
            for rule in rules {
                s.push_str(&format!("-A {CHAIN} {rule}\n"));
            }
            s
        };
        check_chain(&listing(expected), expected).unwrap();
        let missing = check_chain(&listing(&expected[..2]), expected).unwrap_err();
        assert!(missing.contains("10.0.0.5/32"), "{missing}");
        let mut doubled = expected.clone();
        doubled.extend(expected.iter().cloned());
        check_chain(&listing(&doubled), expected).unwrap_err();
        let mut reordered = expected.clone();
        reordered.swap(0, 2);
        check_chain(&listing(&reordered), expected).unwrap_err();
        assert!(check_chain("", expected).unwrap_err().contains("nothing"));

        check_output("-P OUTPUT ACCEPT\n-A OUTPUT -j DBWARD-EGRESS\n-A OUTPUT -j ACCEPT\n").unwrap();
        for bad in [
            "-P OUTPUT ACCEPT\n",
            "-A OUTPUT -j ACCEPT\n-A OUTPUT -j DBWARD-EGRESS\n",
            "-A OUTPUT -j DBWARD-EGRESS\n-A OUTPUT -j DBWARD-EGRESS\n",
            "-A OUTPUT -p tcp -j DBWARD-EGRESS\n",
        ] {
            check_output(bad).expect_err(bad);
        }
    }

    #[test]
    fn dry_run_shows_every_family() {
        let plan = Plan::new(47301, &[name("db.example", 5432, &["10.0.0.7"])]);
        let text = dry_run_text(&plan, |f| format!("{}-nft-restore", f.command()));
        assert!(
            text.contains("# IPv4: iptables-nft-restore -w 10 --noflush <<EOF"),
            "{text}"
        );
        assert!(
            text.contains("# IPv6: ip6tables-nft-restore -w 10 --noflush <<EOF"),
            "{text}"
        );
        assert!(
            text.contains("skipped when the pod's kernel has no IPv6"),
            "{text}"
        );
        assert!(
            text.contains("-A DBWARD-EGRESS -p tcp -m tcp --dport 5432 --tcp-flags SYN SYN"),
            "{text}"
        );
        assert_eq!(text.matches("-I OUTPUT 1 -j DBWARD-EGRESS").count(), 2, "{text}");
    }
}

//! The `--allow HOST:PORT` arguments: parsing them, and resolving a name to its addresses.

use std::{
    fmt, io,
    net::{IpAddr, Ipv6Addr, ToSocketAddrs},
};

use super::{Error, Result};

/// An upstream database the lock keeps to the sidecar, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The `--allow` argument itself, for messages.
    pub arg: String,
    pub host: Host,
    pub port: u16,
}

/// An upstream's host: an address, or a DNS name resolved when the lock is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// An upstream with the addresses it has now: the address itself, or every A and AAAA record of
/// the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub upstream: Upstream,
    /// Sorted, without duplicates, IPv4-mapped IPv6 addresses written as IPv4.
    pub addrs: Vec<IpAddr>,
}

impl Resolved {
    /// Whether the upstream was given by name (so its port is locked toward every destination).
    pub fn is_name(&self) -> bool {
        matches!(self.upstream.host, Host::Name(_))
    }
}

/// Parses `HOST:PORT`, `[IPV6]:PORT` or `IPV4:PORT`. An address inside the pod (loopback,
/// unspecified) is refused: the lock cannot keep the pod's other processes from it.
pub fn parse_allow(arg: &str) -> Result<Upstream> {
    let bad = |reason: &str| Error::BadAllow {
        arg: arg.to_owned(),
        reason: reason.to_owned(),
    };
    let (host, port) = if let Some(rest) = arg.strip_prefix('[') {
        let (inside, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("write an IPv6 address as [ADDRESS]:PORT"))?;
        if inside.contains('%') {
            return Err(bad(
                "IPv6 zone ids (%eth0) are not supported; give a global or unique-local address",
            ));
        }
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| bad("not an IPv6 address inside [...]"))?;
        (Host::Ip(IpAddr::V6(ip).to_canonical()), port)
    } else {
        let (host, port) = arg.rsplit_once(':').ok_or_else(|| bad("missing :PORT"))?;
        if host.contains(':') {
            return Err(bad("write an IPv6 address in brackets: [ADDRESS]:PORT"));
        }
        (parse_host(host).map_err(bad)?, port)
    };
    let port = match port.parse::<u16>() {
        Ok(port) if port > 0 => port,
        _ => return Err(bad("the port must be a number from 1 to 65535")),
    };
    if let Host::Ip(ip) = host {
        refuse_local(arg, ip)?;
    }
    Ok(Upstream {
        arg: arg.to_owned(),
        host,
        port,
    })
}

/// An IPv4 address or a DNS name (letters, digits, `-` and `_` in labels of 1 to 63 characters, at
/// most 253 in all, one trailing dot allowed).
fn parse_host(host: &str) -> Result<Host, &'static str> {
    if host.is_empty() {
        return Err("missing host before :PORT");
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return Err("not a valid host name");
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err("not a valid host name");
        }
    }
    // The resolver reads `10.1`, `167772161` and `0x0a.1` as IPv4 addresses (inet_aton); no real name
    // ends in such a label, so one that does is a mistyped address.
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex || last.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a valid IPv4 address");
    }
    Ok(Host::Name(host.to_owned()))
}

/// Refuses an address that is the pod itself: loopback reaches the pod's own listeners (the sidecar
/// among them), and the unspecified address connects to the local host.
fn refuse_local(arg: &str, ip: IpAddr) -> Result<()> {
    let local = match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.octets()[0] == 0,
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
    };
    if local {
        return Err(Error::LocalUpstream {
            arg: arg.to_owned(),
            addr: ip,
        });
    }
    Ok(())
}

/// The addresses of an upstream now: an address as it is; a name through `lookup` (every A and AAAA
/// record). A name without addresses, or with one inside the pod, is an error.
pub fn resolve(
    upstream: &Upstream,
    lookup: impl Fn(&str, u16) -> io::Result<Vec<IpAddr>>,
) -> Result<Resolved> {
    let name = match &upstream.host {
        Host::Ip(ip) => {
            return Ok(Resolved {
                upstream: upstream.clone(),
                addrs: vec![*ip],
            });
        }
        Host::Name(name) => name,
    };
    let mut addrs: Vec<IpAddr> = lookup(name, upstream.port)
        .map_err(|source| Error::Resolve {
            arg: upstream.arg.clone(),
            source,
        })?
        .into_iter()
        .map(|ip| ip.to_canonical())
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(Error::NoAddress {
            arg: upstream.arg.clone(),
        });
    }
    for ip in &addrs {
        refuse_local(&upstream.arg, *ip)?;
    }
    Ok(Resolved {
        upstream: upstream.clone(),
        addrs,
    })
}

/// The system resolver (getaddrinfo: /etc/hosts, then the pod's DNS with its search domains).
pub fn system_lookup(host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
    Ok((host, port).to_socket_addrs()?.map(|sa| sa.ip()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_hosts_and_ports() {
        let cases: &[(&str, Host, u16)] = &[
            ("10.0.0.5:5432", Host::Ip(ip("10.0.0.5")), 5432),
            ("[2001:db8::5]:5432", Host::Ip(ip("2001:db8::5")), 5432),
            ("[::ffff:10.0.0.5]:6432", Host::Ip(ip("10.0.0.5")), 6432),
            (
                "orders-db.prod.svc:5432",
                Host::Name("orders-db.prod.svc".into()),
                5432,
            ),
            ("db.1team:1", Host::Name("db.1team".into()), 1),
            (
                "db.example.com.:65535",
                Host::Name("db.example.com.".into()),
                65535,
            ),
            ("_pg.internal:5432", Host::Name("_pg.internal".into()), 5432),
            ("localhost-db:5432", Host::Name("localhost-db".into()), 5432),
        ];
        for (arg, host, port) in cases {
            let up = parse_allow(arg).unwrap_or_else(|e| panic!("{arg}: {e}"));
            assert_eq!((&up.host, up.port), (host, *port), "{arg}");
            assert_eq!(up.arg, *arg);
        }
    }

    #[test]
    fn displays_as_given() {
        for (arg, shown) in [
            ("10.0.0.5:5432", "10.0.0.5:5432"),
            ("[2001:DB8:0::5]:5432", "[2001:db8::5]:5432"),
            ("db.example:5432", "db.example:5432"),
        ] {
            assert_eq!(parse_allow(arg).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn refuses_bad_arguments_naming_them() {
        let cases: &[(&str, &str)] = &[
            ("db.example", "missing :PORT"),
            ("db.example:", "port must be a number"),
            ("db.example:0", "port must be a number"),
            ("db.example:65536", "port must be a number"),
            ("db.example:54a", "port must be a number"),
            ("db.example:-1", "port must be a number"),
            (":5432", "missing host"),
            ("2001:db8::5:5432", "in brackets"),
            ("[2001:db8::5]", "[ADDRESS]:PORT"),
            ("[2001:db8::5]5432", "[ADDRESS]:PORT"),
            ("[10.0.0.5]:5432", "not an IPv6 address"),
            ("[fe80::1%eth0]:5432", "zone ids"),
            ("10.0.0.300:5432", "not a valid IPv4 address"),
            ("10.1:5432", "not a valid IPv4 address"),
            ("167772161:5432", "not a valid IPv4 address"),
            ("10.0x1:5432", "not a valid IPv4 address"),
            ("db..example:5432", "not a valid host name"),
            ("-db.example:5432", "not a valid host name"),
            ("db example:5432", "not a valid host name"),
            ("db/example:5432", "not a valid host name"),
            (".:5432", "not a valid host name"),
        ];
        for (arg, reason) in cases {
            let err = parse_allow(arg).expect_err(arg).to_string();
            assert!(err.contains(&format!("{arg:?}")), "{arg}: {err}");
            assert!(err.contains(reason), "{arg}: {err}");
        }
        let long_label = format!("{}.example:5432", "a".repeat(64));
        assert!(
            parse_allow(&long_label)
                .unwrap_err()
                .to_string()
                .contains("not a valid host name")
        );
        let long_name = format!("{}example:5432", "abcdefgh.".repeat(28));
        assert!(
            parse_allow(&long_name)
                .unwrap_err()
                .to_string()
                .contains("not a valid host name")
        );
    }

    #[test]
    fn refuses_addresses_inside_the_pod() {
        for arg in [
            "127.0.0.1:5432",
            "127.1.2.3:5432",
            "0.0.0.0:5432",
            "[::1]:5432",
            "[::]:5432",
            "[::ffff:127.0.0.1]:5432",
        ] {
            let err = parse_allow(arg).expect_err(arg);
            assert!(matches!(err, Error::LocalUpstream { .. }), "{arg}: {err}");
            assert!(err.to_string().contains(arg), "{arg}: {err}");
        }
    }

    #[test]
    fn resolves_names_and_keeps_addresses() {
        let lookup = |host: &str, port: u16| {
            assert_eq!((host, port), ("db.example", 5432));
            Ok(vec![
                ip("10.0.0.7"),
                ip("2001:db8::7"),
                ip("10.0.0.6"),
                ip("::ffff:10.0.0.7"),
            ])
        };
        let name = parse_allow("db.example:5432").unwrap();
        let resolved = resolve(&name, lookup).unwrap();
        assert_eq!(
            resolved.addrs,
            [ip("10.0.0.6"), ip("10.0.0.7"), ip("2001:db8::7")]
        );
        assert!(resolved.is_name());

        let literal = parse_allow("10.0.0.5:5432").unwrap();
        let never = |_: &str, _: u16| -> io::Result<Vec<IpAddr>> { panic!("an address is not looked up") };
        let resolved = resolve(&literal, never).unwrap();
        assert_eq!(resolved.addrs, [ip("10.0.0.5")]);
        assert!(!resolved.is_name());
    }

    #[test]
    fn refuses_names_that_do_not_resolve_or_point_into_the_pod() {
        let name = parse_allow("db.example:5432").unwrap();
        let failing = |_: &str, _: u16| Err(io::Error::other("no such host"));
        assert!(matches!(resolve(&name, failing), Err(Error::Resolve { .. })));
        let empty = |_: &str, _: u16| Ok(vec![]);
        assert!(matches!(resolve(&name, empty), Err(Error::NoAddress { .. })));
        let local = |_: &str, _: u16| Ok(vec![ip("10.0.0.5"), ip("127.0.0.1")]);
        let err = resolve(&name, local).unwrap_err();
        assert!(matches!(err, Error::LocalUpstream { .. }), "{err}");
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }
}

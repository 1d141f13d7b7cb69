//! The Unix uid of the process at the other end of a loopback TCP connection, from the kernel's
//! socket tables (`/proc/net/tcp` and `/proc/net/tcp6`). The sidecar shares the pod's network
//! namespace, so the client's socket is listed there with its owner's uid.
//!
//! Each row reads `sl: LOCAL REMOTE st tx:rx tr:when retrnsmt uid timeout inode ...`, where an IPv4
//! address is the 4 network-order bytes printed as one native-endian 32-bit hex number (`0100007F` is
//! 127.0.0.1 on x86), an IPv6 address is four such words, and the port is plain hex.

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

/// TCP state of a socket in TIME_WAIT: its row shows uid 0 and no longer belongs to a process.
const TCP_TIME_WAIT: u8 = 0x06;

/// The uid owning the client side of an accepted connection, or `None` if the socket is not listed
/// (the client is in another network namespace, or already gone).
///
/// `listener_local` is the accepted stream's `local_addr()` (a wildcard address also works: then any
/// address on that port matches); `peer` is its `peer_addr()`. IPv4-mapped IPv6 addresses are
/// compared as IPv4. This reads files synchronously: call it from `spawn_blocking` in async code.
pub fn peer_uid(listener_local: SocketAddr, peer: SocketAddr) -> io::Result<Option<u32>> {
    let files = if canonical(peer.ip()).is_ipv4() {
        ["/proc/net/tcp", "/proc/net/tcp6"]
    } else {
        ["/proc/net/tcp6", "/proc/net/tcp"]
    };
    for path in files {
        let file = match File::open(path) {
            Ok(file) => file,
            // No IPv6 in this kernel or namespace.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(uid) = find_socket_uid(BufReader::new(file), peer, listener_local)? {
            return Ok(Some(uid));
        }
    }
    Ok(None)
}

/// Streams a `/proc/net/tcp{,6}` table and returns the uid of the first live row whose local address
/// is `local` and remote address is `remote`.
pub fn find_socket_uid<R: BufRead>(
    mut reader: R,
    local: SocketAddr,
    remote: SocketAddr,
) -> io::Result<Option<u32>> {
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            continue;
        };
        if let Some(uid) = match_row(text, local, remote) {
            return Ok(Some(uid));
        }
    }
}

/// [`find_socket_uid`] over the text of a `/proc/net/tcp{,6}` file.
pub fn uid_from_proc_net_tcp(text: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    text.lines().find_map(|line| match_row(line, local, remote))
}

fn match_row(line: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let row = parse_row(line)?;
    (row.state != TCP_TIME_WAIT && same(row.local, local) && same(row.remote, remote)).then_some(row.uid)
}

#[derive(Debug, PartialEq, Eq)]
struct Row {
    local: SocketAddr,
    remote: SocketAddr,
    state: u8,
    uid: u32,
}

/// One data row; `None` for the header line or anything that does not parse.
fn parse_row(line: &str) -> Option<Row> {
    let mut fields = line.split_ascii_whitespace();
    fields.next()?.strip_suffix(':')?; // "sl:"
    let local = parse_addr(fields.next()?)?;
    let remote = parse_addr(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let uid = fields.nth(3)?.parse().ok()?; // after tx:rx, tr:when, retrnsmt
    Some(Row {
        local,
        remote,
        state,
        uid,
    })
}

/// `0100007F:1F90` or `00000000000000000000000001000000:1F90`.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Same address and port, ignoring IPv6 flow info and scope; an unspecified `wanted` address matches any.
fn same(row: SocketAddr, wanted: SocketAddr) -> bool {
    row.port() == wanted.port()
        && (wanted.ip().is_unspecified() || canonical(row.ip()) == canonical(wanted.ip()))
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1538 0100007F:C350 01 00000000:00000000 00:00000000 00000000   999        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C350 0100007F:1538 01 00000000:00000000 00:00000000 00000000  1000        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:C351 0100007F:1538 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   4: 0200000A:C352 0100007F:1538 01 00000000:00000000 00:00000000 00000000  1002        0 1004 1 0000000000000000 20 4 30 10 -1
";

    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:D431 00000000000000000000000001000000:1538 01 00000000:00000000 00:00000000 00000000  1001        0 2002 1 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000100007F:D432 0000000000000000FFFF00000100007F:1538 01 00000000:00000000 00:00000000 00000000  1003        0 2003 1 0000000000000000 20 4 30 10 -1
";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_fixture_rows() {
        let row = parse_row(TCP.lines().nth(3).unwrap()).unwrap();
        assert_eq!(
            row,
            Row {
                local: addr("127.0.0.1:50000"),
                remote: addr("127.0.0.1:5432"),
                state: 1,
                uid: 1000
            }
        );
        assert_eq!(parse_row(TCP.lines().next().unwrap()), None, "header");
        assert_eq!(parse_row("   7: 0100007F:1538 garbage"), None);
        let row = parse_row(TCP6.lines().nth(2).unwrap()).unwrap();
        assert_eq!((row.local, row.remote), (addr("[::1]:54321"), addr("[::1]:5432")));
        assert_eq!(parse_addr("0200000A:0050"), Some(addr("10.0.0.2:80")));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn finds_the_client_row() {
        let server = addr("127.0.0.1:5432");
        // The client's row, not the server side of the same connection (uid 999).
        assert_eq!(
            uid_from_proc_net_tcp(TCP, addr("127.0.0.1:50000"), server),
            Some(1000)
        );
        // TIME_WAIT rows carry uid 0 and are skipped.
        assert_eq!(uid_from_proc_net_tcp(TCP, addr("127.0.0.1:50001"), server), None);
        // A wildcard listener address matches by port.
        assert_eq!(
            uid_from_proc_net_tcp(TCP, addr("10.0.0.2:50002"), addr("0.0.0.0:5432")),
            Some(1002)
        );
        assert_eq!(
            uid_from_proc_net_tcp(TCP, addr("127.0.0.1:50000"), addr("127.0.0.1:5433")),
            None
        );
        assert_eq!(
            uid_from_proc_net_tcp(TCP6, addr("[::1]:54321"), addr("[::1]:5432")),
            Some(1001)
        );
        // IPv4-mapped addresses on either side compare as IPv4.
        let mapped_peer = addr("[::ffff:127.0.0.1]:50000");
        let mapped_server = addr("[::ffff:127.0.0.1]:5432");
        assert_eq!(uid_from_proc_net_tcp(TCP, mapped_peer, mapped_server), Some(1000));
        assert_eq!(
            uid_from_proc_net_tcp(TCP6, addr("127.0.0.1:54322"), server),
            Some(1003)
        );
        // The streaming reader agrees with the text parser.
        let found = find_socket_uid(TCP.as_bytes(), addr("127.0.0.1:50000"), server).unwrap();
        assert_eq!(found, Some(1000));
    }

    /// The effective uid of this process, from /proc/self/status (`Uid: real effective saved fs`).
    fn euid() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    fn uid_of_connection(listen: &str, connect_ip: &str) -> Option<Option<u32>> {
        let listener = TcpListener::bind(listen).ok()?;
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect((connect_ip, port)).ok()?;
        let (accepted, _) = listener.accept().unwrap();
        Some(peer_uid(accepted.local_addr().unwrap(), accepted.peer_addr().unwrap()).unwrap())
    }

    #[test]
    fn real_connection_ipv4() {
        assert_eq!(uid_of_connection("127.0.0.1:0", "127.0.0.1"), Some(Some(euid())));
    }

    #[test]
    fn real_connection_ipv6_and_mapped() {
        match uid_of_connection("[::1]:0", "::1") {
            Some(found) => assert_eq!(found, Some(euid())),
            None => eprintln!("no IPv6 loopback here; skipping the ::1 case"),
        }
        // A dual-stack listener sees an IPv4 client as ::ffff:127.0.0.1.
        if let Some(found) = uid_of_connection("[::]:0", "127.0.0.1") {
            assert_eq!(found, Some(euid()));
        }
    }

    #[test]
    fn unknown_connection_is_none() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        assert_eq!(peer_uid(local, addr("127.0.0.1:1")).unwrap(), None);
    }
}

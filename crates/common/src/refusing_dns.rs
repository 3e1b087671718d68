//! A DNS server on loopback that answers every query REFUSED: what a local cluster's
//! scanners and outbound queue resolve through (`mailctl up`, tests, benchmarks), so no
//! query leaves the machine and remote lookups fail at once instead of timing out. It
//! counts the queries it was asked, answers only well-formed ones, and never resolves
//! anything. For tests, it can answer NXDOMAIN instead (no name exists).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A running refusing resolver; it serves until the process ends.
#[derive(Debug, Clone)]
pub struct RefusingDns {
    pub addr: SocketAddr,
    queries: Arc<AtomicU64>,
}

impl RefusingDns {
    /// Serve on a free UDP port of 127.0.0.1, from a thread of its own.
    pub fn start() -> std::io::Result<Self> {
        Self::start_answering(RCODE_REFUSED)
    }

    /// As [`Self::start`], answering every query NXDOMAIN.
    pub fn start_nxdomain() -> std::io::Result<Self> {
        Self::start_answering(RCODE_NXDOMAIN)
    }

    fn start_answering(rcode: u8) -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let addr = socket.local_addr()?;
        let queries = Arc::new(AtomicU64::new(0));
        let counted = queries.clone();
        std::thread::Builder::new().name("refusing-dns".into()).spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                counted.fetch_add(1, Ordering::Relaxed);
                if let Some(answer) = answer(&buf[..n], rcode) {
                    let _ = socket.send_to(&answer, from);
                }
            }
        })?;
        Ok(Self { addr, queries })
    }

    /// Queries received so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

const RCODE_REFUSED: u8 = 5;
const RCODE_NXDOMAIN: u8 = 3;

/// The answer to `query` with `rcode`: its header (QR, RD, RA set) and question only;
/// `None` for a datagram that is not a query with one question.
fn answer(query: &[u8], rcode: u8) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let end = end + 1 + 4;
    let mut answer = query.get(..end)?.to_vec();
    answer[2] = 0x80 | (query[2] & 0x01);
    answer[3] = 0x80 | rcode;
    answer[6..12].fill(0);
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_refused_and_counted_and_garbage_is_ignored() {
        let dns = RefusingDns::start().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        // id 0x1234, RD, one question: example.org A IN.
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07example\x03org\x00\x00\x01\x00\x01");
        client.send_to(&[0xff; 5], dns.addr).unwrap();
        client.send_to(&q, dns.addr).unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..2], &[0x12, 0x34]);
        assert_eq!(buf[3] & 0x0f, 5, "RCODE REFUSED");
        assert_eq!(n, q.len());
        assert_eq!(dns.queries(), 2);
    }
}

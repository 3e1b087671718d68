//! SMTP/LMTP replies from a server (a remote MX, a storage node): the shared client's reply
//! reader. Whatever the bytes and however the reads split them, the reader returns the
//! same replies, each with a code RFC 5321 defines and no more text than was sent, and
//! stops at an error or the end: it never loops and never reads past a bound.

use smtp_client::reply::{read, ReadError, Reply};

/// Most replies one input is read for (a reply takes at least `2xx\n`, four bytes).
const REPLIES_MAX: usize = 4096;

/// Every reply the reader finds in `data` when reads see at most `chunk_bytes` at a time,
/// and how the reading ended.
fn replies(rt: &tokio::runtime::Runtime, data: &[u8], chunk_bytes: usize) -> (Vec<Reply>, String) {
    rt.block_on(async {
        let mut r = tokio::io::BufReader::with_capacity(chunk_bytes, data);
        let mut found = Vec::new();
        for _ in 0..REPLIES_MAX {
            match read(&mut r).await {
                Ok(reply) => found.push(reply),
                Err(ReadError::Closed) => return (found, "closed".to_string()),
                Err(ReadError::Garbled(why)) => return (found, format!("garbled: {why}")),
                Err(ReadError::Io(e)) => return (found, format!("io: {e}")),
            }
        }
        panic!("more than {REPLIES_MAX} replies from {} bytes", data.len());
    })
}

pub fn run(data: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let chunk_bytes = usize::from(data.first().copied().unwrap_or(1).max(1));
    let (whole, whole_end) = replies(&rt, data, 64 * 1024);
    let (split, split_end) = replies(&rt, data, chunk_bytes);
    for reply in &whole {
        assert!((200..600).contains(&reply.code), "{reply:?}");
        assert!(reply.message.len() <= data.len(), "{reply:?} from {} bytes", data.len());
    }
    // A reply is a property of the bytes, not of how the reads fell.
    assert_eq!(whole, split, "replies differ with reads of {chunk_bytes} bytes");
    assert_eq!(whole_end.starts_with("closed"), split_end.starts_with("closed"), "{whole_end} vs {split_end}");
}

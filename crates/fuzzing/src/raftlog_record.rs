//! Bytes read back from a damaged disk: raftlog's record decoder, segment header and meta
//! file, and the storage node's entry payload (an rkyv archive validated on decode). The
//! input is decoded as it is, then resealed with a correct checksum so the fuzzer reaches
//! what lies behind the CRC: the header fields and the payload's archive validation.

use raftlog::meta::decode_file;
use raftlog::record::{decode, encode, frame_len, HEADER_LEN, RECORD_ALIGN};
use raftlog::segment::SegmentHeader;
use raftlog::{EntryKind, LogPayload, RecordId};
use storaged::mailstore::MailRequest;

const SEGMENT_SEQ: u64 = 7;
const PAYLOAD_MAX: u32 = 1 << 20;

/// `data` with its length field clamped to what follows and its checksum made valid.
fn resealed(data: &[u8]) -> Option<Vec<u8>> {
    let mut buf = data.to_vec();
    if buf.len() < HEADER_LEN {
        return None;
    }
    let available = (buf.len() - HEADER_LEN) as u32;
    let declared = u32::from_le_bytes(buf[0..4].try_into().ok()?);
    let len = declared.min(available);
    buf[0..4].copy_from_slice(&len.to_le_bytes());
    buf[8..16].copy_from_slice(&SEGMENT_SEQ.to_le_bytes());
    buf.resize(frame_len(len as usize).max(buf.len()), 0);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[8..HEADER_LEN]), &buf[HEADER_LEN..HEADER_LEN + len as usize]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(buf)
}

pub fn run(data: &[u8]) {
    let _ = SegmentHeader::decode(data);
    let _ = decode_file(data);
    let _ = decode(data, SEGMENT_SEQ, PAYLOAD_MAX);
    let Some(buf) = resealed(data) else { return };
    let Ok(header) = decode(&buf, SEGMENT_SEQ, PAYLOAD_MAX) else { return };
    let payload = &buf[HEADER_LEN..HEADER_LEN + header.payload_len as usize];
    if header.kind == EntryKind::Normal {
        if let Ok(request) = MailRequest::decode(payload) {
            // What decodes must encode again to an archive that decodes the same.
            let mut again = Vec::new();
            request.encode(&mut again).expect("a decoded request encodes");
            let twice = MailRequest::decode(&again).expect("an encoded request decodes");
            assert_eq!(request, twice, "payload round trip");
        }
    }
    // The same record encoded afresh decodes to the same header.
    let mut out = Vec::new();
    let id = RecordId { term: header.id.term, node: header.id.node, index: header.id.index };
    encode(&mut out, SEGMENT_SEQ, id, header.durable_hint, header.kind, payload);
    assert_eq!(out.len() % RECORD_ALIGN, 0, "records stay aligned");
    let again = decode(&out, SEGMENT_SEQ, PAYLOAD_MAX).expect("a fresh record decodes");
    assert_eq!((again.id, again.kind, again.payload_len), (header.id, header.kind, header.payload_len));
}

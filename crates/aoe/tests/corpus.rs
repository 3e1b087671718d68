//! The cargo-fuzz corpus of the codec (`fuzz/corpus/aoe_codec` at the workspace root) as a regression test: every
//! file parses or fails cleanly, what parses round-trips, and the hand-made seeds parse
//! the way their names say.

use aoe::codec::{Body, Frame, ParseError};

#[test]
fn the_fuzz_corpus_parses_or_fails_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/aoe_codec");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = Frame::parse(&bytes);
        if let Ok(frame) = &parsed {
            assert_eq!(Frame::parse(&frame.to_bytes()).as_ref(), Ok(frame), "{name}");
        }
        match name.as_str() {
            "ata-write-one-sector" => {
                let Ok(Frame { body: Body::Ata(a), .. }) = &parsed else { panic!("{name}: {parsed:?}") };
                assert!(a.write && a.extended && a.data.len() == 512 && a.address() == 8);
            }
            "config-broadcast-read" => assert!(matches!(&parsed, Ok(f) if f.header.addresses(1, 1))),
            "truncated-ata" => assert!(matches!(parsed, Err(ParseError::Truncated { .. }))),
            "config-length-too-long" => assert_eq!(parsed, Err(ParseError::ConfigLength(2000))),
            "wrong-version" => {
                assert!(matches!(&parsed, Ok(f) if f.header.version == 3), "parsed for the target to refuse")
            }
            "error-response" => assert!(matches!(&parsed, Ok(f) if f.header.error.is_some())),
            _ => {}
        }
        seen += 1;
    }
    assert!(seen >= 10, "the corpus is missing ({seen} files in {})", dir.display());
}

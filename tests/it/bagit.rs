//! The BagIt writer (`custody::bagit`) judged by an independent validator: the Library of
//! Congress `bagit` Python package (bagit.py). It must accept the bags we write, and reject them
//! after one payload byte or one tag byte is changed, or a payload file is deleted. A missing
//! python3 or bagit package fails these tests (scripts/test installs it); it never skips them.

use std::fs;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use evidenced::custody::bagit::{BagError, BagWriter, MANIFEST, TAGMANIFEST};
use evidenced::store::ByteStream;
use sha2::{Digest, Sha256};

/// bagit.py's own `Bag.validate()`, with one fix: bagit-python up to 1.9 decodes only `%0D` and
/// `%0A` in manifest paths (LibraryOfCongress/bagit-python#157), while RFC 8493 §2.1.3 also
/// encodes `%` as `%25`. Where the installed bagit lacks it, its decoder is replaced by the
/// RFC's (the three escapes, in one pass); everything else (reading, hashing, completeness,
/// Payload-Oxum, tag manifests) stays bagit.py's.
const RFC8493_VALIDATE: &str = r#"
import re, sys, bagit
if bagit._decode_filename("a%25b") != "a%b":
    codes = {"%0D": "\r", "%0A": "\n", "%25": "%"}
    bagit._decode_filename = lambda s: re.sub("%(0D|0A|25)", lambda m: codes[m.group(0).upper()], s, flags=re.IGNORECASE)
    print("note: this bagit.py does not decode %25; using the RFC 8493 decoder", file=sys.stderr)
try:
    bagit.Bag(sys.argv[1]).validate()
except bagit.BagError as e:
    print("invalid:", e, *getattr(e, "details", None) or [], file=sys.stderr)
    sys.exit(1)
print("valid")
"#;

/// Panics (the test fails, it does not skip) unless `python3 -c 'import bagit'` works.
fn require_bagit_py() {
    let hint = "the BagIt tests need python3 with the `bagit` package: run scripts/test, or `pip install --break-system-packages bagit`";
    match Command::new("python3").args(["-c", "import bagit"]).output() {
        Err(e) => panic!("cannot run python3 ({e}); {hint}"),
        Ok(o) if !o.status.success() => panic!("python3 cannot import bagit ({}); {hint}", String::from_utf8_lossy(&o.stderr).trim()),
        Ok(_) => {}
    }
}

/// Runs a validator command on `bag`: (valid?, everything it printed).
fn run(args: &[&str], bag: &Path) -> (bool, String) {
    require_bagit_py();
    let o = Command::new("python3").args(args).arg(bag).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// Stock `python3 -m bagit --validate DIR`, exactly what a recipient would run.
fn stock(bag: &Path) -> (bool, String) {
    run(&["-m", "bagit", "--validate"], bag)
}

/// bagit.py with RFC 8493 `%25` decoding (see [`RFC8493_VALIDATE`]).
fn rfc(bag: &Path) -> (bool, String) {
    run(&["-c", RFC8493_VALIDATE], bag)
}

/// Flips every bit of one byte in place (run twice to restore).
fn flip(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0xff;
    fs::write(path, b).unwrap();
}

fn assert_valid(v: fn(&Path) -> (bool, String), bag: &Path) {
    let (ok, log) = v(bag);
    assert!(ok, "validator rejected {}:\n{log}", bag.display());
}

/// Asserts the validator rejects the bag and names one of `why` in its output.
fn assert_invalid(v: fn(&Path) -> (bool, String), bag: &Path, why: &[&str]) {
    let (ok, log) = v(bag);
    eprintln!("rejected as expected:\n{log}");
    assert!(!ok, "validator accepted a damaged bag:\n{log}");
    assert!(why.iter().any(|w| log.contains(w)), "rejected, but not for {why:?}:\n{log}");
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(l, v)| (l.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn bagit_py_validates_the_bag_and_catches_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("CASE-42 export");
    // A few MiB that are not a repeating pattern, delivered like an object store's stream:
    // uneven chunks of a `ByteStream`, hashed in the same pass that writes them.
    let big: Vec<u8> = (0..5 * 1024 * 1024 + 123u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let big_sha = hex::encode(Sha256::digest(&big));
    let mut w = BagWriter::create(&out, big.len() as u64 + 4096).await.unwrap();
    let chunks: Vec<std::io::Result<Bytes>> = big.chunks(64 * 1024 + 7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let stream: ByteStream = Box::pin(futures_util::stream::iter(chunks));
    let f = w.add_payload_stream("recordings/0001 body-cam.mp4", stream, Some(&big_sha)).await.unwrap();
    assert_eq!((f.sha256.as_str(), f.bytes), (big_sha.as_str(), big.len() as u64));

    // A space and non-ASCII in the name; a local file; a rejected catalog mismatch leaves nothing.
    w.add_payload_bytes("recordings/Körperkamera 证据 №2.wav", b"RIFF audio bytes", None).await.unwrap();
    let src = dir.path().join("clip.bin");
    fs::write(&src, b"a clip cut from a recording").unwrap();
    let clip_sha = hex::encode(Sha256::digest(b"a clip cut from a recording"));
    w.add_payload_file("clips/clip one.mp4", &src, Some(&clip_sha)).await.unwrap();
    let e = w.add_payload_bytes("recordings/wrong.mp4", b"bytes the catalog never saw", Some(&clip_sha)).await.unwrap_err();
    assert!(matches!(e, BagError::Mismatch { .. }), "{e}");

    w.add_tag_file("custody/entries.jsonl", b"{\"seq\":1,\"kind\":\"archived\"}\n{\"seq\":2,\"kind\":\"exported\"}\n").await.unwrap();
    w.add_tag_file("keys/node-a.pem", b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n").await.unwrap();
    w.add_tag_file(&format!("tokens/{big_sha}.tsr"), &[0x30, 0x82, 0x01, 0x00, 0xff, 0x00]).await.unwrap();
    w.add_tag_file("VERIFY.txt", "How to verify this package: python3 -m bagit --validate .\n".as_bytes()).await.unwrap();
    let s = w.finish(&pairs(&[("Source-Organization", "Example Police Department"), ("External-Identifier", "CASE-42")])).await.unwrap();
    assert_eq!((s.payload_files, s.payload_bytes), (3, big.len() as u64 + 16 + 27));
    assert!(out.join("data/recordings/Körperkamera 证据 №2.wav").is_file());
    assert!(!dir.path().join("CASE-42 export.partial").exists());
    assert!(fs::read_to_string(out.join("bag-info.txt")).unwrap().contains(&format!("Payload-Oxum: {}.3\n", s.payload_bytes)));

    assert_valid(stock, &out);

    // One payload byte changed (same size, so only the manifest check can catch it).
    let payload = out.join("data/recordings/0001 body-cam.mp4");
    flip(&payload, 3 * 1024 * 1024 + 5);
    assert_invalid(stock, &out, &["0001 body-cam.mp4"]);
    flip(&payload, 3 * 1024 * 1024 + 5);
    assert_valid(stock, &out);

    // One tag byte changed: bagit.py checks tagmanifest-sha256.txt too (BagIt >= 0.97).
    let entries = out.join("custody/entries.jsonl");
    flip(&entries, 5);
    assert_invalid(stock, &out, &["custody/entries.jsonl"]);
    flip(&entries, 5);
    assert_valid(stock, &out);

    // The payload manifest is itself covered: one hex digit of a digest edited (the text stays
    // valid UTF-8) breaks the tag manifest.
    let manifest = out.join(MANIFEST);
    let original = fs::read(&manifest).unwrap();
    let mut edited = original.clone();
    edited[0] = if edited[0] == b'0' { b'1' } else { b'0' };
    fs::write(&manifest, &edited).unwrap();
    assert_invalid(stock, &out, &[MANIFEST]);
    fs::write(&manifest, &original).unwrap();
    assert_valid(stock, &out);

    // A payload file deleted (Payload-Oxum catches it first; the manifest would too).
    fs::remove_file(out.join("data/clips/clip one.mp4")).unwrap();
    assert_invalid(stock, &out, &["Payload-Oxum", "clip one.mp4"]);
}

#[tokio::test]
async fn percent_cr_and_lf_in_names_are_encoded_as_rfc_8493_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bag");
    let mut w = BagWriter::create(&out, 0).await.unwrap();
    let names = ["50%off.txt", "literal%0Atext.txt", "line\nbreak.txt", "carriage\rreturn.txt", "Körper 证据.txt"];
    for (i, n) in names.iter().enumerate() {
        w.add_payload_bytes(n, format!("payload {i}").as_bytes(), None).await.unwrap();
    }
    w.add_tag_file("custody/100%.txt", b"tag with a percent").await.unwrap();
    w.finish(&[]).await.unwrap();

    let manifest = fs::read_to_string(out.join(MANIFEST)).unwrap();
    for line in ["  data/50%25off.txt\n", "  data/literal%250Atext.txt\n", "  data/line%0Abreak.txt\n", "  data/carriage%0Dreturn.txt\n"] {
        assert!(manifest.contains(line), "{line:?} not in\n{manifest}");
    }
    assert!(manifest.contains("  data/Körper 证据.txt\n"), "{manifest}");
    assert_eq!(manifest.lines().count(), names.len());
    let tagmanifest = fs::read_to_string(out.join(TAGMANIFEST)).unwrap();
    assert!(tagmanifest.contains("  custody/100%25.txt\n"), "{tagmanifest}");

    assert_valid(rfc, &out);
    // The decoded names are really checked, not skipped.
    flip(&out.join("data/50%off.txt"), 0);
    assert_invalid(rfc, &out, &["50%off.txt"]);
    flip(&out.join("data/50%off.txt"), 0);
    flip(&out.join("data/line\nbreak.txt"), 0);
    assert_invalid(rfc, &out, &["break.txt"]);
    flip(&out.join("data/line\nbreak.txt"), 0);
    flip(&out.join("custody/100%.txt"), 0);
    assert_invalid(rfc, &out, &["custody/100%.txt"]);
    flip(&out.join("custody/100%.txt"), 0);
    assert_valid(rfc, &out);
}

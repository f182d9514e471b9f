use super::*;
use crate::testing::toy_model;

fn artifact() -> Artifact {
    Artifact::new(toy_model(), 3, Utc::now())
}

#[test]
fn round_trips_through_bytes_and_files() {
    let a = artifact();
    let back = Artifact::from_bytes(&a.to_bytes(), Path::new("mem")).unwrap();
    assert_eq!(back, a);

    let dir = tempfile::tempdir().unwrap();
    let written = a.write_atomic(dir.path(), "toy-v3").unwrap();
    assert!(
        written
            .path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("toy-v3-")
    );
    assert_eq!(
        Artifact::read_verified(&written.path, &written.sha256).unwrap(),
        a
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
}

#[test]
fn a_flipped_byte_is_refused() {
    let bytes = artifact().to_bytes();
    let header_end = bytes.iter().position(|&b| b == b'\n').unwrap();
    let mut tampered = bytes.clone();
    let i = header_end + 40;
    tampered[i] = if tampered[i] == b'1' { b'2' } else { b'1' };
    let err = Artifact::from_bytes(&tampered, Path::new("m.vigie"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("m.vigie") && err.contains("corrupt or was altered"),
        "{err}"
    );
}

#[test]
fn truncated_foreign_and_future_files_are_refused() {
    let bytes = artifact().to_bytes();
    let err = Artifact::from_bytes(&bytes[..bytes.len() - 10], Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    let err = Artifact::from_bytes(b"PK\x03\x04 not an artifact", Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no header line"), "{err}");
    let err = Artifact::from_bytes(b"{\"hello\":1}\n{}", Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unreadable header"), "{err}");
    let future = String::from_utf8(bytes.clone()).unwrap().replacen(
        "\"format_version\":1",
        "\"format_version\":9",
        1,
    );
    let err = Artifact::from_bytes(future.as_bytes(), Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("format version 9 is not supported"), "{err}");
}

#[test]
fn a_payload_rewritten_with_a_valid_hash_must_still_be_consistent() {
    // Someone edits the threshold and the spec, and recomputes the hash: the spec hash catches it.
    let mut a = artifact();
    a.spec.target.positive_label = Some("maybe".into());
    let err = Artifact::from_bytes(&a.to_bytes(), Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("embedded spec hashes to"), "{err}");
    let mut a = artifact();
    a.reference.features.swap(0, 1);
    let err = Artifact::from_bytes(&a.to_bytes(), Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("drift reference"), "{err}");
    let mut a = artifact();
    if let vigie_drift::FeatureProfile::Numerical { edges, .. } = &mut a.reference.features[1] {
        edges.clear();
    }
    let err = Artifact::from_bytes(&a.to_bytes(), Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("malformed drift profile"), "{err}");
    let mut a = artifact();
    a.threshold = 1.5;
    let err = Artifact::from_bytes(&a.to_bytes(), Path::new("m"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("threshold 1.5"), "{err}");
}

#[test]
fn the_registry_hash_must_match_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let written = artifact().write_atomic(dir.path(), "toy-v3").unwrap();
    let err = Artifact::read_verified(&written.path, &"0".repeat(64))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the registry recorded"), "{err}");
}

#[test]
fn an_existing_file_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let a = artifact();
    a.write_atomic(dir.path(), "toy-v3").unwrap();
    assert!(a.write_atomic(dir.path(), "toy-v3").is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

//! Unit tests of the guarded reader on hand-written bytes: each case is the
//! smallest file that shows one rule. Whole-file round trips live with the
//! fixture generator in the testkit.

use std::io::Write;

use super::*;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// An explicit VR little endian element, value padded to even length.
fn el(group: u16, element: u16, vr: &str, value: &[u8]) -> Vec<u8> {
    let mut value = value.to_vec();
    if value.len() % 2 == 1 {
        value.push(if vr == "UI" { 0 } else { b' ' });
    }
    let mut b = Vec::new();
    b.extend_from_slice(&group.to_le_bytes());
    b.extend_from_slice(&element.to_le_bytes());
    b.extend_from_slice(vr.as_bytes());
    if matches!(vr, "OB" | "OW" | "SQ" | "UN" | "UT") {
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        b.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    b.extend_from_slice(&value);
    b
}

/// An explicit VR header with a raw 32-bit length (for SQ, OB, UT).
fn long_header(group: u16, element: u16, vr: &str, len: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&group.to_le_bytes());
    b.extend_from_slice(&element.to_le_bytes());
    b.extend_from_slice(vr.as_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// An implicit VR little endian element.
fn iel(group: u16, element: u16, value: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&group.to_le_bytes());
    b.extend_from_slice(&element.to_le_bytes());
    b.extend_from_slice(&(value.len() as u32).to_le_bytes());
    b.extend_from_slice(value);
    b
}

/// Item, item delimiter or sequence delimiter (always 8 bytes).
fn delim(element: u16, len: u32) -> Vec<u8> {
    let mut b = vec![0xFE, 0xFF];
    b.extend_from_slice(&element.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b
}

const STUDY: &str = "1.2.826.0.1.3680043.8.498.1";
const SERIES: &str = "1.2.826.0.1.3680043.8.498.1.2";
const SOP: &str = "1.2.826.0.1.3680043.8.498.1.2.3";
const CT: &str = "1.2.840.10008.5.1.4.1.1.2";

/// The four required UIDs, in explicit VR LE, split so tests can put
/// elements between them in tag order.
fn head() -> Vec<u8> {
    [
        el(0x0008, 0x0016, "UI", CT.as_bytes()),
        el(0x0008, 0x0018, "UI", SOP.as_bytes()),
    ]
    .concat()
}

fn uids() -> Vec<u8> {
    [
        el(0x0020, 0x000D, "UI", STUDY.as_bytes()),
        el(0x0020, 0x000E, "UI", SERIES.as_bytes()),
    ]
    .concat()
}

fn pixels() -> Vec<u8> {
    [long_header(0x7FE0, 0x0010, "OW", 8), vec![1; 8]].concat()
}

fn meta(ts: &str) -> Vec<u8> {
    let body = [
        el(0x0002, 0x0001, "OB", &[0, 1]),
        el(0x0002, 0x0010, "UI", ts.as_bytes()),
    ]
    .concat();
    [
        el(0x0002, 0x0000, "UL", &(body.len() as u32).to_le_bytes()),
        body,
    ]
    .concat()
}

fn part10(ts: &str, dataset: &[u8]) -> Vec<u8> {
    [vec![0; 128], b"DICM".to_vec(), meta(ts), dataset.to_vec()].concat()
}

fn complete(bytes: &[u8]) -> Result<InstanceHeader, DicomError> {
    complete_with(bytes, &HeaderLimits::default())
}

fn complete_with(bytes: &[u8], limits: &HeaderLimits) -> Result<InstanceHeader, DicomError> {
    match read_header(bytes, bytes.len() as u64, limits)? {
        HeaderRead::Complete(h) => Ok(h),
        HeaderRead::NeedMore { until } => panic!("asked for {until} with the whole file"),
    }
}

#[test]
fn uids_are_validated() {
    assert!(is_valid_uid("1.2.840.10008.1.2.1"));
    assert!(is_valid_uid("1.2.0.3"));
    assert!(is_valid_uid(&format!("2.25.{}", u128::MAX)));
    for bad in [
        "",
        "1..2",
        ".1.2",
        "1.2.",
        "1.02",
        "1.2a",
        "1.2 ",
        &"1.".repeat(40),
    ] {
        assert!(!is_valid_uid(bad), "{bad:?}");
    }
}

#[test]
fn a_minimal_part10_file_is_read() {
    let dataset = [
        head(),
        el(0x0010, 0x0010, "PN", b"DOE^JANE "),
        el(0x0010, 0x0020, "LO", b"MRN7\0"),
        uids(),
        el(0x0020, 0x0013, "IS", b" 7"),
        el(0x0028, 0x0010, "US", &512u16.to_le_bytes()),
        pixels(),
    ]
    .concat();
    let bytes = part10(EXPLICIT_LE, &dataset);
    let h = complete(&bytes).unwrap();

    assert_eq!(h.transfer_syntax_uid, EXPLICIT_LE);
    assert_eq!(
        (h.sop_class_uid.as_str(), h.sop_instance_uid.as_str()),
        (CT, SOP)
    );
    assert_eq!(
        (
            h.study_instance_uid.as_str(),
            h.series_instance_uid.as_str()
        ),
        (STUDY, SERIES)
    );
    assert_eq!(h.patient_name.as_deref(), Some("DOE^JANE"));
    assert_eq!(h.patient_id.as_deref(), Some("MRN7"));
    assert_eq!(h.instance_number, Some(7));
    assert_eq!(h.rows, Some(512));
    assert_eq!(h.columns, None);
    assert_eq!(h.header_len, (bytes.len() - 20) as u64);
    assert_eq!(h.pixel_data_offset, Some(h.header_len));
}

#[test]
fn a_file_without_pixel_data_is_read_to_its_end() {
    let bytes = part10(EXPLICIT_LE, &[head(), uids()].concat());
    let h = complete(&bytes).unwrap();
    assert_eq!(h.header_len, bytes.len() as u64);
    assert_eq!(h.pixel_data_offset, None);
}

#[test]
fn float_pixel_data_also_ends_the_header() {
    let float = [long_header(0x7FE0, 0x0008, "OF", 4), vec![0; 4]].concat();
    let bytes = part10(EXPLICIT_LE, &[head(), uids(), float].concat());
    assert_eq!(
        complete(&bytes).unwrap().header_len,
        (bytes.len() - 16) as u64
    );
}

#[test]
fn executable_preambles_are_refused_from_their_first_bytes() {
    let mut bytes = part10(EXPLICIT_LE, &[head(), uids()].concat());
    bytes[..2].copy_from_slice(b"MZ");
    let err = read_header(&bytes[..2], 10_000, &HeaderLimits::default()).unwrap_err();
    assert_eq!(err, DicomError::ExecutablePreamble { kind: "MZ" });
    bytes[..4].copy_from_slice(b"\x7fELF");
    assert_eq!(
        complete(&bytes).unwrap_err(),
        DicomError::ExecutablePreamble { kind: "ELF" }
    );
}

#[test]
fn a_short_prefix_asks_for_more_within_the_object() {
    let bytes = part10(EXPLICIT_LE, &[head(), uids(), pixels()].concat());
    let limits = HeaderLimits::default();

    let read = read_header(&bytes[..10], bytes.len() as u64, &limits).unwrap();
    assert_eq!(
        read,
        HeaderRead::NeedMore {
            until: bytes.len() as u64
        }
    );

    let read = read_header(&bytes[..10], 1 << 30, &limits).unwrap();
    let HeaderRead::NeedMore { until } = read else {
        panic!("{read:?}")
    };
    assert!((132..=200 * 1024).contains(&until), "{until}");
}

#[test]
fn a_long_header_asks_for_the_element_it_is_in_plus_slack() {
    let big = el(0x0008, 0x2111, "UT", &[b'x'; 100_000]);
    let bytes = part10(EXPLICIT_LE, &[head(), big, uids(), pixels()].concat());
    let object_size = 50_000_000;

    let read = read_header(&bytes[..1000], object_size, &HeaderLimits::default()).unwrap();
    let HeaderRead::NeedMore { until } = read else {
        panic!("{read:?}")
    };
    assert!(
        until >= (bytes.len() - 20) as u64 && until < 200_000,
        "{until}"
    );

    let read = read_header(&bytes, object_size, &HeaderLimits::default()).unwrap();
    assert!(matches!(read, HeaderRead::Complete(_)));
}

#[test]
fn a_prefix_longer_than_the_object_is_cut_to_it() {
    let mut bytes = part10(EXPLICIT_LE, &[head(), uids()].concat());
    let size = bytes.len() as u64;
    bytes.extend_from_slice(&[0xAB; 64]);
    let read = read_header(&bytes, size, &HeaderLimits::default()).unwrap();
    let HeaderRead::Complete(h) = read else {
        panic!("{read:?}")
    };
    assert_eq!(h.header_len, size);
}

#[test]
fn meta_group_without_preamble_and_dicm_at_zero_are_read() {
    let dataset = [head(), uids(), pixels()].concat();
    let no_preamble = [meta(EXPLICIT_LE), dataset.clone()].concat();
    assert_eq!(complete(&no_preamble).unwrap().study_instance_uid, STUDY);
    let dicm_first = [b"DICM".to_vec(), meta(EXPLICIT_LE), dataset].concat();
    assert_eq!(complete(&dicm_first).unwrap().study_instance_uid, STUDY);
}

#[test]
fn bare_data_sets_get_an_inferred_syntax() {
    let implicit = [
        iel(0x0008, 0x0016, format!("{CT}\0").as_bytes()),
        iel(0x0008, 0x0018, format!("{SOP}\0").as_bytes()),
        iel(0x0010, 0x0010, b"DOE^JANE"),
        iel(0x0020, 0x000D, STUDY.as_bytes()),
        iel(0x0020, 0x000E, format!("{SERIES}\0").as_bytes()),
    ]
    .concat();
    let h = complete(&implicit).unwrap();
    assert_eq!(h.transfer_syntax_uid, IMPLICIT_LE);
    assert_eq!(h.patient_name.as_deref(), Some("DOE^JANE"));

    let explicit = [head(), uids()].concat();
    assert_eq!(
        complete(&explicit).unwrap().transfer_syntax_uid,
        EXPLICIT_LE
    );
}

#[test]
fn other_bytes_are_not_dicom() {
    for bytes in [b"hello".to_vec(), vec![0x42; 4096], vec![0; 300]] {
        let err = complete(&bytes).unwrap_err();
        assert!(matches!(err, DicomError::NotDicom { .. }), "{err}");
    }
}

#[test]
fn lengths_past_the_object_are_refused_before_the_caps() {
    let lie = [
        long_header(0x0010, 0x4000, "UT", 0xFFFF_FFF0),
        vec![b'a'; 16],
    ]
    .concat();
    let bytes = part10(EXPLICIT_LE, &[head(), lie].concat());
    let err = complete(&bytes).unwrap_err();
    assert!(matches!(
        err,
        DicomError::LengthBeyondObject { tag, length: 0xFFFF_FFF0, object_size }
            if tag == dicom_core::Tag(0x0010, 0x4000) && object_size == bytes.len() as u64
    ));
    assert_eq!(
        err.reason(),
        format!(
            "element (0010,4000) declares 4294967280 bytes, past the end of the {}-byte object",
            bytes.len()
        )
    );

    // Within a large enough object, the element cap refuses it.
    let err = read_header(&bytes, 1 << 40, &HeaderLimits::default()).unwrap_err();
    assert!(
        matches!(err, DicomError::ElementTooLarge { cap: 1048576, .. }),
        "{err}"
    );
}

#[test]
fn a_meta_group_length_past_the_object_is_refused() {
    let mut bytes = part10(EXPLICIT_LE, &[head(), uids()].concat());
    bytes[140..144].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    let err = complete(&bytes).unwrap_err();
    assert!(
        matches!(err, DicomError::LengthBeyondObject { .. }),
        "{err}"
    );
}

#[test]
fn caps_on_elements_items_depth_and_header_hold() {
    let limits = HeaderLimits {
        max_header_bytes: 4096,
        max_element_len: 64,
        max_sequence_depth: 2,
        max_items: 3,
        max_elements: 40,
        max_values: 1000,
    };

    let long = el(0x0008, 0x1030, "LO", &[b'x'; 100]);
    let err = complete_with(&part10(EXPLICIT_LE, &[head(), long].concat()), &limits);
    assert!(matches!(
        err,
        Err(DicomError::ElementTooLarge {
            length: 100,
            cap: 64,
            ..
        })
    ));

    let nested = |depth: usize| {
        let mut b = Vec::new();
        for _ in 0..depth {
            b.extend(long_header(0x0040, 0xA730, "SQ", u32::MAX));
            b.extend(delim(0xE000, u32::MAX));
        }
        for _ in 0..depth {
            b.extend(delim(0xE00D, 0));
            b.extend(delim(0xE0DD, 0));
        }
        part10(EXPLICIT_LE, &[head(), uids(), b].concat())
    };
    assert!(complete_with(&nested(2), &limits).is_ok());
    let err = complete_with(&nested(3), &limits).unwrap_err();
    assert_eq!(err, DicomError::SequenceTooDeep { depth: 3, cap: 2 });

    let mut items = long_header(0x0040, 0xA730, "SQ", u32::MAX);
    for _ in 0..4 {
        items.extend(delim(0xE000, 0));
    }
    items.extend(delim(0xE0DD, 0));
    let bytes = part10(EXPLICIT_LE, &[head(), uids(), items].concat());
    assert_eq!(
        complete_with(&bytes, &limits).unwrap_err(),
        DicomError::TooManyItems { cap: 3 }
    );

    let many: Vec<u8> = (0..50)
        .flat_map(|e| el(0x0009, 0x1000 + e, "SH", b"ab"))
        .collect();
    let bytes = part10(EXPLICIT_LE, &[head(), many, uids()].concat());
    assert_eq!(
        complete_with(&bytes, &limits).unwrap_err(),
        DicomError::TooManyElements { cap: 40 }
    );

    let backslashes = el(0x0008, 0x0008, "CS", &[b'\\'; 40]);
    let bytes = part10(EXPLICIT_LE, &[backslashes, head(), uids()].concat());
    let few_values = HeaderLimits {
        max_values: 30,
        ..limits.clone()
    };
    let err = complete_with(&bytes, &few_values).unwrap_err();
    assert_eq!(err, DicomError::TooManyValues { cap: 30 });

    let wide: Vec<u8> = (0..80)
        .flat_map(|e| el(0x0009, 0x1000 + e, "LO", &[b'y'; 60]))
        .collect();
    let bytes = part10(EXPLICIT_LE, &[head(), wide, uids()].concat());
    let limits = HeaderLimits {
        max_elements: 1000,
        ..limits
    };
    let err = complete_with(&bytes, &limits).unwrap_err();
    assert_eq!(err, DicomError::HeaderTooLarge { cap: 4096 });
}

#[test]
fn sequences_without_delimiters_are_refused() {
    let open = [
        long_header(0x0040, 0xA730, "SQ", u32::MAX),
        delim(0xE000, u32::MAX),
        el(0x0040, 0xA040, "CS", b"TEXT"),
    ]
    .concat();
    let bytes = part10(EXPLICIT_LE, &[head(), uids(), open].concat());
    assert!(matches!(
        complete(&bytes).unwrap_err(),
        DicomError::MissingDelimiter { .. }
    ));
}

#[test]
fn malformed_structures_are_refused() {
    let stray = part10(EXPLICIT_LE, &[head(), delim(0xE00D, 0), uids()].concat());
    assert!(matches!(
        complete(&stray).unwrap_err(),
        DicomError::Malformed { .. }
    ));

    let mut bad_vr = el(0x0010, 0x0010, "PN", b"DOE^JANE");
    bad_vr[4..6].copy_from_slice(b"zz");
    let bytes = part10(EXPLICIT_LE, &[head(), bad_vr, uids()].concat());
    assert!(matches!(
        complete(&bytes).unwrap_err(),
        DicomError::Malformed { .. }
    ));

    // An item that claims 4 bytes but holds a 10-byte element.
    let overrun = [
        long_header(0x0040, 0xA730, "SQ", 8 + 4),
        delim(0xE000, 4),
        el(0x0040, 0xA040, "CS", b"TE"),
    ]
    .concat();
    let bytes = part10(EXPLICIT_LE, &[head(), overrun, uids()].concat());
    assert!(matches!(
        complete(&bytes).unwrap_err(),
        DicomError::Malformed { .. }
    ));
}

#[test]
fn required_attributes_are_checked() {
    let bytes = part10(
        EXPLICIT_LE,
        &[head(), el(0x0020, 0x000E, "UI", b"1.2")].concat(),
    );
    let err = complete(&bytes).unwrap_err();
    assert_eq!(
        err,
        DicomError::MissingAttribute {
            name: "StudyInstanceUID"
        }
    );
    assert!(!err.is_retryable());

    let bad = [
        head(),
        el(0x0020, 0x000D, "UI", b"1.02.3"),
        el(0x0020, 0x000E, "UI", b"1.2"),
    ];
    let err = complete(&part10(EXPLICIT_LE, &bad.concat())).unwrap_err();
    assert_eq!(
        err,
        DicomError::InvalidUid {
            name: "StudyInstanceUID"
        }
    );
}

#[test]
fn deflated_data_sets_are_inflated_within_the_cap() {
    let dataset = [
        head(),
        el(0x0010, 0x0010, "PN", b"DOE^JANE"),
        uids(),
        pixels(),
    ]
    .concat();
    let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
    deflater.write_all(&dataset).unwrap();
    let bytes = part10(DEFLATED, &deflater.finish().unwrap());

    let h = complete(&bytes).unwrap();
    assert_eq!(h.transfer_syntax_uid, DEFLATED);
    assert_eq!(h.patient_name.as_deref(), Some("DOE^JANE"));
    assert_eq!(h.pixel_data_offset, None);

    // Cut short: more is asked for while the object has it, else refused.
    let cut = &bytes[..bytes.len() - 10];
    let read = read_header(cut, bytes.len() as u64, &HeaderLimits::default()).unwrap();
    assert_eq!(
        read,
        HeaderRead::NeedMore {
            until: bytes.len() as u64
        }
    );
    assert!(matches!(
        complete(cut).unwrap_err(),
        DicomError::Truncated { .. }
    ));

    let garbage = part10(DEFLATED, &[0xFF; 64]);
    assert_eq!(complete(&garbage).unwrap_err(), DicomError::Inflate);
}

#[test]
fn metadata_follows_the_dicom_json_model() {
    let dataset = [
        el(0x0008, 0x0005, "CS", b"ISO_IR 100"),
        head(),
        el(0x0008, 0x1030, "LO", b""),
        el(0x0010, 0x0010, "PN", b"Yamada^Tarou=YAMADA^TAROU"),
        el(0x0018, 0x1160, "SH", b"A\\\\B"),
        el(0x0018, 0x0050, "DS", b"2.50"),
        uids(),
        el(0x0020, 0x9165, "AT", &[0x20, 0x00, 0x32, 0x00]),
        el(0x0029, 0x0010, "LO", b"ACME 1.0"),
        el(0x0029, 0x1001, "OB", &[1, 2, 3, 4]),
        el(0x0029, 0x1002, "OB", &[0; 2000]),
        el(0x0028, 0x0010, "US", &256u16.to_le_bytes()),
        pixels(),
    ]
    .concat();
    let bytes = part10(EXPLICIT_LE, &dataset);
    let read = read_metadata(&bytes, bytes.len() as u64, &HeaderLimits::default()).unwrap();
    let MetadataRead::Complete(m) = read else {
        panic!("{read:?}")
    };

    assert_eq!(m["00081030"], serde_json::json!({"vr": "LO"}));
    assert_eq!(m["00100010"]["Value"][0]["Alphabetic"], "Yamada^Tarou");
    assert_eq!(m["00100010"]["Value"][0]["Ideographic"], "YAMADA^TAROU");
    assert_eq!(m["00181160"]["Value"], serde_json::json!(["A", null, "B"]));
    assert_eq!(m["00180050"]["Value"][0], 2.5);
    assert_eq!(m["00209165"]["Value"][0], "00200032");
    assert_eq!(m["00291001"]["InlineBinary"], "AQIDBA==");
    assert!(m.get("00291002").is_none(), "bulk data is left out");
    assert_eq!(m["00280010"]["Value"][0], 256);
    assert!(m.get("7FE00010").is_none());
}

#[test]
fn parse_reasons_leave_out_the_parser_message() {
    let err = DicomError::Parse {
        step: "parse data set",
        message: "DOE^JANE".into(),
    };
    assert_eq!(err.reason(), "parse data set failed");
    assert_eq!(err.code(), "Parse");
}

#[test]
fn a_meta_group_without_syntax_waits_for_the_data_set_to_infer_it() {
    let body = el(0x0002, 0x0001, "OB", &[0, 1]);
    let group = el(0x0002, 0x0000, "UL", &(body.len() as u32).to_le_bytes());
    let meta = [group, body].concat();
    let bytes = [vec![0; 128], b"DICM".to_vec(), meta.clone(), head(), uids()].concat();

    let cut = 132 + meta.len() + 2;
    let read = read_header(&bytes[..cut], bytes.len() as u64, &HeaderLimits::default());
    assert!(matches!(read, Ok(HeaderRead::NeedMore { .. })), "{read:?}");
    assert_eq!(complete(&bytes).unwrap().transfer_syntax_uid, EXPLICIT_LE);
}

#[test]
fn indexed_values_past_their_cap_are_refused_by_name() {
    let with = |element: Vec<u8>| {
        complete(&part10(
            EXPLICIT_LE,
            &[head(), element, uids(), pixels()].concat(),
        ))
    };

    let err = with(el(0x0008, 0x0020, "DA", &[b'2'; 2000])).unwrap_err();
    assert_eq!(
        err,
        DicomError::ValueTooLong {
            name: "StudyDate",
            len: 2000,
            max: 64
        }
    );
    assert!(!err.reason().contains("2222"), "the value stays out");

    let err = with(el(0x0010, 0x0010, "PN", &[b'A'; 5000])).unwrap_err();
    assert_eq!(err.code(), "ValueTooLong");
    assert_eq!(
        err.reason(),
        "PatientName is 5000 bytes long; the index takes at most 1024"
    );

    // A name that stretches DICOM's 64 characters is still taken.
    let stretched = with(el(0x0010, 0x0010, "PN", &[b'B'; 200])).unwrap();
    assert_eq!(stretched.patient_name.unwrap().len(), 200);
}

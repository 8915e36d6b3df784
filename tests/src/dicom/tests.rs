//! The fixtures read back through dicom-object, dcmdump and our own
//! guarded reader, and the hostile ones refused for the right reason.

use std::process::Command;

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use pacs_shared::dicom::{
    DicomError, HeaderLimits, HeaderRead, InstanceHeader, MetadataRead, read_header, read_metadata,
};

use super::hostile::{self, Executable};
use super::{DicomFixture, Layout, Modality, TransferSyntax};

/// Reads a whole file in one call, as if the prefix were the object.
fn read_all(bytes: &[u8]) -> Result<InstanceHeader, DicomError> {
    match read_header(bytes, bytes.len() as u64, &HeaderLimits::default())? {
        HeaderRead::Complete(header) => Ok(header),
        HeaderRead::NeedMore { until } => panic!("whole file given, asked for {until}"),
    }
}

/// Reads a file the way the ingest function does: a first prefix, then
/// growing it as asked. Returns the header and the bytes read.
fn read_growing(bytes: &[u8], first: usize) -> Result<(InstanceHeader, u64), DicomError> {
    let limits = HeaderLimits::default();
    let mut have = first.min(bytes.len());
    loop {
        match read_header(&bytes[..have], bytes.len() as u64, &limits)? {
            HeaderRead::Complete(header) => return Ok((header, have as u64)),
            HeaderRead::NeedMore { until } => {
                assert!(until as usize > have, "no progress at {have}");
                assert!(until as usize <= bytes.len());
                have = until as usize;
            }
        }
    }
}

fn assert_fields(header: &InstanceHeader, fixture: &DicomFixture) {
    assert_eq!(
        header.transfer_syntax_uid,
        fixture.options.transfer_syntax.uid()
    );
    assert_eq!(header.sop_class_uid, fixture.sop_class_uid);
    assert_eq!(header.sop_instance_uid, fixture.sop_instance_uid);
    assert_eq!(header.study_instance_uid, fixture.study_instance_uid);
    assert_eq!(header.series_instance_uid, fixture.series_instance_uid);
    assert_eq!(header.patient_id, fixture.patient_id);
    assert_eq!(header.patient_name, fixture.patient_name);
    assert_eq!(header.patient_birth_date, fixture.patient_birth_date);
    assert_eq!(header.patient_sex, fixture.patient_sex);
    assert_eq!(header.study_date, fixture.study_date);
    assert_eq!(header.study_time, fixture.study_time);
    assert_eq!(header.accession_number, fixture.accession_number);
    assert_eq!(header.study_description, fixture.study_description);
    assert_eq!(header.series_description, fixture.series_description);
    assert_eq!(header.modality.as_deref(), Some(fixture.modality.code()));
    assert_eq!(header.body_part_examined, fixture.body_part_examined);
    assert_eq!(header.series_number, fixture.series_number);
    assert_eq!(header.instance_number, fixture.instance_number);
    let frames = (fixture.number_of_frames > 1).then_some(fixture.number_of_frames);
    assert_eq!(header.number_of_frames, frames);
    assert_eq!(header.rows, Some(fixture.rows));
    assert_eq!(header.columns, Some(fixture.columns));
}

#[test]
fn read_header_returns_the_fields_written_in_every_syntax_and_layout() {
    for ts in TransferSyntax::ALL {
        for layout in [Layout::Part10, Layout::NoPreamble] {
            let fixture = DicomFixture::new(Modality::Mr)
                .transfer_syntax(ts)
                .layout(layout);
            let bytes = fixture.to_bytes();
            let header = read_all(&bytes).unwrap_or_else(|e| panic!("{ts:?} {layout:?}: {e}"));
            assert_fields(&header, &fixture);
            if ts != TransferSyntax::DeflatedExplicitVrLittleEndian {
                let offset = header.pixel_data_offset.expect("pixel data offset");
                assert_eq!(offset, header.header_len);
                assert_eq!(&bytes[offset as usize..offset as usize + 2], pixel_tag(ts));
            }
        }
    }
}

fn pixel_tag(ts: TransferSyntax) -> &'static [u8] {
    if ts == TransferSyntax::ExplicitVrBigEndian {
        &[0x7F, 0xE0]
    } else {
        &[0xE0, 0x7F]
    }
}

#[test]
fn dataset_only_files_are_read_with_an_inferred_syntax() {
    for ts in [
        TransferSyntax::ImplicitVrLittleEndian,
        TransferSyntax::ExplicitVrLittleEndian,
    ] {
        let fixture = DicomFixture::new(Modality::Cr)
            .transfer_syntax(ts)
            .layout(Layout::DatasetOnly);
        let header = read_all(&fixture.to_bytes()).unwrap();
        assert_fields(&header, &fixture);
    }
}

#[test]
fn every_modality_and_multi_frame_reads_back() {
    for modality in [
        Modality::Ct,
        Modality::Mr,
        Modality::Cr,
        Modality::Dx,
        Modality::Us,
    ] {
        let fixture = DicomFixture::new(modality).frames(3).size(64, 48);
        let header = read_all(&fixture.to_bytes()).unwrap();
        assert_fields(&header, &fixture);
        assert_eq!(header.number_of_frames, Some(3));
    }
}

#[test]
fn metadata_is_dicom_json_without_bulk_data() {
    let fixture = DicomFixture::ct().transfer_syntax(TransferSyntax::ImplicitVrLittleEndian);
    let bytes = fixture.to_bytes();
    let read = read_metadata(&bytes, bytes.len() as u64, &HeaderLimits::default());
    let Ok(MetadataRead::Complete(m)) = read else {
        panic!("{read:?}")
    };
    let m = &m;

    assert_eq!(m["00100010"]["vr"], "PN");
    assert_eq!(m["00100010"]["Value"][0]["Alphabetic"], "DOE^JANE");
    assert_eq!(
        m["0020000D"]["Value"][0],
        fixture.study_instance_uid.as_str()
    );
    assert_eq!(m["00200013"]["Value"][0], 1);
    assert_eq!(m["00280010"]["Value"][0], 128);
    assert_eq!(m["00200037"]["Value"].as_array().unwrap().len(), 6);
    assert_eq!(m["00281052"]["Value"][0], -1024);
    assert_eq!(m["00081032"]["vr"], "SQ");
    assert_eq!(m["00081032"]["Value"][0]["00080100"]["Value"][0], "IMG1234");
    assert!(m.get("7FE00010").is_none());
    assert!(m.get("00020010").is_none());
}

#[test]
fn dicom_object_reads_the_normal_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    for ts in TransferSyntax::ALL {
        let fixture = DicomFixture::ct().transfer_syntax(ts).frames(2);
        let path = dir.path().join("f.dcm");
        fixture.write_to(&path).unwrap();
        let object = OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(&path)
            .unwrap_or_else(|e| panic!("{ts:?}: {e}"));
        assert_eq!(object.meta().transfer_syntax(), ts.uid());
        let name = object
            .element(tags::PATIENT_NAME)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(name, "DOE^JANE");
        let uid = object
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(uid, fixture.sop_instance_uid);
    }

    // A bare data set, through the data set reader.
    let fixture = DicomFixture::ct()
        .transfer_syntax(TransferSyntax::ImplicitVrLittleEndian)
        .layout(Layout::DatasetOnly);
    let ts = TransferSyntaxRegistry
        .get(TransferSyntax::ImplicitVrLittleEndian.uid())
        .unwrap();
    let object = InMemDicomObject::read_dataset_with_ts(&fixture.to_bytes()[..], ts).unwrap();
    let rows = object.element(tags::ROWS).unwrap().to_int::<u16>().unwrap();
    assert_eq!(rows, 128);
}

#[test]
fn dcmdump_accepts_the_fixtures() {
    let present = Command::new("dcmdump").arg("--version").output().is_ok();
    assert!(
        present,
        "dcmdump is required for this test: install dcmtk (apt-get install dcmtk)"
    );

    let dir = tempfile::tempdir().unwrap();
    let cases = [
        DicomFixture::ct(),
        DicomFixture::ct().transfer_syntax(TransferSyntax::ImplicitVrLittleEndian),
        DicomFixture::new(Modality::Mr).transfer_syntax(TransferSyntax::ExplicitVrBigEndian),
        DicomFixture::ct().transfer_syntax(TransferSyntax::DeflatedExplicitVrLittleEndian),
        DicomFixture::new(Modality::Us)
            .transfer_syntax(TransferSyntax::JpegBaseline)
            .frames(3),
        DicomFixture::new(Modality::Mr).frames(4),
    ];
    for (i, fixture) in cases.iter().enumerate() {
        let path = dir.path().join(format!("{i}.dcm"));
        fixture.write_to(&path).unwrap();
        let out = Command::new("dcmdump")
            .args(["-q", "-Un"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "case {i}: {stderr}"
        );
        assert!(stdout.contains("[DOE^JANE]"), "case {i}: {stdout}");
        assert!(stdout.contains(&fixture.sop_instance_uid), "case {i}");
        assert!(
            stdout.contains(fixture.options.transfer_syntax.uid()),
            "case {i}"
        );
    }
}

#[test]
fn big_files_are_read_with_a_small_prefix() {
    let fixture = DicomFixture::ct().size(512, 512).frames(24);
    let bytes = fixture.to_bytes();
    assert!(bytes.len() > 12_000_000);

    // A first GET far shorter than the header, then growth as asked.
    let (header, read) = read_growing(&bytes, 256).unwrap();
    assert_fields(&header, &fixture);
    assert!(read <= header.header_len + 64 * 1024, "read {read}");

    let (_, read) = read_growing(&bytes, 64 * 1024).unwrap();
    assert_eq!(read, 64 * 1024);
}

#[test]
fn deflated_big_files_are_read_with_a_small_prefix() {
    let fixture = DicomFixture::ct()
        .transfer_syntax(TransferSyntax::DeflatedExplicitVrLittleEndian)
        .size(512, 512)
        .frames(8);
    let bytes = fixture.to_bytes();
    let (header, read) = read_growing(&bytes, 300).unwrap();
    assert_fields(&header, &fixture);
    assert!(
        read < 200 * 1024 && (read as usize) < bytes.len(),
        "read {read}"
    );
}

#[test]
fn gigabyte_lengths_are_refused_before_allocation() {
    for ts in [
        TransferSyntax::ExplicitVrLittleEndian,
        TransferSyntax::ImplicitVrLittleEndian,
        TransferSyntax::ExplicitVrBigEndian,
    ] {
        let bytes = hostile::declared_length(1 << 30, ts);
        assert!(bytes.len() < 2048);
        let err = read_all(&bytes).unwrap_err();
        assert!(matches!(err, DicomError::LengthBeyondObject { length, .. } if length == 1 << 30));
        // Told the object is huge, the cap refuses it instead.
        let err = read_header(&bytes, 2 << 30, &HeaderLimits::default()).unwrap_err();
        assert!(
            matches!(err, DicomError::ElementTooLarge { .. }),
            "{ts:?}: {err}"
        );
    }
    let err = read_all(&hostile::gigabyte_sequence()).unwrap_err();
    assert!(
        matches!(err, DicomError::LengthBeyondObject { .. }),
        "{err}"
    );
}

#[test]
fn oversized_elements_are_refused() {
    let err = read_all(&hostile::oversized_element(2 << 20)).unwrap_err();
    assert!(matches!(err, DicomError::ElementTooLarge { length, .. } if length == 2 << 20));
}

#[test]
fn a_million_values_are_refused() {
    let err = read_all(&hostile::many_values()).unwrap_err();
    assert_eq!(err, DicomError::TooManyValues { cap: 500_000 });
}

#[test]
fn deep_sequences_are_refused_and_shallow_ones_read() {
    for ts in [
        TransferSyntax::ExplicitVrLittleEndian,
        TransferSyntax::ImplicitVrLittleEndian,
    ] {
        assert!(read_all(&hostile::deep_sequences(8, ts)).is_ok());
        let err = read_all(&hostile::deep_sequences(10_000, ts)).unwrap_err();
        assert_eq!(err, DicomError::SequenceTooDeep { depth: 17, cap: 16 });
    }
}

#[test]
fn undelimited_sequences_are_refused() {
    let err = read_all(&hostile::undelimited_sequence()).unwrap_err();
    assert!(matches!(err, DicomError::MissingDelimiter { .. }), "{err}");
}

#[test]
fn executable_preambles_are_refused() {
    for (kind, name) in [(Executable::Mz, "MZ"), (Executable::Elf, "ELF")] {
        let err = read_all(&hostile::executable_preamble(kind)).unwrap_err();
        assert_eq!(err, DicomError::ExecutablePreamble { kind: name });
    }
}

#[test]
fn truncated_files_and_non_dicom_are_refused() {
    let whole = DicomFixture::ct().to_bytes();
    for keep in [140, 300, 700] {
        let err = read_all(&hostile::truncated(keep)).unwrap_err();
        assert!(
            matches!(
                err,
                DicomError::Truncated { .. } | DicomError::LengthBeyondObject { .. }
            ),
            "{keep}: {err}"
        );
    }
    // Less than a preamble cannot be told from any other short file.
    let err = read_all(&hostile::truncated(100)).unwrap_err();
    assert!(matches!(err, DicomError::NotDicom { .. }), "{err}");

    // Cut inside Pixel Data: the header is whole, which is all we read.
    assert!(read_all(&whole[..whole.len() - 100]).is_ok());

    let err = read_all(&hostile::not_dicom()).unwrap_err();
    assert!(matches!(err, DicomError::NotDicom { .. }));
}

#[test]
fn deflate_bombs_stop_at_the_header_cap() {
    let bytes = hostile::deflate_bomb(16 << 20);
    assert!(bytes.len() < 200_000, "{}", bytes.len());
    let err = read_all(&bytes).unwrap_err();
    assert_eq!(err, DicomError::HeaderTooLarge { cap: 4 << 20 });
}

#[test]
fn reasons_never_hold_patient_data() {
    let mut files = vec![
        hostile::declared_length(1 << 30, TransferSyntax::ExplicitVrLittleEndian),
        hostile::deep_sequences(40, TransferSyntax::ExplicitVrLittleEndian),
        hostile::undelimited_sequence(),
        hostile::truncated(500),
    ];
    let mut no_uid = DicomFixture::ct();
    no_uid.study_instance_uid = "1.2.03".into();
    files.push(no_uid.to_bytes());

    for bytes in files {
        let reason = read_all(&bytes).unwrap_err().reason();
        for secret in ["DOE", "JANE", "MRN00412345", "19750314"] {
            assert!(!reason.contains(secret), "{reason}");
        }
    }
}

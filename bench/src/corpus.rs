//! The files every section measures, written once per run to a temporary
//! directory with the testkit's fixture generator.

use std::path::PathBuf;

use anyhow::Context as _;
use pacs_testkit::dicom::{DicomFixture, Layout, Modality, TransferSyntax};

/// A written set of DICOM files.
pub struct Corpus {
    _dir: tempfile::TempDir,
    /// Small single-frame files (~40 KB), transfer syntaxes mixed.
    pub small: Vec<PathBuf>,
    /// Files of 10 MB and more, with a label for the report.
    pub big: Vec<(String, PathBuf, u64)>,
}

impl Corpus {
    /// Writes `small` CT files of 140 × 140 (about 40 KB) cycling through
    /// every transfer syntax, a tenth of them without preamble, and four
    /// multi-frame files of 10 MB and more.
    pub fn write(small: usize) -> anyhow::Result<Corpus> {
        let dir = tempfile::tempdir().context("create corpus dir")?;

        let mut series = DicomFixture::ct().size(140, 140);
        let mut small_paths = Vec::with_capacity(small);
        for i in 0..small {
            let ts = TransferSyntax::ALL[i % TransferSyntax::ALL.len()];
            let layout = if i % 10 == 9 && ts != TransferSyntax::DeflatedExplicitVrLittleEndian {
                Layout::NoPreamble
            } else {
                Layout::Part10
            };
            if i % 200 == 0 {
                series = DicomFixture::ct().size(140, 140);
            }
            series = series.next_instance();
            let path = dir.path().join(format!("small-{i:05}.dcm"));
            series
                .clone()
                .transfer_syntax(ts)
                .layout(layout)
                .write_to(&path)?;
            small_paths.push(path);
        }

        let big_fixtures = [
            (
                "CT 512x512x20 explicit LE",
                DicomFixture::ct().size(512, 512).frames(20),
            ),
            (
                "MR 256x256x160 implicit LE",
                DicomFixture::new(Modality::Mr)
                    .transfer_syntax(TransferSyntax::ImplicitVrLittleEndian)
                    .size(256, 256)
                    .frames(160),
            ),
            (
                "US 30 frames JPEG 12 MB",
                DicomFixture::new(Modality::Us)
                    .transfer_syntax(TransferSyntax::JpegBaseline)
                    .size(640, 480)
                    .frames(30)
                    .pixel_data_len(12 << 20),
            ),
            (
                "CT 512x512x40 deflated",
                DicomFixture::ct()
                    .transfer_syntax(TransferSyntax::DeflatedExplicitVrLittleEndian)
                    .size(512, 512)
                    .frames(40),
            ),
        ];
        let mut big = Vec::new();
        for (i, (label, fixture)) in big_fixtures.into_iter().enumerate() {
            let path = dir.path().join(format!("big-{i}.dcm"));
            let size = fixture.write_to(&path)?;
            big.push((label.to_string(), path, size));
        }

        Ok(Corpus {
            _dir: dir,
            small: small_paths,
            big,
        })
    }
}

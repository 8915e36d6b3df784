//! Recognizes DICOM by content, not by file name: the `DICM` marker after
//! the 128-byte preamble, or a bare dataset that starts the way DICOM
//! datasets do. The hub parses and checks the file; this only decides
//! whether a file is worth sending.

/// What a file looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Part 10 file with preamble and `DICM`.
    Part10,
    /// A dataset without preamble (explicit or implicit VR little endian).
    BareDataset,
    NotDicom,
}

const VRS: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

/// Classifies the first bytes of a file (at least 132 when the file has
/// them).
pub fn classify(head: &[u8]) -> Kind {
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        return Kind::Part10;
    }
    if head.len() < 8 {
        return Kind::NotDicom;
    }

    // A bare dataset starts with its lowest tag: the meta group (0002) or
    // an identifying element of group 0008, little endian.
    let group = u16::from_le_bytes([head[0], head[1]]);
    let element = u16::from_le_bytes([head[2], head[3]]);
    let plausible_tag = match group {
        0x0002 => element <= 0x0100,
        0x0008 => element <= 0x0020,
        _ => false,
    };
    if !plausible_tag {
        return Kind::NotDicom;
    }

    let vr = [head[4], head[5]];
    if VRS.iter().any(|v| **v == vr) {
        return Kind::BareDataset;
    }

    // Implicit VR: a 32-bit length that fits a header element.
    let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if length < 1024 || length == u32::MAX {
        Kind::BareDataset
    } else {
        Kind::NotDicom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part10_marker() {
        let mut bytes = vec![0u8; 200];
        bytes[128..132].copy_from_slice(b"DICM");
        assert_eq!(classify(&bytes), Kind::Part10);
    }

    #[test]
    fn bare_datasets() {
        // (0008,0005) CS length 10, explicit VR.
        let explicit = [0x08, 0x00, 0x05, 0x00, b'C', b'S', 10, 0];
        assert_eq!(classify(&explicit), Kind::BareDataset);
        // (0008,0016) implicit VR, length 26.
        let implicit = [0x08, 0x00, 0x16, 0x00, 26, 0, 0, 0];
        assert_eq!(classify(&implicit), Kind::BareDataset);
    }

    #[test]
    fn other_files() {
        assert_eq!(classify(b"hello, this is a text file\n"), Kind::NotDicom);
        assert_eq!(classify(b"\x89PNG\r\n\x1a\n0000000000"), Kind::NotDicom);
        assert_eq!(classify(b""), Kind::NotDicom);
        let mut zeros = vec![0u8; 300];
        zeros[0] = 0x08;
        zeros[4] = 0xff;
        zeros[5] = 0xff;
        assert_eq!(classify(&zeros), Kind::NotDicom);
    }
}

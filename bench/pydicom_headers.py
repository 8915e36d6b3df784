"""Reads DICOM headers with pydicom, as the reference for our reader.

Usage: pydicom_headers.py LIST_FILE [--json] [--passes N]

LIST_FILE holds one path per line. Each file is read with
dcmread(stop_before_pixels=True, force=True) and the attributes the
archive indexes are accessed; with --json the data set is also turned
into DICOM JSON, as our reader does. Prints one JSON object: files,
seconds (CPU time of the best pass) and files_per_second.
"""

import json
import sys
import time

import pydicom

FIELDS = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate",
    "StudyTime", "AccessionNumber", "StudyDescription", "SeriesDescription",
    "Modality", "BodyPartExamined", "SeriesNumber", "InstanceNumber",
    "NumberOfFrames", "Rows", "Columns",
)


def read_all(paths, with_json):
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        for name in FIELDS:
            value = ds.get(name)
            if value is not None:
                str(value)
        if with_json:
            ds.to_json_dict(bulk_data_threshold=1024)


def main():
    args = sys.argv[1:]
    with_json = "--json" in args
    passes = int(args[args.index("--passes") + 1]) if "--passes" in args else 3
    with open(args[0]) as f:
        paths = [line.strip() for line in f if line.strip()]

    best = None
    for _ in range(passes):
        # CPU time of this thread, so the rate is per core on a busy machine.
        start = time.thread_time()
        read_all(paths, with_json)
        elapsed = time.thread_time() - start
        best = elapsed if best is None else min(best, elapsed)

    print(json.dumps({
        "files": len(paths),
        "seconds": best,
        "files_per_second": len(paths) / best,
        "pydicom": pydicom.__version__,
    }))


if __name__ == "__main__":
    main()

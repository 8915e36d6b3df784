#!/usr/bin/env python3
"""Reads a study back through pacs-hub's DICOMweb with dicomweb-client.

Usage: dicomweb_client_check.py BASE_URL EXPECTED_JSON

The API key comes from the PACS_HUB_API_KEY environment variable, so it
never shows in a process listing. EXPECTED_JSON describes what was
uploaded: studyInstanceUid, patientId, patientName, series (series UID to
its SOP instance UIDs) and files (SOP instance UID to the path of the file
that was uploaded). Exits non-zero, naming the first difference, when what the
hub serves differs from it.
"""

import json
import os
import sys

import pydicom
from dicomweb_client.api import DICOMwebClient


def value(dataset_json, tag):
    values = dataset_json.get(tag, {}).get("Value", [])
    return values[0] if values else None


def check(condition, message):
    if not condition:
        print(f"dicomweb check failed: {message}", file=sys.stderr)
        sys.exit(1)


def main():
    base, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path, encoding="utf-8") as f:
        expected = json.load(f)
    client = DICOMwebClient(
        url=f"{base.rstrip('/')}/dicomweb",
        headers={"x-api-key": os.environ["PACS_HUB_API_KEY"]},
    )
    study_uid = expected["studyInstanceUid"]

    # QIDO-RS: the study by UID, by patient and by a wildcard name.
    found = client.search_for_studies(search_filters={"StudyInstanceUID": study_uid})
    check(len(found) == 1, f"search by StudyInstanceUID found {len(found)} studies")
    study = found[0]
    check(value(study, "00100020") == expected["patientId"], "PatientID differs")
    name = value(study, "00100010") or {}
    check(name.get("Alphabetic") == expected["patientName"], "PatientName differs")
    by_patient = client.search_for_studies(
        search_filters={"PatientID": expected["patientId"]}
    )
    check(
        study_uid in [value(s, "0020000D") for s in by_patient],
        "search by PatientID misses the study",
    )
    pattern = expected["patientName"][:3].lower() + "*"
    by_name = client.search_for_studies(search_filters={"PatientName": pattern})
    check(
        study_uid in [value(s, "0020000D") for s in by_name],
        "search by PatientName wildcard misses the study",
    )
    total = sum(len(v) for v in expected["series"].values())
    check(value(study, "00201208") == total, "NumberOfStudyRelatedInstances differs")

    # QIDO-RS: series and instances.
    series = client.search_for_series(study_instance_uid=study_uid)
    got_series = sorted(value(s, "0020000E") for s in series)
    check(got_series == sorted(expected["series"]), f"series differ: {got_series}")
    for series_uid, sops in expected["series"].items():
        instances = client.search_for_instances(
            study_instance_uid=study_uid, series_instance_uid=series_uid
        )
        got = sorted(value(i, "00080018") for i in instances)
        check(got == sorted(sops), f"instances of series {series_uid} differ")

    # WADO-RS: metadata of the study, then each instance's bytes.
    metadata = client.retrieve_study_metadata(study_instance_uid=study_uid)
    check(len(metadata) == total, f"study metadata has {len(metadata)} instances")
    check(
        sorted(value(m, "00080018") for m in metadata)
        == sorted(s for v in expected["series"].values() for s in v),
        "metadata SOP instance UIDs differ",
    )
    for series_uid, sops in expected["series"].items():
        for sop in sops:
            ds = client.retrieve_instance(
                study_instance_uid=study_uid,
                series_instance_uid=series_uid,
                sop_instance_uid=sop,
            )
            original = pydicom.dcmread(expected["files"][sop])
            check(ds.SOPInstanceUID == sop, f"retrieved {ds.SOPInstanceUID}, not {sop}")
            check(ds.PatientID == original.PatientID, f"PatientID of {sop} differs")
            check(ds.PixelData == original.PixelData, f"pixel data of {sop} differs")

    print(f"dicomweb check passed: {len(got_series)} series, {total} instances")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks `asg analyze --sr --fhir` outputs with tools nobody here wrote:

- each DICOM SR parses with pydicom and highdicom as a TID 1500 measurement report whose planar
  ROI groups carry the same findings, sites and boxes (closed polylines) and probabilities as the
  analysis JSON's grounded findings (present findings, each with its first carrying region, else
  the region under its heatmap's peak);
- dcmtk's dsrdump reads each SR with exit status 0 and no error or warning;
- each FHIR DiagnosticReport validates against HL7's FHIR R4 JSON schema (fhir.schema.json) with
  jsonschema, and carries one Observation per grounded finding.

    python3 bench/results_check.py JSON_DIR SR_DIR FHIR_DIR FHIR_SCHEMA
"""
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import jsonschema
import numpy as np
import pydicom


def grounded(a):
    out = []
    for f in a["findings"]:
        if not f["present"]:
            continue
        region = f["regions"][0] if f["regions"] else (f.get("heatmap") or {}).get("peak_region")
        r = next((r for r in a["regions"] if r["name"] == region), None)
        if r is not None:
            out.append((f["name"], r["name"], r["bbox"], f["probability"]))
    return out


def main() -> int:
    json_dir, sr_dir, fhir_dir, schema_path = map(Path, sys.argv[1:5])
    schema = json.loads(schema_path.read_text())
    validator = jsonschema.Draft6Validator(schema)
    problems, groups_total, files = [], 0, 0
    for jf in sorted(json_dir.glob("*.json")):
        if jf.name == "summary.json":
            continue
        files += 1
        a = json.loads(jf.read_text())
        want = grounded(a)
        stem = jf.stem
        sr_path = sr_dir / f"{stem}.sr.dcm"
        ds = pydicom.dcmread(sr_path)
        if ds.SOPClassUID != "1.2.840.10008.5.1.4.1.1.88.22":
            problems.append(f"{sr_path}: SOP class {ds.SOPClassUID}")
        if ds.StudyInstanceUID != a["image"]["study_instance_uid"]:
            problems.append(f"{sr_path}: study UID differs from the source")
        sr = hd.sr.srread(sr_path)
        groups = sr.content.get_planar_roi_measurement_groups()
        groups_total += len(groups)
        if len(groups) != len(want):
            problems.append(f"{sr_path}: {len(groups)} measurement groups, the JSON has {len(want)} grounded findings")
        for g, (finding, region, bbox, p) in zip(groups, want):
            if g.finding_type.meaning.lower() not in (finding.lower(), ) and finding.lower() not in g.finding_type.meaning.lower():
                problems.append(f"{sr_path}: finding {g.finding_type.meaning!r} vs {finding!r}")
            sites = [s.value for s in g.finding_sites]
            ref = g.roi
            if ref is None or ref.value.shape != (5, 2):
                problems.append(f"{sr_path}: {finding}: no closed 4-corner polyline")
                continue
            x1, y1, x2, y2 = bbox
            expect = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]])
            if not np.allclose(ref.value, expect, atol=1e-3):
                problems.append(f"{sr_path}: {finding}: polyline {ref.value.tolist()} vs box {bbox}")
            src = ref.referenced_sop_instance_uid if hasattr(ref, "referenced_sop_instance_uid") else None
            ms = g.get_measurements()
            if len(ms) != 1 or abs(float(ms[0].value) - p) > 1e-6:
                problems.append(f"{sr_path}: {finding}: measurement {[(m.name.meaning, m.value) for m in ms]} vs {p}")
            if not sites:
                problems.append(f"{sr_path}: {finding}: no finding site")
        dump = subprocess.run(["dsrdump", str(sr_path)], capture_output=True, text=True)
        if dump.returncode != 0 or dump.stderr.strip():
            problems.append(f"{sr_path}: dsrdump exit {dump.returncode}: {dump.stderr.strip()[:300]}")
        fhir = json.loads((fhir_dir / f"{stem}.fhir.json").read_text())
        errors = sorted(validator.iter_errors(fhir), key=lambda e: e.path)
        for e in errors[:5]:
            problems.append(f"{stem}.fhir.json: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}")
        obs = [c for c in fhir.get("contained", []) if c.get("resourceType") == "Observation"]
        if len(obs) != len(want):
            problems.append(f"{stem}.fhir.json: {len(obs)} Observations for {len(want)} grounded findings")
    print(f"{files} analyses; {groups_total} measurement groups read back by highdicom {hd.__version__} "
          f"(pydicom {pydicom.__version__}); dsrdump; FHIR R4 schema ({schema.get('id')}) with jsonschema {importlib.metadata.version('jsonschema')}")
    if files == 0 or groups_total == 0:
        problems.append("nothing was checked: no analysis or no grounded finding")
    for p in problems:
        print("FAIL:", p)
    print("PASS" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

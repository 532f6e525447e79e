"""DICOMDIR reading against pydicom, on the DICOMDIR test sets inside the pydicom wheel: the files
`asg dicom index DICOMDIR` lists (as instances or as skipped) must be exactly the files the
DICOMDIR's records refer to as pydicom reads them.

Usage: python bench/dicomdir_check.py ASG_BINARY
"""
import json
import pathlib
import subprocess
import sys

import pydicom


def main() -> int:
    asg = sys.argv[1]
    root = pathlib.Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
    failures = 0
    for name in ["DICOMDIR", "DICOMDIR-bigEnd", "DICOMDIR-implicit", "DICOMDIR-reordered"]:
        src = root / name
        ds = pydicom.dcmread(src)
        want = []
        for rec in ds.DirectoryRecordSequence:
            if "ReferencedFileID" in rec:
                parts = rec.ReferencedFileID
                parts = [parts] if isinstance(parts, str) else list(parts)
                p = str(root.joinpath(*parts))
                if p not in want:
                    want.append(p)
        # Our CLI expands a file named DICOMDIR; give it that name in a scratch link.
        tmp = pathlib.Path("target") / "dicomdir-check" / name
        tmp.mkdir(parents=True, exist_ok=True)
        for child in root.iterdir():
            dst = tmp / child.name
            if not dst.exists():
                dst.symlink_to(child)
        dd = tmp / "DICOMDIR"
        if dd.exists() or dd.is_symlink():
            dd.unlink()
        dd.symlink_to(src)
        out = subprocess.run([asg, "dicom", "index", str(dd)], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: asg failed: {out.stderr.strip()[-200:]}")
            failures += 1
            continue
        index = json.loads(out.stdout)
        got = [i["path"] for s in index["studies"] for se in s["series"] for i in se["instances"]]
        got += [s["path"] for s in index["skipped"]]
        norm = lambda ps, base: sorted(str(pathlib.Path(p).relative_to(base)) for p in ps)  # noqa: E731
        a, b = norm(got, tmp), norm(want, root)
        status = "same" if a == b else "DIFFERENT"
        if a != b:
            failures += 1
            print(f"{name}: only asg: {sorted(set(a) - set(b))[:5]}, only pydicom: {sorted(set(b) - set(a))[:5]}")
        images = sum(len(se["instances"]) for s in index["studies"] for se in s["series"])
        studies = len({r.StudyInstanceUID for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "STUDY"})
        if studies != len(index["studies"]):
            failures += 1
            print(f"{name}: {studies} STUDY records, asg groups {len(index['studies'])} studies")
        print(f"{name}: {len(b)} referenced files, {status}; asg: {len(index['studies'])} studies, {images} images, {len(index['skipped'])} skipped")
    print("PASS" if failures == 0 else f"FAIL: {failures} DICOMDIR(s) differ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Bad input gets a typed exception that names the input and the cause, never a crash."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import asg_cxr
import pytest

from conftest import ROOT

BUNDLE = ROOT / "models" / "default"


def a_dicom(phantoms) -> Path:
    return sorted(p for p in phantoms.rglob("*.dcm") if p.name != "junk.dcm")[0]


def test_bytes_that_are_not_dicom(model):
    with pytest.raises(asg_cxr.DicomError, match="upload.bin") as e:
        model.analyze(b"not a DICOM file at all", name="upload.bin")
    assert e.value.kind == "not_dicom"
    assert e.value.source == "upload.bin"
    assert isinstance(e.value, asg_cxr.AsgError)
    with pytest.raises(asg_cxr.DicomError, match="<bytes>"):
        model.analyze(b"")


def test_a_truncated_dicom(phantoms, model):
    data = a_dicom(phantoms).read_bytes()
    for cut in (140, 1000, len(data) // 2, len(data) - 1):
        with pytest.raises(asg_cxr.DicomError, match="cut.dcm") as e:
            model.analyze(data[:cut], name="cut.dcm")
        assert e.value.kind in {"not_dicom", "missing_element", "decode", "invalid_element"}


def test_read_dicom_errors(phantoms):
    with pytest.raises(asg_cxr.DicomError, match="x.dcm"):
        asg_cxr.read_dicom(b"\0" * 300, name="x.dcm")
    with pytest.raises(asg_cxr.DicomError) as e:
        asg_cxr.read_dicom(a_dicom(phantoms).read_bytes(), max_pixels=100)
    assert e.value.kind == "too_large"


def test_a_missing_file(model, tmp_path):
    missing = tmp_path / "nowhere.dcm"
    with pytest.raises(FileNotFoundError, match="nowhere.dcm"):
        model.analyze_file(missing)
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        model.analyze_file(missing, report_file=tmp_path / "nowhere.txt")


def test_a_junk_file_on_disk_is_named(phantoms, model):
    with pytest.raises(asg_cxr.DicomError, match="junk.dcm"):
        model.analyze_file(phantoms / "junk.dcm")


def test_a_folder_that_is_not_a_bundle(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        asg_cxr.Model(tmp_path)


def test_a_bundle_with_an_altered_model(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    onnx = bundle / "image.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(asg_cxr.BundleError, match="image.onnx"):
        asg_cxr.Model(bundle)


def test_a_bundle_with_a_broken_manifest(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    (bundle / "manifest.json").write_text("{ not json")
    with pytest.raises(asg_cxr.BundleError, match="bundle"):
        asg_cxr.Model(bundle)


def test_a_tar_bundle_loads_and_a_broken_one_is_named(tmp_path, phantoms):
    tar = tmp_path / "bundle.tar"
    with tarfile.open(tar, "w") as t:
        for f in BUNDLE.iterdir():
            t.add(f, arcname=f.name)
    m = asg_cxr.Model(str(tar))
    assert m.source == str(tar)
    assert m.analyze_file(a_dicom(phantoms))["findings"]
    broken = tmp_path / "broken.tar"
    broken.write_bytes(tar.read_bytes()[:5000])
    with pytest.raises((asg_cxr.BundleError, OSError), match="broken.tar"):
        asg_cxr.Model(str(broken))


def test_bad_arguments(model, phantoms):
    with pytest.raises(ValueError, match="threshold"):
        asg_cxr.Model(threshold=1.5)
    with pytest.raises(ValueError, match="not both"):
        model.analyze_file(a_dicom(phantoms), report="x", report_file="y")
    with pytest.raises(TypeError):
        model.analyze("a str, not bytes")


def test_check_report_refuses_what_is_not_an_analysis(model, phantoms):
    with pytest.raises(asg_cxr.AnalysisError, match="not an analysis"):
        model.check_report({"findings": []}, "No pneumothorax.")
    result = model.analyze_file(a_dicom(phantoms), raw_outputs=True)
    result["model"]["image_sha256"] = "0" * 64
    with pytest.raises(asg_cxr.AnalysisError, match="not by this model"):
        model.check_report(result, "No pneumothorax.")
    with pytest.raises(asg_cxr.AnalysisError, match="result 1"):
        asg_cxr.summarise([result, {"image": 3}])

"""The Python API against the CLI on phantoms: the same analysis, report check, report parse
and file choice; read_dicom against pydicom."""

from __future__ import annotations

import threading
import time

import asg_cxr
import numpy as np
import pytest

from conftest import assert_same_json, load_json, run_cli, without_timings


def dicoms(phantoms):
    return sorted(p for p in phantoms.rglob("*.dcm") if p.name != "junk.dcm")


def report_of(dcm):
    """The study's report (MIMIC-CXR layout: files/pNN/pID/sID.txt beside sID/)."""
    return dcm.parent.with_suffix(".txt")


def test_analyze_file_equals_the_cli_with_reports(asg_bin, phantoms, model, tmp_path):
    files = dicoms(phantoms)
    assert len(files) == 4
    out = tmp_path / "cli"
    cli = run_cli(asg_bin, "analyze", *map(str, files), "--reports", str(phantoms), "--json", str(out))
    assert cli.returncode == 0, cli.stderr
    for dcm in files:
        expected = load_json(out / f"{dcm.stem}.json")
        assert expected["report_file"] == str(report_of(dcm))
        got = model.analyze_file(str(dcm), report_file=str(report_of(dcm)))
        assert got["schema_version"] == asg_cxr.ANALYSIS_SCHEMA_VERSION
        assert_same_json(without_timings(got), without_timings(expected))
        assert got["timings"]["total_ms"] > 0


def test_analyze_bytes_equals_analyze_file(phantoms, model):
    dcm = dicoms(phantoms)[0]
    text = report_of(dcm).read_text()
    from_file = model.analyze_file(dcm, report=text)
    from_bytes = model.analyze(dcm.read_bytes(), name=str(dcm), report=text)
    assert_same_json(without_timings(from_bytes), without_timings(from_file))
    assert from_bytes["report_file"] == from_file["report_file"] == "report"
    assert "file" not in model.analyze(dcm.read_bytes())


def test_check_report_on_a_returned_analysis_equals_the_one_made_with_it(phantoms, model):
    dcm = dicoms(phantoms)[1]
    text = report_of(dcm).read_text()
    result = model.analyze_file(dcm, report=text, raw_outputs=True)
    check = model.check_report(result, text)
    assert_same_json(check, result["report_check"])
    assert sum(check["counts"].values()) > 0


def test_raw_outputs_only_on_request(phantoms, model):
    dcm = dicoms(phantoms)[0]
    plain = model.analyze_file(dcm)
    raw = model.analyze_file(dcm, raw_outputs=True)
    assert "outputs" not in plain
    assert plain["schema_version"] == asg_cxr.ANALYSIS_SCHEMA_VERSION == 3
    names = [o["name"] for o in raw["outputs"]]
    assert "finding_logits" in names and "region_embeddings" in names
    del raw["outputs"]
    assert_same_json(without_timings(raw), without_timings(plain))
    # Without them the report check would lose its image-text evidence: refused, with the fix.
    with pytest.raises(asg_cxr.AnalysisError, match="raw_outputs=True"):
        model.check_report(plain, "No pneumothorax.")


def test_model_properties(model):
    assert model.source == "embedded default bundle"
    assert set(model.assessed) <= set(model.findings)
    assert set(model.thresholds) == set(model.findings)
    assert all(0 < t < 1 for t in model.thresholds.values())
    assert model.name in repr(model)


def test_a_threshold_applies_to_every_finding(phantoms):
    m = asg_cxr.Model(threshold=0.0)
    r = m.analyze_file(dicoms(phantoms)[0])
    assert {f["name"] for f in r["findings"] if f["present"]} == set(m.assessed)


def test_parse_report_and_labels_equal_the_cli(asg_bin, phantoms):
    report = sorted(phantoms.rglob("s*.txt"))[0]
    text = report.read_text()
    cli = run_cli(asg_bin, "report", str(report), "--json")
    assert cli.returncode == 0, cli.stderr
    import json

    assert_same_json(asg_cxr.parse_report(text), json.loads(cli.stdout))
    for scheme in ("chexpert", "chestxray14"):
        cli = run_cli(asg_bin, "report", str(report), "--json", "--labels", scheme)
        assert cli.returncode == 0, cli.stderr
        assert_same_json(asg_cxr.report_labels(text, scheme), json.loads(cli.stdout))
    with pytest.raises(ValueError, match="nosuch"):
        asg_cxr.report_labels(text, "nosuch")


def test_find_files_and_output_names_are_the_clis(phantoms):
    files = asg_cxr.find_files([str(phantoms)])
    assert files == sorted(files)
    assert [f for f in files if f.endswith(".dcm")] == files  # reports are passed over
    assert str(phantoms / "junk.dcm") in files
    assert len(files) == 5
    assert asg_cxr.output_names(["a/x.dcm", "b/x.dcm", "c/y", "d/x.dcm"]) == [
        "x.json",
        "x-2.json",
        "y.json",
        "x-3.json",
    ]


def test_summarise_of_results_equals_summarise_of_digests(phantoms, model):
    results = [model.analyze_file(f, report_file=report_of(f)) for f in dicoms(phantoms)]
    digests = [asg_cxr.digest(r) for r in results]
    assert len(str(digests[0])) < len(str(results[0])) / 20
    studies = asg_cxr.summarise(results)
    assert studies == asg_cxr.summarise(digests)
    assert sum(s["images"] for s in studies) == 4
    uids = [s["study_instance_uid"] for s in studies]
    assert uids == sorted(uids)


def test_read_dicom_equals_pydicom(phantoms):
    pydicom = pytest.importorskip("pydicom")
    for dcm in dicoms(phantoms):
        pixels, meta = asg_cxr.read_dicom(dcm.read_bytes(), name=str(dcm))
        ds = pydicom.dcmread(dcm)
        expected = ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1)) + float(
            getattr(ds, "RescaleIntercept", 0)
        )
        assert pixels.dtype == np.float32
        assert pixels.shape == (ds.Rows, ds.Columns) == (meta["rows"], meta["columns"])
        np.testing.assert_allclose(pixels, expected, rtol=1e-6, atol=1e-3)
        assert meta["sop_instance_uid"] == ds.SOPInstanceUID
        assert "patient_name" not in meta and "patient_id" not in meta
        shown, _ = asg_cxr.read_dicom(dcm.read_bytes(), display=True)
        assert shown.shape == pixels.shape and 0 <= shown.min() and shown.max() <= 1


def test_the_gil_is_released_while_analysing(phantoms, model):
    """While one thread analyses, another keeps running Python: if the call held the GIL the
    main loop below would record nothing between the call's start and end."""
    data = dicoms(phantoms)[0].read_bytes()
    span = {}

    def work():
        span["start"] = time.perf_counter()
        model.analyze(data)
        span["end"] = time.perf_counter()

    ticks = []
    t = threading.Thread(target=work)
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
    t.join()
    inside = [x for x in ticks if span["start"] < x < span["end"]]
    assert len(inside) > 100, f"{len(inside)} ticks of the main thread during the analysis"


def test_one_model_serves_several_threads(phantoms, model):
    files = dicoms(phantoms)
    serial = [without_timings(model.analyze_file(f)) for f in files]
    results = [None] * len(files)

    def work(i):
        results[i] = without_timings(model.analyze_file(files[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial


def test_an_mr_image_is_refused_and_a_lateral_view_says_nothing(phantoms, model, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    dcm = dicoms(phantoms)[0]
    ds = pydicom.dcmread(dcm)
    ds.Modality = "MR"
    mr = tmp_path / "mr.dcm"
    ds.save_as(mr)
    with pytest.raises(asg_cxr.NotARadiographError, match="modality MR is not a projection radiograph") as e:
        model.analyze(mr.read_bytes(), name="mr.dcm")
    assert (e.value.source, e.value.modality) == ("mr.dcm", "MR")
    assert isinstance(e.value, asg_cxr.AsgError)
    ds = pydicom.dcmread(dcm)
    ds.ViewPosition = "LL"
    lateral = tmp_path / "lateral.dcm"
    ds.save_as(lateral)
    a = model.analyze(lateral.read_bytes(), name="lateral.dcm")
    assert not any(f["present"] or f["assessed"] for f in a["findings"])
    assert a["regions"] == []
    assert any("is not frontal" in w for w in a["warnings"])


def test_a_hand_film_is_refused_as_not_a_chest(phantoms, model, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(dicoms(phantoms)[0])
    ds.BodyPartExamined = "HAND"
    hand = tmp_path / "hand.dcm"
    ds.save_as(hand)
    with pytest.raises(asg_cxr.NotAChestError, match="body part examined HAND is not the chest") as e:
        model.analyze(hand.read_bytes(), name="hand.dcm")
    assert (e.value.source, e.value.body_part) == ("hand.dcm", "HAND")
    # An archive's loop that skips other modalities skips it too.
    assert isinstance(e.value, asg_cxr.NotARadiographError)

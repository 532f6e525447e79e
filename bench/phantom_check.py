"""Independent check of a phantom set written by `asg-train synth`: pydicom (with its own
decoders) opens every DICOM file and decodes its pixels, every JSON file parses, the scene graph
has the 29 Chest ImaGenome regions with boxes inside the image, and the image size in the DICOM
matches the truth. Prints one line per problem and a summary; exits 1 on any problem.

Usage: python bench/phantom_check.py SET_DIR
"""
import json
import pathlib
import sys

import numpy as np
import pydicom


def main(root: pathlib.Path) -> int:
    problems = []
    dicoms = sorted(root.glob("files/**/*.dcm"))
    graphs = {p.name[: -len("_SceneGraph.json")]: p for p in root.glob("silver_dataset/scene_graph/*_SceneGraph.json")}
    truths = {p.stem: p for p in root.glob("truth/*.json")}
    if not dicoms:
        problems.append(f"{root}: no DICOM files")
    syntaxes, photometric, bits = {}, {}, {}
    for path in dicoms:
        image_id = path.stem
        try:
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
        except Exception as e:  # noqa: BLE001 - report any failure of the reader
            problems.append(f"{path}: pydicom cannot read it: {e}")
            continue
        ts = str(ds.file_meta.TransferSyntaxUID)
        syntaxes[ts] = syntaxes.get(ts, 0) + 1
        photometric[ds.PhotometricInterpretation] = photometric.get(ds.PhotometricInterpretation, 0) + 1
        bits[int(ds.BitsStored)] = bits.get(int(ds.BitsStored), 0) + 1
        if arr.max() >= 2 ** int(ds.BitsStored):
            problems.append(f"{path}: value {arr.max()} exceeds {ds.BitsStored} bits")
        if image_id not in graphs or image_id not in truths:
            problems.append(f"{path}: no scene graph or truth for {image_id}")
            continue
        graph = json.loads(graphs[image_id].read_text())
        truth = json.loads(truths[image_id].read_text())
        rows, cols = arr.shape
        if (truth["width"], truth["height"]) != (cols, rows):
            problems.append(f"{path}: {cols}x{rows} but truth says {truth['width']}x{truth['height']}")
        names = [o["bbox_name"] for o in graph["objects"]]
        if len(names) != 29 or len(set(names)) != 29:
            problems.append(f"{graphs[image_id]}: {len(set(names))} distinct regions, want 29")
        for o in graph["objects"]:
            x1, y1, x2, y2 = (o[k] for k in ("original_x1", "original_y1", "original_x2", "original_y2"))
            if not (0 <= x1 < x2 <= cols and 0 <= y1 < y2 <= rows):
                problems.append(f"{graphs[image_id]}: {o['bbox_name']} box {x1},{y1},{x2},{y2} outside {cols}x{rows}")
        for a in graph["attributes"]:
            for group in a["attributes"]:
                for label in group:
                    if len(label.split("|")) != 3 or label.split("|")[1] not in ("yes", "no"):
                        problems.append(f"{graphs[image_id]}: attribute {label!r} is not category|yes/no|label")
    for p in root.glob("*.json"):
        json.loads(p.read_text())
    for line in problems:
        print(line)
    print(
        f"phantom check: {len(dicoms)} DICOM files read by pydicom {pydicom.__version__}, "
        f"{len(graphs)} scene graphs, {len(truths)} truth files; transfer syntaxes {syntaxes}; "
        f"photometric {photometric}; bits stored {dict(sorted(bits.items()))}; {len(problems)} problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1])))

"""Type stubs of asg_cxr (the Rust extension module): chest X-ray analysis that knows anatomy."""

import os
from typing import Any, Literal, Optional, Union

import numpy as np
import numpy.typing as npt

__version__: str
ANALYSIS_SCHEMA_VERSION: int
MAX_FILE_BYTES: int
"""The largest file `Model.analyze_file` reads (checked before reading)."""

_Path = Union[str, "os.PathLike[str]"]
# The JSON layouts are documented in docs/analysis.schema.json (analysis) and docs/results.md.
Analysis = dict[str, Any]
ReportCheck = dict[str, Any]

class AsgError(Exception):
    """Base class of the errors asg_cxr raises (files that cannot be read raise OSError)."""

class DicomError(AsgError):
    """A DICOM file or PNG/JPEG picture that cannot be read or decoded."""

    source: str
    """The file path or name of the byte source."""
    kind: Literal[
        "not_dicom",
        "missing_element",
        "invalid_element",
        "too_large",
        "not_an_image",
        "unsupported_transfer_syntax",
        "unsupported_photometric",
        "decode",
        "invalid_image",
    ]
    """Why it failed."""

class BundleError(AsgError):
    """A model bundle that cannot be loaded (missing or altered file, mismatched manifest)."""

class AnalysisError(AsgError):
    """An analysis dict that is not one asg_cxr made."""

class NotARadiographError(AsgError):
    """An image of a modality the model does not read (CT, MR, ultrasound...: anything but CR,
    DX, DR, RG, OT or none recorded); an archive's other series are skipped on it."""

    source: str
    """The file or name the image came from."""
    modality: str
    """Its Modality (0008,0060)."""

class NotAChestError(NotARadiographError):
    """A radiograph whose Body Part Examined (0018,0015) is not the chest (HAND, KNEE,
    ABDOMEN...); skipped in an archive as other modalities are."""

    source: str
    """The file or name the image came from."""
    body_part: str
    """Its Body Part Examined, as recorded."""

class Model:
    """A model bundle loaded once, to analyse many images; thread-safe (analyses release the GIL).

    >>> model = Model()                       # the embedded default bundle
    >>> result = model.analyze_file("study.dcm")
    >>> [f["name"] for f in result["findings"] if f["present"]]
    """

    def __init__(
        self,
        bundle: Optional[_Path] = None,
        *,
        threshold: Optional[float] = None,
        max_pixels: Optional[int] = None,
    ) -> None:
        """None for the embedded default bundle, a bundle folder, or one tar file of it.

        `threshold` replaces every per-finding threshold; `max_pixels` caps
        Rows x Columns x Frames before decoding. Raises BundleError, OSError, ValueError.
        """
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def source(self) -> str:
        """The bundle's path, or "embedded default bundle"."""
    @property
    def findings(self) -> list[str]:
        """The findings the network scores, in output order."""
    @property
    def assessed(self) -> list[str]:
        """The findings it was trained to assess (the others are never present)."""
    @property
    def thresholds(self) -> dict[str, float]:
        """Image-level probability thresholds by finding."""
    def analyze(
        self,
        data: bytes,
        name: Optional[str] = None,
        *,
        report: Optional[str] = None,
        raw_outputs: bool = False,
    ) -> Analysis:
        """Analyses a DICOM file (or PNG/JPEG picture) held in memory: the dict `asg analyze` writes.

        `name` names the input in errors and becomes "file"; with `report` (its text) the dict
        has "report_file" ("report") and "report_check". `raw_outputs` adds "outputs" (the
        model's raw outputs, ~150 KB of numbers; `check_report` needs them), as
        `asg analyze --raw-outputs`. Raises DicomError, BundleError.
        """
    def analyze_file(
        self,
        path: _Path,
        *,
        report: Optional[str] = None,
        report_file: Optional[_Path] = None,
        raw_outputs: bool = False,
    ) -> Analysis:
        """Reads (size checked first) and analyses one file, as `asg analyze FILE` does.

        >>> model.analyze_file("study.dcm", report_file="study.txt")["report_check"]["counts"]
        """
    def check_report(self, analysis: Analysis, text: str) -> ReportCheck:
        """Checks a report's text against an analysis this model made.

        Returns each sentence's verdict with its evidence, the omissions and the counts.
        Raises AnalysisError for a dict this model did not make, or one made without
        `raw_outputs=True`.
        """

def parse_report(text: str) -> dict[str, Any]:
    """Sentences with byte spans, sections and (finding, existence, region) triplets.

    >>> parse_report("No pneumothorax.")["sentences"][0]["triplets"][0]["finding"]
    'pneumothorax'
    """

def report_labels(
    text: str, scheme: Literal["chexpert", "chestxray14"] = "chexpert"
) -> dict[str, Any]:
    """A report's labels in the CheXpert labeler's or NegBio's conventions."""

def read_dicom(
    data: bytes,
    name: Optional[str] = None,
    *,
    display: bool = False,
    max_pixels: Optional[int] = None,
) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """The first frame as float32 (rows, columns) and the metadata (no patient identity).

    Modality values (rescale or Modality LUT applied, colour to grey), or with display=True
    the displayed image in 0..1, white = dense.

    >>> pixels, meta = read_dicom(open("study.dcm", "rb").read())
    >>> pixels.shape == (meta["rows"], meta["columns"])
    True
    """

def summarise(results: list[Analysis]) -> list[dict[str, Any]]:
    """Groups analyses (or their digests), in input order, by study.

    As summary.json's "studies" in `asg analyze --json DIR`.
    """

def digest(result: Analysis) -> dict[str, Any]:
    """What `summarise` needs of a result (a few hundred bytes), for workers far from the driver."""

def find_files(inputs: list[_Path], *, pictures: bool = False) -> list[str]:
    """The files `asg analyze INPUT...` takes, in its order (folders walked, DICOMDIRs expanded)."""

def output_names(files: list[_Path]) -> list[str]:
    """The names `asg analyze --json DIR` gives results in order: <stem>.json, <stem>-2.json..."""

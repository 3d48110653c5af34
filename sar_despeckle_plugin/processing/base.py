"""What every SAR Despeckle algorithm shares: parameter helpers, feedback, error translation.

Algorithms import ``core`` modules that need torch only inside ``processAlgorithm``, within
``with torch_required():``, so a QGIS without torch still lists the provider and the user gets
a clear message naming the install command when an algorithm runs.
"""

from __future__ import annotations

import contextlib
import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingOutputFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from ..core.choices import BAND_LAYOUT_LABELS, DEVICES
from ..core.errors import SarDespeckleError
from ..core.speckle import UNITS
from . import resources
from .messages import labelled

TORCH_MISSING = (
    "PyTorch is not installed in the Python that QGIS runs. Install it, then restart QGIS. "
    "Debian, Ubuntu: `python3 -m pip install --user --break-system-packages torch --index-url "
    "https://download.pytorch.org/whl/cpu` (the system pip refuses without the flag; drop the "
    "index for the CUDA build). Windows (OSGeo4W or standalone installer): in the OSGeo4W Shell "
    "from the QGIS Start-menu folder, `python -m pip install torch`. macOS: "
    "`/Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install --user torch`. The "
    "plugin's help page (the Help button of this dialog) has the details."
)


@contextlib.contextmanager
def torch_required():
    """Wrap the imports of ``core`` modules that need torch: a missing torch becomes a
    QgsProcessingException with :data:`TORCH_MISSING`, e.g.
    ``with torch_required(): from ..core.despeckle.pipeline import despeckle_raster``."""
    try:
        yield
    except ModuleNotFoundError as error:
        if error.name == "torch":
            raise QgsProcessingException(TORCH_MISSING) from None
        raise


def is_given(parameters: dict, name: str) -> bool:
    """Whether an optional parameter was given: neither missing, None nor left empty ("")."""
    return parameters.get(name) not in (None, "")


def with_help(parameter: QgsProcessingParameterDefinition, text: str, advanced: bool = False):
    """Attach help ``text`` to ``parameter`` (and mark it advanced) and return it."""
    parameter.setHelp(text)
    if advanced:
        parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


#: Toolbox groups of the provider (id: name), named to read well beside QGIS's own groups.
GROUPS = {
    "speckle_filtering": "Speckle filtering",
    "complex_slc": "Complex (SLC) data",
    "change_detection": "Change detection",
    "example_workflows": "Example workflows",
}
#: Words the Toolbox search finds every algorithm by, beside its name and short description.
COMMON_TAGS = ("sar", "radar", "synthetic aperture radar", "speckle", "sentinel-1", "sentinel",
               "backscatter", "sigma0", "gamma0", "microwave", "remote sensing")


def first_sentence(text: str) -> str:
    """``text`` up to the end of its first sentence (a period followed by a space)."""
    head, _, _ = text.partition(". ")
    return head.rstrip(".") + "."


class SarAlgorithm(QgsProcessingAlgorithm):
    """Base class: Toolbox entry (group, icon, tags, short description, help link), help
    assembled from parameter help, and core-call plumbing."""

    #: Key of :data:`GROUPS` the algorithm is listed in.
    group_key = "speckle_filtering"
    #: The algorithm's own search words, after :data:`COMMON_TAGS`.
    search_tags: tuple[str, ...] = ()

    def group(self) -> str:
        return GROUPS[self.group_key]

    def groupId(self) -> str:
        return self.group_key

    def tags(self) -> list[str]:
        return [*COMMON_TAGS, *self.search_tags]

    def shortDescription(self) -> str:
        """The Toolbox tooltip (and search text): the summary's first sentence."""
        return first_sentence(self.summary())

    def icon(self):
        return resources.icon()

    def svgIconPath(self) -> str:
        return resources.ICON_PATH

    def helpUrl(self) -> str:
        """The plugin's own help page, at this algorithm's section."""
        return resources.help_url(self.name())

    def createInstance(self):
        return type(self)()

    def summary(self) -> str:
        """The help's first paragraph, for a newcomer: what the algorithm does and what to
        choose; subclasses override."""
        raise NotImplementedError

    def details(self) -> str:
        """The help's second paragraph, for experts (methods, references, edge cases)."""
        return ""

    def shortHelpString(self) -> str:
        items = "".join(
            f"<li><b>{p.description()}</b> (<code>{p.name()}</code>): {p.help()}</li>"
            for p in self.parameterDefinitions()
        )
        details = f"<p>{self.details()}</p>" if self.details() else ""
        return f"<p>{self.summary()}</p>{details}<ul>{items}</ul>"

    def checkParameterValues(self, parameters, context):
        """Our checks (:meth:`parameter_problem`, numbers out of range), then QGIS's; every
        message names parameters by their labels, ids after them (QGIS itself only says
        "Incorrect parameter value for WINDOW")."""
        problem = self.parameter_problem(parameters, context) or self.out_of_range_number(parameters)
        if problem:
            return False, self.labelled(problem)
        ok, message = super().checkParameterValues(parameters, context)
        return ok, self.labelled(message)

    def parameter_problem(self, parameters, context) -> str | None:
        """The algorithm's own check of the parameters: a message naming them by id, or None."""
        return None

    def labelled(self, message: str) -> str:
        """``message`` with this algorithm's parameter ids written 'Label (ID)'."""
        return labelled(message, self.parameterDefinitions())

    def odd_window_problem(self, parameters, context, name: str = "WINDOW") -> str | None:
        """A message when the window parameter ``name`` is even."""
        window = self.parameterAsInt(parameters, name, context)
        return f"{name} must be odd; got {window}. Try {window + 1}." if window % 2 == 0 else None

    def input_paths_problem(self, parameters, name: str = "INPUTS") -> str | None:
        """A message for the first path given in the multiple-raster parameter ``name`` that
        cannot be an input raster."""
        raw = parameters.get(name)
        for value in raw if isinstance(raw, (list, tuple)) else ([raw] if raw else []):
            problem = self.input_path_problem(value) if isinstance(value, str) else None
            if problem:
                return problem
        return None

    def dates_problem(self, parameters, context, needs: str, hint: str = "") -> str | None:
        """The first checks of every algorithm on a stack of dates: INPUTS' paths, at least two
        dates (``needs``: what the message says needs them, e.g. "Change detection needs";
        ``hint``: added to its advice) and an odd WINDOW."""
        problem = self.input_paths_problem(parameters)
        if problem:
            return problem
        count = len(self.parameterAsLayerList(parameters, "INPUTS", context))
        if count < 2:
            return (f"{needs} at least two dates in INPUTS; got {count}. Give the co-registered acquisitions "
                    f"in date order{hint}.")
        return self.odd_window_problem(parameters, context)

    def out_of_range_number(self, parameters) -> str | None:
        """A user-facing message for the first number parameter given outside its range."""
        for parameter in self.parameterDefinitions():
            if not isinstance(parameter, QgsProcessingParameterNumber):
                continue
            try:
                value = float(parameters.get(parameter.name()))
            except (TypeError, ValueError):
                continue
            low, high = parameter.minimum(), parameter.maximum()
            if low <= value <= high:
                continue
            if high >= 1e300:
                bounds = f"at least {low:g}"
            elif low <= -1e300:
                bounds = f"at most {high:g}"
            else:
                bounds = f"between {low:g} and {high:g}"
            return f"{parameter.name()} must be {bounds}; {value:g} was given."
        return None

    # parameter helpers -------------------------------------------------------------------

    def add_dates_parameters(self, inputs_note: str, layout_help: str, units_help: str) -> None:
        """INPUTS, BAND_LAYOUT and INPUT_UNITS as every algorithm on a stack of dates declares
        them; ``inputs_note`` ends the INPUTS help, and the other two helps say what the
        algorithm does with the layout and the units."""
        self.addParameter(with_help(
            QgsProcessingParameterMultipleLayers("INPUTS", "Co-registered SAR dates (in date order)",
                                                 QgsProcessing.TypeRaster),
            "Two or more rasters of the same area on the same grid (size, CRS, geotransform), "
            "oldest first, each with the bands BAND_LAYOUT describes: calibrated sigma0/gamma0 "
            "(intensity, amplitude or dB) or C2 covariance products, e.g. from SNAP." + inputs_note,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterEnum(
                "BAND_LAYOUT", "Band layout of each date", options=list(BAND_LAYOUT_LABELS.values()),
                defaultValue=0,
            ),
            layout_help,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterEnum("INPUT_UNITS", "Input units", options=list(UNITS), optional=True,
                                       defaultValue=None),
            units_help,
        ))

    def add_units_parameter(self) -> None:
        self.addParameter(with_help(
            QgsProcessingParameterEnum(
                "INPUT_UNITS", "Input units", options=list(UNITS), optional=True, defaultValue=None
            ),
            "What the pixel values are: intensity (power, e.g. sigma0), amplitude (its square "
            "root) or dB (10 log10 intensity). Left empty, detected from the band description, "
            "the values (dB: many negatives spread symmetrically; a few small negatives in "
            "linear data are the noise floor, read as 0) and the storage type (integer bands "
            "are taken as amplitude DN); intensity is assumed when it cannot be told. The log "
            "says which units were chosen and why. The output is written in the same units.",
        ))

    def add_looks_parameter(self) -> None:
        self.addParameter(with_help(
            QgsProcessingParameterNumber(
                "LOOKS", "Number of looks (ENL)", QgsProcessingParameterNumber.Double,
                optional=True, minValue=0.1,
            ),
            "Equivalent number of looks of the input intensity (1 for single-look data, about "
            "4.4 for Sentinel-1 IW GRDH). Left empty, estimated from the image as the mode of "
            "local coefficients of variation, which heterogeneous areas do not bias.",
        ))

    def add_quality_outputs(self, ratio_label: str, ratio_help: str, report_help: str) -> None:
        """The optional RATIO raster and REPORT page of a despeckling run, and the REPORT_JSON
        output naming the report's JSON twin."""
        self.addParameter(with_help(
            QgsProcessingParameterRasterDestination("RATIO", ratio_label, optional=True, createByDefault=False),
            ratio_help,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterFileDestination(
                "REPORT", "Quality report (HTML)", fileFilter="HTML files (*.html)", optional=True,
                createByDefault=False,
            ),
            report_help,
        ))
        self.addOutput(QgsProcessingOutputFile("REPORT_JSON", "Quality report (JSON twin)"))

    def quality_paths(self, parameters, context) -> tuple[str | None, str | None]:
        """(RATIO, REPORT) destinations of the run; None where not asked for."""
        return (self.parameterAsOutputLayer(parameters, "RATIO", context) or None,
                self.parameterAsFileOutput(parameters, "REPORT", context) or None)

    @staticmethod
    def quality_results(ratio: str | None, report: str | None) -> dict:
        """The RATIO, REPORT and REPORT_JSON entries of an algorithm's results."""
        results = {"RATIO": ratio} if ratio else {}
        if report:
            results.update(REPORT=report, REPORT_JSON=os.path.splitext(report)[0] + ".json")
        return results

    def add_device_parameter(self) -> None:
        self.addParameter(with_help(
            QgsProcessingParameterEnum("DEVICE", "Device", options=list(DEVICES), defaultValue=0),
            "Where the computation runs: auto takes a CUDA GPU when PyTorch sees one, else the "
            "CPU; cuda without a GPU falls back to the CPU with a warning. Networks run in reduced "
            "precision where it stays within 0.05 dB RMS of float32 (float16 on a GPU, bfloat16 on "
            "CPUs that compute it natively: about twice as fast); the log says which. The "
            "environment variable SAR_DESPECKLE_FLOAT32=1 keeps float32.",
            advanced=True,
        ))

    def parameter_values(self, parameters, context, specs) -> dict:
        """The value of each non-input, non-destination parameter of ``specs`` (a family's
        ``core.<family>.parameters.PARAMETERS``), read as ``core.parameters`` describes for its
        kind: what the family's ``settings_from_parameters`` takes. An enum, integer or number
        without a default that is left empty is None."""
        readers = {
            "enum": self.parameterAsEnum,
            "boolean": self.parameterAsBoolean,
            "integer": self.parameterAsInt,
            "number": self.parameterAsDouble,
            "string": self.parameterAsString,
            "file": self.parameterAsFile,
            "bands": lambda *args: tuple(self.parameterAsInts(*args)),
        }
        values = {}
        for spec in specs:
            if spec.kind not in readers:
                continue
            empty = spec.default is None and not is_given(parameters, spec.name)
            values[spec.name] = None if empty else readers[spec.kind](parameters, spec.name, context)
        return values

    # running the core ----------------------------------------------------------------------

    def core_feedback(self, feedback):
        """A core Feedback that reports to a QgsProcessingFeedback (progress in percent,
        messages with parameter labels)."""
        from ..core.feedback import Feedback

        return Feedback(
            progress=lambda fraction: feedback.setProgress(100.0 * fraction),
            is_cancelled=feedback.isCanceled,
            info=lambda message: feedback.pushInfo(self.labelled(message)),
            warn=lambda message: feedback.pushWarning(self.labelled(message)),
        )

    def run_core(self, function, *args, **kwargs):
        """Call a core function; its user-facing errors become QgsProcessingException (with
        parameter labels)."""
        try:
            return function(*args, **kwargs)
        except SarDespeckleError as error:
            raise QgsProcessingException(self.labelled(str(error))) from None
        except MemoryError:
            raise QgsProcessingException(
                "Ran out of memory: choose a smaller tile size or close other programs."
            ) from None

    @staticmethod
    def input_path_problem(path: str) -> str | None:
        """A user-facing message when ``path`` cannot be an input raster, else None."""
        if path and not os.path.exists(path) and "|" not in path and not path.startswith("/vsi"):
            return f"Input raster '{path}' does not exist: check the path."
        try:
            from ..core.raster import raster_info

            raster_info(path)
        except SarDespeckleError as error:
            return str(error)
        return None

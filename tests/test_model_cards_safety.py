"""A damaged model card never takes QGIS down: it is refused in one line by the card reader,
left out of listings with one warning, and two cards of the same name stay distinct in METHOD."""

import json
import os
import re
import subprocess
import sys
import sysconfig

import pytest

from sar_despeckle_plugin.core.choices import SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.card import MAX_CARD_BYTES, list_model_cards, read_card, read_model_cards
from sar_despeckle_plugin.core.user_models import default_models_folder, ensure_models_folder, qgis_settings_folder

from .conftest import ROOT
from .synthetic import piecewise_scene, speckle, write_geotiff

SHIPPED_CARD = os.path.join(SHIPPED_WEIGHTS, "sarcnn_default.json")
LOOKS_ERROR = "field 'looks' must be a number > 0; got 'one' (str)"


def write_card(folder, file_name, **changes):
    """A copy of the shipped despeckling card (without weights: listing and reading a card never
    open them) with ``changes``, None removing a field; returns its path."""
    with open(SHIPPED_CARD) as handle:
        record = json.load(handle)
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(str(folder), file_name)
    with open(path, "w") as handle:
        json.dump(record, handle)
    return path


# the card reader ---------------------------------------------------------------------------

FIELD_ERRORS = [
    ("name", 3, "field 'name' must be a non-empty one-line text"),
    ("name", "", "field 'name' must be a non-empty one-line text"),
    ("name", "two\nlines", "field 'name' must be a non-empty one-line text"),
    ("architecture", ["log_residual"], "field 'architecture' must be a non-empty one-line text"),
    ("hyperparameters", [24, 48], "field 'hyperparameters' must be an object (JSON {...}); got [24, 48] (list)"),
    ("hyperparameters", {"widths": ["a", "b"]}, "field 'hyperparameters' must be an object of numbers, texts "
                                                "or lists of numbers ('widths' is [\"a\", \"b\"] (list))"),
    ("hyperparameters", {"widths": {"x": 1}}, "('widths' is {\"x\": 1} (dict))"),
    ("input_kind", None, "missing field(s) input_kind"),
    ("input_kind", 1, "field 'input_kind' must be a non-empty one-line text"),
    ("looks", "one", LOOKS_ERROR),
    ("looks", 0, "field 'looks' must be a number > 0; got 0 (int)"),
    ("looks", -4.4, "field 'looks' must be a number > 0; got -4.4 (float)"),
    ("looks", True, "field 'looks' must be a number > 0; got true (bool)"),
    ("looks", [1], "field 'looks' must be a number > 0; got [1] (list)"),
    ("normalisation", "log", "field 'normalisation' must be an object (JSON {...}); got 'log' (str)"),
    ("receptive_radius", 2.5, "field 'receptive_radius' must be an integer >= 0; got 2.5 (float)"),
    ("receptive_radius", -1, "field 'receptive_radius' must be an integer >= 0; got -1 (int)"),
    ("receptive_radius", "51", "field 'receptive_radius' must be an integer >= 0; got '51' (str)"),
    ("sha256", "abc", "field 'sha256' must be 64 hexadecimal digits; got 'abc' (str)"),
    ("sha256", "z" * 64, "field 'sha256' must be 64 hexadecimal digits"),
    ("sha256", 12, "field 'sha256' must be 64 hexadecimal digits; got 12 (int)"),
    ("weights_file", "../net.pt", "field 'weights_file' must be a plain file name in the card's folder"),
    ("weights_file", 5, "field 'weights_file' must be a plain file name"),
    ("training", [], "field 'training' must be an object (JSON {...}); got [] (list)"),
    ("metrics", "good", "field 'metrics' must be an object (JSON {...}); got 'good' (str)"),
    ("macs_per_pixel", "many", "field 'macs_per_pixel' must be an integer >= 0; got 'many' (str)"),
    ("parameters", -3, "field 'parameters' must be an integer >= 0; got -3 (int)"),
    ("description", {"en": "x"}, "field 'description' must be a text; got {\"en\": \"x\"} (dict)"),
    ("format_version", "1", "field 'format_version' must be an integer >= 1; got '1' (str)"),
    ("format_version", 99, "has card format version 99; this plugin reads up to 1. Update the plugin."),
]


@pytest.mark.parametrize("field, value, expected", FIELD_ERRORS, ids=lambda v: repr(v)[:20])
def test_each_field_type_error_is_one_line_naming_file_and_field(tmp_path, field, value, expected):
    path = write_card(tmp_path, "card.json", **{field: value})
    with pytest.raises(SarDespeckleError) as raised:
        read_card(path)
    message = str(raised.value)
    assert message.startswith(f"Model card '{path}'") and expected in message, message
    assert "\n" not in message


def test_good_cards_read_with_numbers_normalised(tmp_path):
    sha256 = read_card(SHIPPED_CARD).sha256
    card = read_card(write_card(tmp_path, "card.json", looks=4, receptive_radius=51.0, sha256=sha256.upper()))
    assert card.looks == 4.0 and isinstance(card.looks, float)
    assert card.receptive_radius == 51 and isinstance(card.receptive_radius, int)
    assert card.sha256 == sha256
    for name in ("sarcnn_default", "change_default"):
        assert read_card(os.path.join(SHIPPED_WEIGHTS, f"{name}.json")).name == name


@pytest.mark.parametrize("content, expected", [
    (b"{ nope", "is not valid JSON"),
    (b'{"format": "sar_despeckle_model_card", "looks": 1' + b"0" * 5000 + b"}", "is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON"),
    (b"[1, 2]", "is not a SAR Despeckle model card"),
    (b'"card"', "is not a SAR Despeckle model card"),
    (b'{"hello": 1}', "is not a SAR Despeckle model card"),
    (b'{"format": "sar_despeckle_model_card", "format_version": 1, "name": "x"}', "is damaged: missing field(s) "
                                                                                  "architecture, hyperparameters"),
    (b"\xff\xfe\x00garbage", "Cannot read model card"),
    (b" " * (MAX_CARD_BYTES + 1), "a model card is a few kB"),
])
def test_unusable_files_are_refused_in_one_line(tmp_path, content, expected):
    path = tmp_path / "card.json"
    path.write_bytes(content)
    with pytest.raises(SarDespeckleError) as raised:
        read_card(str(path))
    assert expected in str(raised.value) and "\n" not in str(raised.value), str(raised.value)


def test_missing_or_unreadable_path_is_refused_in_one_line(tmp_path):
    with pytest.raises(SarDespeckleError, match=r"^Cannot read model card '.*absent.json': No such file"):
        read_card(str(tmp_path / "absent.json"))
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(SarDespeckleError, match="Cannot read model card .*: Is a directory"):
        read_card(str(tmp_path / "folder.json"))


def test_listing_never_raises_and_warns_once_per_damaged_card(tmp_path):
    good = write_card(tmp_path, "good.json")
    write_card(tmp_path, "bad_looks.json", looks="one")
    write_card(tmp_path, "bad_sha.json", sha256="abc")
    (tmp_path / "truncated.json").write_text('{"format": "sar_despeckle_model_card", "na')
    (tmp_path / "notes.json").write_text('{"hello": 1}')  # not a card: skipped quietly
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "folder.json").mkdir()
    change = write_card(tmp_path, "change.json", input_kind="dual_pol_pair")
    warnings = []
    assert list_model_cards(str(tmp_path), "intensity", warn=warnings.append) == [good]
    assert [path for path, _ in read_model_cards(str(tmp_path), "dual_pol_pair", warn=lambda m: None)] == [change]
    assert len(warnings) == 3, warnings
    assert f"Skipped: Model card '{tmp_path / 'bad_looks.json'}': {LOOKS_ERROR}" in warnings[0]
    assert "bad_sha.json': field 'sha256'" in warnings[1]
    assert "truncated.json' is not valid JSON" in warnings[2]
    assert list_model_cards(str(tmp_path / "absent"), warn=warnings.append) == [] and len(warnings) == 3


def test_default_models_folder_is_created_or_its_absence_explained(tmp_path):
    folder = default_models_folder(qgis_settings_folder(environ={"QGIS_CUSTOM_CONFIG_PATH": str(tmp_path)}))
    assert ensure_models_folder(folder) is None and os.path.isdir(folder)
    assert ensure_models_folder(folder) is None
    (tmp_path / "file").write_text("")
    problem = ensure_models_folder(str(tmp_path / "file" / "models"))
    assert problem.startswith("Cannot create the user models folder") and "Not a directory" in problem


# through QGIS -------------------------------------------------------------------------------

@pytest.fixture
def speckled_tif(tmp_path):
    return write_geotiff(str(tmp_path / "speckled.tif"), speckle(piecewise_scene(60, 70), 1, seed=3))


def test_qgis_process_survives_a_damaged_card_in_the_user_models_folder(qgis_process, speckled_tif, tmp_path):
    settings = qgis_settings_folder(environ={"QGIS_CUSTOM_CONFIG_PATH": qgis_process.profile})
    folder = default_models_folder(settings)
    qgis_process("list")
    assert os.path.isdir(folder), "the provider creates the default user models folder"
    added = [write_card(folder, "bad.json", looks="one", name="bad"),
             write_card(folder, "mynet_v1.json", name="mynet"), write_card(folder, "mynet_v2.json", name="mynet")]
    try:
        done = qgis_process("list", check=False)
        assert done.returncode == 0, done.stderr
        for algorithm in ("despeckle", "decorrelate", "change_detection"):
            assert f"sar_despeckle:{algorithm}" in done.stdout
        assert "native:buffer" in done.stdout
        warnings = [line for line in done.stderr.splitlines() if "bad.json" in line]
        assert warnings == [f"Warning (SAR Despeckle): Skipped: Model card '{added[0]}': {LOOKS_ERROR}. "
                            "Fix the card or re-export the model."], done.stderr

        done = qgis_process("help", "sar_despeckle:despeckle", check=False)
        assert done.returncode == 0, done.stderr
        assert "= mynet (user network, 1 look(s), mynet_v1.json);" in done.stdout
        assert "= mynet (user network, 1 look(s), mynet_v2.json)." in done.stdout
        assert "bad (user network" not in done.stdout

        model = write_card(tmp_path / "elsewhere", "bad_model.json", looks="one", name="bad")
        out = tmp_path / "out.tif"
        done = qgis_process("run", "sar_despeckle:despeckle", f"--INPUT={speckled_tif}", f"--MODEL={model}",
                            f"--OUTPUT={out}", check=False)
        text = done.stdout + done.stderr
        assert done.returncode != 0 and "Traceback" not in text, text
        assert [line.strip() for line in text.splitlines() if "bad_model.json" in line and "must be" in line] == [
            f"Model card '{model}': {LOOKS_ERROR}. Fix the card or re-export the model."], text
        assert not out.exists()
    finally:
        for path in added:
            os.remove(path)


def test_processing_lists_user_cards_safely_and_names_duplicates(qgis_processing, speckled_tif, tmp_path, capfd):
    from processing.core.ProcessingConfig import ProcessingConfig
    from qgis.core import QgsApplication, QgsProcessingException

    from sar_despeckle_plugin.processing.user_models import MODELS_FOLDER_SETTING

    folder = tmp_path / "models"
    bad = write_card(folder, "bad.json", looks="one", name="bad")
    write_card(folder, "mynet_v1.json", name="mynet")
    write_card(folder, "mynet_v2.json", name="mynet", looks=4)
    write_card(folder, "sarcnn_default.json")  # the shipped network's name, as a user network
    registry = QgsApplication.processingRegistry()
    ProcessingConfig.setSettingValue(MODELS_FOLDER_SETTING, str(folder))
    try:
        registry.providerById("sar_despeckle").refreshAlgorithms()
        for _ in range(3):
            algorithm = registry.createAlgorithmById("sar_despeckle:despeckle")
            options = algorithm.parameterDefinition("METHOD").options()
        assert options[7].startswith("Automatic: ")  # the default, before the networks
        assert options[8:] == [
            "sarcnn_default (network, 1 look(s), sarcnn_default.json)",
            "sarcnn_grdh (network, 2.83-10 looks, sentinel1_iw_grdh + 1 more speckle)",
            "sarcnn_looks (network, 1-16 looks)",
            "sarcnn_products (network, 1-15.8 looks, random_products speckle)",
            "sarcnn_slc (network, 1-2.78 looks, sentinel1_iw_slc + 3 more speckle)",
            "mynet (user network, 1 look(s), mynet_v1.json)",
            "mynet (user network, 4 look(s), mynet_v2.json)",
            "sarcnn_default (user network, 1 look(s), sarcnn_default.json)",
        ]
        assert capfd.readouterr().err.count(f"Model card '{bad}': {LOOKS_ERROR}") == 1  # once, not per instance

        out = str(tmp_path / "boxcar.tif")
        assert qgis_processing.run("sar_despeckle:despeckle", {"INPUT": speckled_tif, "METHOD": 0, "LOOKS": 1,
                                                               "OUTPUT": out})["OUTPUT"] == out
        with pytest.raises(QgsProcessingException, match=re.escape(f"Model card '{bad}': {LOOKS_ERROR}")):
            qgis_processing.run("sar_despeckle:despeckle", {"INPUT": speckled_tif, "MODEL": bad,
                                                             "OUTPUT": str(tmp_path / "o.tif")})
        with pytest.raises(QgsProcessingException, match=re.escape(f"Model card '{bad}': {LOOKS_ERROR}")):
            qgis_processing.run("sar_despeckle:change_detection", {
                "INPUTS": [speckled_tif, speckled_tif], "MODEL": bad, "CHANGE_MAP": str(tmp_path / "c.tif")})
        assert not (tmp_path / "o.tif").exists() and not (tmp_path / "c.tif").exists()
    finally:
        ProcessingConfig.setSettingValue(MODELS_FOLDER_SETTING, "")
        registry.providerById("sar_despeckle").refreshAlgorithms()


def test_models_folder_setting_accepts_the_default_even_when_missing(qgis_processing, tmp_path):
    from sar_despeckle_plugin.processing.user_models import default_models_folder, models_folder_setting

    setting = models_folder_setting("SAR Despeckle")
    setting.setValue("")
    setting.setValue(default_models_folder())
    setting.setValue(str(tmp_path))
    with pytest.raises(ValueError, match="does not exist: create it, or clear the field"):
        setting.setValue(str(tmp_path / "absent"))


ADD_PROVIDER_SCRIPT = """
import sys
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
sys.path.append("/usr/share/qgis/python/plugins")
import processing
from processing.core.Processing import Processing
Processing.initialize()
from sar_despeckle_plugin.processing.provider import SarDespeckleProvider
provider = SarDespeckleProvider()
print("added", QgsApplication.processingRegistry().addProvider(provider))
result = processing.run("sar_despeckle:despeckle", {"INPUT": sys.argv[1], "METHOD": 0, "LOOKS": 1,
                                                     "OUTPUT": sys.argv[2]})
print("output", result["OUTPUT"])
app.exitQgis()
"""


@pytest.mark.qgis
def test_pyqgis_add_provider_with_a_damaged_card_in_the_user_models_folder(speckled_tif, tmp_path):
    profile = tmp_path / "profile"
    folder = default_models_folder(qgis_settings_folder(environ={"QGIS_CUSTOM_CONFIG_PATH": str(profile)}))
    bad = write_card(folder, "bad.json", looks="one")
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(profile), QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=os.pathsep.join([sysconfig.get_paths()["purelib"], ROOT]))
    out = str(tmp_path / "boxcar.tif")
    done = subprocess.run([sys.executable, "-c", ADD_PROVIDER_SCRIPT, speckled_tif, out], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "added True" in done.stdout and f"output {out}" in done.stdout and os.path.exists(out)
    assert f"Model card '{bad}': {LOOKS_ERROR}" in done.stderr

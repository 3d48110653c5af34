"""The multi-task despeckling + change network after MTDN: its architecture
(core/models/multitask.py), the ``multitask`` training mode (training/multitask_data.py,
training/tasks.py) and METHOD multitask of despeckle_multitemporal."""

import os

import numpy as np
import pytest
import torch
from torch import nn

from sar_despeckle_plugin.core.choices import MULTITEMPORAL_METHOD_LABELS, SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.multitask import MultiTaskNet
from sar_despeckle_plugin.core.models.registry import build_model
from sar_despeckle_plugin.core.models.weights import load_model
from sar_despeckle_plugin.core.multitemporal.pipeline import despeckle_stack
from sar_despeckle_plugin.core.multitemporal.settings import MultitemporalSettings
from sar_despeckle_plugin.core.raster import raster_info
from training.cli import main
from training.tasks import make_task
from training.trainer import initialise_from, train

from .conftest import ROOT
from .synthetic import piecewise_scene, read_geotiff, write_geotiff
from .test_training import config
from .test_training import tiny as tiny_raw

TINY = os.path.join(ROOT, "training", "configs", "multitask_tiny.toml")
MULTITASK = list(MULTITEMPORAL_METHOD_LABELS).index("multitask")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**changes):
    """The tiny multitask config, with ``{"section.key": value}`` changes."""
    return config(tiny_raw(TINY, **changes))


@pytest.fixture(scope="module")
def tiny_card(tmp_path_factory, one_torch_thread):
    """A tiny multitask run, exported: (its task, the trained model, before/after validation, card path)."""
    folder = tmp_path_factory.mktemp("multitask")
    settings = tiny()
    task = make_task(settings)
    torch.manual_seed(settings.train.seed)
    before = task.validate(task.build_model(), torch.device("cpu"))
    model = train(settings, str(folder / "run"), log=lambda message: None)
    after = task.validate(model, torch.device("cpu"))
    assert main(["export", "--checkpoint", str(folder / "run" / "best.pt"), "--name", "tiny_multitask",
                 "--to", str(folder / "models")]) == 0
    return before, after, str(folder / "models" / "tiny_multitask.json")


def test_each_date_keeps_its_own_estimate_where_changed_and_the_joint_one_where_not():
    own = torch.stack([torch.full((1, 1, 4, 4), 1.0), torch.full((1, 1, 4, 4), 3.0)], 1)
    joint = torch.full((1, 1, 4, 4), 2.5)
    torch.testing.assert_close(MultiTaskNet.combine(own, joint, torch.ones(1, 1, 4, 4)), own)
    torch.testing.assert_close(MultiTaskNet.combine(own, joint, torch.full((1, 1, 4, 4), 0.5)), own)
    torch.testing.assert_close(MultiTaskNet.combine(own, joint, torch.full((1, 1, 4, 4), 0.25)), (own + joint) / 2)
    torch.testing.assert_close(MultiTaskNet.combine(own, joint, torch.zeros(1, 1, 4, 4)), torch.full_like(own, 2.5))


def test_the_joint_estimate_reads_both_dates_at_their_mean_s_looks():
    """Two dates of one flat scene at different calibrations: their mean, each relative to its
    own level, has twice the looks of one date; the joint estimate is that mean despeckled."""
    model = build_model("mtdn_multitask", widths=[8, 8], convs_per_level=1, change_width=8)
    seen = {}

    def record(z, looks=None):
        seen["z"], seen["looks"] = z, looks
        return z

    model.despeckler.forward = record
    rng = np.random.default_rng(3)
    first, second = (torch.from_numpy(rng.gamma(4.0, 0.25, (1, 1, 64, 64)).astype(np.float32)) for _ in range(2))
    model.joint_logs(first, 10 * second, torch.tensor([[[1.0], [10.0]]]), torch.tensor([[4.0, 4.0]]))
    assert seen["looks"].tolist() == [8.0]
    log_speckle = seen["z"] * model.log_scale  # debiased for 8 looks: mean 0, variance psi1(8) = 0.133 (4: 0.284)
    assert float(log_speckle.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(log_speckle.var()) == pytest.approx(0.1331, rel=0.1)


def test_the_despeckling_part_starts_from_a_single_date_card():
    model = build_model("mtdn_multitask")
    message = initialise_from(model, os.path.join(SHIPPED_WEIGHTS, "sarcnn_looks.json"))
    shipped = load_model(os.path.join(SHIPPED_WEIGHTS, "sarcnn_looks.json")).module.state_dict()
    assert message.startswith(f"initialised {len(shipped)} of")
    for key, value in model.despeckler.state_dict().items():
        torch.testing.assert_close(value, shipped[key])


class _Identity(nn.Module):
    """A despeckling branch that returns its input: each output pixel is its own input pixel."""

    def forward(self, z, looks=None):
        return z


class _FixedChange(nn.Module):
    """A change branch whose logits are ``inside`` in ``box`` and ``outside`` elsewhere."""

    def __init__(self, box, inside: float, outside: float = -20.0) -> None:
        super().__init__()
        self.box, self.inside, self.outside = box, inside, outside
        self.channels = 1

    def normalise(self, intensity, reference):
        return intensity

    def forward(self, first, second, context=None):
        logits = torch.full_like(first[:, :1], self.outside)
        logits[(...,) + self.box] = self.inside
        return logits


def test_noise2noise_loss_is_masked_where_the_change_branch_fires():
    """A change that no label marks, inside date 2 only: where the change branch fires, the
    loss does not see it (date 2 there may hold anything); where it stays quiet, it is learned as
    noise (the loss depends on it)."""
    task = make_task(tiny())
    rng = np.random.default_rng(0)
    first, second = (torch.from_numpy(rng.gamma(1.0, 1.0, (1, 1, 32, 32)).astype(np.float32)) for _ in range(2))
    box = (slice(8, 20), slice(10, 24))
    changed = second.clone()
    changed[(...,) + box] *= 8.0
    batch = {"first": first, "references": torch.ones(1, 2, 1), "looks": torch.ones(1, 2),
             "label": torch.zeros(1, 1, 32, 32), "noise2noise": torch.ones(1)}
    losses = {}
    for fires in (True, False):
        model = task.build_model()
        model.despeckler = _Identity()
        model.change = _FixedChange(box, 20.0 if fires else -20.0)
        losses[fires] = [float(task.loss(model, {**batch, "second": date})) for date in (second, changed)]
    assert losses[True][0] == pytest.approx(losses[True][1], rel=1e-6)
    assert losses[False][1] > losses[False][0] + 0.1


def test_the_known_label_masks_the_loss_too():
    task = make_task(tiny())
    model = task.build_model()
    model.despeckler = _Identity()
    model.change = _FixedChange((slice(0, 0), slice(0, 0)), 0.0)  # fires nowhere
    rng = np.random.default_rng(1)
    first, second = (torch.from_numpy(rng.gamma(1.0, 1.0, (1, 1, 32, 32)).astype(np.float32)) for _ in range(2))
    label = torch.zeros(1, 1, 32, 32)
    label[..., 4:28, 4:28] = 1
    batch = {"first": first, "references": torch.ones(1, 2, 1), "looks": torch.ones(1, 2), "label": label,
             "noise2noise": torch.ones(1)}
    changed = second.clone()
    changed[..., 4:28, 4:28] *= 8.0
    assert float(task.loss(model, {**batch, "second": second})) == pytest.approx(
        float(task.loss(model, {**batch, "second": changed})), rel=1e-6)


def test_tiny_run_learns_and_exports_a_date_pair_network(tiny_card):
    before, after, card_path = tiny_card
    assert after["loss"] < before["loss"]
    assert after["psnr"] > after["psnr_input"] + 1 and after["psnr"] > before["psnr"] + 1
    with pytest.raises(SarDespeckleError, match="needed here"):
        load_model(card_path, input_kind="intensity")  # not offered as a single-date despeckler
    loaded = load_model(card_path, input_kind="date_pair")
    assert loaded.card.architecture == "mtdn_multitask" and loaded.card.macs_per_pixel > 0
    assert loaded.card.looks_range == [1.0, 4.0]


def _pair(tmp_path, bands: int = 1) -> list[str]:
    rng = np.random.default_rng(2)
    scene = piecewise_scene(70, 90, seed=4)
    clean = np.stack([scene, 0.2 * scene][:bands])
    second = clean.copy()
    second[:, 20:40, 30:60] *= 8.0
    return [write_geotiff(str(tmp_path / f"d{t}.tif"), (date * rng.gamma(1, 1, date.shape)).squeeze(0)
                          if bands == 1 else date * rng.gamma(1, 1, date.shape))
            for t, date in enumerate((clean, second))]


def test_method_runs_on_two_dates_tile_by_tile_as_the_whole_image(tiny_card, tmp_path):
    card_path = tiny_card[2]
    paths = _pair(tmp_path, bands=2)
    outputs = []
    for tile in (None, 64):
        outputs.append(str(tmp_path / f"multitask_{tile}.tif"))
        despeckle_stack(paths, outputs[-1], MultitemporalSettings(method="multitask", layout="dual", looks=(1.0,),
                                                                   units="intensity", model=card_path, tile=tile))
    whole, tiled = read_geotiff(outputs[0]), read_geotiff(outputs[1])
    assert whole.shape == (4, 70, 90) and (whole > 0).all()
    np.testing.assert_allclose(tiled, whole, rtol=2e-3)
    assert raster_info(outputs[0]).metadata["SAR_DESPECKLE_METHOD"] == "multitask"


def test_method_refuses_other_date_counts(tmp_path):
    paths = _pair(tmp_path) + [str(tmp_path / "d0.tif")]
    with pytest.raises(SarDespeckleError, match="two dates"):
        despeckle_stack(paths, str(tmp_path / "out.tif"), MultitemporalSettings(method="multitask"))
    assert not os.path.exists(tmp_path / "out.tif")


def test_method_through_processing_run(qgis_processing, tiny_card, tmp_path):
    card_path = tiny_card[2]
    paths = _pair(tmp_path)
    result = qgis_processing.run("sar_despeckle:despeckle_multitemporal", {
        "INPUTS": paths, "LOOKS": 1, "INPUT_UNITS": 0, "METHOD": MULTITASK, "MODEL": card_path,
        "OUTPUT": str(tmp_path / "out.tif"),
    })
    reference = str(tmp_path / "reference.tif")
    despeckle_stack(paths, reference, MultitemporalSettings(method="multitask", looks=(1.0,), units="intensity",
                                                            model=card_path))
    np.testing.assert_array_equal(read_geotiff(result["OUTPUT"]), read_geotiff(reference))
    assert raster_info(result["OUTPUT"]).metadata["SAR_DESPECKLE_MODEL"] == "tiny_multitask"


def test_labelled_real_pairs_train_the_change_branch_only():
    """Real pairs (correlated, multi-looked speckle of estimated looks) are no Noise2Noise
    targets for the despeckling branch; synthetic pairs are."""
    from training.data import ImageSet
    from training.multitask_data import MultitaskPatches

    rng = np.random.default_rng(4)
    pair = np.concatenate([rng.gamma(4.0, 0.25, (2, 48, 48)), np.zeros((1, 48, 48))]).astype(np.float32)
    settings = tiny()
    sets = [ImageSet([pair], "change_pair", "a labelled pair"),
            ImageSet([np.full((1, 64, 64), 100.0, np.float32)], "clean", "a flat clean scene")]
    patches = MultitaskPatches(sets, settings.data, settings.change, 0, (1.0, 4.0), length=24)
    items = [patches[i] for i in range(len(patches))]
    real = [float(item["references"].mean()) < 10 for item in items]  # the real pair's level is 1, the clean 100
    assert 0 < sum(real) < len(items)
    assert [float(item["noise2noise"]) for item in items] == [0.0 if r else 1.0 for r in real]

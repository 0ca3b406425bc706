"""SwinFusion: the network in the upstream state-dict layout (keys, shapes, buffers, parameter count), loading
a state dict of that layout, equality with the upstream network on random weights, the official test-time
steps, the pinned weights, and real training steps on CPU.

``data/swinfusion_state_keys.txt`` lists ``name shape dtype`` of every state-dict entry of upstream
``models/network_swinfusion1.SwinFusion`` built as ``test_swinfusion.py`` builds it (Linfeng-Tang/SwinFusion @
ceeec3f). ``data/swinfusion_random_output.npy`` is that upstream network's output (37x45) for the seeded random
inputs and weights of :func:`random_state` (run once outside the project, with timm's three helpers stubbed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import check_untrained_errors, real_patches, torch_threads

from fusebench.imageio import read_uint8
from fusebench.methods import METHODS, LearnedMethod, create
from fusebench.methods.swinfusion import (
    PARAMETERS,
    SwinFusion,
    SwinFusionNet,
    SwinFusionTrainer,
    pad_to_window,
    relative_position_index,
    shift_mask,
)
from fusebench.weights import registry

DATA = Path(__file__).parent / "data"

one_thread = torch_threads(1)


def upstream_layout() -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in (DATA / "swinfusion_state_keys.txt").read_text().splitlines():
        name, shape, dtype = line.split()
        rows.append((name, tuple(int(s) for s in shape.split("x")), dtype))
    return rows


def random_state(net: SwinFusionNet) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Seeded inputs (1x1x37x45) and weights N(0, 0.05^2) in upstream key order; integer buffers and masks kept."""
    torch.manual_seed(0)
    a, b = torch.rand(1, 1, 37, 45), torch.rand(1, 1, 37, 45)
    own = net.state_dict()
    state = {}
    for name, shape, dtype in upstream_layout():
        random = dtype == "float32" and "attn_mask" not in name
        state[name] = torch.randn(shape) * 0.05 if random else own[name]
    return state, a, b


def test_registration_and_parameter_count(tmp_path: Path) -> None:
    cls = METHODS.get("swinfusion")
    assert cls is SwinFusion and issubclass(cls, LearnedMethod) and set(cls.tasks) == {"ivif", "mif", "mef", "mff"}
    assert sum(p.numel() for p in SwinFusionNet().parameters()) == PARAMETERS == 973_681
    check_untrained_errors(SwinFusion, tmp_path, size=16, lr=1e-4, learning_rate=1e-3)


def test_state_dict_layout_is_upstream() -> None:
    state = SwinFusionNet().state_dict()
    layout = upstream_layout()
    assert len(layout) == len(state) == 448
    for name, shape, dtype in layout:
        assert name in state, name
        assert tuple(state[name].shape) == shape and str(state[name].dtype) == f"torch.{dtype}", name
    # buffers: relative position indices and the 128x128 shifted-window masks
    assert torch.equal(
        relative_position_index(2), torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    )
    mask = shift_mask(16, 16, 8, 4)
    assert mask.shape == (4, 64, 64) and mask[0].abs().max() == 0 and set(mask[3].unique().tolist()) == {-100.0, 0.0}


def test_loads_an_upstream_state_dict_and_matches_the_upstream_network(tmp_path: Path) -> None:
    net = SwinFusionNet()
    state, a, b = random_state(net)
    path = tmp_path / "random_E.pth"  # random weights under the registered name would be refused (not pinned)
    torch.save({"params": state}, path)  # the official loader unwraps "params" when present
    method = create("swinfusion", task="ivif")
    method.load_official(path)  # type: ignore[attr-defined]
    expected = np.load(DATA / "swinfusion_random_output.npy")
    with torch.no_grad():
        out = method.net(pad_to_window(a), pad_to_window(b))[0, 0, :37, :45].numpy()  # type: ignore[misc]
    assert np.abs(out - expected).max() < 1e-5
    torch.save(state, path)  # a plain state dict loads too; a wrong one is refused with the file named
    method.load_official(path)  # type: ignore[attr-defined]
    del state["conv_last3.bias"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="random_E.pth"):
        method.load_official(path)  # type: ignore[attr-defined]


def test_official_test_steps(mirror: Path, tmp_path: Path) -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    padded = pad_to_window(x, 4)  # always grows: 3 -> 4 rows, 4 -> 8 columns (flipped copies)
    assert padded.shape == (1, 1, 4, 8)
    assert padded[0, 0, 3].tolist() == x[0, 0, 2].tolist() + x[0, 0, 2].flip(0).tolist()
    net = SwinFusionNet()
    torch.save(random_state(net)[0], tmp_path / "w.pth")
    method = create("swinfusion", task="mif")
    method.load_official(tmp_path / "w.pth")  # type: ignore[attr-defined]
    # real MRI/CT crops saved as gray PNG files (the full 256x256 pair takes too long on a shared CPU)
    paths = []
    for modality in ("mri", "ct"):
        image = read_uint8(mirror / "Harvard-MRI-CT" / "test" / modality / "16009.png")[96:152, 80:144]
        paths.append(tmp_path / f"{modality}.png")
        Image.fromarray(image).save(paths[-1])
    official = method.fuse_official(*paths)  # type: ignore[attr-defined]
    assert official.dtype == np.uint8 and official.shape == (56, 64)
    fused = method.fuse(*(read_uint8(p) / np.float32(255) for p in paths))
    assert fused.dtype == np.float32 and fused.shape == (56, 64)
    assert np.abs(np.round(fused * 255) - official).max() <= 1  # same network, same padding, gray files


def test_pinned_weights() -> None:
    entries = {k: e for k, e in registry().items() if e.method == "swinfusion"}
    tests_load = {k for k, e in entries.items() if e.path.endswith("10000_E.pth")}
    assert tests_load == {f"swinfusion-{t}-ema" for t in ("ivif", "mri-ct", "mri-pet", "mef", "mff")}
    assert all(len(e.git_blob_sha1) == 40 and e.commit.startswith("ceeec3fe9356") for e in entries.values())


def test_training_steps_on_real_patches(mirror: Path) -> None:
    patches = torch.from_numpy(real_patches(mirror, 32, limit=1).astype(np.float32) / 255)  # 2 MSRS ir/vi pairs
    trainer = create("swinfusion").trainer("cpu", seed=0, lr=1e-3, ema_decay=0.5)  # type: ignore[attr-defined]
    assert isinstance(trainer, SwinFusionTrainer)
    before = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    logs = [trainer.train_step(patches, step) for step in range(6)]
    assert set(logs[0]) == {"loss", "intensity", "gradient", "ssim"}
    assert all(np.isfinite(list(r.values())).all() for r in logs)
    assert min(r["loss"] for r in logs[-2:]) < logs[0]["loss"]
    exported = trainer.export()  # the EMA network, which the official test would load
    assert any(not torch.equal(exported[k], before[k]) for k in before)
    assert any(not torch.equal(exported[k], v) for k, v in trainer.net.state_dict().items())
    SwinFusionNet().load_state_dict(exported, strict=True)


def test_per_task_losses() -> None:
    assert create("swinfusion", task="mif").trainer("cpu", seed=0).weights == (20.0, 100.0, 50.0)  # type: ignore[attr-defined]
    mef = create("swinfusion", task="mef").trainer("cpu", seed=0)  # type: ignore[attr-defined]
    torch.manual_seed(1)
    a, b = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    # upstream's MEF/MFF intensity target: the mean over every image of the batch, both sources
    target = torch.cat([a, b]).mean(0, keepdim=True).expand(2, 1, 16, 16)
    with torch.no_grad():
        assert float(mef.losses(a, b, target)["intensity"]) == 0.0
        assert float(mef.losses(a, b, torch.maximum(a, b))["intensity"]) > 0.1
    with pytest.raises(ValueError, match="loss_weights"):
        create("swinfusion").trainer("cpu", loss_weights=[1.0])  # type: ignore[attr-defined]

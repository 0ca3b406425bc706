"""Seconds per image pair: fusebench's official protocol against the authors' own test code, on real pairs.

For each method, in one process and interleaved pair by pair (the two sides alternate, best and median of
``--repeat`` rounds), it times

* fusebench: ``method.load_official(weights)`` once, then ``method.fuse_official(path_a, path_b)`` per pair, what
  ``fusebench fuse --protocol official`` times per image (reading, network, the authors' post-processing; the PNG
  write is not timed on either side);
* official: the authors' network module imported from ``--official NAME=FOLDER`` (an export of their repository at
  the pinned commit, never part of this project; see :mod:`official_code`), the same weights, and the body of
  their test script's per-pair loop (their reading, colour conversion, forward pass and save-time conversion to
  8-bit pixels, without the file write).

It also reports the largest grey-level difference between the two outputs, so that like is compared with like.
CDDFuse has no official weights here and no ``fuse_official`` in fusebench: both sides run one random state dict
(for timing only) and fusebench runs its ``fusebench`` protocol (its own reading and colour rule), so its
difference column is not a parity check. The TF1 methods (U2Fusion, PMGI, SDNet, MFF-GAN) have no runnable
official code here (TensorFlow 1 does not install on Python 3.11): fusebench is timed alone.

``python benchmarks/fuse_speed.py --help`` lists the options; ``benchmarks/README.md`` gives the results.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_code import official_imports, timm_stand_in, torchvision_stand_in  # noqa: E402
from side_by_side import add_common_options, parse_official, report, run_methods, start, timed  # noqa: E402

from fusebench.color import rgb_to_ycbcr  # noqa: E402
from fusebench.fuse import fuse_images  # noqa: E402
from fusebench.imageio import read_image, to_uint8  # noqa: E402
from fusebench.methods import create  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
Fuser = Callable[[Path, Path], np.ndarray]
IVIF_PAIRS = ("MSRS/test/00004N", "MSRS/test/00055D", "TNO/test/01")
MFF_PAIRS = ("MFIFB/test/lytro_01",)


@dataclass
class Case:
    """One method: its task, the official weights file both sides load (under ``weights/official``; empty for
    CDDFuse), how to build the official side from its code folder (None: no runnable official code), and, where
    fusebench's side is not ``load_official`` + ``fuse_official``, how to build that."""

    task: str
    weights: str
    official: Callable[[Path, Path], Fuser] | None
    fusebench: Callable[[Path], Fuser] | None = None
    note: str = ""


def source_paths(shared: Path, pair: str, task: str) -> tuple[Path, Path]:
    """``DATASET/SPLIT/NAME`` -> (a, b): (ir, vi) for IVIF, (a, b) for MFF; the file's extension is looked up."""
    folder, name = shared / "datasets" / Path(pair).parent, Path(pair).name
    mods = ("ir", "vi") if task == "ivif" else ("a", "b")
    found = []
    for mod in mods:
        hits = sorted((folder / mod).glob(f"{name}.*"))
        if not hits:
            raise FileNotFoundError(f"no {mod} image {name}.* in {folder / mod}")
        found.append(hits[0])
    return found[0], found[1]


# ------------------------------------------------------------------------------------------- fusebench sides
def fusebench_official(name: str, case: Case, shared: Path) -> Fuser:
    """``create(name, task=...)``, ``load_official(weights)``, then ``fuse_official`` per pair (uint8 out)."""
    method = create(name, task=case.task)
    method.load_official(shared / "weights" / "official" / case.weights, "cpu")  # type: ignore[attr-defined]

    def fuse(a: Path, b: Path) -> np.ndarray:
        out = method.fuse_official(a, b)  # type: ignore[attr-defined]
        return out if out.dtype == np.uint8 else to_uint8(out)

    return fuse


# ------------------------------------------------------------------------------------------- official sides
def densefuse_official(root: Path, weights: Path) -> Fuser:
    """test_image.py, gray model: ``load_model`` then ``run_demo``'s body. ``utils.get_test_images`` (it imports
    modules gone from scipy/torch) is restated: ``scipy.misc.imread(mode='L')`` = Pillow ``convert('L')``, reshaped
    to 1x1xHxW float."""
    with official_imports(root):
        from net import DenseFuse_net
    model = DenseFuse_net(1, 1)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()

    def read(path: Path) -> torch.Tensor:
        image = np.asarray(Image.open(path).convert("L"))
        return torch.from_numpy(np.stack([np.reshape(image, [1, *image.shape])], axis=0)).float()

    def fuse(a: Path, b: Path) -> np.ndarray:
        with torch.no_grad():
            ir, vis = read(a), read(b)
            en_r, en_v = model.encoder(ir), model.encoder(vis)
            img_fusion = model.decoder(model.fusion(en_r, en_v, strategy_type="addition"))[0]
            img = img_fusion.clamp(0, 255).data[0].numpy()
        return img.transpose(1, 2, 0).astype("uint8")[..., 0]

    return fuse


def ifcnn_official(root: Path, weights: Path) -> Fuser:
    """IFCNN_Main.py (notebook cell 3), IV branch with IFCNN-MAX: ``ImagePair`` + ToTensor/Normalize(0, 1),
    ``model(vis, ir)``, ``denorm``, clamp, truncation, ``cv2.cvtColor(RGB2GRAY)``; the PNG save is left out."""
    import cv2

    stand_in = torchvision_stand_in()
    with official_imports(root / "Code", stand_in):
        from model import myIFCNN
        from utils.myDatasets import ImagePair
        from utils.myTransforms import denorm
    transforms = stand_in["torchvision.transforms"]
    model = myIFCNN(fuse_scheme=0)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    mean, std = [0, 0, 0], [1, 1, 1]

    def fuse(a: Path, b: Path) -> np.ndarray:
        pair = ImagePair(
            impath1=str(b),
            impath2=str(a),
            transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=mean, std=std)]),
        )
        img1, img2 = pair.get_pair()
        img1.unsqueeze_(0)
        img2.unsqueeze_(0)
        with torch.no_grad():
            res = model(img1, img2)
            res = denorm(mean, std, res[0]).clamp(0, 1) * 255
            img = res.cpu().data.numpy().astype("uint8").transpose([1, 2, 0])
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)

    return fuse


def refusion_official(root: Path, weights: Path) -> Fuser:
    """test.py's per-image loop (IVIF) with ``utils.img_save`` up to its two ``imsave`` calls, whose float ->
    uint8 step (imageio's ``image_as_uint``) is applied instead of writing; returns the RGB image when a source
    has colour, else the grey one (what fusebench's ``fuse_official`` returns)."""
    import cv2
    from imageio.core.util import image_as_uint

    with official_imports(root):
        import utils as refusion_utils
        from ReFusion import ReFusion
    model = ReFusion()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))

    def fuse(a: Path, b: Path) -> np.ndarray:
        with torch.no_grad():
            img1, img2 = refusion_utils.image_read(str(a)), refusion_utils.image_read(str(b))
            img1_ycrcb = cv2.cvtColor(img1, cv2.COLOR_RGB2YCrCb)
            img2_ycrcb = cv2.cvtColor(img2, cv2.COLOR_RGB2YCrCb)
            if refusion_utils.is_grayscale(img1):
                crcb = None if refusion_utils.is_grayscale(img2) else img2_ycrcb[:, :, 1:]
            else:
                crcb = (
                    img1_ycrcb[:, :, 1:]
                    if refusion_utils.is_grayscale(img2)
                    else refusion_utils.fuse_CrCb(img1_ycrcb[:, :, 1:], img2_ycrcb[:, :, 1:])
                )
            t1 = torch.FloatTensor(img1_ycrcb[:, :, 0][np.newaxis, np.newaxis, ...] / 255)
            t2 = torch.FloatTensor(img2_ycrcb[:, :, 0][np.newaxis, np.newaxis, ...] / 255)
            data = model(torch.cat((t1, t2), 1))
            data = (data - torch.min(data)) / (torch.max(data) - torch.min(data))
            temp = np.squeeze(np.squeeze((data * 255).cpu().numpy()))
        gray = image_as_uint(temp, bitdepth=8)
        if crcb is None:
            return gray
        rgb = cv2.cvtColor(np.concatenate((temp[..., np.newaxis], crcb), axis=2), cv2.COLOR_YCrCb2RGB)
        rgb[rgb < 0] = 0
        rgb[rgb > 255] = 255
        return image_as_uint(rgb, bitdepth=8)

    return fuse


def tardal_official(root: Path, weights: Path) -> Fuser:
    """fuse.py with tardal.pt and ``--color`` (no ``--eval``: BatchNorm in train mode): ``Eval.__call__``'s body
    with ``ImagePair``; ``save_fus`` up to its ``cv2.imwrite`` (the BGR result returned as RGB)."""
    import cv2
    import kornia

    with official_imports(root):
        from modules.generator import Generator
        from utils.image_pair import ImagePair
    net = Generator(dim=32, depth=3)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))  # left in train mode

    def fuse(a: Path, b: Path) -> np.ndarray:
        with torch.no_grad():
            pair = ImagePair(a, b)
            fus = net(pair.ir_t.unsqueeze(0), pair.vi_t.unsqueeze(0)).clip(0.0, 1.0)
        fus = (kornia.utils.tensor_to_image(fus.squeeze().cpu()) * 255.0).astype(np.uint8)
        cbcr = cv2.cvtColor(pair.vi_c, cv2.COLOR_BGR2YCrCb)[:, :, -2:]
        bgr = cv2.cvtColor(np.concatenate([fus[..., np.newaxis], cbcr], axis=2), cv2.COLOR_YCrCb2BGR)
        return bgr[..., ::-1]

    return fuse


def cddfuse_state() -> dict[str, dict[str, torch.Tensor]]:
    """A random CDDFuse checkpoint in the release's four-group layout (seeded: both sides load this one)."""
    from fusebench.methods.cddfuse import CDDFuseNet

    torch.manual_seed(0)
    return CDDFuseNet().official_state()


def cddfuse_fusebench(shared: Path) -> Fuser:
    method = create("cddfuse", task="ivif")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.pt"
        torch.save(cddfuse_state(), path)
        method.load(path, "cpu")  # type: ignore[attr-defined]

    def fuse(a: Path, b: Path) -> np.ndarray:
        out = fuse_images(method, read_image(a), read_image(b))
        return to_uint8(rgb_to_ycbcr(out)[..., 0] if out.ndim == 3 else out)  # grey like the release's output

    return fuse


def cddfuse_official(root: Path, _weights: Path) -> Fuser:
    """test_IVF.py's per-image loop (DataParallel-wrapped parts, eval mode) and ``img_save``'s ``imsave`` float ->
    uint8 step without the write, on :func:`cddfuse_state`."""
    from imageio.core.util import image_as_uint

    with official_imports(root, timm_stand_in()):
        from net import BaseFeatureExtraction, DetailFeatureExtraction, Restormer_Decoder, Restormer_Encoder
        from utils.img_read_save import image_read_cv2
    parts = {
        "DIDF_Encoder": Restormer_Encoder(),
        "DIDF_Decoder": Restormer_Decoder(),
        "BaseFuseLayer": BaseFeatureExtraction(dim=64, num_heads=8),
        "DetailFuseLayer": DetailFeatureExtraction(num_layers=1),
    }
    state = cddfuse_state()
    wrapped = {}
    for key, module in parts.items():
        module.load_state_dict(state[key])
        wrapped[key] = torch.nn.DataParallel(module).eval()
    encoder, decoder = wrapped["DIDF_Encoder"], wrapped["DIDF_Decoder"]
    base_fuse, detail_fuse = wrapped["BaseFuseLayer"], wrapped["DetailFuseLayer"]

    def fuse(a: Path, b: Path) -> np.ndarray:
        with torch.no_grad():
            data_ir = torch.FloatTensor(image_read_cv2(str(a), mode="GRAY")[np.newaxis, np.newaxis, ...] / 255.0)
            data_vis = torch.FloatTensor(image_read_cv2(str(b), mode="GRAY")[np.newaxis, np.newaxis, ...] / 255.0)
            feature_v_b, feature_v_d, _ = encoder(data_vis)
            feature_i_b, feature_i_d, _ = encoder(data_ir)
            feature_f_b = base_fuse(feature_v_b + feature_i_b)
            feature_f_d = detail_fuse(feature_v_d + feature_i_d)
            data_fuse, _ = decoder(data_vis, feature_f_b, feature_f_d)
            data_fuse = (data_fuse - torch.min(data_fuse)) / (torch.max(data_fuse) - torch.min(data_fuse))
            fi = np.squeeze((data_fuse * 255).cpu().numpy())
        return image_as_uint(fi, bitdepth=8)

    return fuse


CASES = {
    "densefuse": Case("ivif", "densefuse-pytorch/densefuse_gray.model", densefuse_official),
    "ifcnn": Case("ivif", "ifcnn/IFCNN-MAX.pth", ifcnn_official),
    "refusion": Case("ivif", "refusion/ReFusion_IVIF.pth", refusion_official),
    "tardal": Case("ivif", "tardal-v0/tardal.pt", tardal_official),
    "cddfuse": Case(
        "ivif",
        "",
        cddfuse_official,
        cddfuse_fusebench,
        "random weights in both; fusebench protocol on fusebench's side (no fuse_official)",
    ),
    "u2fusion": Case("ivif", "u2fusion-tf/model.ckpt.index", None),
    "pmgi": Case("ivif", "pmgi-tf/IR_VI/CGAN.model-1.index", None),
    "sdnet": Case("ivif", "sdnet-tf/IR_VIS/IRVIS.model-10.index", None),
    "mffgan": Case("mff", "mffgan-tf/Lytro_model/CGAN.model-19.index", None),
}
TF1 = ("u2fusion", "pmgi", "sdnet", "mffgan")
OFFICIAL = [k for k in CASES if k not in TF1]  # the methods with runnable official code


def max_difference(x: np.ndarray, y: np.ndarray) -> int | None:
    """Largest absolute grey-level difference, or None when the outputs differ in shape."""
    if x.shape != y.shape:
        return None
    return int(np.abs(x.astype(np.int16) - y.astype(np.int16)).max())


def run_case(name: str, shared: Path, official_root: Path | None, pairs: list[str], repeat: int) -> dict:
    case = CASES[name]
    paths = [source_paths(shared, p, case.task) for p in pairs]
    ours = case.fusebench(shared) if case.fusebench else fusebench_official(name, case, shared)
    theirs = None
    if case.official is not None and official_root is not None:
        theirs = case.official(official_root, shared / "weights" / "official" / case.weights)
    ours(*paths[0])  # warm-up: first-call allocations and lazy imports
    if theirs is not None:
        theirs(*paths[0])
    t_ours: dict[str, list[float]] = {p: [] for p in pairs}
    t_theirs: dict[str, list[float]] = {p: [] for p in pairs}
    diff: dict[str, int | None] = {}
    for _ in range(repeat):
        for pair, (a, b) in zip(pairs, paths, strict=True):
            sec, out = timed(ours, a, b)
            t_ours[pair].append(sec)
            if theirs is not None:
                sec, ref = timed(theirs, a, b)
                t_theirs[pair].append(sec)
                diff[pair] = max_difference(out, ref)
    rows = {}
    for pair in pairs:
        row = {"fusebench_min": min(t_ours[pair]), "fusebench_median": statistics.median(t_ours[pair])}
        if theirs is not None:
            row.update(
                {
                    "official_min": min(t_theirs[pair]),
                    "official_median": statistics.median(t_theirs[pair]),
                    "ratio": statistics.median(t_theirs[pair]) / statistics.median(t_ours[pair]),
                    "ratio_min": min(t_theirs[pair]) / min(t_ours[pair]),
                    "max_grey_difference": diff[pair],
                }
            )
        rows[pair] = row
    if name in TF1:
        note = "TF1 release: no runnable official code here, fusebench only"
    elif theirs is None:
        note = "official side skipped: no --official folder given"
    else:
        note = case.note
    return {"pairs": rows, "note": note}


def markdown(results: dict) -> str:
    lines = [
        "| method | pair | fusebench s/pair (min / median) | official s/pair (min / median) "
        "| official / fusebench (min / median) | max grey diff | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, res in results.items():
        for pair, r in res["pairs"].items():
            ours = f"{r['fusebench_min']:.2f} / {r['fusebench_median']:.2f}"
            if "official_min" in r:
                theirs = f"{r['official_min']:.2f} / {r['official_median']:.2f}"
                ratio = f"{r['ratio_min']:.2f}x / {r['ratio']:.2f}x"
                diff = "shape differs" if r["max_grey_difference"] is None else str(r["max_grey_difference"])
            else:
                theirs, ratio, diff = "-", "-", "-"
            lines.append(f"| {name} | {pair} | {ours} | {theirs} | {ratio} | {diff} | {res['note']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("FUSEBENCH_SHARED", REPO.parent / "shared")))
    add_common_options(parser, OFFICIAL)
    parser.add_argument("--methods", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument(
        "--pairs",
        nargs="+",
        default=list(IVIF_PAIRS),
        help="IVIF pairs as DATASET/SPLIT/NAME (MFF-GAN uses MFIFB/test/lytro_01)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds per pair (min and median)")
    args = parser.parse_args()
    official = parse_official(args.official, OFFICIAL)
    load_before = start(args)

    def run_one(name: str) -> dict:
        pairs = list(MFF_PAIRS) if CASES[name].task == "mff" else args.pairs
        return run_case(name, args.shared, official.get(name), pairs, args.repeat)

    results = run_methods(args.methods, run_one, markdown)
    report(args, markdown(results), load_before, {"repeat": args.repeat, "methods": results})


if __name__ == "__main__":
    main()

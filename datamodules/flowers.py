"""Oxford Flowers102, the paper's long-tailed protocol (paper Sec. 6; docs/definitions.md).

SSL training and the k-NN memory bank use the official ``test`` split (6,149 images,
naturally long-tailed); evaluation uses ``val`` (1,020). Images are decoded once and resized
to 128 x 128 (kept in memory as uint8, about 300 MB for the full test split).

Accepted layouts under ``data_dir``:
- torchvision: ``flowers-102/`` with ``jpg/image_00001.jpg ...``, ``imagelabels.mat``,
  ``setid.mat`` (or ``data_dir`` is that folder);
- HF parquet: ``train|validation|test.parquet`` (columns ``image``, ``label`` 0..101) in
  ``data_dir`` or ``data_dir/flowers102``. ``num_classes`` is 102 even when a partial copy
  (as ../shared/data) lacks some classes.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Literal

from datamodules.base import SSLDataModule
from datamodules.datasets import ImageSet
from datamodules.io.cache import cached_decode
from datamodules.io.decode import decode_all
from datamodules.io.locate import candidate_folders, missing_data_error
from datamodules.io.parquet import find_split_files, read_image_parquet
from datamodules.io.torchvision_files import read_flowers102_folder
from datamodules.transforms import IMAGENET_STATS, AugmentationSpec

__all__ = ["Flowers102DataModule", "load_flowers102_split"]

NUM_CLASSES = 102
# official split name -> HF parquet split name
_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
_LAYOUTS = [
    "flowers-102/ with jpg/, imagelabels.mat and setid.mat (torchvision)",
    "train.parquet, validation.parquet, test.parquet (HF parquet), in data_dir or data_dir/flowers102/",
]


def load_flowers102_split(
    data_dir: str | Path, split: str, image_size: int = 128, cache_dir: str | None = None
) -> ImageSet:
    """An official split (``train``, ``val``/``validation``, ``test``) as uint8 ``[N, 3, s, s]``."""
    if split not in _SPLITS:
        raise ValueError(f"unknown Flowers102 split {split!r}: choose one of {sorted(_SPLITS)}")
    root = Path(data_dir).expanduser()
    names = [str(c) for c in range(NUM_CLASSES)]
    for cand in (root / "flowers-102", root):
        if (cand / "setid.mat").is_file() and (cand / "jpg").is_dir():
            official = "val" if split == "validation" else split
            blobs, labels = read_flowers102_folder(cand, official)
            files = [cand / "setid.mat", cand / "imagelabels.mat"]
            images = cached_decode(
                cache_dir, f"flowers102-{official}", files, f"size={image_size}",
                partial(decode_all, blobs, size=image_size, where=f"{cand} ({official})"),
            )  # fmt: skip
            return ImageSet(images, labels, names)
    for folder in candidate_folders(root, ["flowers102", "flowers-102"]):
        files = find_split_files(folder, _SPLITS[split]) if folder.is_dir() else []
        if files:
            data = read_image_parquet(files)
            images = cached_decode(
                cache_dir, f"flowers102-{_SPLITS[split]}", files, f"size={image_size}",
                partial(decode_all, data.blobs.to_pylist(), size=image_size, where=str(files[0])),
            )  # fmt: skip
            if data.labels.min(initial=0) < 0 or data.labels.max(initial=0) >= NUM_CLASSES:
                raise ValueError(f"{files[0]}: labels outside 0..101: not Flowers102")
            return ImageSet(images, data.labels, data.class_names or names)
    raise missing_data_error("Flowers102", root, _LAYOUTS, split)


class Flowers102DataModule(SSLDataModule):
    """Flowers102, long-tailed protocol: SSL train and k-NN bank = official test, eval = val.

    Args:
        data_dir: folder with ``flowers-102/`` or the HF parquet files (or their parent).
        batch_size: the global training batch of one micro-step, all processes together.
        eval_batch_size: batch size of the bank / eval / OOD loaders, per process.
        num_workers: loader workers.
        seed: seeds shuffle and augmentations (reproducible epochs).
        download: fetch with torchvision when missing (needs internet).
        ood: OOD sets, name -> folder, served un-augmented at ``image_size``.
        image_size: side of the stored and served images (paper: 128).
        train_subset: first N images per class of the SSL training set (official test split).
        eval_subset: first N images per class of the val split and of each OOD set.
        augmentation: ``"auto"`` (the preset of the method being trained, at 128 px: with
            blur, BYOL's views asymmetric), a preset name (``simclr``, ``simsiam``, ``byol``),
            one ``AugmentationConfig`` for both views, or a pair (view 1, view 2).
        cache_dir: optional folder for a cache of decoded images (recommended: decoding
            the 6,149 + 1,020 JPEGs takes several seconds).
        augment_on: ``"loader"`` (per image in the loader workers), ``"loader_batched"``
            (whole batches in the loader workers, the batched recipe: less CPU time) or
            ``"device"`` (whole uint8 batches on the model's device,
            ``datamodules.batch_augment``).
        data_on_device: with ``augment_on="device"``, keep the uint8 training set on the
            model's device and serve index batches (``configs/overrides/fast_gpu.yaml``).
    """

    num_classes = NUM_CLASSES
    stats = IMAGENET_STATS

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 256,
        eval_batch_size: int = 512,
        num_workers: int = 4,
        seed: int = 0,
        download: bool = False,
        ood: dict[str, str] | None = None,
        image_size: int = 128,
        train_subset: int | None = None,
        eval_subset: int | None = None,
        augmentation: AugmentationSpec = "auto",
        cache_dir: str | None = None,
        augment_on: Literal["loader", "loader_batched", "device"] = "loader",
        data_on_device: bool = False,
    ):
        super().__init__(
            data_dir, batch_size, eval_batch_size, num_workers, seed, download, ood,
            train_subset, eval_subset, augmentation, cache_dir, augment_on, data_on_device,
        )  # fmt: skip
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        self.image_size = image_size
        self.save_hyperparameters()

    def _load_splits(self) -> tuple[ImageSet, ImageSet]:
        train = load_flowers102_split(self.data_dir, "test", self.image_size, self.cache_dir)
        evalset = load_flowers102_split(self.data_dir, "val", self.image_size, self.cache_dir)
        return train, evalset

    def _present(self) -> bool:
        root = Path(self.data_dir).expanduser()
        if any((c / "setid.mat").is_file() for c in (root / "flowers-102", root)):
            return True
        folders = candidate_folders(root, ["flowers102", "flowers-102"])
        return any(f.is_dir() and find_split_files(f, "test") for f in folders)

    def _missing_data_error(self, note: str | None = None) -> FileNotFoundError:
        return missing_data_error("Flowers102", self.data_dir, _LAYOUTS, note=note)

    def _download(self) -> None:
        import torchvision

        for split in ("test", "val"):
            torchvision.datasets.Flowers102(root=self.data_dir, split=split, download=True)

"""ImageNet-100 as the Hugging Face dataset ``clane9/imagenet-100`` (the split the paper uses).

Layout: the hub's parquet shards ``data/train-*.parquet`` and ``data/validation-*.parquet``
(or ``train.parquet``/``validation.parquet``), columns ``image`` ``{bytes, path}`` and
``label``, in ``data_dir``, ``data_dir/imagenet-100`` or ``data_dir/imagenet100``. The
encoded JPEGs are held in memory (about the size of the parquet files) and decoded per
access, since 126,689 decoded images do not fit; training crops come from the full image.
Served at 128 px: RandomResizedCrop(128) for training, resize + centre crop for evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from datamodules.base import SSLDataModule
from datamodules.datasets import ImageSet
from datamodules.io.decode import EncodedImages
from datamodules.io.locate import candidate_folders, missing_data_error
from datamodules.io.parquet import find_split_files, read_image_parquet
from datamodules.transforms import IMAGENET_STATS, AugmentationSpec

__all__ = ["HUB_REPO", "ImageNet100DataModule", "load_imagenet100_split"]

HUB_REPO = "clane9/imagenet-100"
NUM_CLASSES = 100
_SPLITS = {"train": "train", "validation": "validation", "val": "validation"}
_FOLDERS = ["imagenet-100", "imagenet100"]
_LAYOUTS = [
    f"data/train-*.parquet + data/validation-*.parquet (HF hub {HUB_REPO})",
    "train.parquet + validation.parquet, in data_dir, data_dir/imagenet-100/ or data_dir/imagenet100/",
]


def load_imagenet100_split(data_dir: str | Path, split: str) -> ImageSet:
    """``train`` or ``validation`` (alias ``val``) as lazily decoded images."""
    if split not in _SPLITS:
        raise ValueError(f"unknown ImageNet-100 split {split!r}: choose one of {sorted(_SPLITS)}")
    root = Path(data_dir).expanduser()
    for folder in candidate_folders(root, _FOLDERS):
        files = find_split_files(folder, _SPLITS[split]) if folder.is_dir() else []
        if files:
            data = read_image_parquet(files)
            if data.labels.min(initial=0) < 0 or data.labels.max(initial=0) >= NUM_CLASSES:
                raise ValueError(f"{files[0]}: labels outside 0..99: not ImageNet-100")
            names = data.class_names or [str(c) for c in range(NUM_CLASSES)]
            return ImageSet(EncodedImages(data.blobs, where=str(files[0])), data.labels, names)
    raise missing_data_error("ImageNet-100", root, _LAYOUTS, split)


class ImageNet100DataModule(SSLDataModule):
    """ImageNet-100 (``clane9/imagenet-100``) at 128 px: SSL on train, evaluation on validation.

    Args:
        data_dir: folder with the hub's parquet files (or its parent).
        batch_size: the global training batch of one micro-step, all processes together.
        eval_batch_size: batch size of the bank / eval / OOD loaders, per process.
        num_workers: loader workers (JPEG decoding happens there: use several).
        seed: seeds shuffle and augmentations (reproducible epochs).
        download: fetch the parquet files from the HF hub when missing (needs internet).
        ood: OOD sets, name -> folder, served un-augmented at ``image_size``.
        image_size: side of the served images (paper: 128).
        train_subset: first N images per class of the training split.
        eval_subset: first N images per class of the validation split and of each OOD set.
        augmentation: ``"auto"`` (the preset of the method being trained, at 128 px: with
            blur, BYOL's views asymmetric), a preset name (``simclr``, ``simsiam``, ``byol``),
            one ``AugmentationConfig`` for both views, or a pair (view 1, view 2).
        cache_dir: optional folder for decoded OOD caches.
        augment_on: ``"loader"`` only: the images are decoded per access, so there is no
            uint8 tensor for ``"device"`` or ``"loader_batched"`` to augment batched.
        data_on_device: ``False`` only, for the same reason (``augment_on="device"`` first).
    """

    num_classes = NUM_CLASSES
    stats = IMAGENET_STATS
    eval_resize = True
    eval_center_crop = True

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 256,
        eval_batch_size: int = 512,
        num_workers: int = 8,
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
        if augment_on in ("device", "loader_batched"):
            raise ValueError(
                "ImageNet100DataModule decodes its JPEGs per access, so there is no uint8 "
                f"image tensor for augment_on={augment_on!r} to augment batched: use "
                "augment_on='loader' (several num_workers)"
            )
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        self.image_size = image_size
        self.save_hyperparameters()

    def _load_splits(self) -> tuple[ImageSet, ImageSet]:
        return load_imagenet100_split(self.data_dir, "train"), load_imagenet100_split(
            self.data_dir, "validation"
        )

    def _present(self) -> bool:
        folders = candidate_folders(Path(self.data_dir).expanduser(), _FOLDERS)
        return any(f.is_dir() and find_split_files(f, "train") for f in folders)

    def _missing_data_error(self, note: str | None = None) -> FileNotFoundError:
        return missing_data_error("ImageNet-100", self.data_dir, _LAYOUTS, note=note)

    def _download(self) -> None:
        from huggingface_hub import snapshot_download

        snapshot_download(
            HUB_REPO, repo_type="dataset", local_dir=str(Path(self.data_dir) / "imagenet-100")
        )

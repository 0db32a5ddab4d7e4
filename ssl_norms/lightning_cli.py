"""``ssl-norms fit|validate|test``: the LightningCLI of ssl-norms (docs/contract.md, "Run folder").

Every run writes into its own folder ``RUN_DIR`` (default
``runs/<name>/<YYYYmmdd-HHMMSS>``; ``--run_dir`` sets it, ``--name`` the experiment name):

- ``RUN_DIR/config.yaml``: the full resolved config (re-run it with ``-c``);
- ``RUN_DIR/checkpoints/``: ``last.ckpt`` and the latest epoch (``ModelCheckpoint``);
- ``RUN_DIR/csv/metrics.csv``: a CSV logger (kept and appended to on resume), so every run
  leaves plain files behind;
- ``RUN_DIR/wandb/``: a ``WandbLogger``, online when an API key and the network are there,
  else offline with a one-line notice (``--wandb`` forces a mode; ``WANDB_MODE`` is honoured).

Configs compose with several ``-c`` flags (``configs/README.md``). Resume a run with
``ssl-norms fit -c RUN_DIR/config.yaml --ckpt_path RUN_DIR/checkpoints/last.ckpt --run_dir RUN_DIR``.
"""

from __future__ import annotations

import datetime as _dt
import netrc
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger

from ssl_norms.loggers import ResumableCSVLogger
from ssl_norms.methods import SSLMethod

__all__ = ["SSLNormsCLI", "resolve_wandb_mode", "run"]

WandbMode = Literal["auto", "online", "offline", "disabled"]
_RUN_DIR_ENV = "SSL_NORMS_RUN_DIR"  # hands rank 0's folder to DDP child processes
WANDB_HOST = "api.wandb.ai"
WANDB_HEALTH_URL = f"https://{WANDB_HOST}/healthz"


def _has_wandb_key() -> bool:
    """An API key in ``WANDB_API_KEY`` or in the netrc file (``wandb login`` writes it there)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = os.environ.get("NETRC", os.path.join(os.path.expanduser("~"), ".netrc"))
    try:
        return netrc.netrc(path).authenticators(WANDB_HOST) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _reachable(url: str = WANDB_HEALTH_URL, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers HTTP 200 within ``timeout`` seconds.

    An HTTP answer, not a TCP connect: some sandboxes accept every connection. The request
    runs in a daemon thread so that a slow DNS look-up never blocks the run.
    """
    import urllib.request

    result: list[bool] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed https URL)
                result.append(response.status == 200)
        except Exception:  # any failure means: do not go online
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def resolve_wandb_mode(
    requested: WandbMode = "auto",
) -> tuple[Literal["online", "offline", "disabled"], str | None]:
    """The W&B mode to use and, when auto falls back to offline, the reason.

    ``WANDB_MODE`` (``online``/``offline``/``disabled``/``dryrun``) wins over ``auto``.
    ``auto`` goes online only with an API key AND a reachable W&B server; it never opens
    a login prompt.
    """
    if requested != "auto":
        return requested, None
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("offline", "dryrun"):
        return "offline", None
    if env == "disabled":
        return "disabled", None
    if not _has_wandb_key():
        return "offline", "no W&B API key (set WANDB_API_KEY or run `wandb login`)"
    if env != "online" and not _reachable():
        return "offline", f"{WANDB_HOST} is not reachable"
    return "online", None


class RunFolderConfigCallback(SaveConfigCallback):
    """Saves the resolved config as ``RUN_DIR/config.yaml`` (``trainer.default_root_dir``),
    whatever the first logger is."""

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            run_dir = Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config,
                str(run_dir / self.config_filename),
                skip_none=False,
                overwrite=True,
                multifile=False,
            )
        self.already_saved = True


class SSLNormsCLI(LightningCLI):
    """LightningCLI with run folders, CSV + W&B loggers and a last-checkpoint callback."""

    run_dir: Path | None = None
    wandb_mode: str = "disabled"

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--name",
            type=str | None,
            default=None,
            help="experiment name (default: <method>-<data>); the run folder is runs/<name>/<timestamp>",
        )
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="the run folder (overrides --runs_root/--name/<timestamp>)",
        )
        parser.add_argument(
            "--runs_root", type=str, default="runs", help="parent folder of the run folders"
        )
        parser.add_argument(
            "--wandb",
            type=WandbMode,
            default="auto",
            help="W&B mode: auto = online with an API key and network, else offline",
        )
        parser.add_argument("--wandb_project", type=str, default="ssl-norms", help="W&B project")

    # ------------------------------------------------------------------ run folder
    def _experiment_name(self, cfg: Any) -> str:
        if cfg.get("name"):
            return str(cfg["name"])
        model = str(cfg.get("model", {}).get("class_path", "model")).rsplit(".", 1)[-1].lower()
        data = cfg.get("data") or {}
        data_name = (
            str(data.get("class_path", "data")).rsplit(".", 1)[-1].lower().replace("datamodule", "")
        )
        return f"{model}-{data_name or 'data'}"

    def _resolve_run_dir(self, cfg: Any) -> Path:
        child = (
            int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0
        )
        if child and os.environ.get(_RUN_DIR_ENV):
            return Path(os.environ[_RUN_DIR_ENV])
        if cfg.get("run_dir"):
            return Path(cfg["run_dir"]).resolve()
        root_dir = (cfg.get("trainer") or {}).get("default_root_dir")
        if root_dir:  # an explicit trainer.default_root_dir is the run folder too
            return Path(root_dir).resolve()
        base = Path(cfg.get("runs_root") or "runs") / self._experiment_name(cfg)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir, n = base / stamp, 1
        while run_dir.exists():  # two runs started in the same second
            run_dir, n = base / f"{stamp}-{n}", n + 1
        return run_dir.resolve()

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        # Created with the trainer, so that a config error leaves no empty run folder.
        self.run_dir = self._resolve_run_dir(cfg)
        os.environ[_RUN_DIR_ENV] = str(self.run_dir)
        self.wandb_mode, reason = resolve_wandb_mode(cfg.get("wandb") or "auto")
        if reason:
            # Our one-line notice (and the summary after fit) replace wandb's own banner.
            os.environ.setdefault("WANDB_SILENT", "true")
        if reason and int(os.environ.get("LOCAL_RANK", "0")) == 0:
            print(
                f"ssl-norms: W&B offline ({reason}); logs in {self.run_dir / 'wandb'}, upload later with `wandb sync`",
                file=sys.stderr,
            )

    def _make_loggers(self, cfg: Any) -> list[Logger]:
        assert self.run_dir is not None
        loggers: list[Logger] = [
            ResumableCSVLogger(save_dir=str(self.run_dir), name="csv", version="")
        ]
        if self.wandb_mode != "disabled":
            from lightning.pytorch.loggers import WandbLogger

            os.environ["WANDB_DIR"] = str(self.run_dir)
            loggers.append(
                WandbLogger(
                    name=f"{self._experiment_name(cfg)}/{self.run_dir.name}",
                    save_dir=str(self.run_dir),
                    project=cfg.get("wandb_project") or "ssl-norms",
                    offline=self.wandb_mode == "offline",
                    # A run resumed in its own folder continues the same W&B run.
                    id=self._wandb_run_id(),
                    resume="allow",
                )
            )
        return loggers

    def _wandb_run_id(self) -> str:
        """The W&B run id of this run folder (``RUN_DIR/wandb/run_id``), made on first use."""
        assert self.run_dir is not None
        path = self.run_dir / "wandb" / "run_id"
        if path.is_file():
            return path.read_text().strip()
        import uuid

        run_id = uuid.uuid4().hex[:12]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
        return run_id

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        assert self.run_dir is not None
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        # Only a folder this call creates may be removed again if the run fails early.
        self._created_run_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config["default_root_dir"] = str(self.run_dir)
        if config.get("logger") in (None, True):
            config["logger"] = self._make_loggers(cfg)
        user_callbacks = config.get("callbacks") or []
        if not isinstance(user_callbacks, list):
            user_callbacks = [user_callbacks]
        checkpoints = [c for c in user_callbacks if isinstance(c, ModelCheckpoint)]
        for ckpt in checkpoints:
            if ckpt.dirpath is None:
                ckpt.dirpath = str(self.run_dir / "checkpoints")
        if not checkpoints and config.get("enable_checkpointing", True) is not False:
            user_callbacks.append(
                # Every epoch, not only on the KNNMonitor's evaluation epochs: a killed run
                # then loses at most one epoch.
                ModelCheckpoint(
                    dirpath=str(self.run_dir / "checkpoints"),
                    save_last=True,
                    save_on_train_epoch_end=True,
                )
            )
        config["callbacks"] = user_callbacks
        return super()._instantiate_trainer(config, callbacks)

    # ------------------------------------------------------------------ after a run
    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            self._finish_wandb()
            self._remove_failed_run_dir()
            raise
        self._finish_wandb()

    def _remove_failed_run_dir(self) -> None:
        """A run that failed before writing any checkpoint leaves no folder behind.

        A folder that holds a checkpoint is kept (it can be resumed: the NaN guard stops
        before the optimizer step, so its checkpoints are clean), and so is any folder
        that existed before this call (a resumed run).
        """
        rd = self.run_dir
        if rd is None or not getattr(self, "_created_run_dir", False) or not rd.is_dir():
            return
        if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) != 0:
            return
        if any(rd.glob("checkpoints/*.ckpt")):
            return
        shutil.rmtree(rd, ignore_errors=True)
        try:
            rd.parent.rmdir()  # runs/<name>/ when this was its only run
        except OSError:
            pass
        print(
            f"ssl-norms: the run failed before its first checkpoint; removed {rd}", file=sys.stderr
        )

    def _finish_wandb(self) -> None:
        """Close the W&B run, so that a second run in the same process starts a new one."""
        if self.wandb_mode == "disabled" or "wandb" not in sys.modules:
            return
        import wandb

        if wandb.run is not None:
            wandb.finish()

    def after_fit(self) -> None:
        """Tell where the run folder, the logs and the plots are (rank 0 only)."""
        if not self.trainer.is_global_zero or self.run_dir is None:
            return
        rd = self.run_dir
        lines = [f"ssl-norms: run folder   {rd}", f"  config              {rd / 'config.yaml'}"]
        last = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or ""
        if last:
            lines.append(f"  checkpoints         {last}")
        if (rd / "csv" / "metrics.csv").is_file():
            lines.append(f"  metrics (CSV)       {rd / 'csv' / 'metrics.csv'}")
        if self.wandb_mode == "offline":
            lines.append(
                f"  W&B (offline)       {rd / 'wandb'}   (upload: wandb sync {rd / 'wandb'}/offline-run-*)"
            )
        elif self.wandb_mode == "online":
            lines.append(f"  W&B                 {rd / 'wandb'}")
        lines.append(f"  plots               ssl-norms plot {rd}   (writes {rd / 'plots'})")
        print("\n".join(lines), flush=True)


def run(argv: list[str] | None = None, **kwargs: Any) -> SSLNormsCLI:
    """Run ``ssl-norms fit|validate|test ...`` (argv without the program name); returns the CLI.

    ``kwargs`` go to :class:`SSLNormsCLI` (tests pass e.g. ``run=False``).
    """
    if argv is not None and list(argv) == sys.argv[1:]:
        argv = None  # the real command line: let LightningCLI read sys.argv (no "args and argv" warning)
    options: dict[str, Any] = dict(
        model_class=SSLMethod,
        datamodule_class=LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunFolderConfigCallback,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=42,
        auto_configure_optimizers=False,
        args=argv,
    )
    options.update(kwargs)
    return SSLNormsCLI(**options)

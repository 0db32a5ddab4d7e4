"""``ssl-norms fit|validate|test``: the LightningCLI of ssl-norms (docs/contract.md, "Run folder").

Every ``fit`` writes into its own folder ``RUN_DIR`` (default
``runs/<name>/<YYYYmmdd-HHMMSS>``; ``--run_dir`` sets it, ``--name`` the experiment name):

- ``RUN_DIR/config.yaml``: the full resolved config (``run_dir`` and ``ckpt_path`` left
  out, so ``-c RUN_DIR/config.yaml`` re-runs it in a new folder);
- ``RUN_DIR/checkpoints/``: ``last.ckpt`` (always the latest state) and the latest epoch,
  written atomically (a failed save stops the run with exit 1 and leaves no partial file);
- ``RUN_DIR/csv/metrics.csv``: a CSV logger (kept and appended to on resume, without the
  rows logged after the checkpoint), so every run leaves plain files behind;
- ``RUN_DIR/wandb/``: a ``WandbLogger``, online when an API key and the network are there,
  else offline with a one-line notice (``--wandb`` forces a mode; ``WANDB_MODE`` is honoured).

One run per run folder: a fit holds ``RUN_DIR/.lock`` while it runs, and a fit into a folder
that holds another run is refused unless it resumes that run (``--ckpt_path`` of one of its
checkpoints) or asks for ``--new_version true`` (the run then goes to ``RUN_DIR-v<N>``).
Resume a run with ``ssl-norms fit -c RUN_DIR/config.yaml --ckpt_path RUN_DIR/checkpoints/last.ckpt``
(the checkpoint's run folder is the default ``--run_dir``); the model is built from the config
and a checkpoint that does not fit it is refused. ``validate``/``test`` never touch a run's
files: they write ``RUN_DIR/eval/<stage>-<time>/``.

Under ``torchrun`` or SLURM, every process derives the same folder from the launcher's id
(``SLURM_JOB_ID``, ``TORCHELASTIC_RUN_ID``); without one, a multi-process fit needs
``--run_dir``. Only global rank 0 checks, locks and writes the run folder.

Configs compose with several ``-c`` flags (``configs/README.md``).
"""

from __future__ import annotations

import logging
import netrc
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.trainer.states import TrainerStatus

from ssl_norms.checkpoint_io import AtomicCheckpointIO
from ssl_norms.config_errors import explain_config_error, strip_union_listing
from ssl_norms.loggers import ResumableCSVLogger
from ssl_norms.methods import SSLMethod
from ssl_norms.progress import ProgressLines, ProgressMode, TimedProgressBar, use_lines
from ssl_norms.resume import CheckpointInfo, check_checkpoint_fits, read_checkpoint_info
from ssl_norms.run_folder import (
    CKPT_KEYWORDS,
    RUN_DIR_ENV,
    RunFolderClaim,
    check_reuse,
    claim_run_folder,
    global_rank,
    resolve_run_folder,
)

__all__ = ["SSLNormsArgumentParser", "SSLNormsCLI", "resolve_wandb_mode", "run"]

WandbMode = Literal["auto", "online", "offline", "disabled"]
WANDB_HOST = "api.wandb.ai"
WANDB_HEALTH_URL = f"https://{WANDB_HOST}/healthz"
# The arguments being parsed and the directory they were given in, for config errors.
_ARGV: list[str] = []
_CWD: str = ""


class _NoLitLoggerTip(logging.Filter):
    """Lightning 2.6 advertises its LitLogger service at every Trainer start (an INFO
    record of ``lightning.pytorch.utilities.rank_zero``): not part of a run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoLitLoggerTip())

# Lightning 2.6 builds torch's deprecated ``LeafSpec`` in every fit (its own pytree helper,
# ``lightning.pytorch.utilities._pytree``). The FutureWarning is for Lightning's developers,
# and users can do nothing about it: hidden, for that module and message only.
warnings.filterwarnings(
    "ignore",
    message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    category=FutureWarning,
    module=r"lightning\.pytorch\.utilities\._pytree",
)


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


def _option_names(parser: Any) -> list[str]:
    """Every option name of ``parser`` and of its subcommands' parsers."""
    names = []
    for action in parser._actions:
        if isinstance(action.dest, str) and action.dest != "help":
            names.append(action.dest)
        for sub in (getattr(action, "_name_parser_map", None) or {}).values():
            names += _option_names(sub)
    return list(dict.fromkeys(names))


class SSLNormsArgumentParser(LightningArgumentParser):
    """LightningCLI's parser whose errors name the file, the full key and the choices.

    jsonargparse's own message (with the full usage and its union listing) is shown with
    ``SSL_NORMS_DEBUG=1``.
    """

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        if not self.exit_on_error or os.environ.get("SSL_NORMS_DEBUG"):
            return super().error(message, ex)
        try:
            text = explain_config_error(message, _ARGV, _option_names(self), _CWD or None)
        except Exception:  # never hide the parser's own message behind a bug of ours
            text = message
        # "ssl-norms fit", whatever sys.argv[0] is (python -m ssl_norms.cli, tests).
        words = self.prog.replace(" [options]", "").split()[1:]
        if not words and _ARGV and _ARGV[0] in ("fit", "validate", "test", "predict"):
            words = [_ARGV[0]]
        prog = " ".join(["ssl-norms", *words])
        sys.stderr.write(f"{prog}: error: {text}\n")
        sys.stderr.write(
            f"(`{prog} --help` lists every option; SSL_NORMS_DEBUG=1 shows the parser's full message)\n"
        )
        self.exit(2)


class RunFolderConfigCallback(SaveConfigCallback):
    """Saves the resolved config as ``RUN_DIR/config.yaml`` (``trainer.default_root_dir``),
    whatever the first logger is.

    ``run_dir``, ``new_version``, ``ckpt_path`` and ``trainer.default_root_dir`` are saved
    empty: they say where and how this run started, not what it is, and re-running the
    file with ``-c`` should start a new run in a new folder.
    """

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            run_dir = Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            config = self.config.clone()
            for key, value in (
                ("run_dir", None),
                ("new_version", False),
                ("ckpt_path", None),
                ("trainer.default_root_dir", None),
            ):
                if key in config:
                    config[key] = value
            # Written under a temporary name and renamed: a crash or a full disk never leaves
            # a half-written config.yaml that a later resume would read.
            final = run_dir / self.config_filename
            partial = run_dir / f".{self.config_filename}.partial"
            try:
                self.parser.save(
                    config, str(partial), skip_none=False, overwrite=True, multifile=False
                )
                os.replace(partial, final)
            finally:
                partial.unlink(missing_ok=True)
        self.already_saved = True


class SSLNormsCLI(LightningCLI):
    """LightningCLI with run folders, CSV + W&B loggers, checked resumes and atomic checkpoints."""

    run_dir: Path | None = None
    wandb_mode: str = "disabled"
    ckpt_info: CheckpointInfo | None = None
    _claim: RunFolderClaim | None = None

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
            help="the run folder (overrides --runs_root/--name/<timestamp>); validate/test write "
            "into its eval/ sub-folder",
        )
        parser.add_argument(
            "--runs_root", type=str, default="runs", help="parent folder of the run folders"
        )
        parser.add_argument(
            "--new_version",
            type=bool,
            default=False,
            help="fit: when --run_dir already holds another run, start this one in <run_dir>-v<N> "
            "instead of refusing",
        )
        parser.add_argument(
            "--wandb",
            type=WandbMode,
            default="auto",
            help="W&B mode: auto = online with an API key and network, else offline",
        )
        parser.add_argument("--wandb_project", type=str, default="ssl-norms", help="W&B project")
        parser.add_argument(
            "--progress",
            type=ProgressMode,
            default="auto",
            help="bar: Lightning's progress bar; lines: one line per epoch and per evaluation "
            "(ssl_norms.progress); auto: the bar in a terminal, lines otherwise (logs, CI, SLURM)",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        global _ARGV, _CWD
        _ARGV = [str(a) for a in args] if isinstance(args, list | tuple) else sys.argv[1:]
        _CWD = os.getcwd()
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Read and check ``--ckpt_path``; unlike LightningCLI, never replace the config's model.

        LightningCLI merges the checkpoint's hyperparameters into the config, so another
        method's checkpoint silently trains that method and command-line overrides are
        dropped. Here the model comes from the config and the checkpoint is checked against
        it once it is built (:func:`ssl_norms.resume.check_checkpoint_fits`).
        """
        self.ckpt_info = None
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or str(ckpt_path) in CKPT_KEYWORDS or "://" in str(ckpt_path):
            return
        self.ckpt_info = read_checkpoint_info(ckpt_path)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as error:
            # A class's own ValueError (unknown backbone, impossible setting) comes wrapped in
            # jsonargparse's union listing: keep the point.
            text = strip_union_listing(str(error))
            if text != str(error):
                raise ValueError(text) from error
            raise

    # ------------------------------------------------------------------ run folder
    def _cfg(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

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
        """The folder this process writes into (:func:`ssl_norms.run_folder.resolve_run_folder`)."""
        trainer = cfg.get("trainer") or {}
        run_dir = resolve_run_folder(
            stage=self.subcommand or "fit",
            base=Path(cfg.get("runs_root") or "runs") / self._experiment_name(cfg),
            explicit=cfg.get("run_dir") or trainer.get("default_root_dir"),
            ckpt_path=cfg.get("ckpt_path"),
            num_nodes=int(trainer.get("num_nodes") or 1),
        )
        if self.subcommand == "fit" and global_rank() == 0:
            # A first look, before anything is built; checked again under the lock.
            versioned = check_reuse(run_dir, cfg.get("ckpt_path"), bool(cfg.get("new_version")))
            if versioned != run_dir:
                print(
                    f"ssl-norms: {run_dir} holds another run; this one goes to {versioned}",
                    file=sys.stderr,
                )
            run_dir = versioned
        return run_dir

    def before_instantiate_classes(self) -> None:
        cfg = self._cfg()
        # The folder itself is created with the trainer, so that a config error leaves none.
        self.run_dir = self._resolve_run_dir(cfg)
        os.environ[RUN_DIR_ENV] = str(self.run_dir)
        self.wandb_mode, reason = resolve_wandb_mode(cfg.get("wandb") or "auto")
        if reason:
            # Our one-line notice (and the summary after fit) replace wandb's own banner.
            os.environ.setdefault("WANDB_SILENT", "true")
        if reason and global_rank() == 0:
            print(
                f"ssl-norms: W&B offline ({reason}); logs in {self.run_dir / 'wandb'}, upload later with `wandb sync`",
                file=sys.stderr,
            )

    def _make_loggers(self, cfg: Any) -> list[Logger]:
        assert self.run_dir is not None
        resume_step = (
            self.ckpt_info.log_step
            if self.ckpt_info is not None and self.subcommand == "fit"
            else None
        )
        loggers: list[Logger] = [
            ResumableCSVLogger(
                save_dir=str(self.run_dir), name="csv", version="", drop_from_step=resume_step
            )
        ]
        if self.wandb_mode != "disabled":
            from lightning.pytorch.loggers import WandbLogger

            os.environ["WANDB_DIR"] = str(self.run_dir)
            wandb_logger = WandbLogger(
                name=f"{self._experiment_name(cfg)}/{self.run_dir.name}",
                save_dir=str(self.run_dir),
                project=cfg.get("wandb_project") or "ssl-norms",
                offline=self.wandb_mode == "offline",
                # A run resumed in its own folder continues the same W&B run.
                id=self._wandb_run_id(),
                resume="allow",
            )
            # Lightning 2.6 always passes wandb.init(anonymous=None), which current wandb
            # answers with "The anonymous setting has no effect" on every run.
            wandb_logger._wandb_init.pop("anonymous", None)
            loggers.append(wandb_logger)
        return loggers

    def _wandb_run_id(self) -> str:
        """The W&B run id of this run folder (``RUN_DIR/wandb/run_id``), made on first use.

        The file also records the folder; a copied run folder gets an id of its own, so the
        copy never continues the original's W&B run. Only global rank 0 writes it.
        """
        import uuid

        assert self.run_dir is not None
        path = self.run_dir / "wandb" / "run_id"
        if path.is_file():
            lines = path.read_text().split("\n")
            folder = lines[1].strip() if len(lines) > 1 else ""
            if lines[0].strip() and folder in ("", str(self.run_dir)):
                return lines[0].strip()
        run_id = uuid.uuid4().hex[:12]
        if global_rank() == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{run_id}\n{self.run_dir}\n")
        return run_id

    def _release_lock(self) -> None:
        if self._claim is not None:
            self._claim.release()

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        assert self.run_dir is not None
        cfg = self._cfg()
        if self.ckpt_info is not None and self.subcommand is not None:
            # The model exists now (built from the config): refuse a checkpoint that does not
            # fit it before anything is written.
            for notice in check_checkpoint_fits(self.ckpt_info, self.model, self.subcommand):
                if global_rank() == 0:
                    print(f"ssl-norms: {notice}", file=sys.stderr)
        try:
            # Rank 0 creates the folder; a fit also locks it and checks it again.
            self._claim = claim_run_folder(
                self.run_dir,
                stage=self.subcommand or "run",
                ckpt_path=cfg.get("ckpt_path"),
            )
            return self._build_trainer(config, callbacks, cfg)
        except BaseException:
            self._release_lock()
            self._remove_failed_run_dir(quiet=True)
            raise

    def _build_trainer(
        self, config: dict[str, Any], callbacks: list[Callback], cfg: Any
    ) -> Trainer:
        assert self.run_dir is not None
        config["default_root_dir"] = str(self.run_dir)
        if config.get("logger") in (None, True):
            config["logger"] = self._make_loggers(cfg)
        plugins = config.get("plugins")
        plugins = (
            [] if plugins is None else list(plugins) if isinstance(plugins, list) else [plugins]
        )
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())  # whole checkpoints or a loud failure
        config["plugins"] = plugins
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
                # then loses at most one epoch. No version counter: last.ckpt is always the
                # latest state (never a stale last.ckpt next to a last-v1.ckpt).
                ModelCheckpoint(
                    dirpath=str(self.run_dir / "checkpoints"),
                    save_last=True,
                    save_on_train_epoch_end=True,
                    enable_version_counter=False,
                )
            )
        mode = cfg.get("progress") or "auto"
        # "auto" replaces the bar where it would be drawn; --trainer.enable_progress_bar false
        # still silences both. "lines" always prints them.
        if use_lines(mode) and (mode == "lines" or config.get("enable_progress_bar") is not False):
            config["enable_progress_bar"] = False
            user_callbacks.append(ProgressLines())
        elif config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in user_callbacks
        ):
            user_callbacks.append(TimedProgressBar())
        config["callbacks"] = user_callbacks
        return super()._instantiate_trainer(config, callbacks)

    # ------------------------------------------------------------------ after a run
    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            self._finish_wandb()
            interrupted = self.trainer.state.status == TrainerStatus.INTERRUPTED
            ctrl_c = interrupted and isinstance(sys.exc_info()[1], KeyboardInterrupt | SystemExit)
            self._release_lock()
            self._remove_failed_run_dir()
            if ctrl_c:
                self._print_resume_hint()
            raise
        finally:
            self._release_lock()
        self._finish_wandb()

    def before_fit(self) -> None:
        """Refuse a global batch that the processes cannot share, before any is started."""
        world = int(self.trainer.world_size)
        batch = getattr(self.datamodule, "batch_size", None)
        if world > 1 and isinstance(batch, int) and batch % world:
            lower = batch - batch % world
            raise ValueError(
                f"data.init_args.batch_size {batch} is the global batch of all {world} processes "
                f"(trainer.devices x trainer.num_nodes) and must be divisible by {world}: each loads "
                f"batch_size / {world}. Use e.g. {lower or world}, or another number of devices "
                "(docs/distributed.md)"
            )

    def _print_resume_hint(self) -> None:
        """After Ctrl-C: how to resume (or that there is nothing to resume)."""
        rd = self.run_dir
        if rd is None or global_rank() != 0 or self.subcommand != "fit":
            return
        last = rd / "checkpoints" / "last.ckpt"
        if last.is_file():
            print(
                "ssl-norms: interrupted. Resume from the last checkpoint with:\n"
                f"  ssl-norms fit -c {rd / 'config.yaml'} --ckpt_path {last}",
                file=sys.stderr,
            )
        else:
            print(
                "ssl-norms: interrupted before the first checkpoint: nothing to resume",
                file=sys.stderr,
            )

    def _remove_failed_run_dir(self, quiet: bool = False) -> None:
        """A run that failed before writing any checkpoint leaves no folder behind.

        A folder that holds a checkpoint is kept (it can be resumed: the NaN guard stops
        before the optimizer step, so its checkpoints are clean), and so is any folder
        that existed before this call (a resumed run).
        """
        rd = self.run_dir
        if rd is None or self._claim is None or not self._claim.created or not rd.is_dir():
            return
        if global_rank() != 0:
            return
        if any(rd.glob("checkpoints/*.ckpt")):
            return
        shutil.rmtree(rd, ignore_errors=True)
        self._claim.created = False
        try:
            rd.parent.rmdir()  # runs/<name>/ (or RUN/eval/) when this was its only folder
        except OSError:
            pass
        if not quiet:
            print(
                f"ssl-norms: the run failed before its first checkpoint; removed {rd}",
                file=sys.stderr,
            )

    def _finish_wandb(self) -> None:
        """Close the W&B run, so that a second run in the same process starts a new one."""
        if self.wandb_mode == "disabled" or "wandb" not in sys.modules:
            return
        import wandb

        if wandb.run is not None:
            wandb.finish()

    def _after_evaluation(self) -> None:
        if self.trainer.is_global_zero and self.run_dir is not None:
            print(f"ssl-norms: evaluation written to {self.run_dir}", flush=True)

    def after_validate(self) -> None:
        self._after_evaluation()

    def after_test(self) -> None:
        self._after_evaluation()

    def after_fit(self) -> None:
        """Tell where the run folder, the logs and the plots are (rank 0; existing files only)."""
        if not self.trainer.is_global_zero or self.run_dir is None:
            return
        rd = self.run_dir
        lines = [f"ssl-norms: run folder   {rd}"]
        if (rd / "config.yaml").is_file():
            lines.append(f"  config              {rd / 'config.yaml'}")
        last = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or ""
        if last and Path(last).is_file():
            lines.append(f"  checkpoints         {last}")
        if (rd / "csv" / "metrics.csv").is_file():
            lines.append(f"  metrics (CSV)       {rd / 'csv' / 'metrics.csv'}")
        if self.wandb_mode == "offline" and (rd / "wandb").is_dir():
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
        parser_class=SSLNormsArgumentParser,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=42,
        auto_configure_optimizers=False,
        args=argv,
    )
    options.update(kwargs)
    return SSLNormsCLI(**options)

"""The ``ssl-norms`` command.

``fit|validate|test|predict`` go to the LightningCLI (``ssl_norms.lightning_cli``);
``simulate`` and ``plot`` are light subcommands that never import Lightning.
"""

from __future__ import annotations

import errno
import json
import os
import sys

USAGE = """usage: ssl-norms {fit,validate,test,predict,simulate,plot,reproduce,analyze,dashboard} ...

Train and analyse self-supervised models while watching their embedding norms.

subcommands:
  fit -c CONFIG         train (LightningCLI; `ssl-norms fit --help` lists every option)
  validate|test -c CONFIG --ckpt_path CKPT
                        k-NN accuracy and norm statistics of a checkpoint
                        (written to RUN_DIR/eval/, the run's own files untouched)
  simulate {aparametric,latent-classes} --out DIR
                        the simulations of the paper's Section 4 (Figure 2)
  plot RUN_DIR          draw norm, effective-lr and k-NN curves from a run's CSV logs
  reproduce NAME... [--profile paper|cpu|smoke] [-- FIT_ARGS]
                        run results of the paper (table1, table2, table3, table-s1,
                        table-s2, fig3, fig4, fig5, fig-s4, fig-s6, all) and write
                        results/REPORT.md beside the paper's values
  analyze -c CONFIG --ckpt CKPT [--ood NAME[=FOLDER] ...] [--human-labels FOLDER] --out DIR
                        the norm as a confidence score: DIR/report.md with its figures
  dashboard --entity E --project P
                        save a W&B workspace with the metrics of ssl-norms, by family

examples:
  ssl-norms fit -c configs/demo.yaml
  ssl-norms fit -c configs/base/simclr.yaml -c configs/data/cifar10.yaml -c configs/overrides/cut.yaml
  ssl-norms fit -c RUN_DIR/config.yaml --ckpt_path RUN_DIR/checkpoints/last.ckpt   (resume)
  ssl-norms simulate aparametric --out results/fig2
"""

LIGHTNING_SUBCOMMANDS = {"fit", "validate", "test", "predict"}
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
# When set, a failed fit|validate|test writes {"type", "message"} there (``ssl-norms
# reproduce`` reads it to tell a data failure, shared by a column of cells, from a run's own).
ERROR_FILE_ENV = "SSL_NORMS_ERROR_FILE"


def _record_error(error: BaseException) -> None:
    path = os.environ.get(ERROR_FILE_ENV)
    if not path:
        return
    try:
        with open(path, "w") as file:
            json.dump({"type": type(error).__name__, "message": str(error)}, file)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "simulate":
        from ssl_norms.simulate.cli import main as simulate_main

        return simulate_main(rest)
    if command == "plot":
        from ssl_norms.plot import main as plot_main

        return plot_main(rest)
    if command == "reproduce":
        from ssl_norms.reproduce import main as reproduce_main

        return reproduce_main(rest)
    if command == "analyze":
        from ssl_norms.analyze import main as analyze_main

        return analyze_main(rest)
    if command == "dashboard":
        from ssl_norms.dashboard import main as dashboard_main

        return dashboard_main(rest)
    if command in LIGHTNING_SUBCOMMANDS or command.startswith("--"):
        from ssl_norms.checkpoint_io import CheckpointWriteError
        from ssl_norms.lightning_cli import run

        try:
            run(argv)
        except (FileNotFoundError, ValueError, FloatingPointError, CheckpointWriteError) as error:
            # Bad input (missing data, impossible settings, a bad checkpoint or run folder, a
            # loss that turned NaN, a disk that filled) has a message that names the problem
            # and the fix: show it without a traceback.
            _record_error(error)
            if os.environ.get("SSL_NORMS_DEBUG"):
                raise
            print(f"ssl-norms: error: {error}", file=sys.stderr)
            print("(set SSL_NORMS_DEBUG=1 to see the traceback)", file=sys.stderr)
            return 1
        except OSError as error:
            # A full disk or a folder that turned read-only while logs are written.
            if error.errno not in _STORAGE_ERRNOS or os.environ.get("SSL_NORMS_DEBUG"):
                raise
            _record_error(error)
            where = f": {error.filename}" if error.filename else ""
            print(f"ssl-norms: error: {error.strerror}{where}", file=sys.stderr)
            print("(set SSL_NORMS_DEBUG=1 to see the traceback)", file=sys.stderr)
            return 1
        return 0
    print(f"ssl-norms: unknown subcommand {command!r}\n", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``ssl-norms`` command.

``fit|validate|test|predict`` go to the LightningCLI (``ssl_norms.lightning_cli``);
``simulate`` and ``plot`` are light subcommands that never import Lightning.
"""

from __future__ import annotations

import os
import sys

USAGE = """usage: ssl-norms {fit,validate,test,predict,simulate,plot,reproduce,analyze,dashboard} ...

Train and analyse self-supervised models while watching their embedding norms.

subcommands:
  fit -c CONFIG         train (LightningCLI; `ssl-norms fit --help` lists every option)
  validate|test -c CONFIG --ckpt_path CKPT
                        k-NN accuracy and norm statistics of a checkpoint
  simulate {aparametric,latent-classes} --out DIR
                        the simulations of the paper's Section 4 (Figure 2)
  plot RUN_DIR          draw norm, effective-lr and k-NN curves from a run's CSV logs
  reproduce {table2,table3} [-- FIT_ARGS]
                        run a k-NN table of the paper (one fit per cell) and compare
  analyze -c CONFIG --ckpt CKPT [--ood NAME[=FOLDER] ...] --out DIR
                        the norm as a confidence score: DIR/report.md with its figures
  dashboard --entity E --project P
                        save a W&B workspace with the metrics of ssl-norms, by family

examples:
  ssl-norms fit -c configs/demo.yaml
  ssl-norms fit -c configs/cifar10/simclr.yaml -c configs/overrides/cut.yaml
  ssl-norms simulate aparametric --out results/fig2
"""

LIGHTNING_SUBCOMMANDS = {"fit", "validate", "test", "predict"}


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
        from ssl_norms.lightning_cli import run

        try:
            run(argv)
        except (FileNotFoundError, ValueError, FloatingPointError) as error:
            # Bad input (missing data, impossible settings, a loss that turned NaN) has a
            # message that names the problem and the fix: show it without a traceback.
            if os.environ.get("SSL_NORMS_DEBUG"):
                raise
            print(f"ssl-norms: error: {error}", file=sys.stderr)
            print("(set SSL_NORMS_DEBUG=1 to see the traceback)", file=sys.stderr)
            return 1
        return 0
    print(f"ssl-norms: unknown subcommand {command!r}\n", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

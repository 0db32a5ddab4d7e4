"""``ssl-norms reproduce``: every table and figure of the paper by one command each.

- :mod:`~ssl_norms.reproduce.runs`: training runs (a spec, its folder, resuming, failures);
- :mod:`~ssl_norms.reproduce.profiles`: the ``paper``, ``cpu`` and ``smoke`` sizes;
- :mod:`~ssl_norms.reproduce.tables`: Tables 1, 2, 3 and S2 (k-NN from the training logs);
- :mod:`~ssl_norms.reproduce.embedded`: Table S1 and Figures 3/S5, 4 and S6 (from a
  checkpoint's embeddings, :mod:`~ssl_norms.reproduce.embeddings`);
- :mod:`~ssl_norms.reproduce.curves`: Figures 5/S3 and S4 (curves from the training logs);
- :mod:`~ssl_norms.reproduce.report`: ``results/REPORT.md``;
- :mod:`~ssl_norms.reproduce.cli`: the command.

Light on import: the runs are subprocesses, so this package never imports Lightning.
"""

from ssl_norms.reproduce.cli import RUNNERS, main

__all__ = ["RUNNERS", "main"]

"""The SSL LightningModules (docs/contract.md, docs/definitions.md).

``SimCLR``, ``SimSiam`` and ``BYOL`` derive from ``SSLMethod``, which holds the backbone,
cut-initialisation, GradScale, the optimizer (SGD or LARS) and the warm-up + cosine
schedule (stepped per optimizer step). From Python::

    from ssl_norms.methods import SimCLR
    model = SimCLR(backbone="resnet18", backbone_width=16, cut_constant=3.0, gradscale_power=0.0)
    h = model(x)          # backbone features (k-NN)
    z = model.embed(x)    # loss-space embedding before normalisation (norms are measured here)

From the command line: ``ssl-norms fit -c configs/base/simclr.yaml -c configs/data/cifar10.yaml``
(``configs/README.md``). ``SSLMethod.load_from_checkpoint(path)`` rebuilds the method a
checkpoint of ``ssl-norms fit`` was trained with.
"""

from ssl_norms.methods.base import SSLMethod, StepOutput
from ssl_norms.methods.byol import BYOL
from ssl_norms.methods.simclr import SimCLR
from ssl_norms.methods.simsiam import SimSiam

METHODS = {"simclr": SimCLR, "simsiam": SimSiam, "byol": BYOL}

__all__ = ["BYOL", "METHODS", "SSLMethod", "SimCLR", "SimSiam", "StepOutput", "get_method"]


def get_method(name: str) -> type[SSLMethod]:
    """The method class by name (``simclr``, ``simsiam``, ``byol``); clear error otherwise."""
    try:
        return METHODS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown SSL method {name!r}: choose one of {sorted(METHODS)}") from None

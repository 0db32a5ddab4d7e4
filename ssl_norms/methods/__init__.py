"""The SSL LightningModules (DESIGN §2-4, docs/contract.md)."""

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

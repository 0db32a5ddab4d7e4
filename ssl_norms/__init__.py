"""ssl-norms: embedding norms in self-supervised learning (Draganov et al., ICML 2025).

Light on import: the heavy stack (lightning, torchvision, wandb) is imported only by the
modules that need it.
"""

__version__ = "0.1.0"

"""The simulations of paper Section 4 / Appendix B (Figure 2).

* ``aparametric``: Fig. 2a (App. B.1), steps of gradient descent on the cosine similarity
  against embedding norm and angle (``steps_to_converge``, ``aparametric_sweep``).
* ``parametric``: Figs. 2b and 2c (App. B.2), an MLP trained with supervised InfoNCE on
  latent classes (``density_experiment``, ``imbalance_experiment``).
* ``latent_classes``: the data generator shared with ``datamodules``.
* ``cli``: ``ssl-norms simulate aparametric|latent-classes --out DIR``.

Submodules are imported on demand so that ``import ssl_norms.simulate`` stays cheap.
"""

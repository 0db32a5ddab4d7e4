"""The simulations of paper Section 4 / Appendix B."""

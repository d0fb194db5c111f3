"""Invariance and equivariance of a network's fc7 (Eqs. 2 and 8), measured as the paper did.

Modules, in the order the numbers flow:
    phi      phi_fc7 (after relu7 and drop7 at TEST) of a split under one fixed transform, cached in the store
    fitters  equivariance maps M_g(r) = ReLU((W + I) r + b) from phi(gx) to phi(x): `fast`, `paper`, `authors`
    metrics  L_err through the net's fixed fc8 and L_L2 (two normalisations), for M_g and for M_g = identity
    study    one (net, family) over the family's measurement grid: phi, fit, metrics, cached per setting
"""

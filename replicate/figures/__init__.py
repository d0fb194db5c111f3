"""Figures 1, 2, 7-10: invariance and equivariance of the zoo, drawn like the paper's (matplotlib, Agg).

    run       what every figure command does: data, missing nets trained, measurements, outputs, claims
    specs     which nets, families and datasets each figure shows, and how its panels are laid out
    plot      panels to PNG + PDF, and the CSV of every plotted value (written atomically)
    claims    the paper's statements about these figures as checks on the measured numbers
"""

"""skmoe demonstration: a mixture of experts against its single expert.

Generates tabular data whose target follows different linear laws in
different regions of the input space (a gated mixture of experts, which one
linear model cannot represent), fits a mixture of ridge experts and a single
ridge regression, and prints how they compare on held-out data. Then does
the same for classification with logistic experts. The code lives in
``skmoe._demo``; ``skmoe demo`` runs it too and also draws a figure.

Run:  python examples/demo.py
"""

from skmoe._demo import run

if __name__ == "__main__":
    run()

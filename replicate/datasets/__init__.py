"""Datasets: the embedded, generated stand-ins for RVL-CDIP, ILSVRC and ANDOC (replicate.datasets.embedded)."""

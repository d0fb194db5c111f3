"""Drawing the paper's figures (matplotlib, Agg); what each figure measures lives in replicate/experiments/.

    plot            panels of lines over a measurement grid (Figs. 1, 2, 7-10) to PNG + PDF
    distance_plots  K-NN curves, family heatmaps, t-SNE and asymmetry heatmaps (Figs. 3, 11, 12)
"""

"""Tools on top of the pipeline: parameter sweeps, the SpKeras front end, NIR export and its runs in
snnTorch / Norse / Sinabs, plots."""

"""Chapter 1: Tokenization & Sampling. One module per section: lesson function(s) + render()."""

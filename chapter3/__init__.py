"""Chapter 3: The Speed of Inference. One module per section: lesson function(s), prepare()
(what the page computes and measures for it) and render()."""

from chapter3 import batching, flash, paged, quantize, roofline, speculative

SECTIONS = [roofline, batching, flash, quantize, speculative, paged]

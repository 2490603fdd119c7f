"""The steps of the method, in the order a fit runs them: anchor matching, pseudo-pairs,
the refinements (refine-1, refine-transport, refine-assignment, refine-2, refine-mutual) and
the unpaired confidence checks. Each is a function of its rows and settings; the pipeline
(:mod:`minivec2vec.pipeline`) chains them."""

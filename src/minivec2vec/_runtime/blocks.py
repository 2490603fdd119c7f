"""Block sizes: how many rows the library handles at once, named in one place.

Two sizes, each for a reason of its own:

* :data:`BLOCK_ROWS` (65,536) bounds every pass that walks an array block by block so that no
  temporary is the size of the whole array: the reading pass and the finiteness checks, the
  float32 copies of the kNN database, centring, mapping (``transform``), the relative
  representations, and the chunks of ``apply`` and of the store migrations. The memory plan
  (:mod:`minivec2vec._runtime.memory`) may choose fewer rows under a ``memory_limit``, never more.
* :data:`SUM_ROWS` (8,192) is the fixed sub-block in which float64 sums are accumulated, in row
  order: the column sums of the reading pass and of the partial states (so the mean of an array
  is bit-identical whichever computes it), the mean centred norm, the float64 cross-covariance,
  and the synthetic generator's chunks (each chunk drawn from its own seed, so a file's rows do
  not depend on its shards). These results depend on the value to the bit: changing it changes
  the maps.

Evaluation pools (how many test pairs are ranked) are not block sizes: see
:data:`minivec2vec.evaluation.protocol.TEST_POOL`.
"""
from __future__ import annotations

BLOCK_ROWS = 65536
SUM_ROWS = 8192
# rows per record batch read from a Parquet file (the rows are copied out batch by batch)
PARQUET_BATCH_ROWS = 8192

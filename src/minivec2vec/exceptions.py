"""The exceptions and the warning minivec2vec raises, one class per kind of problem.

Every class derives from :class:`MiniVec2VecError` (catch it to catch anything this package
refuses) AND from the built-in exception that the same problem raised before these classes
existed, so ``except ValueError`` / ``except TypeError`` / ``except OSError`` /
``except MemoryError`` code keeps working::

    MiniVec2VecError(Exception)
    ├── InputError(ValueError)              bad values or shape of an input array
    │   ├── NonFiniteError                  a row holds NaN or Inf
    │   ├── ZeroRowError                    an all-zero row, or a row equal to the training mean
    │   ├── ShapeError                      empty input, not 2-D, no features
    │   │   └── DimensionMismatchError      feature count differs from the other side / the map
    │   └── TooFewRowsError                 fewer rows than clusters, anchors, k or the minimum
    ├── InputFileError(ValueError)          unreadable, truncated or inconsistent input files
    ├── PathNotFoundError(FileNotFoundError) an input file, directory or map file is missing
    ├── DtypeError(TypeError)               integer, bool, complex or object dtype
    ├── MapFileError(ValueError)            corrupt, truncated, altered or pickle-bearing map file
    │   └── MapFileVersionError             map file written by a newer format version
    ├── OutputPathError(OSError)            an output path that cannot be written
    │   └── OutputDirectoryNotFoundError(FileNotFoundError)  its directory does not exist
    ├── PartialStateError(ValueError)       partial states that cannot be merged or finalised
    ├── InvalidParameterError(ValueError)   a parameter value out of its range or unknown
    ├── ParameterTypeError(TypeError)       a parameter of the wrong type
    ├── MissingDependencyError(ImportError) an optional extra (dask, pyarrow) is not installed
    ├── MemoryLimitError(MemoryError)       memory_limit too small for one block
    └── NotFittedError(RuntimeError)        transform/save before fit

    AlignmentWarning(UserWarning)           a fit the unpaired self-check finds doubtful
"""
from __future__ import annotations


class MiniVec2VecError(Exception):
    """Base class of every exception raised on purpose by minivec2vec."""


class InputError(MiniVec2VecError, ValueError):
    """An input array has bad values or a bad shape."""


class NonFiniteError(InputError):
    """A row holds NaN or Inf."""


class ZeroRowError(InputError):
    """A row is all zeros (or, once centred, equal to the training mean): it has no direction."""


class ShapeError(InputError):
    """The array is empty, not 2-D, or has no features."""


class DimensionMismatchError(ShapeError):
    """The number of features differs from what the other input or the fitted map expects."""


class TooFewRowsError(InputError):
    """Fewer rows than the requested clusters, anchors, neighbours or the documented minimum."""


class DtypeError(MiniVec2VecError, TypeError):
    """The array's dtype is not float16, float32 or float64."""


class MapFileError(MiniVec2VecError, ValueError):
    """The map file is corrupt, truncated, altered, holds pickled data, or is not a map file."""


class MapFileVersionError(MapFileError):
    """The map file was written by a newer map format version than this minivec2vec reads."""


class OutputPathError(MiniVec2VecError, OSError):
    """An output file cannot be written there (missing directory, not writable, a directory)."""


class MemoryLimitError(MiniVec2VecError, MemoryError):
    """``memory_limit`` is too small for even one block of the computation."""


class NotFittedError(MiniVec2VecError, RuntimeError):
    """transform/save called before fit."""


class InputFileError(MiniVec2VecError, ValueError):
    """An input file cannot be read as embeddings: not .npy/Parquet, truncated (also while it
    is read), Fortran-ordered, shards that do not match, a missing or ambiguous column."""


class PathNotFoundError(MiniVec2VecError, FileNotFoundError):
    """An input file or directory, or a map file, does not exist."""


class OutputDirectoryNotFoundError(OutputPathError, FileNotFoundError):
    """The directory an output file should be written to does not exist."""


class PartialStateError(MiniVec2VecError, ValueError):
    """Partial states that describe different data, hold no rows, or lack what is asked."""


class InvalidParameterError(MiniVec2VecError, ValueError):
    """A parameter value outside its range, an unknown name or an unknown choice."""


class ParameterTypeError(MiniVec2VecError, TypeError):
    """A parameter of the wrong type (e.g. a string where an integer is expected)."""


class MissingDependencyError(MiniVec2VecError, ImportError):
    """An optional dependency (dask, pyarrow) needed for this input is not installed."""


class AlignmentWarning(UserWarning):
    """A fit finished, but the unpaired self-check finds the map doubtful (no restart came
    back to its map after being turned away, no two restarts agreed, or the known pairs'
    held-out check failed). The message names the reason."""

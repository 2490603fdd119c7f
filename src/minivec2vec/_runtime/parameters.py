"""The estimator's parameters, declared once.

:data:`PARAMETERS` lists every parameter of :class:`minivec2vec.MiniVec2Vec` in the order of its
``__init__`` signature, with its default, the rule a value must follow and a one-line summary
(the class docstring has the full story). Everything else reads this list:

* ``MiniVec2Vec.__init__`` spells the same names and defaults out as keyword parameters (so that
  its signature can be read by people and by tools); a test checks that the two agree;
* ``get_params`` / ``set_params`` and the map file (which stores ``get_params()``);
* :func:`check_params`, which ``fit`` and ``fit_from_sample`` call before any work;
* the flags of ``minivec2vec fit``: every ``"int"`` and ``"float"`` parameter becomes
  ``--name-with-dashes``, and the others are set by the flag named in :attr:`Parameter.flag`.

Error messages start with the parameter's name. Integers that break their minimum raise
InvalidParameterError ("n_runs: must be >= 1, got 0"), values of the wrong type
ParameterTypeError, except where a rule below says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..exceptions import InvalidParameterError
from .threads import resolve_n_threads
from .validation import check_positive_int, check_random_state, parse_memory


@dataclass(frozen=True)
class Parameter:
    """One parameter of the estimator.

    kind : how a value is checked and how the CLI sets it:
        ``"int"`` an integer of at least ``minimum``; ``"float"`` a number (``rule`` checks it);
        ``"bool"`` True or False; ``"seed"`` None, an int or a numpy Generator; ``"threads"``
        None or an int >= 1; ``"memory"`` None, bytes or a string like "2GB".
    rule : an extra check of the value (raises with the parameter's name), after the kind's.
    flag : the ``minivec2vec fit`` flag that sets it (default ``--name-with-dashes``).
    checked_at_use : True for the parameters that the fit checks where it first uses them
        (the seed when it draws rows, the thread count when it starts the stages, the memory
        limit when it plans them) rather than in :func:`check_params`; a fit still refuses a bad
        value before any stage runs.
    """
    name: str
    default: Any
    kind: str
    doc: str
    minimum: int = 1
    rule: Optional[Callable[[Any], None]] = None
    flag: Optional[str] = None
    checked_at_use: bool = False

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value) -> None:
        """Raise InvalidParameterError / ParameterTypeError unless ``value`` is allowed."""
        if self.kind == "int":
            check_positive_int(value, self.name, minimum=self.minimum)
        elif self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise InvalidParameterError(f"{self.name}: expected True or False, got {value!r}")
        elif self.kind == "seed":
            check_random_state(value)
        elif self.kind == "threads":
            resolve_n_threads(value)
        elif self.kind == "memory":
            parse_memory(value)
        if self.rule is not None:
            self.rule(value)


def _alpha_rule(alpha):
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha <= 1.0):
        raise InvalidParameterError(f"alpha: must be in (0, 1], got {alpha!r}")


def _weight_rule(weight):
    if (not isinstance(weight, (int, float)) or isinstance(weight, bool)
            or not np.isfinite(weight) or weight < 0):
        raise InvalidParameterError(f"known_pairs_weight: must be a finite number >= 0, got {weight!r}")


def _clusters_rule(n_clusters):
    if n_clusters < 3:
        raise InvalidParameterError(f"n_clusters: anchor matching needs at least 3 clusters, got {n_clusters}")


def _int(name, default, doc, minimum=1, rule=None):
    return Parameter(name, default, "int", doc, minimum=minimum, rule=rule)


PARAMETERS: tuple[Parameter, ...] = (
    _int("n_runs", 30, "anchor-matching runs (s); each contributes n_clusters anchor pairs"),
    _int("n_clusters", 20, "clusters per anchor run (c), at least 3", rule=_clusters_rule),
    _int("anchor_sample", 10000, "rows drawn per side for each anchor run"),
    _int("qap_restarts", 30, "random 2-opt starts of the quadratic assignment per anchor run"),
    _int("n_neighbors", 50, "k of the pseudo-pairs from relative representations"),
    _int("refine_iter", 100, "refine-1 iterations (T)", minimum=0),
    _int("refine_sample", 1000, "rows of A sampled per refine-1 iteration (n_s)"),
    _int("refine_neighbors", 50, "k' of refine-1"),
    Parameter("alpha", 0.5, "float", "smoothing: W <- (1 - alpha) W + alpha W_new, in (0, 1]",
              rule=_alpha_rule),
    _int("transport_iter", 200, "iterations of refine-transport on small inputs (0 skips it)",
         minimum=0),
    _int("transport_rows", 1500, "refine-transport runs when the smaller side has at most this "
         "many rows"),
    _int("assignment_iter", 1000, "steps of refine-assignment on large inputs (0 skips it)",
         minimum=0),
    _int("assignment_rows", 2000, "rows per side of each refine-assignment batch"),
    _int("refine_clusters", 500, "clusters of refine-2 (c'); 0 skips refine-2", minimum=0),
    _int("mutual_iter", 12, "iterations of refine-mutual (0 skips it)", minimum=0),
    _int("mutual_sample", 10000, "rows per side of the first refine-mutual iterations"),
    _int("mutual_final_sample", 30000, "rows per side of the last refine-mutual iteration, at "
         "least mutual_sample"),
    _int("csls_k", 10, "neighbourhood size of the CSLS hubness correction"),
    Parameter("reproject", True, "bool", "re-project W onto the (semi-)orthogonal matrices after "
              "each update", flag="--no-reproject"),
    Parameter("random_state", None, "seed", "drives every random choice", flag="--seed",
              checked_at_use=True),
    Parameter("n_threads", None, "threads", "threads for every kernel (default: all cores)",
              flag="--n-threads", checked_at_use=True),
    Parameter("memory_limit", None, "memory", "bound on the process's memory (bytes or e.g. "
              "'2GB')", flag="--memory-limit", checked_at_use=True),
    _int("fit_sample", 100_000, "rows per side the stages work on"),
    _int("n_restarts", 1, "independent runs of the stages up to refine-1"),
    _int("extra_restarts", 5, "restarts added while the kept map is not confirmed", minimum=0),
    _int("confidence_sample", 5000, "rows per side used to compute the confidence score"),
    Parameter("known_pairs_weight", 5.0, "float", "how many mutual pairs each known pair counts "
              "as in refine-mutual", rule=_weight_rule),
    Parameter("verbose", False, "bool", "print each stage's start and end on stderr",
              flag="--quiet"),
)

PARAMETER_NAMES: tuple[str, ...] = tuple(p.name for p in PARAMETERS)
DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMETERS}


def check_params(values: dict) -> None:
    """Check every parameter not ``checked_at_use``, in declaration order, then the relation
    between them (``mutual_final_sample >= mutual_sample``); the first problem raises."""
    for parameter in PARAMETERS:
        if not parameter.checked_at_use:
            parameter.check(values[parameter.name])
    if values["mutual_final_sample"] < values["mutual_sample"]:
        raise InvalidParameterError(f"mutual_final_sample: must be at least mutual_sample="
                                    f"{values['mutual_sample']}, got {values['mutual_final_sample']}")


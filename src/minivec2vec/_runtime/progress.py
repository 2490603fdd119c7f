"""The stage log of a fit: each stage's start and end on the ``minivec2vec`` logger, its time
summed into ``timings_``, and (in a verbose fit) the records and progress bars on stderr."""
from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time

logger = logging.getLogger("minivec2vec")

# True inside a verbose fit: stages with a count of steps show a progress bar on stderr
SHOW_BARS = contextvars.ContextVar("minivec2vec_show_bars", default=False)


def no_step(n=1):
    pass


@contextlib.contextmanager
def stage(timings, name, what="", steps=None):
    """Time one stage into ``timings[name]`` (summed over restarts) and log its start and end
    on the ``minivec2vec`` logger. Yields the callable the stage calls after each of its
    ``steps``: in a verbose fit it advances a progress bar on stderr, otherwise it does
    nothing."""
    logger.info("%s: started%s", name, f" ({what})" if what else "")
    bar = progress_bar(name, steps)
    t = time.perf_counter()
    try:
        yield no_step if bar is None else bar.update
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t
    timings[name] = timings.get(name, 0.0) + seconds
    logger.info("%s: done in %.1f s", name, seconds)


def progress_bar(name, total, unit="step"):
    """A tqdm bar on stderr for a stage of ``total`` steps in a verbose fit, else None. It is
    cleared when the stage ends, so the log keeps one line per stage start and end."""
    if not total or not SHOW_BARS.get():
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=f"  {name}", unit=unit, unit_scale=unit == "rows",
                file=sys.stderr, leave=False, dynamic_ncols=True)


class _ElapsedFilter(logging.Filter):
    def __init__(self):
        super().__init__()
        self.t0 = time.perf_counter()

    def filter(self, record):
        record.elapsed = time.perf_counter() - self.t0
        return True


@contextlib.contextmanager
def stage_log_to_stderr(verbose):
    """With ``verbose``, show the ``minivec2vec`` logger's INFO records on stderr for the
    duration of a fit, each with the seconds since the fit began (an application that
    configured logging itself gets them through its own handlers instead), and progress bars
    for the stages that count steps."""
    if not verbose:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("minivec2vec [%(elapsed)7.1f s] %(message)s"))
    handler.addFilter(_ElapsedFilter())
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    bars = SHOW_BARS.set(True)
    try:
        yield
    finally:
        SHOW_BARS.reset(bars)
        logger.removeHandler(handler)
        logger.setLevel(level)

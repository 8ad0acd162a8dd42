"""The contract every log backend passes: one suite, run once per backend.

Every test takes the ``backend`` fixture (or ``open_log`` / ``log`` built on it), which is
parametrized over ``backends.BACKENDS``. A new backend adds one ``Backend`` entry there: how to
open a log at a path, and the few backend-specific tools the suite needs (another process
holding the write lock, whether its cross-process waker runs, whether a read snapshot is
pinned, and deliberately broken or faulty variants). The broken variants are negative
controls: the suite runs its properties against them and asserts they fail, and why.

What the suite asserts is behaviour a user relies on: expectations, atomic multi-stream
appends, idempotency keys and outcomes, bad input writing nothing, reads, typed events,
racing appends (``history.py`` replays them against a model), group-commit batches equal to
their appends run one by one, two processes racing and following each other, subscriptions
(catch-up to live, bounded buffering, checkpoints), LogBusy, and the idle cost of a subscriber.
"""

"""Paddle's dygraph-to-static conversion, made safe to repeat in one process.

Paddle 2.6 records the parameters a conversion touches in a process-wide table keyed by
``id(program)`` and removes the entry when the conversion finishes. A conversion that
raises midway (PaddleSlim tracing a model static Paddle refuses, a bad export) leaves
its entry behind; once that program is garbage-collected, a later program can get the
same id and inherit the stale parameters. Seen in CI: ``paddle.jit.save`` of a one-conv
model failed with ``KeyError: 'batch_norm2d_35.b_0_deepcopy_82'``, a parameter of a model
deep-copied by an earlier compression run. Clearing the table right before building a
program (never during one: vslim converts on one thread) removes only such leftovers.
"""

from __future__ import annotations


def forget_failed_traces() -> None:
    """Drop parameter records left by conversions that raised; call right before a conversion."""
    from paddle.jit.dy2static.program_translator import ProgramTranslator

    recorder = getattr(ProgramTranslator.get_instance(), "_params_recorder", None)
    if recorder is not None and hasattr(recorder, "params_dict"):
        recorder.params_dict.clear()

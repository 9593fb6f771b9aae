"""Keeps coqui-tts's XTTS GPT working across transformers' rename of the KV-cache argument.

transformers 5.24 renamed the key/value cache from ``past_key_values`` to ``cache`` all
through generation (``transformers/generation/utils.py``):

* ``GenerationMixin._prepare_cache_for_generation`` stores the new ``DynamicCache`` as
  ``model_kwargs["cache"]`` (5.23: ``model_kwargs["past_key_values"]``);
* ``GenerationMixin.prepare_inputs_for_generation`` now takes ``cache`` and returns it as
  ``model_inputs["cache"]`` (5.23: ``model_inputs["past_key_values"]``);
* ``GenerationMixin._update_model_kwargs_for_generation`` carries ``outputs["cache"]`` into
  the next step's ``model_kwargs["cache"]``.

So every decoding step calls the model's ``forward(..., cache=<Cache>)``. transformers keeps
the old name working where it owns the code (``ModelOutput`` accepts and reads
``past_key_values`` as ``cache``, ``GPT2Model.forward`` maps a ``past_key_values`` argument to
``cache`` until 5.40), but not in a model's own ``forward`` signature. coqui-tts 0.28's
``TTS.tts.layers.xtts.gpt_inference.GPT2InferenceModel.forward`` still names the parameter
``past_key_values`` and also takes ``**kwargs``: the cache lands, unused, in ``kwargs`` and
``past_key_values`` stays None. The prompt step still works (GPT2Model makes a cache of its
own), but the first one-token step reads ``past_key_values.get_seq_length()`` for the
position of the new token and fails with ``AttributeError: 'NoneType' object has no
attribute 'get_seq_length'``. Both of XTTS's generation paths go through that ``forward``:
``inference`` (transformers' own ``generate``) and ``inference_stream`` (coqui's
``stream_generator``, which calls ``prepare_inputs_for_generation`` and
``_update_model_kwargs_for_generation``).

``bridge_xtts_cache_argument`` wraps that ``forward`` so that a ``cache`` argument is passed
on as ``past_key_values``, which is all coqui's code needs. With transformers before 5.24
no ``cache`` argument ever arrives and the wrapper changes nothing. Remove this module once
coqui-tts's ``forward`` takes ``cache`` itself (the bridge then leaves it alone).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

_BRIDGED = "_chorus_bridges_cache_argument"
"""Set on the wrapper, so a second call (another engine in the process) does not wrap again."""


def bridge_xtts_cache_argument() -> bool:
    """Make coqui's XTTS ``GPT2InferenceModel.forward`` take transformers>=5.24's ``cache``.

    Patches the class, not one model: XTTS makes a fresh ``GPT2InferenceModel`` whenever
    its ``eval()`` runs (``init_gpt_for_inference``), and every one of them needs it.
    Idempotent. Returns True when the bridge is in place, False when coqui's ``forward``
    already has a ``cache`` parameter of its own and is left as it is.
    """
    from TTS.tts.layers.xtts.gpt_inference import GPT2InferenceModel

    forward = GPT2InferenceModel.forward
    if getattr(forward, _BRIDGED, False):
        return True
    if "cache" in inspect.signature(forward).parameters:
        return False

    # functools.wraps keeps the original signature visible to transformers, which reads
    # the forward's parameters (attention_mask, **kwargs) to decide what to pass.
    @functools.wraps(forward)
    def forward_taking_cache(self: Any, *args: Any, cache: Any = None, **kwargs: Any) -> Any:
        if cache is not None:
            # generate() passes everything by keyword; past_key_values is the second
            # positional parameter of coqui's forward, after input_ids.
            if kwargs.get("past_key_values") is not None or len(args) > 1:
                raise TypeError("GPT2InferenceModel.forward got both cache and past_key_values")
            kwargs["past_key_values"] = cache
        return forward(self, *args, **kwargs)

    setattr(forward_taking_cache, _BRIDGED, True)
    GPT2InferenceModel.forward = forward_taking_cache
    return True

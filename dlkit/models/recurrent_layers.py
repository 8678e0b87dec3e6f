"""Stateful recurrent layers whose state Keras tracks: the same SimpleRNN, LSTM and GRU, with the state
variables of `stateful=True` tracked like any non-trainable variable. Keras creates them untracked, so on
the JAX backend the jitted trainer never carries the state from one batch to the next and a saved model or
checkpoint holds none of it. Tracked, the state is carried on every backend, saved in checkpoints (a run
resumed inside an epoch continues from it) and reset by `reset_state()` as before.
"""

from __future__ import annotations

import keras

from dlkit.keras_private import track_rnn_state


def _tracked(base):
    @keras.saving.register_keras_serializable(package="dlkit", name=f"Stateful{base.__name__}")
    class Stateful(base):
        def build(self, sequences_shape, initial_state_shape=None):
            super().build(sequences_shape, initial_state_shape)
            if self.stateful:
                track_rnn_state(self)

    Stateful.__name__ = Stateful.__qualname__ = f"Stateful{base.__name__}"
    return Stateful


StatefulSimpleRNN = _tracked(keras.layers.SimpleRNN)
StatefulLSTM = _tracked(keras.layers.LSTM)
StatefulGRU = _tracked(keras.layers.GRU)
LAYERS = {"rnn": StatefulSimpleRNN, "lstm": StatefulLSTM, "gru": StatefulGRU}

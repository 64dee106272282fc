"""Export the Keras models in tests/data/keras/ with tf2onnx: another framework's and exporter's conventions.

Keras lays tensors out channels-last and tf2onnx rewrites that into ONNX's channels-first with transposes
and reshapes, folds BatchNorm its own way and leaves a symbolic batch ('unk__N'). The weights are untrained
(seeded) and the BatchNorm statistics random: the tests check that lego2c compiles these graphs and that
its C code matches onnxruntime, not accuracy.

TensorFlow pins its own protobuf, so run this in a virtual environment of its own:
    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0
    /tmp/tfenv/bin/python scripts/export_keras.py [NAME ...]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import keras  # type: ignore[import-not-found]
import numpy as np
import tensorflow as tf  # type: ignore[import-not-found]
import tf2onnx  # type: ignore[import-not-found]
from keras import layers

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "keras"


def cnn() -> keras.Model:
    """Conv + BatchNorm + ReLU, max-pooling, global average pooling, dropout and a softmax classifier."""
    i = keras.Input((28, 28, 1))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same")(i)))
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(layers.MaxPooling2D()(x))
    x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(i, layers.Dense(10, activation="softmax")(x))


def dscnn() -> keras.Model:
    """The keyword-spotting DS-CNN's shape: a 10x4 strided conv on 49x10 MFCCs, then depthwise-separable blocks."""
    i = keras.Input((49, 10, 1))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(32, (10, 4), strides=(2, 2), padding="same")(i)))
    for _ in range(2):
        x = layers.ReLU()(layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same")(x)))
        x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(32, 1)(x)))
    x = layers.Flatten()(layers.AveragePooling2D(pool_size=(25, 5))(x))
    return keras.Model(i, layers.Dense(12)(x))


def mlp() -> keras.Model:
    i = keras.Input((64,))
    x = layers.Dense(32, activation="tanh")(layers.Dense(64, activation="relu")(i))
    return keras.Model(i, layers.Dense(10)(x))


def conv1d() -> keras.Model:
    """A sensor model: 128 steps of 3 axes, a dilated 1-D conv, global max-pooling."""
    i = keras.Input((128, 3))
    x = layers.MaxPooling1D(2)(layers.Conv1D(16, 5, activation="relu")(i))
    x = layers.GlobalMaxPooling1D()(layers.Conv1D(32, 3, activation="relu", dilation_rate=2)(x))
    return keras.Model(i, layers.Dense(6, activation="softmax")(x))


def upsampling() -> keras.Model:
    """Layers with their own tf2onnx patterns: Rescaling, Normalization (whose mean and variance tf2onnx also
    leaves as graph inputs that nothing reads), ReLU6, ZeroPadding2D, a separable conv with swish,
    UpSampling2D (Unsqueeze and Tile), a transposed conv and LayerNormalization."""
    i = keras.Input((32, 32, 3))
    x = layers.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.1, 0.2, 0.3])(layers.Rescaling(1 / 255.0)(i))
    x = layers.Conv2D(8, 3, activation="relu6", padding="same")(x)
    x = layers.SeparableConv2D(16, 3, activation="swish")(layers.ZeroPadding2D(1)(x))
    x = layers.Conv2DTranspose(4, 3, strides=2, padding="same")(layers.UpSampling2D()(x))
    x = layers.LayerNormalization()(layers.GlobalAveragePooling2D()(x))
    return keras.Model(i, layers.Dense(3, activation="sigmoid")(x))


def lstm() -> keras.Model:
    """A recurrent keyword spotter: 49 frames of 10 MFCCs, two stacked LSTMs (tf2onnx maps each to an ONNX
    LSTM), the last step's state into a classifier."""
    i = keras.Input((49, 10))
    x = layers.LSTM(24)(layers.LSTM(32, return_sequences=True)(i))
    return keras.Model(i, layers.Dense(12)(x))


def gru() -> keras.Model:
    """Two stacked GRUs (Keras 3's default, reset_after=True), which tf2onnx writes as two Loops whose bodies
    are one step of the cell, not as ONNX GRUs."""
    i = keras.Input((49, 10))
    x = layers.GRU(8)(layers.GRU(16, return_sequences=True)(i))
    return keras.Model(i, layers.Dense(12)(x))


def birnn() -> keras.Model:
    """A bidirectional SimpleRNN: two Loops, the backward one over a ReverseSequence of the input."""
    i = keras.Input((49, 10))
    return keras.Model(i, layers.Dense(12)(layers.Bidirectional(layers.SimpleRNN(8))(i)))


MODELS: dict[str, Callable[[], keras.Model]] = {"cnn": cnn, "dscnn": dscnn, "mlp": mlp, "conv1d": conv1d,
                                                "upsampling": upsampling, "lstm": lstm, "gru": gru, "birnn": birnn}  # fmt: skip


def main(names: list[str]) -> None:
    """Export the models named (all when none is)."""
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in MODELS.items():
        if names and name not in names:
            continue
        keras.utils.set_random_seed(0)
        model = make()
        for w in model.weights:  # Keras starts biases at zero (which tf2onnx then drops) and BatchNorm at identity
            if w.path.endswith(("bias", "beta", "moving_mean")):
                w.assign(np.random.randn(*w.shape).astype(np.float32) * 0.1)
            elif w.path.endswith("moving_variance"):
                w.assign(np.random.rand(*w.shape).astype(np.float32) + 0.5)
        spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input"),)
        tf2onnx.convert.from_function(tf.function(lambda x, m=model: m(x, training=False)), input_signature=spec,
                                      opset=17, output_path=str(OUT / f"{name}.onnx"))  # fmt: skip
        print(f"wrote {OUT / name}.onnx")


if __name__ == "__main__":
    main(sys.argv[1:])

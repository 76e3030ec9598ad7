"""Code to use each download, filled in with a run's file names, input size and class order.

Every snippet feeds the model what the app feeds it: the photo's centre square, resized with a
bilinear filter to the model's input size, as raw RGB values 0-255 (the model scales them itself).
The Python ones also take the app's first step for large photos (a JPEG decoded at reduced scale,
other formats shrunk by a whole factor), so their answers are the app's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.serving.formats import novelty_threshold
from core.serving.predict import read_labels


@dataclass(frozen=True)
class RunFiles:
    """What the snippets name: the class order, the input size and the downloaded files' names."""

    labels: list[str]
    input_size: int
    stem: str  # the downloads' common name, e.g. "bees-run3" for bees-run3.tflite
    probabilities: str = "probabilities"  # the TFLite signature's output names
    novelty: str | None = None
    novelty_threshold: float | None = None  # above it: "not one of your classes"

    @classmethod
    def of(cls, run_dir: Path, stem: str) -> "RunFiles":
        """Read from a run folder whose model.tflite exists."""
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(Path(run_dir) / "model.tflite"))
        outputs = interpreter.get_signature_list()["serving_default"]["outputs"]
        size = int(interpreter.get_input_details()[0]["shape"][1])
        probabilities = "probabilities" if "probabilities" in outputs else outputs[0]
        novelty = "novelty" if "novelty" in outputs else None
        return cls(read_labels(run_dir), size, stem, probabilities, novelty, novelty_threshold(run_dir))


def _pixels_function(size: int) -> str:
    return f'''def pixels(path):
    """The photo as the model sees it: upright, its centre square resized to {size} x {size}, RGB 0-255."""
    image = Image.open(path)
    scale = lambda img: next(f for f in (8, 4, 2, 1) if min(img.size) // {size} >= f or f == 1)
    image.draft("RGB", (image.width // scale(image), image.height // scale(image)))  # a big JPEG: decoded smaller
    image = ImageOps.exif_transpose(image.convert("RGBA"))
    image = image.reduce(scale(image))  # any big photo: shrunk by a whole factor, keeping {size} px a side
    image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.resize(({size}, {size}), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    return np.asarray(square, dtype=np.float32)[None]  # (1, {size}, {size}, 3)
'''


def python_litert(files: RunFiles, model_file: str | None = None) -> str:
    """Python with LiteRT (`ai-edge-litert`), for model.tflite, the quantized or the full-integer file."""
    model_file = model_file or f"{files.stem}.tflite"
    checks_novelty = files.novelty and files.novelty_threshold is not None
    novelty = (f'\nif "{files.novelty}" in outputs and outputs["{files.novelty}"][0] > NOVELTY_THRESHOLD:  # not in int8\n'
               '    print("This does not look like any of your classes.")') if checks_novelty else ""
    return f'''# pip install ai-edge-litert pillow numpy
import numpy as np
from PIL import Image, ImageOps
from ai_edge_litert.interpreter import Interpreter

LABELS = {json.dumps(files.labels, ensure_ascii=False)}  # in the order of the model's outputs
{f"NOVELTY_THRESHOLD = {files.novelty_threshold!r}  # the run's threshold when exported" + chr(10) if checks_novelty else ""}
{_pixels_function(files.input_size)}

interpreter = Interpreter(model_path="{model_file}")
run = interpreter.get_signature_runner()
inputs, outputs = run.get_input_details()["pixels"], run.get_output_details()
x = pixels("photo.jpg")
if inputs["dtype"] != np.float32:  # a full-integer model: quantize the pixels
    scale, zero = inputs["quantization"]
    x = np.clip(np.round(x / scale + zero), *{{np.int8: (-128, 127), np.uint8: (0, 255)}}[inputs["dtype"]])
outputs = {{name: value for name, value in run(pixels=x.astype(inputs["dtype"])).items()}}
for name, details in run.get_output_details().items():
    if details["dtype"] != np.float32:  # and read its answers back as fractions
        scale, zero = details["quantization"]
        outputs[name] = (outputs[name].astype(np.float32) - zero) * scale
probabilities = outputs["{files.probabilities}"][0]
best = int(probabilities.argmax())
print(LABELS[best], f"{{probabilities[best]:.1%}}"){novelty}
'''


def python_keras(files: RunFiles) -> str:
    """Python with Keras 3, for the .keras file."""
    return f'''# pip install keras tensorflow pillow numpy
import keras
import numpy as np
from PIL import Image, ImageOps

LABELS = {json.dumps(files.labels, ensure_ascii=False)}  # in the order of the model's outputs

{_pixels_function(files.input_size)}

model = keras.saving.load_model("{files.stem}.keras")
outputs = model.predict(pixels("photo.jpg"), verbose=0)
probabilities = (outputs["probabilities"] if isinstance(outputs, dict) else outputs)[0]  # a dict with a novelty check
best = int(probabilities.argmax())
print(LABELS[best], f"{{probabilities[best]:.1%}}")
'''


def javascript(config: dict) -> str:
    """JavaScript in a page beside the web export's files (litertjs/, preprocess.js, model.tflite)."""
    size = config["input_size"]
    return f'''<input type="file" id="photo" accept="image/*"> <span id="answer"></span>
<script type="importmap">{{"imports": {{"@litertjs/wasm-utils": "./litertjs/wasm-utils.js"}}}}</script>
<script type="module">
  import {{loadAndCompile, loadLiteRt, Tensor}} from './litertjs/litert.js';
  import {{photoPixels}} from './preprocess.js';  // centre square, resized as TransferLab does

  const LABELS = {json.dumps(config["labels"], ensure_ascii=False)};  // in the order of the model's outputs
  const ready = loadLiteRt(new URL('litertjs/wasm/', location.href).href)
    .then(() => loadAndCompile(new URL('model.tflite', location.href).href, {{accelerator: 'wasm'}}));

  document.getElementById('photo').addEventListener('change', async (event) => {{
    const model = await ready;
    const pixels = await photoPixels(event.target.files[0], {size});  // {size} x {size} x 3 bytes
    const input = new Tensor(Float32Array.from(pixels), [1, {size}, {size}, 3]);
    const outputs = await model.run([input]);
    const at = model.getOutputDetails().findIndex((output) => output.shape.length === 2);  // (1, classes)
    const probabilities = outputs[at].toTypedArray();
    input.delete();
    outputs.forEach((tensor) => tensor.delete());
    const best = probabilities.indexOf(Math.max(...probabilities));
    document.getElementById('answer').textContent = `${{LABELS[best]}} ${{Math.round(probabilities[best] * 100)}}%`;
  }});
</script>
'''


def kotlin(files: RunFiles) -> str:
    """Android (Kotlin) with LiteRT, for the .tflite file in the app's assets."""
    size = files.input_size
    labels = ", ".join(json.dumps(label, ensure_ascii=False) for label in files.labels)
    return f'''// build.gradle.kts: implementation("com.google.ai.edge.litert:litert:1.4.0")
// Put {files.stem}.tflite in app/src/main/assets/.
import android.content.Context
import android.graphics.Bitmap
import com.google.ai.edge.litert.Interpreter  // org.tensorflow.lite.Interpreter in older releases
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

class Classifier(context: Context) {{
    val labels = listOf({labels})  // in the order of the model's outputs
    private val size = {size}
    private val interpreter = context.assets.openFd("{files.stem}.tflite").use {{ fd ->
        Interpreter(FileInputStream(fd.fileDescriptor).channel.map(
            FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength))
    }}

    /** The best class and its probability for an upright photo. */
    fun classify(photo: Bitmap): Pair<String, Float> {{
        val side = minOf(photo.width, photo.height)  // the centre square, as TransferLab crops it
        val square = Bitmap.createBitmap(photo, (photo.width - side) / 2, (photo.height - side) / 2, side, side)
        val scaled = Bitmap.createScaledBitmap(square, size, size, true)
        val argb = IntArray(size * size).also {{ scaled.getPixels(it, 0, size, 0, 0, size, size) }}
        val input = ByteBuffer.allocateDirect(4 * size * size * 3).order(ByteOrder.nativeOrder())
        for (p in argb) {{  // raw RGB 0-255: the model scales them itself
            input.putFloat(((p shr 16) and 0xFF).toFloat())
            input.putFloat(((p shr 8) and 0xFF).toFloat())
            input.putFloat((p and 0xFF).toFloat())
        }}
        val probabilities = Array(1) {{ FloatArray(labels.size) }}
        interpreter.runSignature(mapOf("pixels" to input), mapOf("{files.probabilities}" to probabilities))
        val best = probabilities[0].indices.maxBy {{ probabilities[0][it] }}
        return labels[best] to probabilities[0][best]
    }}
}}
'''

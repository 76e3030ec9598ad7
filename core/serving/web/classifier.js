// The exported model in LiteRT.js: load it once, then classify RGB pixels (size * size * 3 bytes, as preprocess.js
// makes them). Its outputs are read by name, `probabilities` (1, C) and, when the run has a novelty check, `novelty`
// (1,); a converter that renames them is read by rank instead.
import {loadAndCompile, loadLiteRt, Tensor} from './litertjs/litert.js';

export async function loadClassifier(config) {
  await loadLiteRt(new URL('litertjs/wasm/', document.baseURI).href);
  const model = await loadAndCompile(new URL(config.model, document.baseURI).href, {accelerator: 'wasm'});
  const outputs = model.getOutputDetails().map((detail, index) => ({index, rank: detail.shape.length, name: detail.name}));
  const named = (name, rank) => outputs.find((o) => o.name.includes(name)) || outputs.find((o) => o.rank === rank);
  const probabilitiesAt = named('probabilities', 2).index;
  const novelty = outputs.length > 1 ? named('novelty', 1) : undefined;
  const size = config.input_size;

  return {
    size,
    async classify(rgb) {
      const input = new Tensor(Float32Array.from(rgb), [1, size, size, 3]);
      try {
        const results = await model.run([input]);
        try {
          const probabilities = Array.from(results[probabilitiesAt].toTypedArray());
          return {probabilities, novelty: novelty ? results[novelty.index].toTypedArray()[0] : null};
        } finally {
          results.forEach((tensor) => tensor.delete());
        }
      } finally {
        input.delete();
      }
    },
  };
}

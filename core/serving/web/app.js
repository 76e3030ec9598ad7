// The page: photos and the live camera through the model, with the "not sure" bar and, when the run has one, the
// "not one of your classes" check. Every verdict's figures are also on its element (data-probabilities, data-novelty).
import {loadClassifier} from './classifier.js';
import {framePixels, photoPixels, squareBox} from './preprocess.js';

const $ = (id) => document.getElementById(id);
const TOP_K = 3;

function showStatus(text, isError = false) {
  const status = $('status');
  status.textContent = text;
  status.classList.toggle('error', isError);
  status.hidden = !text;
}

function percent(p) {
  return `${Math.round(p * 100)}%`;
}

function verdict(result, config, threshold) {
  const order = result.probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]);
  const [best, index] = order[0];
  const label = config.labels[index];
  if (result.novelty !== null && config.novelty_threshold !== null && result.novelty > config.novelty_threshold) {
    return {kind: 'unknown', text: `This doesn't look like any of your classes (closest: ${label}, ${percent(best)})`, order};
  }
  if (best < threshold) {
    return {kind: 'unsure', text: `Not sure: its best guess is ${label} (${percent(best)}), below your ${percent(threshold)} bar`, order};
  }
  return {kind: 'sure', text: `${label} (${percent(best)})`, order};
}

function drawVerdict(element, result, config, threshold) {
  const {kind, text, order} = verdict(result, config, threshold);
  element.replaceChildren();
  const line = document.createElement('div');
  line.className = `verdict ${kind}`;
  line.textContent = text;
  element.append(line);
  for (const [p, i] of order.slice(0, TOP_K)) {
    const bar = document.createElement('div');
    bar.className = 'bar';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = config.labels[i];
    name.title = config.labels[i];
    const track = document.createElement('div');
    track.className = 'track';
    const fill = document.createElement('div');
    fill.className = p >= threshold ? 'fill' : 'fill low';
    fill.style.width = percent(p);
    track.append(fill);
    const value = document.createElement('span');
    value.textContent = percent(p);
    bar.append(name, track, value);
    element.append(bar);
  }
  element.dataset.verdict = kind;
  element.dataset.top = config.labels[order[0][1]];
  element.dataset.probabilities = JSON.stringify(result.probabilities);
  element.dataset.novelty = result.novelty === null ? '' : String(result.novelty);
}

async function main() {
  if (location.protocol === 'file:') return; // the note in the page says how to serve it
  showStatus('Loading the model…');
  const config = await (await fetch('model.json')).json();
  const classifier = await loadClassifier(config);
  document.title = config.title;
  $('title').textContent = config.title;
  $('classes').textContent = config.labels.join(', ');
  const slider = $('threshold');
  slider.value = Math.round(config.threshold * 100);
  const threshold = () => Number(slider.value) / 100;
  const shown = []; // [element, result] of every verdict on the page, redrawn when the bar moves
  const redraw = () => {
    $('threshold-value').textContent = percent(threshold());
    for (const [element, result] of shown) drawVerdict(element, result, config, threshold());
  };
  slider.addEventListener('input', redraw);
  redraw();

  let queue = Promise.resolve(); // one photo at a time through the model, in the order they came
  const addPhotos = (files) => {
    for (const file of files) {
      const card = document.createElement('div');
      card.className = 'card photo';
      card.dataset.name = file.name;
      const image = document.createElement('img');
      image.src = URL.createObjectURL(file);
      image.alt = file.name;
      const bars = document.createElement('div');
      bars.className = 'bars';
      bars.textContent = `${file.name}: classifying…`;
      card.append(image, bars);
      $('results').prepend(card);
      queue = queue.then(async () => {
        try {
          const started = performance.now();
          const result = await classifier.classify(await photoPixels(file, classifier.size));
          card.dataset.ms = String(performance.now() - started);
          shown.push([bars, result]);
          drawVerdict(bars, result, config, threshold());
          card.dataset.done = 'ok';
        } catch (error) {
          bars.textContent = `${file.name}: could not be read as a picture (${error.message || error}).`;
          card.dataset.done = 'error';
        }
      });
    }
    return queue;
  };
  $('files').addEventListener('change', (event) => addPhotos([...event.target.files]));
  const drop = $('drop');
  drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    addPhotos([...event.dataTransfer.files].filter((f) => f.type.startsWith('image/')));
  });

  setUpCamera(classifier, config, threshold); // the live verdict redraws itself every frame
  showStatus('');
  $('app').hidden = false;
  document.body.dataset.ready = 'true';
}

function setUpCamera(classifier, config, threshold) {
  const video = $('video'), live = $('live'), start = $('camera-start'), stop = $('camera-stop');
  let stream = null, frames = 0, since = performance.now();
  const placeSquare = () => {
    const [left, top, right] = squareBox(video.videoWidth, video.videoHeight);
    const scale = video.clientWidth / video.videoWidth, square = $('square');
    Object.assign(square.style, {left: `${left * scale}px`, top: `${top * scale}px`,
                                 width: `${(right - left) * scale}px`, height: `${(right - left) * scale}px`});
    square.hidden = false;
  };
  const loop = async () => {
    while (stream) {
      if (video.readyState >= 2 && video.videoWidth) {
        placeSquare();
        const result = await classifier.classify(framePixels(video, video.videoWidth, video.videoHeight, classifier.size));
        if (!stream) break;
        drawVerdict(live, result, config, threshold());
        frames += 1;
        live.dataset.frames = String(frames);
        const seconds = (performance.now() - since) / 1000;
        if (seconds > 1) $('live-rate').textContent = `${(frames / seconds).toFixed(1)} frames a second`;
      }
      await new Promise((resolve) => requestAnimationFrame(resolve));
    }
  };
  start.addEventListener('click', async () => {
    if (!navigator.mediaDevices?.getUserMedia) {
      live.textContent = 'This browser gives the camera only to pages on localhost or https.';
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: 'environment'}, audio: false});
    } catch (error) {
      live.textContent = `The camera could not be opened: ${error.message || error}. Allow it in the address bar.`;
      return;
    }
    video.srcObject = stream;
    await video.play();
    frames = 0;
    since = performance.now();
    start.hidden = true;
    stop.hidden = false;
    loop();
  });
  stop.addEventListener('click', () => {
    stream?.getTracks().forEach((track) => track.stop());
    stream = null;
    video.srcObject = null;
    $('square').hidden = true;
    start.hidden = false;
    stop.hidden = true;
  });
}

main().catch((error) => showStatus(`The model could not be loaded: ${error.message || error}`, true));

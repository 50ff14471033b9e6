// rtstyle serve: send the camera over WebRTC, show what comes back stylized, time the round trip.
//
// Each camera frame is drawn onto a canvas with a strip under it that holds a 16-bit frame counter
// (black and white cells, see rtstyle/serve/stamp.py); the canvas is what WebRTC sends. The server
// stylizes the picture above the strip and writes the same counter under its result, so each frame
// that comes back is matched with the moment it was sent: that difference is the round trip shown.
'use strict';

const CELLS = 20, BITS = 16, STRIP_DIVISOR = 31, RED = 2;  // the last cell is red: the server reads the
// browser's YUV conversion from the white, black and red cells (stamp.sent_color)
const WINDOW_MS = 3000;  // readout statistics over the last three seconds
const $ = (id) => document.getElementById(id);

// window.rtstyle: the page's state for people (console) and tests. keepFrames = true keeps the
// last sent and returned pictures so that pair() can hand a matched pair to a test.
const rt = window.rtstyle = {
  stats: { state: 'idle', sent: 0, shown: 0, unstamped: 0, fps: 0, rtt: [], rtt50: null, rtt95: null,
           ping: null, server: null, error: null, size: null },
  keepFrames: false, sentFrames: new Map(), returnedFrames: [],
  pair: () => matchedPair(),
  breakdown: () => breakdown(),
};

const ui = { style: null, strength: 1, smooth: 'none', smoothStrength: 0.7, scale: 'auto', faces: 0 };
// What the engine stylizes, as a fraction of the camera's size; auto: what keeps up, timed on the first frame.
const SCALES = [['auto', 'auto'], [1, 'full size'], [0.75, '3/4 size'], [0.5, 'half size']];
let config = null, pc = null, channel = null, cameraStream = null, sendTrack = null, counter = 0;
let pictureWidth = 0, pictureHeight = 0, stripRows = 0, pingTimer = null, readoutTimer = null;
const sentAt = new Map(), pings = new Map(), shownAt = [];
const sendCanvas = document.createElement('canvas');
const sendContext = sendCanvas.getContext('2d');
const stripCanvas = document.createElement('canvas');
const stripContext = stripCanvas.getContext('2d', { willReadFrequently: true });
stripCanvas.width = CELLS * 4;
stripCanvas.height = 4;

function setStatus(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
  if (isError) rt.stats.error = text;
}

async function init() {
  const response = await fetch('api/config');
  if (!response.ok) { setStatus(`cannot load the configuration: ${response.status}`, true); return; }
  config = await response.json();
  $('engine').textContent = config.engine;
  Object.assign(ui, { style: config.style, strength: config.strength, smooth: config.smooth,
                      smoothStrength: config.smooth_strength, scale: config.scale, faces: config.faces });
  const strength = $('strength');
  strength.max = config.max_strength;
  strength.value = ui.strength;
  $('strength-value').textContent = Number(ui.strength).toFixed(2);
  strength.addEventListener('input', () => {
    ui.strength = Number(strength.value);
    $('strength-value').textContent = ui.strength.toFixed(2);
    sendControls();
  });
  const smooth = $('smooth');
  for (const kind of config.smoothers) smooth.add(new Option(kind, kind, false, kind === ui.smooth));
  smooth.addEventListener('change', () => { ui.smooth = smooth.value; sendControls(); });
  const faces = $('faces');
  if (![...faces.options].some((option) => Number(option.value) === ui.faces)) {
    faces.add(new Option(`${ui.faces} of the original`, String(ui.faces)));  // --faces 0.3 on the server
  }
  faces.value = [...faces.options].find((option) => Number(option.value) === ui.faces).value;
  faces.addEventListener('change', () => { ui.faces = Number(faces.value); sendControls(); });
  const scale = $('scale');
  const scales = SCALES.some(([value]) => value === ui.scale) ? SCALES : [...SCALES, [ui.scale, `${ui.scale} size`]];
  for (const [value, label] of scales) scale.add(new Option(label, value, false, value === ui.scale));
  scale.addEventListener('change', () => {
    ui.scale = scale.value === 'auto' ? 'auto' : Number(scale.value);
    sendControls();
  });
  config.styles.forEach((style, index) => $('styles').append(styleButton(style, index)));
  showStyle();
  const chosen = document.querySelector('.style[aria-selected=true]');
  if (chosen) $('styles').scrollTop = chosen.offsetTop - $('styles').offsetTop;
  $('start').addEventListener('click', () => start().catch((error) => { stop(); setStatus(String(error), true); }));
  $('stop').addEventListener('click', () => { stop(); setStatus('stopped'); });
  setStatus(`${config.viewers} of ${config.max_viewers} viewers`);
}

function styleButton(style, index) {
  const button = document.createElement('button');
  button.className = 'style';
  button.type = 'button';
  button.setAttribute('role', 'option');
  button.dataset.style = style.name;
  button.title = `${style.label}: ${style.description}`;
  const image = new Image();
  image.alt = style.label;
  image.loading = 'lazy';
  image.src = `thumbs/${index}.jpg`;
  const label = document.createElement('span');
  label.textContent = style.label;
  button.append(image, label);
  button.addEventListener('click', () => { ui.style = style.name; showStyle(); sendControls(); });
  return button;
}

function showStyle() {
  for (const button of document.querySelectorAll('.style')) {
    button.setAttribute('aria-selected', String(button.dataset.style === ui.style));
  }
  const chosen = config.styles.find((style) => style.name === ui.style);
  $('style-name').textContent = chosen ? `${chosen.label}: ${chosen.description}` : '';
}

function controls() {
  return { style: ui.style, strength: ui.strength, smooth: ui.smooth, smooth_strength: ui.smoothStrength,
           scale: ui.scale, faces: ui.faces };
}

function sendControls() {
  if (channel && channel.readyState === 'open') channel.send(JSON.stringify({ type: 'controls', ...controls() }));
}

// ---- the frame counter strip (the same layout as rtstyle/serve/stamp.py)

function stampCells(value) {
  const bits = [];
  for (let i = BITS - 1; i >= 0; i--) bits.push((value >> i) & 1);
  return [1, 0, ...bits, bits.reduce((a, b) => a + b, 0) % 2, RED];
}

function drawStamp(context, value, top, width, rows) {
  stampCells(value).forEach((bit, i) => {
    const left = Math.round(i * width / CELLS), right = Math.round((i + 1) * width / CELLS);
    context.fillStyle = bit === RED ? '#f00' : bit ? '#fff' : '#000';
    context.fillRect(left, top, right - left, rows);
  });
}

function readStamp(video) {
  const width = video.videoWidth, height = video.videoHeight;
  const rows = Math.max(2, Math.round(height / STRIP_DIVISOR));
  stripContext.drawImage(video, 0, height - rows, width, rows, 0, 0, CELLS * 4, 4);
  const data = stripContext.getImageData(0, 0, CELLS * 4, 4).data;
  const found = [];
  for (let cell = 0; cell < CELLS; cell++) {
    let sum = 0;  // the middle two of the four pixels of each cell, rows 1 and 2: codecs blur the edges
    for (const y of [1, 2]) for (const x of [cell * 4 + 1, cell * 4 + 2]) {
      const at = (y * CELLS * 4 + x) * 4;
      sum += data[at] + data[at + 1] + data[at + 2];
    }
    found.push(sum / 12 > 127 ? 1 : 0);
  }
  const value = parseInt(found.slice(2, 2 + BITS).join(''), 2);
  return stampCells(value).every((bit, i) => (bit === RED ? 0 : bit) === found[i]) ? value : null;
}

// Rows under a picture of this height such that the server, which only sees the whole frame, finds
// the same number (stamp.strip_rows).
function rowsFor(height) {
  let rows = Math.max(2, Math.round(height / 30));
  while (Math.max(2, Math.round((height + rows) / STRIP_DIVISOR)) !== rows) rows++;
  return rows;
}

// ---- the stream

async function start() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error('browsers give a camera only to https pages and to localhost: open this page through an SSH '
                    + 'tunnel (ssh -L 8080:localhost:8080 server) or start the server with --cert-file and --key-file');
  }
  $('start').hidden = true;
  $('stop').hidden = false;
  Object.assign(rt.stats, { sent: 0, shown: 0, unstamped: 0, rtt: [], rtt50: null, rtt95: null, ping: null,
                            server: null, error: null });
  sentAt.clear();
  shownAt.length = 0;
  setStatus('starting the camera…');
  const [width, height] = $('size').value.split('x').map(Number);
  cameraStream = await navigator.mediaDevices.getUserMedia({
    audio: false, video: { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 } } });
  const camera = $('local');
  camera.srcObject = cameraStream;
  camera.classList.add('live');
  await camera.play();
  pictureWidth = camera.videoWidth;
  pictureHeight = camera.videoHeight;
  stripRows = rowsFor(pictureHeight);
  sendCanvas.width = pictureWidth;
  sendCanvas.height = pictureHeight + stripRows;
  rt.stats.size = `${pictureWidth}x${pictureHeight}`;
  document.querySelector('.stage').style.setProperty('--aspect', `${pictureWidth} / ${pictureHeight}`);
  const canvasStream = sendCanvas.captureStream(0);  // a frame exactly when requestFrame() is called
  sendTrack = canvasStream.getVideoTracks()[0];
  sendTrack.contentHint = 'motion';

  pc = new RTCPeerConnection();
  channel = pc.createDataChannel('controls');
  channel.addEventListener('open', startPings);
  channel.addEventListener('message', (event) => onServerMessage(JSON.parse(event.data)));
  const sender = pc.addTrack(sendTrack, canvasStream);
  pc.addEventListener('track', (event) => {
    // The least jitter buffering Chrome allows: this is a live mirror, smoothness comes second.
    if ('jitterBufferTarget' in event.receiver) event.receiver.jitterBufferTarget = 0;
    const remote = $('remote');
    remote.srcObject = new MediaStream([event.track]);
    remote.requestVideoFrameCallback(onReturnedFrame);
  });
  pc.addEventListener('connectionstatechange', () => {
    if (!pc) return;
    rt.stats.state = pc.connectionState;
    if (pc.connectionState === 'connected') { setStatus('connected'); $('placeholder').hidden = true; }
    if (pc.connectionState === 'failed') {
      stop();
      setStatus(config.ice === 'loopback'
        ? 'the connection failed: this server sends its video on loopback only, for a browser on the same '
          + 'machine; from another machine, start it with --ice-any-interface'
        : 'the connection failed (no route for the video?)', true);
    }
  });
  camera.requestVideoFrameCallback(onCameraFrame);

  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  setStatus('connecting…');
  const response = await fetch('offer', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type, stamp: true, ...controls() }),
  });
  const answer = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) {
    stop();
    rt.stats.state = response.status === 503 ? 'refused' : 'error';
    setStatus(answer.error || `${response.status} ${response.statusText}`, true);
    return;
  }
  await pc.setRemoteDescription(answer);
  try {  // keep the picture's size when the browser is short of CPU or bandwidth: drop frames instead
    const parameters = sender.getParameters();
    parameters.degradationPreference = 'maintain-resolution';
    await sender.setParameters(parameters);
  } catch (error) { /* not every browser lets a page choose */ }
  readoutTimer = setInterval(updateReadout, 500);
}

function iceGathered(connection) {
  if (connection.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (connection.iceGatheringState === 'complete') {
        connection.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
    };
    connection.addEventListener('icegatheringstatechange', check);
  });
}

function onCameraFrame() {
  if (!sendTrack) return;
  const value = counter++ & 0xffff;
  sendContext.drawImage($('local'), 0, 0, pictureWidth, pictureHeight);
  drawStamp(sendContext, value, pictureHeight, pictureWidth, stripRows);
  sendTrack.requestFrame();
  const now = performance.now();
  sentAt.set(value, now);
  rt.stats.sent++;
  for (const [key, at] of sentAt) { if (now - at < 10000) break; sentAt.delete(key); }
  if (rt.keepFrames) {
    rt.sentFrames.set(value, sendContext.getImageData(0, 0, pictureWidth, pictureHeight));
    if (rt.sentFrames.size > 90) rt.sentFrames.delete(rt.sentFrames.keys().next().value);
  }
  $('local').requestVideoFrameCallback(onCameraFrame);
}

function onReturnedFrame(now, metadata) {
  const remote = $('remote');
  if (!pc) return;
  const shown = metadata.expectedDisplayTime || now;
  const value = readStamp(remote);
  rt.stats.shown++;
  shownAt.push(shown);
  if (value === null || !sentAt.has(value)) {
    rt.stats.unstamped++;
  } else {
    rt.stats.rtt.push([shown, shown - sentAt.get(value)]);
    sentAt.delete(value);
    if (rt.stats.rtt.length > 5000) rt.stats.rtt.splice(0, 1000);
    if (rt.keepFrames) keepReturned(remote, value);
  }
  remote.requestVideoFrameCallback(onReturnedFrame);
}

function keepReturned(remote, value) {
  const canvas = document.createElement('canvas');
  canvas.width = remote.videoWidth;
  canvas.height = remote.videoHeight;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(remote, 0, 0);
  const rows = Math.max(2, Math.round(canvas.height / STRIP_DIVISOR));
  rt.returnedFrames.push({ stamp: value, image: context.getImageData(0, 0, canvas.width, canvas.height - rows) });
  if (rt.returnedFrames.length > 5) rt.returnedFrames.shift();
}

function matchedPair() {
  for (let i = rt.returnedFrames.length - 1; i >= 0; i--) {
    const returned = rt.returnedFrames[i], sent = rt.sentFrames.get(returned.stamp);
    if (sent) return { stamp: returned.stamp, sent: imageUrl(sent), returned: imageUrl(returned.image) };
  }
  return null;
}

function imageUrl(imageData) {
  const canvas = document.createElement('canvas');
  canvas.width = imageData.width;
  canvas.height = imageData.height;
  canvas.getContext('2d').putImageData(imageData, 0, 0);
  return canvas.toDataURL('image/png');
}

// Where the browser's share of the round trip goes, from WebRTC's own statistics (averages since
// the start): encoding the sent frames, and holding (jitter buffer), decoding and processing the
// returned ones.
async function breakdown() {
  if (!pc) return null;
  const result = {};
  (await pc.getStats()).forEach((report) => {
    if (report.type === 'outbound-rtp' && report.kind === 'video' && report.framesEncoded) {
      Object.assign(result, { encode_ms: 1000 * report.totalEncodeTime / report.framesEncoded,
                              frames_encoded: report.framesEncoded, sent_size: `${report.frameWidth}x${report.frameHeight}`,
                              encoder_limited_by: report.qualityLimitationReason });
    } else if (report.type === 'inbound-rtp' && report.kind === 'video' && report.framesDecoded) {
      Object.assign(result, { decode_ms: 1000 * report.totalDecodeTime / report.framesDecoded,
                              jitter_buffer_ms: 1000 * report.jitterBufferDelay / report.jitterBufferEmittedCount,
                              processing_ms: 1000 * report.totalProcessingDelay / report.framesDecoded,
                              frames_decoded: report.framesDecoded, frames_dropped: report.framesDropped });
    } else if (report.type === 'candidate-pair' && report.nominated && report.currentRoundTripTime !== undefined) {
      result.ice_rtt_ms = 1000 * report.currentRoundTripTime;
    }
  });
  return result;
}

function startPings() {
  sendControls();
  let id = 0;
  pingTimer = setInterval(() => {
    pings.set(++id, performance.now());
    channel.send(JSON.stringify({ type: 'ping', id }));
  }, 1000);
}

function onServerMessage(message) {
  if (message.type === 'pong' && pings.has(message.id)) {
    rt.stats.ping = performance.now() - pings.get(message.id);
    pings.delete(message.id);
  } else if (message.type === 'stats') {
    rt.stats.server = message;
    const showing = message.showing;
    if (message.error) setStatus(message.error, true);
    else if (showing.style !== message.style || showing.strength !== message.strength) setStatus(`preparing ${message.style}…`);
    else if (message.notice) {
      setStatus(message.notice);
      if (ui.style !== message.style) { ui.style = message.style; showStyle(); }  // back on the style shown
    }
    else if (pc && pc.connectionState === 'connected') setStatus('connected');
    const auto = $('scale').querySelector('option[value=auto]');
    if (auto) auto.text = message.scale === 'auto' ? `auto (${message.scale_used} size)` : 'auto';
  } else if (message.type === 'error') {
    setStatus(message.error, true);
  }
}

function percentile(values, fraction) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
}

function updateReadout() {
  const now = performance.now();
  while (shownAt.length && now - shownAt[0] > WINDOW_MS) shownAt.shift();
  const span = shownAt.length > 1 ? shownAt[shownAt.length - 1] - shownAt[0] : 0;
  rt.stats.fps = span > 0 ? (shownAt.length - 1) * 1000 / span : 0;
  const recent = rt.stats.rtt.filter(([at]) => now - at <= WINDOW_MS).map(([, ms]) => ms);
  rt.stats.rtt50 = percentile(recent, 0.5);
  rt.stats.rtt95 = percentile(recent, 0.95);
  const ms = (value) => (value === null || value === undefined ? '–' : `${Math.round(value)} ms`);
  $('fps').textContent = rt.stats.fps.toFixed(1);
  $('rtt').textContent = rt.stats.rtt50 === null ? '–' : `${ms(rt.stats.rtt50)} (p95 ${ms(rt.stats.rtt95)})`;
  $('ping').textContent = ms(rt.stats.ping);
  const server = rt.stats.server;
  $('stylize').textContent = server ? ms(server.stylize_ms) : '–';
  $('dropped').textContent = server ? String(server.dropped) : '–';
}

function stop() {
  clearInterval(pingTimer);
  clearInterval(readoutTimer);
  if (pc) pc.close();
  pc = null;
  channel = null;
  sendTrack = null;
  if (cameraStream) cameraStream.getTracks().forEach((track) => track.stop());
  cameraStream = null;
  $('local').classList.remove('live');
  $('remote').srcObject = null;
  $('placeholder').hidden = false;
  $('start').hidden = false;
  $('stop').hidden = true;
  rt.stats.state = 'idle';
}

init().catch((error) => setStatus(String(error), true));

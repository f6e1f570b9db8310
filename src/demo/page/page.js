// The demo page's behaviour: a host app's capture flow, shown step by step.
//
// It takes frames from the camera (or a moving test pattern when there is none), builds the
// result the Oz Web SDK's on_capture_complete callback gives, posts it to a capture route of the
// proxy, and shows the verdict, the verdict token, what the simulated Oz and the backend
// received, and the proxy's Server-Timing.
//
// Automation contract (tests drive this page with headless Chromium; keep it exact):
//   /?auto=1        captures and posts once on its own, without a click;
//   ?route=PATH     chooses the route (added to the list when it is not there);
//   #result         ends every capture with data-state ("done" or "error"), data-resolution,
//                   data-folder-id and data-status (the HTTP status; "0" when no answer came).
'use strict';

/** The page's elements, looked up once. */
const el = (id) => document.getElementById(id);

/** Where the camera or the test pattern is drawn. */
const source = {
  video: null,       // the <video> playing the camera, or null for the test pattern
  label: '',         // the camera's label, or why the test pattern is used
  width: 640,
  height: 480,
};

// ---------------------------------------------------------------------------------------------
// The camera, or a test pattern

/** Asks for the camera; falls back to the test pattern when there is none or it is refused. */
async function startSource() {
  const status = el('camera-status');
  try {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error('this browser has no getUserMedia (the page must be on localhost or HTTPS)');
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: 640, height: 480 }, audio: false,
    });
    const video = el('video');
    video.srcObject = stream;
    await video.play();
    await firstVideoFrame(video);
    source.video = video;
    source.width = video.videoWidth;
    source.height = video.videoHeight;
    source.label = stream.getVideoTracks()[0].label || 'camera';
    status.dataset.source = 'camera';
    status.textContent = `Camera: ${source.label} (${source.width}×${source.height}).`;
  } catch (err) {
    source.video = null;
    source.label = `no camera: ${err.name || 'Error'}: ${err.message}`;
    status.dataset.source = 'pattern';
    status.textContent = `No camera (${err.name || 'Error'}: ${err.message}). ` +
      'Sending a moving test pattern instead.';
  }
  el('preview').width = source.width;
  el('preview').height = source.height;
  requestAnimationFrame(drawPreview);
}

/** Resolves once the video has a picture: its size is 0×0 before that. */
function firstVideoFrame(video) {
  return new Promise((resolve) => {
    const ready = () => video.videoWidth > 0 && video.readyState >= 2;
    if (ready()) { resolve(); return; }
    const check = () => { if (ready()) { resolve(); } else { setTimeout(check, 20); } };
    check();
  });
}

/** Draws the current picture (camera or pattern) onto `canvas`, at the source's size. */
function drawSource(canvas) {
  const ctx = canvas.getContext('2d');
  if (source.video) {
    ctx.drawImage(source.video, 0, 0, canvas.width, canvas.height);
  } else {
    drawPattern(ctx, canvas.width, canvas.height, performance.now());
  }
}

/**
 * A test pattern that moves with time `t` (ms): colour bars, a sweeping face-sized ellipse, and
 * the clock. Each frame differs, so the proxy's replay guard sees new pictures every capture.
 */
function drawPattern(ctx, w, h, t) {
  const colours = ['#c0c0c0', '#c0c000', '#00c0c0', '#00c000', '#c000c0', '#c00000', '#0000c0'];
  colours.forEach((c, i) => {
    ctx.fillStyle = c;
    ctx.fillRect((i * w) / colours.length, 0, w / colours.length + 1, h);
  });
  const x = w / 2 + Math.sin(t / 700) * w * 0.2;
  ctx.fillStyle = '#f1c27d';
  ctx.beginPath();
  ctx.ellipse(x, h * 0.5, w * 0.17, h * 0.3, 0, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillStyle = '#000';
  ctx.fillRect(0, h - 40, w, 40);
  ctx.fillStyle = '#fff';
  ctx.font = '20px monospace';
  ctx.fillText(`TEST PATTERN  ${new Date().toISOString()}  ${t.toFixed(1)}`, 10, h - 14);
}

/** Keeps the preview moving, so a person sees what will be sent. */
function drawPreview() {
  drawSource(el('preview'));
  requestAnimationFrame(drawPreview);
}

// ---------------------------------------------------------------------------------------------
// The on_capture_complete result

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Takes `n` frames 100 ms apart as JPEG data URLs, as the Web SDK gives them, and the best
 * frame (the middle one) as JPEG and PNG.
 */
async function takeFrames(n) {
  const canvas = document.createElement('canvas');
  canvas.width = source.width;
  canvas.height = source.height;
  const frames = [];
  let best = null;
  for (let i = 0; i < n; i += 1) {
    if (i > 0) { await sleep(100); }
    drawSource(canvas);
    frames.push(canvas.toDataURL('image/jpeg', 0.9));
    if (i === Math.floor(n / 2)) {
      best = { jpeg: frames[i], png: canvas.toDataURL('image/png') };
    }
  }
  return { frames, best };
}

/** A face box in the middle of the picture: plausible fixed values, as no face is detected. */
function faceBox(w, h) {
  return {
    left: Math.round(w * 0.33), top: Math.round(h * 0.2),
    right: Math.round(w * 0.67), bottom: Math.round(h * 0.8),
  };
}

/** Landmarks inside faceBox, in the Web SDK's names: [x, y] each. */
function landmarks(w, h) {
  const p = (fx, fy) => [Math.round(w * fx), Math.round(h * fy)];
  return {
    left_eye: p(0.43, 0.4), right_eye: p(0.57, 0.4), nose_base: p(0.5, 0.55),
    mouth_bottom: p(0.5, 0.7), left_ear: p(0.34, 0.48), right_ear: p(0.66, 0.48),
  };
}

/** The browser environment, as a JSON string: the Web SDK's additional_info is one. */
function additionalInfo() {
  return JSON.stringify({
    sdk: 'oz-capture-proxy demo page',
    user_agent: navigator.userAgent,
    language: navigator.language,
    platform: navigator.platform,
    screen: { width: screen.width, height: screen.height },
    viewport: { width: innerWidth, height: innerHeight },
    device_pixel_ratio: devicePixelRatio,
    time_zone: Intl.DateTimeFormat().resolvedOptions().timeZone,
    camera: source.video ? source.label : 'test pattern',
    video: { width: source.width, height: source.height },
    captured_at: new Date().toISOString(),
  });
}

/**
 * The on_capture_complete result, in the field order of the Web SDK documentation. With
 * `virtualCamera`, every field but `action` is null at the top and the same fields, with
 * additional_info, sit under `from_virtual_camera`, as the SDK does when it detects one.
 */
function captureResult(action, shot, virtualCamera) {
  const { width: w, height: h } = source;
  const fields = {
    best_frame: shot.best.jpeg,
    best_frame_png: shot.best.png,
    best_frame_bounding_box: faceBox(w, h),
    best_frame_landmarks: landmarks(w, h),
    frame_list: shot.frames,
    frame_bounding_box_list: shot.frames.map(() => faceBox(w, h)),
    frame_landmarks: shot.frames.map(() => landmarks(w, h)),
  };
  if (virtualCamera) {
    const nulls = Object.fromEntries(Object.keys(fields).map((k) => [k, null]));
    return {
      action, ...nulls,
      from_virtual_camera: { additional_info: additionalInfo(), ...fields },
    };
  }
  return { action, ...fields, from_virtual_camera: null, additional_info: additionalInfo() };
}

/**
 * The request body and its type. A container stands in for OzCapsula: its format is Oz's and
 * opaque to the proxy, which uploads it unchanged, so any bytes show the path; these are a
 * marker line and the result.
 */
function requestBody(result, container) {
  const json = JSON.stringify(result);
  if (container) {
    const bytes = new TextEncoder().encode(`OZCAPSULA-DEMO/1\n${json}`);
    return { body: bytes, type: 'application/octet-stream', size: bytes.length };
  }
  return { body: json, type: 'application/json', size: new TextEncoder().encode(json).length };
}

/** Breaks one frame the way a truncated upload would: the proxy refuses it before Oz sees it. */
function breakFrame(result) {
  const target = result.from_virtual_camera || result;
  target.frame_list[Math.min(1, target.frame_list.length - 1)] = 'data:image/jpeg;base64,@@@not-base64';
  return result;
}

// ---------------------------------------------------------------------------------------------
// One capture, start to end

/** Reads the form. */
function settings() {
  return {
    route: el('route').value,
    action: el('action').value,
    frames: Math.max(1, Math.min(30, Number(el('frame-count').value) || 5)),
    virtualCamera: el('virtual-camera').checked,
    container: el('container').checked,
  };
}

/** Takes, sends and shows one capture; `broken` sends one with a corrupt frame. */
async function runCapture(broken) {
  const s = settings();
  setBusy(true);
  let outcome = { state: 'error', status: 0, resolution: '', folderId: '' };
  try {
    const shot = await takeFrames(s.frames);
    let result = captureResult(s.action, shot, s.virtualCamera);
    if (broken) { result = breakFrame(result); }
    // A broken frame is a JSON matter: a container is opaque to the proxy.
    const req = requestBody(result, s.container && !broken);
    showSent(s, req, shot, broken);
    const answer = await post(s.route, req);
    outcome = await showAnswer(answer);
  } catch (err) {
    el('result-summary').textContent = `The capture failed in the page: ${err.message}`;
  } finally {
    finish(outcome);
    setBusy(false);
  }
}

/** Posts the body; the answer's status, headers and body, parsed as JSON when it is JSON. */
async function post(route, req) {
  const started = performance.now();
  const rsp = await fetch(route, {
    method: 'POST', headers: { 'content-type': req.type }, body: req.body,
  });
  const text = await rsp.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { json = null; }
  return {
    status: rsp.status,
    ok: rsp.ok,
    contentType: rsp.headers.get('content-type') || '',
    serverTiming: rsp.headers.get('server-timing'),
    json,
    text,
    elapsed: performance.now() - started,
  };
}

/** Marks the capture under way: the contract's attributes are cleared until it ends. */
function setBusy(busy) {
  el('capture').disabled = busy;
  el('broken').disabled = busy;
  if (busy) {
    const r = el('result');
    r.dataset.state = 'busy';
    for (const a of ['resolution', 'folderId', 'status']) { delete r.dataset[a]; }
    el('result-summary').textContent = 'Capturing and sending…';
  }
}

/** Sets the contract's attributes last, once every panel is drawn, so a test sees it all. */
function finish(o) {
  const r = el('result');
  r.dataset.resolution = o.resolution || '';
  r.dataset.folderId = o.folderId || '';
  r.dataset.status = String(o.status);
  r.dataset.state = o.state;
}

// ---------------------------------------------------------------------------------------------
// Showing the answer

/**
 * Draws every panel for one answer and returns the outcome for #result. A forward route's
 * answer is the backend's echo (saw_resolution, saw_folder_id); a respond route's is the
 * proxy's own verdict (resolution, folder_id, analyses, verdict_token).
 */
async function showAnswer(a) {
  showTiming(a.serverTiming, a.elapsed);
  const isProblem = a.contentType.startsWith('application/problem+json');
  if (!a.ok || isProblem || !a.json) {
    showProblem(a);
    clear(['token', 'oz', 'backend'], 'Nothing: the capture was refused.');
    return { state: 'error', status: a.status, resolution: '', folderId: '' };
  }
  const forward = 'saw_folder_id' in a.json || 'saw_resolution' in a.json;
  const verdict = forward
    ? { resolution: a.json.saw_resolution, folderId: a.json.saw_folder_id || '', analyses: null }
    : { resolution: a.json.resolution, folderId: a.json.folder_id || '', analyses: a.json.analyses };
  const backendSaw = forward ? await getJson('/_demo/last') : null;
  showVerdict(a, verdict, forward);
  showToken(forward ? header(backendSaw, 'x-oz-verdict-token') : a.json.verdict_token, forward);
  showBackend(backendSaw, forward);
  await showOz(verdict.folderId);
  return {
    state: 'done', status: a.status, resolution: verdict.resolution || '', folderId: verdict.folderId,
  };
}

/** GETs a same-origin JSON introspection endpoint; null when it has nothing. */
async function getJson(path) {
  try {
    const rsp = await fetch(path, { cache: 'no-store' });
    if (!rsp.ok) { return { error: `${rsp.status}: ${await rsp.text()}` }; }
    return await rsp.json();
  } catch (err) {
    return { error: err.message };
  }
}

/** A header from /_demo/last's view, which names them in lower case. */
function header(seen, name) {
  return seen && seen.headers ? seen.headers[name] : undefined;
}

function clear(ids, text) {
  for (const id of ids) { el(id).replaceChildren(para(text, 'muted')); }
}

function showVerdict(a, v, forward) {
  el('problem').hidden = true;
  el('result-summary').textContent = forward
    ? `HTTP ${a.status} from the backend, which got the verdict from the proxy (forward mode).`
    : `HTTP ${a.status} from the proxy itself (respond mode).`;
  const res = node('p', `resolution ${v.resolution || '(none)'}`, `resolution ${v.resolution || ''}`);
  const rows = [['folder id', v.folderId || '(none)']];
  if (v.analyses) {
    for (const an of [].concat(v.analyses)) {
      rows.push([`analysis ${an.type || ''}`, `${an.resolution || an.state || ''} ${JSON.stringify(an)}`]);
    }
  }
  rows.push(['answer', a.text.length > 600 ? `${a.text.slice(0, 600)}…` : a.text]);
  el('verdict').replaceChildren(res, table(rows));
}

/** The problem answer as a user would see it: title and detail, then the whole document. */
function showProblem(a) {
  el('verdict').replaceChildren();
  el('result-summary').textContent = `HTTP ${a.status}: the capture was refused.`;
  const p = a.json || {};
  const box = node('div', '', 'problem');
  box.append(
    node('p', p.title || `HTTP ${a.status}`, 'resolution'),
    para(p.detail || a.text),
    node('pre', a.json ? JSON.stringify(a.json, null, 2) : a.text),
    para(`Content-Type: ${a.contentType || '(none)'}`, 'muted'),
  );
  el('problem').replaceChildren(box);
  el('problem').hidden = false;
}

/** The verdict token's header and claims, decoded as any JWT debugger would. */
function showToken(token, forward) {
  const where = forward
    ? 'The backend got it in X-Oz-Verdict-Token.'
    : 'The proxy answered it as verdict_token.';
  if (!token) {
    el('token').replaceChildren(para('No verdict token (verdict.keys not configured).', 'muted'));
    return;
  }
  const [h, c] = token.split('.').map(decodeBase64UrlJson);
  el('token').replaceChildren(
    para(where),
    node('pre', `${token.slice(0, 40)}… (${token.length} bytes)`),
    node('h3', 'header'), node('pre', JSON.stringify(h, null, 2)),
    node('h3', 'claims'), node('pre', JSON.stringify(c, null, 2)),
  );
}

function decodeBase64UrlJson(part) {
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (_) {
    return '(unreadable)';
  }
}

/** /_demo/last: the request line, body size and X-Oz-* headers the backend received. */
function showBackend(seen, forward) {
  if (!forward) {
    el('backend').replaceChildren(para(
      'Nothing for this capture: on a respond route the proxy answers itself.', 'muted'));
    return;
  }
  if (!seen || seen.error) {
    el('backend').replaceChildren(para(`Cannot tell: ${seen ? seen.error : 'no answer'}`, 'muted'));
    return;
  }
  const rows = [['request', `${seen.method} ${seen.path}`], ['body', `${seen.body_size} bytes`]];
  for (const [name, value] of Object.entries(seen.headers)) {
    rows.push([name, name === 'x-oz-verdict-token' ? `${value.slice(0, 40)}…` : value]);
  }
  el('backend').replaceChildren(table(rows));
}

/** What the simulated Oz received for the folder: parts, ZIP entries as thumbnails, tags. */
async function showOz(folderId) {
  if (!folderId) {
    el('oz').replaceChildren(para('No folder id in the answer, so nothing to look up.', 'muted'));
    return;
  }
  const up = await getJson(`/_demo/oz/uploads/${encodeURIComponent(folderId)}`);
  if (!up || up.error) {
    el('oz').replaceChildren(para(`Cannot tell: ${up ? up.error : 'no answer'}`, 'muted'));
    return;
  }
  const rows = [['folder', up.folder_id], ['request', `${up.endpoint}, ${up.content_type}`]];
  for (const p of up.parts) {
    rows.push([`part ${p.name}`, `${p.content_type || '-'}, ${p.size} bytes${p.filename ? `, ${p.filename}` : ''}`]);
  }
  if (up.container_size != null) { rows.push(['container', `${up.container_size} bytes, unchanged`]); }
  rows.push(['media:tags', JSON.stringify(up.media_tags)]);
  rows.push(['folder:meta_data', JSON.stringify(up.folder_meta)]);
  const thumbs = node('div', '', 'thumbs');
  for (const e of up.zip_entries) {
    const fig = node('figure', '');
    if (e.data_url) {
      const img = document.createElement('img');
      img.src = e.data_url;
      img.alt = e.name;
      fig.append(img);
    }
    fig.append(node('figcaption', `${e.name} (${e.size} B)`));
    thumbs.append(fig);
  }
  el('oz').replaceChildren(
    table(rows),
    node('h3', `ZIP entries (${up.zip_entries.length})`), thumbs,
    node('h3', 'additional_info'), node('pre', JSON.stringify(up.additional_info, null, 2)),
  );
}

// ---------------------------------------------------------------------------------------------
// Server-Timing

/**
 * Parses a Server-Timing header (W3C): comma-separated `name;dur=ms;desc="…"` entries. Entries
 * without a readable dur get 0; parameters other than dur and desc are ignored.
 */
function parseServerTiming(value) {
  if (!value) { return []; }
  return value.split(',').map((entry) => {
    const [name, ...params] = entry.split(';').map((x) => x.trim());
    const out = { name, dur: 0, desc: '' };
    for (const p of params) {
      const [k, v = ''] = p.split('=').map((x) => x.trim());
      if (k.toLowerCase() === 'dur') { out.dur = Number(v) || 0; }
      if (k.toLowerCase() === 'desc') { out.desc = v.replace(/^"|"$/g, ''); }
    }
    return out;
  }).filter((e) => e.name);
}

/** A bar per phase, widths relative to the longest; the browser's own total beside it. */
function showTiming(header, elapsed) {
  const total = para(`The browser waited ${elapsed.toFixed(0)} ms in all.`, 'muted');
  const entries = parseServerTiming(header);
  if (entries.length === 0) {
    el('timing').replaceChildren(para('no Server-Timing'), total);
    return;
  }
  const longest = Math.max(...entries.map((e) => e.dur), 1);
  const bars = node('div', '', 'bars');
  for (const e of entries) {
    const bar = node('div', '', 'bar');
    bar.style.width = `${(100 * e.dur) / longest}%`;
    bar.title = e.desc || e.name;
    bars.append(node('span', e.name), bar, node('span', `${e.dur.toFixed(1)} ms`));
  }
  el('timing').replaceChildren(bars, total);
}

// ---------------------------------------------------------------------------------------------
// What the page sent

function showSent(s, req, shot, broken) {
  const rows = [
    ['route', s.route],
    ['body', `${req.type}, ${req.size} bytes${broken ? ' (frame 2 corrupted on purpose)' : ''}`],
    ['action', s.action],
    ['shape', s.virtualCamera ? 'virtual camera (from_virtual_camera)' : 'plain'],
    ['frames', `${shot.frames.length} JPEG, ${source.width}×${source.height}`],
  ];
  const thumbs = node('div', '', 'thumbs');
  shot.frames.forEach((f, i) => {
    const fig = node('figure', '');
    const img = document.createElement('img');
    img.src = f;
    img.alt = `frame ${i}`;
    fig.append(img, node('figcaption', `frame ${i}`));
    thumbs.append(fig);
  });
  el('sent').replaceChildren(table(rows), thumbs);
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers: text only, never innerHTML, as answers are shown as received.

function node(tag, text, className) {
  const n = document.createElement(tag);
  if (text) { n.textContent = text; }
  if (className) { n.className = className; }
  return n;
}

function para(text, className) {
  return node('p', text, className);
}

function table(rows) {
  const t = document.createElement('table');
  for (const [k, v] of rows) {
    const tr = document.createElement('tr');
    tr.append(node('th', k), node('td', String(v)));
    t.append(tr);
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Start

/** ?route=PATH chooses the route; a path not in the list is added, so any route can be tried. */
function chooseRoute(params) {
  const route = params.get('route');
  if (!route) { return; }
  const select = el('route');
  if (![...select.options].some((o) => o.value === route)) {
    select.append(new Option(route, route));
  }
  select.value = route;
}

async function main() {
  const params = new URLSearchParams(location.search);
  chooseRoute(params);
  el('capture-form').addEventListener('submit', (ev) => { ev.preventDefault(); runCapture(false); });
  el('broken').addEventListener('click', () => runCapture(true));
  el('capture').disabled = true;
  el('broken').disabled = true;
  await startSource();
  el('capture').disabled = false;
  el('broken').disabled = false;
  if (params.get('auto') === '1') { await runCapture(false); }
}

main();

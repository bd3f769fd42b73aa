// The STCN interactive page: draws strokes, calls the JSON API, polls the background job.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { frame: 0, frames: 0, status: null, drawing: null, version: 0, polling: false };

function colour(id) {  // the DAVIS (PASCAL VOC) palette
  let r = 0, g = 0, b = 0, c = id;
  for (let j = 7; j >= 0; j--) {
    r |= ((c >> 0) & 1) << j; g |= ((c >> 1) & 1) << j; b |= ((c >> 2) & 1) << j;
    c >>= 3;
  }
  return `rgb(${r},${g},${b})`;
}

function say(text, error = false) {
  const m = $("message");
  m.textContent = text;
  m.className = error ? "message error" : "message";
}

async function api(path, body, raw = false) {
  const options = body === undefined ? {} : { method: "POST" };
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) {
    options.headers = { "Content-Type": "application/json" };
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: `${path}: HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `${path}: HTTP ${response.status}`);
  if (!raw && data.video !== undefined) show(data);
  return data;
}

async function run(action) {
  try { await action(); } catch (e) { say(e.message, true); }
}

function refreshImages() {
  if (!state.frames) return;
  state.version += 1;
  $("frame").src = `/api/frame/${state.frame}.jpg`;
  $("mask").src = `/api/mask/${state.frame}.png?v=${state.version}`;
  $("frame-label").textContent = `frame ${state.frame} / ${state.frames - 1}`;
  $("slider").value = state.frame;
}

function show(status) {
  const previous = state.status;
  state.status = status;
  $("models").textContent = status.models;
  if (status.video) {
    const v = status.video;
    $("processing").textContent = `processing ${v.width}x${v.height}`
      + (v.resolution ? ` (--resolution ${v.resolution})` : " (as given)") + `; masks written at ${v.full[0]}x${v.full[1]}`;
    $("download").hidden = false;
    state.frames = status.video.frames;
    $("slider").max = state.frames - 1;
    $("draw").width = status.video.width;
    $("draw").height = status.video.height;
  }
  $("objects").innerHTML = "";
  for (const id of status.objects) {
    const tag = document.createElement("span");
    tag.textContent = id;
    tag.style.background = colour(id);
    tag.onclick = () => { $("object").value = id; };
    $("objects").appendChild(tag);
  }
  const job = status.job;
  const running = job && job.state === "running";
  $("cancel").disabled = !running;
  for (const id of ["propagate", "undo", "export"]) $(id).disabled = running;
  $("bar").style.width = job && job.total ? `${(100 * job.done) / job.total}%` : "0";
  $("rounds").textContent = `rounds: ${status.rounds}; interacted frames: ${status.interacted.join(", ") || "none"}`
    + (status.pending !== null ? `; edit on frame ${status.pending} (not propagated)` : "");
  if (status.exported && status.exported.masks) {
    $("exported").innerHTML = `${status.exported.frames} masks in ${status.exported.masks}<br>`
      + `<a href="/api/overlay.mp4" download="overlay.mp4">overlay.mp4</a>`;
  }
  if (job) {
    if (running) say(job.done === 0 ? `${job.kind}: starting (${job.total} frames)…` : `${job.kind}: ${job.done} / ${job.total} frames`);
    else if (!previous || !previous.job || previous.job.state === "running") say(job.message, job.state === "failed");
  }
  if (running && !state.polling) poll();
}

async function poll() {
  state.polling = true;
  try {
    while (true) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const status = await api("/api/status");
      refreshImages();
      if (!status.job || status.job.state !== "running") break;
    }
  } catch (e) { say(e.message, true); }
  state.polling = false;
}

function goTo(t) {
  if (!state.frames) return;
  state.frame = Math.max(0, Math.min(state.frames - 1, t));
  refreshImages();
}

async function openVideo(body) {
  say("opening...");
  await api("/api/open", body);
  state.frame = 0;
  refreshImages();
  say(`opened ${state.status.video.name}: ${state.frames} frames (${state.status.video.width}x${state.status.video.height})`);
}

// --- drawing -------------------------------------------------------------------------------------
const canvas = $("draw");
const pen = canvas.getContext("2d");

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) / box.width, (event.clientY - box.top) / box.height];
}

canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("pointerdown", (event) => {
  if (!state.frames) return;
  canvas.setPointerCapture(event.pointerId);
  const positive = event.button !== 2 && $("positive").checked;
  state.drawing = { positive, points: [point(event)] };
});
canvas.addEventListener("pointermove", (event) => {
  const d = state.drawing;
  if (!d) return;
  const p = point(event);
  const q = d.points[d.points.length - 1];
  d.points.push(p);
  pen.strokeStyle = d.positive ? colour(Number($("object").value) || 1) : "#fff";
  pen.lineWidth = 2 * Number($("radius").value) + 1;
  pen.lineCap = "round";
  pen.beginPath();
  pen.moveTo(q[0] * canvas.width, q[1] * canvas.height);
  pen.lineTo(p[0] * canvas.width, p[1] * canvas.height);
  pen.stroke();
});
canvas.addEventListener("pointerup", (event) => {
  const d = state.drawing;
  state.drawing = null;
  if (!d) return;
  d.points.push(point(event));
  const body = { frame: state.frame, object: Number($("object").value), positive: d.positive, points: d.points,
                 radius: Number($("radius").value) };
  run(async () => {
    say("mask from the stroke...");
    const t0 = performance.now();
    await api("/api/stroke", body);
    pen.clearRect(0, 0, canvas.width, canvas.height);
    refreshImages();
    say(`mask updated on frame ${body.frame} in ${Math.round(performance.now() - t0)} ms`);
  }).finally(() => pen.clearRect(0, 0, canvas.width, canvas.height));
});

// --- controls ------------------------------------------------------------------------------------
$("open-sample").onclick = () => run(() => openVideo({ sample: $("sample").value }));
$("open-path").onclick = () => run(() => openVideo({ path: $("path").value }));
$("slider").oninput = () => goTo(Number($("slider").value));
$("prev").onclick = () => goTo(state.frame - 1);
$("next").onclick = () => goTo(state.frame + 1);
$("propagate").onclick = () => run(() => api("/api/propagate", {}));
$("cancel").onclick = () => run(() => api("/api/cancel", {}));
$("undo").onclick = () => run(async () => { await api("/api/undo", {}); refreshImages(); say("undone"); });
$("export").onclick = () => run(() => api("/api/export", {}));
$("new-object").onclick = () => {
  const used = new Set(state.status ? state.status.objects : []);
  let id = 1;
  while (used.has(id) && id < 255) id += 1;
  $("object").value = id;
};
$("object").onchange = () => {
  const id = Number($("object").value);
  if (!Number.isInteger(id) || id < 1 || id > 255) say(`object id ${$("object").value} is outside 1..255`, true);
};
$("import").onchange = () => run(async () => {
  const file = $("import").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("mask", file);
  $("import").value = "";
  await api(`/api/import/${state.frame}`, form);
});
$("show-mask").onchange = () => { $("mask").style.display = $("show-mask").checked ? "" : "none"; };
$("opacity").oninput = () => { $("mask").style.opacity = Number($("opacity").value) / 100; };
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" && event.target.type !== "range") return;
  if (event.key === "ArrowLeft") goTo(state.frame - 1);
  if (event.key === "ArrowRight") goTo(state.frame + 1);
});

run(async () => {
  const samples = await api("/api/samples");
  for (const name of samples.samples) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    $("sample").appendChild(option);
  }
  $("path").placeholder = `video.mp4 or frames/ under ${samples.root}`;
  const status = await api("/api/status");
  if (status.video) { state.frame = 0; refreshImages(); }
});

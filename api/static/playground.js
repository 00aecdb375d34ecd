// The PoseAnimate playground: a page on the public API only (no build step, no dependencies).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "poseanimate.apiKey";
  const STAGES = ["loading", "inverting", "optimizing", "sampling", "encoding", "uploading"];
  const EXAMPLES = [
    { file: "raise_arms.json", label: "Raise arms (14 frames, upper body)" },
    { file: "wave_openpose.json", label: "Wave (8 frames, OpenPose JSON, 640x480)" },
  ];
  const state = {
    key: localStorage.getItem(KEY_STORE) || "",
    image: null, // Blob
    imageSize: null, // [w, h]
    imageUrl: null,
    sourcePose: null, // parsed (image pixels)
    sourcePoseBlob: null,
    motion: null, // parsed targets
    motionBlob: null,
    motionName: "",
    aligned: null,
    frame: 0,
    playing: true,
    limits: {},
    paths: {},
    job: null,
    follow: null, // AbortController of the running follow
    startedAt: null,
  };

  // ---------------------------------------------------------------- errors
  function showError(title, detail, meta) {
    $("error-title").textContent = title;
    $("error-detail").textContent = detail || "";
    $("error-meta").textContent = meta || "";
    $("error").hidden = false;
    $("error").scrollIntoView({ block: "nearest" });  // never drawn above the viewport, unseen
  }
  function clearError() { $("error").hidden = true; }
  $("error-close").addEventListener("click", clearError);

  class ApiProblem extends Error {
    constructor(status, problem) {
      super(problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  function reportError(err, what) {
    if (err instanceof ApiProblem) {
      const p = err.problem;
      const extra = (p.errors || []).map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
      showError(`${what}: ${p.title || "error"} (${err.status})`,
        [p.detail, extra].filter(Boolean).join(" — "),
        [p.code && `code ${p.code}`, p.request_id && `request ${p.request_id}`].filter(Boolean).join(" · "));
    } else if (err && err.name === "AbortError") {
      // a follow we stopped ourselves
    } else {
      showError(`${what}: ${err && err.name === "TypeError" ? "the server cannot be reached" : "error"}`, String(err && err.message || err));
    }
  }

  // ---------------------------------------------------------------- API
  async function api(method, path, { body, headers = {}, signal } = {}) {
    const h = { Accept: "application/json", ...headers };
    if (state.key) h.Authorization = `Bearer ${state.key}`;
    const reply = await fetch(path.replace(/^\//, ""), { method, body, headers: h, signal });
    if (!reply.ok) {
      let problem = { title: reply.statusText || `HTTP ${reply.status}`, status: reply.status };
      const text = await reply.text();
      try { problem = { ...problem, ...JSON.parse(text) }; } catch { if (text) problem.detail = text.slice(0, 300); }
      throw new ApiProblem(reply.status, problem);
    }
    return reply.status === 204 ? null : reply.json();
  }

  // ---------------------------------------------------------------- key
  function renderKeyState(kind, text) {
    const el = $("key-state");
    el.dataset.state = kind;
    el.textContent = text;
  }
  $("api-key").value = state.key;
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = $("api-key").value.trim();
    if (state.key) localStorage.setItem(KEY_STORE, state.key);
    else localStorage.removeItem(KEY_STORE);
    clearError();
    refreshHistory();
  });

  // ---------------------------------------------------------------- schema limits
  function bounds(prop) {
    const alts = [prop, ...(prop.anyOf || [])];
    const pick = (k) => alts.map((a) => a[k]).find((v) => v !== undefined);
    return { min: pick("minimum"), max: pick("maximum"), step: pick("multipleOf"), def: prop.default };
  }
  async function loadSchema() {
    try {
      const schema = await (await fetch("openapi.json")).json();
      state.paths = schema.paths || {};
      const comps = (schema.components || {}).schemas || {};
      const props = (comps.AnimationCreate || comps.AnimationParams || {}).properties || {};
      for (const name of ["steps", "guidance", "size", "width", "height", "fps", "transition_frames", "seed"]) {
        if (!props[name]) { if ($(name) && ["width", "height"].includes(name)) $(name).closest("label").hidden = true; continue; }
        const b = bounds(props[name]);
        const input = $(name);
        if (b.min !== undefined) input.min = b.min;
        if (b.max !== undefined) input.max = b.max;
        if (b.step !== undefined) input.step = b.step;
        state.limits[name] = b;
        input.title = `${props[name].description || name} (${b.min ?? "…"}–${b.max ?? "…"})`;
      }
      if (props.prompt && props.prompt.maxLength) $("prompt").maxLength = props.prompt.maxLength;
      applyServedModel((schema.info || {})["x-served-model"]);
      // A clip goes to POST /animations as driving_video; POST /poses only previews its poses.
      state.drivingVideo = "driving_video" in props;
      $("motion-video-option").hidden = !state.drivingVideo;
      $("extract-poses").hidden = !state.paths["/poses"];
    } catch (err) {
      showError("Could not read the API schema", String(err.message || err));
    }
  }

  // The size and steps that suit the model the server runs (info.x-served-model): 64 px and 4 steps
  // for the tiny random-weight model (seconds on a CPU), the paper's 512 px and 50 steps for a real one.
  function applyServedModel(served) {
    if (!served || !served.defaults) return;
    const d = served.defaults;
    if (d.size) $("size").value = String(d.size);
    if (d.steps) $("steps").value = String(d.steps);
    const note = $("model-note");
    note.textContent = `Served model: ${served.name}. Suggested: ${d.size} px, ${d.steps} steps.`;
    note.hidden = false;
  }

  // ---------------------------------------------------------------- inputs
  function setImage(blob, name) {
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.image = blob;
    state.imageName = name;
    state.imageUrl = URL.createObjectURL(blob);
    const img = $("image-preview");
    img.onload = () => {
      state.imageSize = [img.naturalWidth, img.naturalHeight];
      state.imageEl = img;
      realign();
    };
    img.onerror = () => showError("Image", "the browser cannot decode this image (PNG, JPEG or WebP expected)");
    img.src = state.imageUrl;
    img.hidden = false;
    $("image-empty").hidden = true;
  }

  function setSourcePose(parsed, blob, label) {
    state.sourcePose = parsed;
    state.sourcePoseBlob = blob;
    $("source-pose-state").textContent = parsed ? label : "detected on the server when absent";
    realign();
  }

  async function readJsonFile(file) {
    try { return JSON.parse(await file.text()); } catch (err) { throw new Poses.PoseError(`${file.name} is not valid JSON`); }
  }

  $("image-file").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    setImage(file, file.name);
    setSourcePose(null, null);
  });
  $("use-example-image").addEventListener("click", async () => {
    try {
      const [img, pose] = await Promise.all([fetch("static/examples/astronaut.jpg"), fetch("static/examples/astronaut_pose.json")]);
      if (!img.ok || !pose.ok) throw new Error("the bundled example is missing from this server");
      const poseText = await pose.text();
      setImage(await img.blob(), "astronaut.jpg");
      setSourcePose(Poses.parse(JSON.parse(poseText)), new Blob([poseText], { type: "application/json" }), "astronaut_pose.json (bundled)");
      if (!$("prompt").value) $("prompt").value = "a photo of an astronaut";
    } catch (err) { reportError(err, "Example image"); }
  });
  $("source-pose-file").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    try {
      const parsed = Poses.parse(await readJsonFile(file));
      setSourcePose(parsed, file, file.name);
    } catch (err) { showError("Source pose", err.message); }
  });

  function setMotion(parsed, blob, name) {
    state.motion = parsed;
    state.motionBlob = blob;
    state.motionName = name;
    $("motion-state").textContent = `${name}: ${parsed.frames.length} frames on ${parsed.width}×${parsed.height}`;
    state.frame = 0;
    realign();
  }

  async function loadExample(file) {
    try {
      const reply = await fetch(`static/examples/${file}`);
      if (!reply.ok) throw new Error(`example ${file} is missing (${reply.status})`);
      const text = await reply.text();
      setMotion(Poses.parse(JSON.parse(text)), new Blob([text], { type: "application/json" }), file);
    } catch (err) { showError("Example motion", err.message); }
  }
  for (const ex of EXAMPLES) {
    const opt = document.createElement("option");
    opt.value = ex.file;
    opt.textContent = ex.label;
    $("example-select").append(opt);
  }
  $("example-select").addEventListener("change", (ev) => loadExample(ev.target.value));

  document.querySelectorAll("input[name=motion]").forEach((radio) => radio.addEventListener("change", () => {
    const kind = document.querySelector("input[name=motion]:checked").value;
    document.querySelectorAll(".motion-pane").forEach((p) => { p.hidden = p.dataset.pane !== kind; });
    if (kind === "example") loadExample($("example-select").value);
    if (kind === "video" && !(state.motionName || "").endsWith("(extracted)")) videoChosen($("video-file").files[0]);
  }));
  $("pose-file").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    try { setMotion(Poses.parse(await readJsonFile(file)), file, file.name); } catch (err) {
      // The refused file is not the motion: drop the previous one's label (it looked accepted).
      state.motion = null;
      state.motionBlob = null;
      state.motionName = null;
      $("motion-state").textContent = `${file.name} refused: ${err.message}`;
      realign();
      showError("Pose JSON", err.message);
    }
  });
  function motionKind() { return document.querySelector("input[name=motion]:checked").value; }
  function chosenVideo() { return motionKind() === "video" ? $("video-file").files[0] || null : null; }
  function videoChosen(file) {
    // The clip is the motion now: the previous poses are not what will be sent.
    state.motion = null;
    state.motionBlob = null;
    state.motionName = "";
    realign();
    $("motion-state").textContent = file
      ? `${file.name}: sent as the driving video (the server extracts its poses${$("keep-audio").checked ? " and keeps its sound" : ""}); preview its poses here if you like`
      : "no motion yet";
  }
  $("video-file").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    $("extract-poses").disabled = !file;
    videoChosen(file);
  });
  $("extract-poses").addEventListener("click", async () => {
    const file = $("video-file").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("video", file);
    $("motion-state").textContent = "extracting poses from the video…";
    try {
      // 200 with the poses, or 202 while an io worker is still extracting: poll GET /poses/{id}.
      let reply = await api("POST", "/poses", { body: form });
      for (let polls = 0; reply.status === "queued" && polls < 600; polls++) {
        await new Promise((done) => setTimeout(done, 1000));
        reply = await api("GET", `/poses/${reply.id}`);
      }
      if (reply.status === "failed") {
        const error = reply.error || {};
        throw new ApiProblem(422, { title: "Pose extraction failed", code: error.code, detail: error.message });
      }
      if (reply.status !== "succeeded") throw new Error("the extraction is still running; try again later");
      const poses = reply.poses;
      const report = reply.report || {};
      const text = JSON.stringify(poses);
      setMotion(Poses.parse(poses), new Blob([text], { type: "application/json" }), `${file.name} (extracted)`);
      const dropped = (report.frames_dropped || []).length;
      $("motion-state").textContent += ` · sampled at ${report.fps} fps` +
        (dropped ? `, ${dropped} frame${dropped === 1 ? "" : "s"} without a person dropped` : "");
    } catch (err) {
      $("motion-state").textContent = "pose extraction failed";
      reportError(err, "Pose extraction");
    }
  });

  // ---------------------------------------------------------------- skeleton preview
  function intParam(name, fallback) {
    const v = $(name).value;
    return v === "" || Number.isNaN(+v) ? fallback : Math.round(+v);
  }

  function realign() {
    state.aligned = null;
    const note = $("align-note");
    if (!state.motion) { drawPreview(); return; }
    const [w, h] = dims();
    const t = intParam("transition_frames", 4);
    if (state.sourcePose) {
      const [iw, ih] = state.imageSize || [state.sourcePose.width, state.sourcePose.height];
      const res = Poses.align(state.sourcePose, state.motion, Math.max(0, t), w, h, iw, ih);
      state.aligned = res.frames;
      note.textContent = `PATA: scale ×${res.transform.scale.toFixed(2)}, shift (${res.transform.tx.toFixed(0)}, ${res.transform.ty.toFixed(0)}) px; ` +
        `${res.frames.length} poses = 1 source + ${Math.max(0, t)} transition + ${state.motion.frames.length} targets on ${w}×${h}.`;
      $("aligned-caption").textContent = "aligned on the character (PATA)";
    } else {
      state.aligned = state.motion.frames.map((f) => Poses.toCanvas(f, state.motion.width, state.motion.height, w, h));
      note.textContent = state.image
        ? "No source pose: the server detects it, then aligns (PATA). Shown here unaligned, fitted to the canvas."
        : "Pick an image to see the motion on it.";
      $("aligned-caption").textContent = "motion on the character (not aligned)";
    }
    const s = $("scrubber");
    s.max = String(state.aligned.length - 1);
    state.frame = Math.min(state.frame, state.aligned.length - 1);
    drawPreview();
  }

  function dims() {
    const size = intParam("size", 512);
    return [intParam("width", size), intParam("height", size)];
  }

  // The image as the engine crops it onto w x h, letterboxed in the canvas exactly as Poses.draw is.
  function drawImageFit(ctx, w, h) {
    if (!state.imageEl || !state.imageSize) return;
    const [iw, ih] = state.imageSize;
    const [l, tp, cw, ch] = Poses.fitTransform(iw, ih, w, h).crop;
    const W = ctx.canvas.width, H = ctx.canvas.height, s = Math.min(W / w, H / h);
    ctx.drawImage(state.imageEl, l, tp, cw, ch, (W - w * s) / 2, (H - h * s) / 2, w * s, h * s);
  }

  function drawPreview() {
    const mctx = $("motion-canvas").getContext("2d");
    const actx = $("aligned-canvas").getContext("2d");
    for (const ctx of [mctx, actx]) {
      ctx.fillStyle = "#0b0f17";
      ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    }
    if (!state.aligned) { $("frame-label").textContent = "0 / 0"; return; }
    const [w, h] = dims();
    const i = state.frame;
    const t = state.aligned.length - state.motion.frames.length;
    const target = state.motion.frames[Math.max(0, i - t)];
    const parts = $("parts").value;
    Poses.draw(mctx, Poses.keepParts(target, parts), state.motion.width, state.motion.height, { alpha: i < t ? 0.35 : 1 });
    drawImageFit(actx, w, h);
    if (state.image) { actx.fillStyle = "rgba(0,0,0,0.35)"; actx.fillRect(0, 0, actx.canvas.width, actx.canvas.height); }
    Poses.draw(actx, Poses.keepParts(state.aligned[i], parts), w, h);
    $("scrubber").value = String(i);
    const kind = state.sourcePose ? (i === 0 ? "source pose" : i < t ? "transition" : "target") : "target";
    $("frame-label").textContent = `${i + 1} / ${state.aligned.length} · ${kind}`;
  }

  $("scrubber").addEventListener("input", (ev) => { state.frame = +ev.target.value; state.playing = false; $("play").textContent = "▶"; drawPreview(); });
  $("play").addEventListener("click", () => { state.playing = !state.playing; $("play").textContent = state.playing ? "❚❚" : "▶"; });
  ["size", "width", "height", "transition_frames"].forEach((id) => $(id).addEventListener("input", realign));
  $("parts").addEventListener("change", drawPreview);
  let lastTick = 0;
  function tick(now) {
    const fps = Math.max(1, intParam("fps", 8));
    if (state.playing && state.aligned && now - lastTick > 1000 / fps) {
      lastTick = now;
      state.frame = (state.frame + 1) % state.aligned.length;
      drawPreview();
    }
    if (state.resultSkeleton) drawResultSkeleton();
    requestAnimationFrame(tick);
  }

  // ---------------------------------------------------------------- submit and follow
  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return `pg-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  }

  function buildForm() {
    if (!state.image) throw new Error("choose a character image first (or the example astronaut)");
    const video = chosenVideo();
    if (motionKind() === "video" && !video) throw new Error("choose a driving video first");
    if (!video && !state.motion) throw new Error("choose a motion first");
    const form = new FormData();
    form.append("image", state.image, state.imageName || "image");
    if (video) {
      form.append("driving_video", video, video.name);
      form.append("audio", $("keep-audio").checked ? "true" : "false");
    } else {
      form.append("poses", state.motionBlob, "poses.json");
    }
    if (state.sourcePoseBlob) form.append("source_pose", state.sourcePoseBlob, "source_pose.json");
    form.append("prompt", $("prompt").value.trim());
    const words = $("subject_words").value.trim();
    if (words) form.append("subject_words", words);
    for (const name of ["steps", "guidance", "size", "width", "height", "fps", "transition_frames", "seed"]) {
      if ($(name).closest("label").hidden) continue;
      const v = $(name).value.trim();
      if (v !== "") form.append(name, v);
    }
    form.append("parts", $("parts").value);
    return form;
  }

  $("submit").addEventListener("click", async () => {
    clearError();
    let form;
    try { form = buildForm(); } catch (err) { showError("Not ready", err.message); return; }
    if (!state.key) { showError("No API key", "enter your API key at the top (make up writes it to .run/api-key)"); return; }
    $("submit").disabled = true;
    try {
      const job = await api("POST", "/animations", { body: form, headers: { "Idempotency-Key": newKey() } });
      state.startedAt = null;
      $("result").hidden = true;
      renderJob(job);
      follow(job.id);
      refreshHistory();
    } catch (err) {
      reportError(err, "Submit");
    } finally {
      $("submit").disabled = false;
    }
  });

  $("cancel").addEventListener("click", async () => {
    if (!state.job) return;
    $("cancel").disabled = true;
    try {
      const job = await api("POST", `/animations/${state.job.id}/cancel`);
      renderJob(job);
      $("job-note").textContent = job.status === "canceled" ? "canceled" : "cancel requested: the worker stops within a step";
    } catch (err) { reportError(err, "Cancel"); } finally { $("cancel").disabled = false; }
  });

  function eta(job) {
    if (job.status !== "running" || !(job.progress > 0)) return "";
    if (!state.startedAt) state.startedAt = { t: performance.now(), p: job.progress };
    const dt = (performance.now() - state.startedAt.t) / 1000, dp = job.progress - state.startedAt.p;
    if (dt < 1 || dp <= 0) return "";
    const left = ((1 - job.progress) * dt) / dp;
    return `about ${left < 60 ? `${Math.ceil(left)} s` : `${Math.round(left / 60)} min`} left`;
  }

  function renderJob(job) {
    const prev = state.job && state.job.id === job.id ? state.job : {};
    state.job = { ...prev, ...job };
    job = state.job;
    $("job").hidden = false;
    $("job-id").textContent = job.id;
    const st = $("job-status");
    st.textContent = job.cancel_requested && job.status === "running" ? "canceling" : job.status;
    st.dataset.state = job.status;
    $("queue-position").textContent = job.status === "queued" && job.queue_position ? `position ${job.queue_position} in the queue` : "";
    $("eta").textContent = eta(job);
    const pct = Math.round((job.progress || 0) * 100);
    $("progress-fill").style.width = `${pct}%`;
    $("progress").setAttribute("aria-valuenow", String(pct));
    $("progress-text").textContent = `${pct}%${job.stage ? ` · ${job.stage}` : ""}`;
    const current = STAGES.indexOf(job.stage);
    document.querySelectorAll("#stages li").forEach((li, i) => {
      const done = job.status === "succeeded" || (current >= 0 && i < current) || job.stage === "done";
      li.className = done ? "done" : i === current && job.status === "running" ? "active" : "";
    });
    const terminal = ["succeeded", "failed", "canceled"].includes(job.status);
    $("cancel").hidden = terminal;
    // The cancel note is about a job still stopping: once it ended, say how.
    if (terminal && /^cancel requested/.test($("job-note").textContent)) $("job-note").textContent = job.status;
    if (job.status === "failed" && job.error) {
      showError(`Job failed: ${job.error.code}`, job.error.message, job.id);
    }
    if (job.status === "succeeded" && job.output) renderResult(job);
    if (terminal) { $("eta").textContent = ""; }
  }

  function stopFollow() {
    if (state.follow) state.follow.abort();
    state.follow = null;
  }

  // SSE over fetch (EventSource cannot send Authorization), with a polling fallback.
  async function follow(id) {
    stopFollow();
    const ctl = new AbortController();
    state.follow = ctl;
    const poller = setInterval(async () => { // queue position is not in progress events
      if (state.job && state.job.id === id && state.job.status === "queued") {
        try { renderJob(await api("GET", `/animations/${id}`, { signal: ctl.signal })); } catch { /* the stream reports */ }
      }
    }, 1500);
    try {
      const done = await followSse(id, ctl.signal);
      if (!done && !ctl.signal.aborted) await poll(id, ctl.signal);
    } catch (err) {
      if (!ctl.signal.aborted) {
        try { await poll(id, ctl.signal); } catch (err2) { reportError(err2, "Following the job"); }
      }
    } finally {
      clearInterval(poller);
      refreshHistory();
    }
  }

  async function followSse(id, signal) {
    const headers = { Accept: "text/event-stream" };
    if (state.key) headers.Authorization = `Bearer ${state.key}`;
    const reply = await fetch(`animations/${id}/events`, { headers, signal });
    if (!reply.ok || !reply.body) {
      if (reply.status === 401 || reply.status === 404) {
        let p = {};
        try { p = await reply.json(); } catch { /* not problem+json */ }
        throw new ApiProblem(reply.status, { title: reply.statusText, ...p });
      }
      return false;
    }
    const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "", terminal = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (!data) continue;
        const payload = JSON.parse(data);
        if (event === "progress") renderJob({ ...payload });
        if (event === "status") { renderJob(payload); terminal = true; }
      }
    }
    return terminal;
  }

  async function poll(id, signal) {
    for (;;) {
      const job = await api("GET", `/animations/${id}`, { signal });
      renderJob(job);
      if (["succeeded", "failed", "canceled"].includes(job.status)) return;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  // ---------------------------------------------------------------- result
  function link(href, text, download) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    if (download) a.download = download;
    a.className = "button secondary";
    return a;
  }

  function renderResult(job) {
    $("result").hidden = false;
    const video = $("result-video");
    if (video.dataset.job !== job.id) {
      video.dataset.job = job.id;
      video.src = job.output.video_url;
      video.play().catch(() => { /* autoplay may be refused; the controls are there */ });
    }
    $("result-source").src = state.imageUrl || job.output.poster_url;
    const extras = Object.entries(job.output).filter(([k, v]) => k.endsWith("_url") && !["video_url", "poster_url"].includes(k) && v);
    const skeleton = extras.find(([k]) => /skeleton|pose_video|control/.test(k));
    const sv = $("skeleton-video");
    if (skeleton) {
      sv.hidden = false;
      $("skeleton-canvas").hidden = true;
      if (sv.src !== skeleton[1]) sv.src = skeleton[1];
      $("skeleton-caption").textContent = "skeleton (from the server)";
      state.resultSkeleton = null;
    } else {
      sv.hidden = true;
      $("skeleton-canvas").hidden = !state.aligned;
      $("skeleton-caption").textContent = state.aligned ? "skeleton (preview, synced to the video)" : "skeleton: not available for this job";
      state.resultSkeleton = state.aligned ? { frames: state.aligned, dims: dims() } : null;
    }
    const box = $("downloads");
    box.replaceChildren(
      link(job.output.video_url, "Download MP4", `${job.id}.mp4`),
      link(job.output.poster_url, "Poster PNG", `${job.id}.png`),
      ...extras.map(([k, v]) => link(v, k.replace(/_url$/, "").replace(/_/g, " "), "")),
    );
    const notes = [];
    if (job.model && job.model.random_weights) notes.push(`model: ${job.model.name}: random weights, the video is noise (a smoke test).`);
    notes.push(...(job.notes || []));  // e.g. the clip's audio left out, and why
    if (notes.length) $("job-note").textContent = notes.join(" ");
  }

  function drawResultSkeleton() {
    const { frames, dims: [w, h] } = state.resultSkeleton;
    const video = $("result-video");
    const fps = (state.job && state.job.params && state.job.params.fps) || 8;
    const i = Math.min(frames.length - 1, Math.floor((video.currentTime || 0) * fps));
    const ctx = $("skeleton-canvas").getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    Poses.draw(ctx, frames[i], w, h);
  }

  // ---------------------------------------------------------------- history
  async function refreshHistory() {
    const rows = $("history-rows");
    if (!state.key) { renderKeyState("none", "no key"); return; }
    try {
      const list = await api("GET", "/animations?limit=20");
      renderKeyState("ok", "key accepted");
      rows.replaceChildren();
      if (!list.data.length) {
        const tr = rows.insertRow();
        const td = tr.insertCell();
        td.colSpan = 6;
        td.className = "muted";
        td.textContent = "no jobs yet";
      }
      for (const job of list.data) {
        const tr = rows.insertRow();
        tr.insertCell().append(Object.assign(document.createElement("code"), { textContent: job.id, title: job.id }));
        const st = tr.insertCell().appendChild(Object.assign(document.createElement("span"), { className: "pill", textContent: job.status }));
        st.dataset.state = job.status;
        tr.insertCell().textContent = new Date(job.created_at).toLocaleString();
        tr.insertCell().textContent = job.params.prompt;
        tr.insertCell().textContent = String(job.num_frames);
        const cell = tr.insertCell();
        const open = Object.assign(document.createElement("button"), { type: "button", className: "secondary small", textContent: "Open" });
        open.addEventListener("click", () => {
          clearError();
          state.startedAt = null;
          renderJob(job);
          if (!["succeeded", "failed", "canceled"].includes(job.status)) follow(job.id);
          else if (job.status !== "succeeded") $("result").hidden = true;
        });
        cell.append(open);
        if (((state.paths["/animations/{job_id}"] || {}).delete)) {
          const del = Object.assign(document.createElement("button"), { type: "button", className: "danger small", textContent: "Delete" });
          del.addEventListener("click", async () => {
            if (!window.confirm(`Delete ${job.id} and its files?`)) return;
            try {
              await api("DELETE", `/animations/${job.id}`);
              if (state.job && state.job.id === job.id) { stopFollow(); $("job").hidden = true; $("result").hidden = true; }
              refreshHistory();
            } catch (err) { reportError(err, "Delete"); }
          });
          cell.append(" ", del);
        }
      }
    } catch (err) {
      if (err instanceof ApiProblem && err.status === 401) renderKeyState("bad", "key refused");
      reportError(err, "Job history");
    }
  }
  $("refresh-history").addEventListener("click", () => { clearError(); refreshHistory(); });

  // ---------------------------------------------------------------- start
  window.addEventListener("unhandledrejection", (ev) => reportError(ev.reason, "Unexpected"));
  loadSchema().then(() => {
    loadExample($("example-select").value);
    if (state.key) refreshHistory();
  });
  $("play").textContent = "❚❚";
  requestAnimationFrame(tick);
  window.playground = { state }; // for debugging and the browser tests
})();

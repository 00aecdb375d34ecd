// Pose helpers for the playground: parse the accepted pose JSON shapes, map them onto a canvas the
// way the engine does (engine.poses.pose.fit_transform), align them with PATA (engine.poses.alignment: one
// similarity fitted on torso lengths + neck anchor, then a linear transition), and draw COCO-18
// skeletons with the OpenPose annotator's colours. No dependencies.
"use strict";

const Poses = (() => {
  // engine.poses.pose.LIMBS (0-indexed COCO-18), in drawing order; limb i is drawn in COLORS[i].
  const LIMBS = [
    [1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10],
    [1, 11], [11, 12], [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17],
  ];
  const COLORS = [
    [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
    [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255],
    [0, 0, 255], [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
  ];
  const MIN_CONFIDENCE = 0.05;
  const SCALE_RANGE = [0.1, 10.0];
  const NECK = 1, R_HIP = 8, L_HIP = 11;
  const TORSO = [[NECK, R_HIP], [NECK, L_HIP], [2, 5], [R_HIP, L_HIP], [NECK, "mid"]];

  class PoseError extends Error {}

  // engine.inputs.poseformat: body layouts by keypoint count -> COCO-18 (an index, or a pair to average).
  const BODY25 = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
  const COCO17 = [0, [5, 6], 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3];
  const HAND_EDGES = [];
  for (let f = 0; f < 5; f++) for (let j = 0; j < 4; j++) HAND_EDGES.push([j === 0 ? 0 : 4 * f + j, 4 * f + j + 1]);
  const L_WRIST = 7, R_WRIST = 4, NOSE = 0;

  // A frame is an array of 18 [x, y, c] with optional .hands ([left|null, right|null]) and .face.
  function withParts(frame, hands, face) {
    if (hands && (hands[0] || hands[1])) frame.hands = hands;
    if (face) frame.face = face;
    return frame;
  }

  function points3(list, where) {
    if (!Array.isArray(list)) throw new PoseError(`${where} must be a list of keypoints`);
    if (list.length && list.every((p) => Array.isArray(p))) return list.map((p) => [+p[0], +p[1], p.length > 2 ? +p[2] : 1]);
    if (list.length % 3) throw new PoseError(`${where} has ${list.length} numbers, not (x, y, c) triples`);
    const out = [];
    for (let i = 0; i < list.length; i += 3) out.push([+list[i], +list[i + 1], +list[i + 2]]);
    return out;
  }

  function part(list, n, where) {
    if (list === undefined || list === null || (Array.isArray(list) && !list.length)) return null;
    let pts = points3(list, where);
    if (n === 70 && pts.length === 68) pts = pts.concat([[0, 0, 0], [0, 0, 0]]);
    if (pts.length !== n) throw new PoseError(`${where} must hold ${n} keypoints`);
    return pts.some((p) => p[2] > 0) ? pts : null;
  }

  function body(list, where) {
    const pts = points3(list, where);
    const mid = (a, b) => (a[2] > 0 && b[2] > 0 ? [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, Math.min(a[2], b[2])] : [0, 0, 0]);
    const pick = (map) => map.map((i) => (Array.isArray(i) ? mid(pts[i[0]], pts[i[1]]) : pts[i]));
    if (pts.length === 18) return pts;
    if (pts.length === 25) return pick(BODY25);
    if (pts.length === 17) return pick(COCO17);
    if (pts.length === 133) {
      const keep = (h) => (h.some((p) => p[2] > 0) ? h : null);
      return withParts(pick(COCO17), [keep(pts.slice(91, 112)), keep(pts.slice(112, 133))],
        keep(pts.slice(23, 91).concat([[0, 0, 0], [0, 0, 0]])));
    }
    throw new PoseError(`${where} has ${pts.length} keypoints; accepted: 18 (COCO-18), 25 (BODY_25), 17 (COCO-17) or 133 (COCO-WholeBody)`);
  }

  function openposeFrame(obj, where) {
    const person = obj && Array.isArray(obj.people) ? obj.people[0] : null;
    if (!person || !person.pose_keypoints_2d) throw new PoseError(`${where} has no people[0].pose_keypoints_2d`);
    const canvas = obj.canvas_width ? [obj.canvas_width, obj.canvas_height] : null;
    const frame = body(person.pose_keypoints_2d, where);
    return [withParts(frame, [part(person.hand_left_keypoints_2d, 21, `${where} left hand`),
      part(person.hand_right_keypoints_2d, 21, `${where} right hand`)], part(person.face_keypoints_2d, 70, `${where} face`)), canvas];
  }

  // Every confident point of a frame (body, hands, face).
  const allPoints = (f) => [f, ...(f.hands || []).filter(Boolean), ...(f.face ? [f.face] : [])].flat().filter((p) => p[2] > 0);

  // Map every point of a frame (parts included) through fn([x, y, c]) -> [x, y, c]; missing stay [0, 0, 0].
  function mapFrame(frame, fn) {
    const m = (list) => list.map((p) => (p[2] > 0 ? fn(p) : [0, 0, 0]));
    return withParts(m(frame), frame.hands ? frame.hands.map((h) => (h ? m(h) : null)) : null, frame.face ? m(frame.face) : null);
  }

  // Any accepted input -> {width, height, frames: [[[x, y, c] x 18] (+ .hands, .face), ...]} in pixels.
  function parse(obj) {
    let frames, canvas = null;
    if (obj && typeof obj === "object" && !Array.isArray(obj) && Array.isArray(obj.frames)) {
      frames = obj.frames.map((f, i) => body(f, `frame ${i}`));
      (obj.hands || []).forEach((h, i) => { if (h && frames[i]) withParts(frames[i], [part(h[0], 21, "hand"), part(h[1], 21, "hand")], null); });
      (obj.faces || []).forEach((f, i) => { if (f && frames[i]) withParts(frames[i], null, part(f, 70, "face")); });
      if (obj.width) canvas = [obj.width, obj.height];
    } else if (Array.isArray(obj)) {
      frames = [];
      obj.forEach((item, i) => {
        const [f, c] = openposeFrame(item, `frame ${i}`);
        frames.push(f);
        canvas = canvas || c;
      });
    } else if (obj && typeof obj === "object") {
      const [f, c] = openposeFrame(obj, "pose");
      frames = [f];
      canvas = c;
    } else {
      throw new PoseError("not a pose file: expected an OpenPose frame, a list of frames, or {width, height, frames}");
    }
    if (!frames.length) throw new PoseError("the pose file has no frames");
    const confident = frames.flatMap(allPoints);
    const normalized = obj.units === "normalized" ||
      (obj.units === undefined && confident.every((p) => p[0] >= 0 && p[0] <= 1 && p[1] >= 0 && p[1] <= 1));
    if (!canvas) {
      // engine.inputs.poseformat.derived_canvas: target pixels without a canvas get one pixel past the furthest point.
      canvas = normalized ? [512, 512] : [
        Math.max(Math.floor(Math.max(...confident.map((p) => p[0]))) + 1, 2),
        Math.max(Math.floor(Math.max(...confident.map((p) => p[1]))) + 1, 2),
      ];
    }
    const [w, h] = canvas;
    const sx = normalized ? w : 1, sy = normalized ? h : 1;
    return { width: w, height: h, frames: frames.map((f) => mapFrame(f, ([x, y, c]) => [x * sx, y * sy, c])) };
  }

  // engine.poses.pose.fit_transform: the geometry of ImageOps.fit (cover, then centre-crop).
  function fitTransform(srcW, srcH, dstW, dstH) {
    const srcRatio = srcW / srcH, dstRatio = dstW / dstH;
    let cropW, cropH;
    if (srcRatio === dstRatio) [cropW, cropH] = [srcW, srcH];
    else if (srcRatio >= dstRatio) [cropW, cropH] = [dstRatio * srcH, srcH];
    else [cropW, cropH] = [srcW, srcW / dstRatio];
    const left = (srcW - cropW) * 0.5, top = (srcH - cropH) * 0.5;
    const scale = dstW / cropW;
    return { scale, ox: -left * scale, oy: -top * scale, crop: [left, top, cropW, cropH] };
  }

  function toCanvas(frame, srcW, srcH, dstW, dstH) {
    const t = fitTransform(srcW, srcH, dstW, dstH);
    return mapFrame(frame, ([x, y, c]) => [x * t.scale + t.ox, y * t.scale + t.oy, c]);
  }

  function points(frame) {
    const pts = {};
    frame.forEach((p, i) => { if (p[2] > MIN_CONFIDENCE) pts[i] = p; });
    if (pts[R_HIP] && pts[L_HIP]) pts.mid = [(pts[R_HIP][0] + pts[L_HIP][0]) / 2, (pts[R_HIP][1] + pts[L_HIP][1]) / 2, 1];
    return pts;
  }

  const dist = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1]);
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };

  function ratios(src, tgt, segments) {
    const out = [];
    for (const [a, b] of segments) {
      if (src[a] && src[b] && tgt[a] && tgt[b]) {
        const ls = dist(src[a], src[b]), lt = dist(tgt[a], tgt[b]);
        if (ls > 1e-6 && lt > 1e-6) out.push(ls / lt);
      }
    }
    return out;
  }

  // engine.poses.alignment.fit_similarity
  function fitSimilarity(source, target) {
    const src = points(source), tgt = points(target);
    const common = Object.keys(src).filter((k) => k !== "mid" && tgt[k] !== undefined);
    const rs = ratios(src, tgt, TORSO);
    const all = rs.length ? rs : ratios(src, tgt, LIMBS);
    let scale = 1;
    if (all.length) scale = median(all);
    else if (common.length >= 2) {
      const rms = (pts) => {
        const cx = pts.reduce((s, p) => s + p[0], 0) / pts.length, cy = pts.reduce((s, p) => s + p[1], 0) / pts.length;
        return Math.sqrt(pts.reduce((s, p) => s + (p[0] - cx) ** 2 + (p[1] - cy) ** 2, 0) / pts.length);
      };
      const a = rms(common.map((k) => src[k])), b = rms(common.map((k) => tgt[k]));
      if (a > 1e-6 && b > 1e-6) scale = a / b;
    }
    scale = Math.min(Math.max(scale, SCALE_RANGE[0]), SCALE_RANGE[1]);
    let sa = null, ta = null;
    for (const anchor of [NECK, "mid"]) {
      if (src[anchor] && tgt[anchor]) { sa = src[anchor]; ta = tgt[anchor]; break; }
    }
    if (!sa) {
      if (!common.length) return { scale, tx: 0, ty: 0 };
      const mean = (pts) => [pts.reduce((s, p) => s + p[0], 0) / pts.length, pts.reduce((s, p) => s + p[1], 0) / pts.length];
      sa = mean(common.map((k) => src[k]));
      ta = mean(common.map((k) => tgt[k]));
    }
    return { scale, tx: sa[0] - scale * ta[0], ty: sa[1] - scale * ta[1] };
  }

  const apply = (t, frame) => mapFrame(frame, ([x, y, c]) => [t.scale * x + t.tx, t.scale * y + t.ty, c]);

  // engine.poses.alignment._interpolate_part: both sides seen -> linear; one side -> carried by the anchor.
  function lerpPart(pa, pb, a, b, bodyT, anchor, alpha, n) {
    if (!pa && !pb) return null;
    const zero = () => Array.from({ length: n }, () => [0, 0, 0]);
    pa = pa || zero(); pb = pb || zero();
    const [own, end] = alpha < 0.5 ? [pa, a] : [pb, b];
    const shift = bodyT[anchor][2] > 0 && end[anchor][2] > 0
      ? [bodyT[anchor][0] - end[anchor][0], bodyT[anchor][1] - end[anchor][1]] : [0, 0];
    const out = pa.map((p, j) => {
      const q = pb[j], vp = p[2] > 0, vq = q[2] > 0;
      if (vp && vq) return [0, 1, 2].map((d) => (1 - alpha) * p[d] + alpha * q[d]);
      const o = own[j];
      if ((alpha < 0.5 ? vp && !vq : vq && !vp)) return [o[0] + shift[0], o[1] + shift[1], o[2]];
      return [0, 0, 0];
    });
    return out.some((p) => p[2] > 0) ? out : null;
  }

  function interpolate(a, b, count) {
    const out = [];
    for (let k = 1; k <= count; k++) {
      const alpha = k / (count + 1);
      const frame = a.map((pa, j) => {
        const pb = b[j], va = pa[2] > 0, vb = pb[2] > 0;
        if (va && vb) return [0, 1, 2].map((d) => (1 - alpha) * pa[d] + alpha * pb[d]);
        if (va && !vb) return alpha < 0.5 ? pa : [0, 0, 0];
        if (vb && !va) return alpha >= 0.5 ? pb : [0, 0, 0];
        return [0, 0, 0];
      });
      const hand = (f, i) => (f.hands ? f.hands[i] : null);
      const hands = a.hands || b.hands
        ? [0, 1].map((i) => lerpPart(hand(a, i), hand(b, i), a, b, frame, [L_WRIST, R_WRIST][i], alpha, 21)) : null;
      const face = a.face || b.face ? lerpPart(a.face, b.face, a, b, frame, NOSE, alpha, 70) : null;
      out.push(withParts(frame, hands, face));
    }
    return out;
  }

  // engine.poses.alignment.align_poses on a width x height canvas: [p_s, t transition poses, M aligned targets].
  // `source` is a parsed one-frame sequence in image pixels (imageW x imageH).
  function align(source, targets, transitionFrames, width, height, imageW, imageH) {
    const src = toCanvas(source.frames[0], imageW || source.width, imageH || source.height, width, height);
    const tgts = targets.frames.map((f) => toCanvas(f, targets.width, targets.height, width, height));
    const srcPts = points(src);
    const ref = tgts.find((f) => Object.keys(points(f)).some((k) => k !== "mid" && srcPts[k])) || tgts[0];
    const t = fitSimilarity(src, ref);
    const aligned = tgts.map((f) => apply(t, f));
    return { frames: [src, ...interpolate(src, aligned[0], transitionFrames), ...aligned], transform: t };
  }

  // Draw one COCO-18 frame (canvas pixels of a `w` x `h` pose canvas) scaled to the <canvas>.
  function draw(ctx, frame, w, h, { alpha = 1 } = {}) {
    const cw = ctx.canvas.width, ch = ctx.canvas.height;
    const s = Math.min(cw / w, ch / h), ox = (cw - w * s) / 2, oy = (ch - h * s) / 2;
    const stick = Math.max(2, 4 * s * (Math.max(w, h) / 512));
    ctx.save();
    ctx.globalAlpha = 0.6 * alpha;
    ctx.lineCap = "round";
    ctx.lineWidth = stick * 2;
    LIMBS.forEach(([a, b], i) => {
      const pa = frame[a], pb = frame[b];
      if (!(pa[2] > 0 && pb[2] > 0)) return;
      ctx.strokeStyle = `rgb(${COLORS[i].join(",")})`;
      ctx.beginPath();
      ctx.moveTo(ox + pa[0] * s, oy + pa[1] * s);
      ctx.lineTo(ox + pb[0] * s, oy + pb[1] * s);
      ctx.stroke();
    });
    ctx.globalAlpha = alpha;
    const dot = (p, r, color) => {
      if (!(p[2] > 0)) return;
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.arc(ox + p[0] * s, oy + p[1] * s, r, 0, 2 * Math.PI);
      ctx.fill();
    };
    frame.forEach((p, i) => dot(p, stick, `rgb(${COLORS[i].join(",")})`));
    // draw_handpose: 20 edges coloured by hue i / 20, blue joints; draw_facepose: white dots.
    const fine = Math.max(1, stick / 2);
    (frame.hands || []).filter(Boolean).forEach((hand) => {
      ctx.lineWidth = fine;
      HAND_EDGES.forEach(([a, b], i) => {
        const pa = hand[a], pb = hand[b];
        if (!(pa[2] > 0 && pb[2] > 0)) return;
        ctx.strokeStyle = `hsl(${(360 * i) / HAND_EDGES.length}, 100%, 50%)`;
        ctx.beginPath();
        ctx.moveTo(ox + pa[0] * s, oy + pa[1] * s);
        ctx.lineTo(ox + pb[0] * s, oy + pb[1] * s);
        ctx.stroke();
      });
      hand.forEach((p) => dot(p, fine * 1.5, "rgb(0, 0, 255)"));
    });
    (frame.face || []).forEach((p) => dot(p, fine, "rgb(255, 255, 255)"));
    ctx.restore();
  }

  // Only the parts a job's `parts` keeps (engine.inputs.rules.part_flags).
  function keepParts(frame, parts) {
    const out = frame.slice();
    if (["body+hands", "full"].includes(parts) && frame.hands) out.hands = frame.hands;
    if (["body+face", "full"].includes(parts) && frame.face) out.face = frame.face;
    return out;
  }

  return { LIMBS, COLORS, HAND_EDGES, PoseError, parse, fitTransform, toCanvas, fitSimilarity, align, draw, keepParts };
})();

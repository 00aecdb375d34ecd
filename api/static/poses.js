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

  function triples(flat, where) {
    if (!Array.isArray(flat) || flat.length !== 54) {
      throw new PoseError(`${where} must hold 54 numbers (18 keypoints x (x, y, c))`);
    }
    const out = [];
    for (let i = 0; i < 54; i += 3) out.push([+flat[i], +flat[i + 1], +flat[i + 2]]);
    return out;
  }

  function openposeFrame(obj, where) {
    const person = obj && Array.isArray(obj.people) ? obj.people[0] : null;
    if (!person || !person.pose_keypoints_2d) throw new PoseError(`${where} has no people[0].pose_keypoints_2d`);
    const canvas = obj.canvas_width ? [obj.canvas_width, obj.canvas_height] : null;
    return [triples(person.pose_keypoints_2d, where), canvas];
  }

  // Any accepted input -> {width, height, frames: [[[x, y, c] x 18], ...]} in pixels.
  function parse(obj) {
    let frames, canvas = null;
    if (obj && typeof obj === "object" && !Array.isArray(obj) && Array.isArray(obj.frames)) {
      frames = obj.frames.map((f, i) => {
        if (!Array.isArray(f) || f.length !== 18) throw new PoseError(`frame ${i} must have 18 keypoints (COCO-18)`);
        return f.map((p) => [+p[0], +p[1], p.length > 2 ? +p[2] : 1]);
      });
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
    const confident = frames.flat().filter((p) => p[2] > 0);
    const normalized = obj.units === "normalized" ||
      (obj.units === undefined && confident.every((p) => p[0] >= 0 && p[0] <= 1 && p[1] >= 0 && p[1] <= 1));
    if (!canvas) {
      if (!normalized) throw new PoseError("pixel coordinates need a canvas size (canvas_width/height or width/height)");
      canvas = [512, 512];
    }
    const [w, h] = canvas;
    const sx = normalized ? w : 1, sy = normalized ? h : 1;
    return {
      width: w, height: h,
      frames: frames.map((f) => f.map(([x, y, c]) => (c > 0 ? [x * sx, y * sy, c] : [0, 0, 0]))),
    };
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
    return frame.map(([x, y, c]) => (c > 0 ? [x * t.scale + t.ox, y * t.scale + t.oy, c] : [0, 0, 0]));
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

  const apply = (t, frame) => frame.map(([x, y, c]) => (c > 0 ? [t.scale * x + t.tx, t.scale * y + t.ty, c] : [0, 0, 0]));

  function interpolate(a, b, count) {
    const out = [];
    for (let k = 1; k <= count; k++) {
      const alpha = k / (count + 1);
      out.push(a.map((pa, j) => {
        const pb = b[j], va = pa[2] > 0, vb = pb[2] > 0;
        if (va && vb) return [0, 1, 2].map((d) => (1 - alpha) * pa[d] + alpha * pb[d]);
        if (va && !vb) return alpha < 0.5 ? pa : [0, 0, 0];
        if (vb && !va) return alpha >= 0.5 ? pb : [0, 0, 0];
        return [0, 0, 0];
      }));
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
    frame.forEach((p, i) => {
      if (!(p[2] > 0)) return;
      ctx.fillStyle = `rgb(${COLORS[i].join(",")})`;
      ctx.beginPath();
      ctx.arc(ox + p[0] * s, oy + p[1] * s, stick, 0, 2 * Math.PI);
      ctx.fill();
    });
    ctx.restore();
  }

  return { LIMBS, COLORS, PoseError, parse, fitTransform, toCanvas, fitSimilarity, align, draw };
})();

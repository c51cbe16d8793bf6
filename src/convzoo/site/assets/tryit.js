// "Try it": a shipped model run in the page by onnxruntime-web on the ONNX file convzoo export writes, with
// the weights' own preprocessing, the steps of convzoo's Preprocess: channels converted (gray repeated, RGB
// to luminance), resized bilinearly (antialiased when shrinking, as torch's F.interpolate), then
// (x / 255 - mean) / std per channel.
"use strict";
const convzooTry = (() => {
  const {el} = convzoo;
  const sessions = new Map();

  // torch's F.interpolate(mode="bilinear", align_corners=False) along one axis: weights per output index
  function axisWeights(inSize, outSize) {
    const scale = inSize / outSize, result = [];
    if (scale > 1) {  // shrinking: antialiased, a triangle filter as wide as the scale (torch's _aa kernels)
      const support = scale;
      for (let i = 0; i < outSize; i++) {
        const center = scale * (i + 0.5);
        const lo = Math.max(Math.trunc(center - support + 0.5), 0);
        const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
        const ws = [];
        let total = 0;
        for (let j = lo; j < hi; j++) {
          const w = Math.max(0, 1 - Math.abs((j - center + 0.5) / scale));
          ws.push(w); total += w;
        }
        result.push({lo, ws: ws.map((w) => (total ? w / total : 0))});
      }
    } else {  // enlarging (or the same size): plain bilinear, the source index clamped at 0
      for (let i = 0; i < outSize; i++) {
        let src = scale * (i + 0.5) - 0.5;
        if (src < 0) src = 0;
        const lo = Math.min(Math.floor(src), inSize - 1);
        const hi = Math.min(lo + 1, inSize - 1);
        const frac = src - lo;
        result.push(hi === lo ? {lo, ws: [1]} : {lo, ws: [1 - frac, frac]});
      }
    }
    return result;
  }

  function resize(plane, H, W, h, w) {  // one channel, Float64Array H*W -> h*w
    if (H === h && W === w) return plane;
    const rows = axisWeights(H, h), cols = axisWeights(W, w);
    const tmp = new Float64Array(H * w);  // width first, then height, as torch's separable kernels
    for (let y = 0; y < H; y++) for (let x = 0; x < w; x++) {
      const {lo, ws} = cols[x];
      let s = 0;
      for (let k = 0; k < ws.length; k++) s += ws[k] * plane[y * W + lo + k];
      tmp[y * w + x] = s;
    }
    const out = new Float64Array(h * w);
    for (let y = 0; y < h; y++) {
      const {lo, ws} = rows[y];
      for (let x = 0; x < w; x++) {
        let s = 0;
        for (let k = 0; k < ws.length; k++) s += ws[k] * tmp[(lo + k) * w + x];
        out[y * w + x] = s;
      }
    }
    return out;
  }

  // pixels: Uint8 values, C x H x W (C = 1 or 3); the model's input, Float32Array of input_size
  function preprocess(pixels, C, H, W, spec) {
    const [c, h, w] = spec.input_size;
    let planes = [];
    for (let k = 0; k < C; k++) planes.push(Float64Array.from(pixels.subarray(k * H * W, (k + 1) * H * W)));
    if (C === 1 && c === 3) planes = [planes[0], planes[0], planes[0]];
    else if (C === 3 && c === 1) {
      const gray = new Float64Array(H * W);
      for (let i = 0; i < H * W; i++) gray[i] = 0.299 * planes[0][i] + 0.587 * planes[1][i] + 0.114 * planes[2][i];
      planes = [gray];
    }
    const X = new Float32Array(c * h * w);
    planes.forEach((plane, k) => {
      const resized = resize(plane, H, W, h, w);
      const mean = spec.mean ? 255 * spec.mean[k] : 0, std = spec.std ? 255 * spec.std[k] : 255;
      for (let i = 0; i < h * w; i++) X[k * h * w + i] = (resized[i] - mean) / std;
    });
    return X;
  }

  async function session(spec) {
    if (!sessions.has(spec.onnx)) {
      ort.env.wasm.wasmPaths = new URL(spec.ort, document.baseURI).href;
      ort.env.wasm.numThreads = 1;  // no SharedArrayBuffer needed: any static server will do
      ort.env.wasm.proxy = false;
      sessions.set(spec.onnx, ort.InferenceSession.create(new URL(spec.onnx, document.baseURI).href, {executionProviders: ["wasm"]}));
    }
    return sessions.get(spec.onnx);
  }

  // the top-5 (class, probability) of one image, and every class's probability
  async function classify(spec, pixels, C, H, W) {
    const s = await session(spec);
    const [c, h, w] = spec.input_size;
    const input = new ort.Tensor("float32", preprocess(pixels, C, H, W, spec), [1, c, h, w]);
    const output = await s.run({[s.inputNames[0]]: input});
    const logits = Array.from(output[s.outputNames[0]].data);
    const top = Math.max(...logits);
    const exps = logits.map((v) => Math.exp(v - top));
    const total = exps.reduce((a, b) => a + b, 0);
    const probabilities = exps.map((v) => v / total);
    const order = probabilities.map((p, k) => k).sort((a, b) => probabilities[b] - probabilities[a]);
    return {top5: order.slice(0, 5).map((k) => [spec.classes[k], probabilities[k]]), probabilities, logits};
  }

  // an image element or canvas as C x H x W bytes: 1 channel when every pixel is gray (a PNG of MNIST), else 3
  function pixelsOf(source, width, height) {
    const canvas = document.createElement("canvas");
    canvas.width = width; canvas.height = height;
    const ctx = canvas.getContext("2d", {willReadFrequently: true});
    ctx.drawImage(source, 0, 0, width, height);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    const n = width * height;
    let gray = true;
    for (let i = 0; i < n && gray; i++) gray = rgba[4 * i] === rgba[4 * i + 1] && rgba[4 * i] === rgba[4 * i + 2];
    const C = gray ? 1 : 3, pixels = new Uint8Array(C * n);
    for (let i = 0; i < n; i++) for (let k = 0; k < C; k++) pixels[k * n + i] = rgba[4 * i + k];
    return {pixels, C, H: height, W: width};
  }

  function panel(box, spec, examples) {
    const result = el("div", {class: "result"}, el("p", {class: "muted", text: "Pick an image" + (spec.draw ? " or draw a digit" : "") + " to see the model's top-5."}));
    const status = el("p", {class: "muted status"});
    const left = el("div", {class: "inputs"});
    box.append(el("div", {}, el("h3", {text: `${spec.dataset} weights, in your browser`}), left), el("div", {}, el("h3", {text: "Top-5"}), result, status));
    if (location.protocol === "file:") {
      left.append(el("p", {class: "note", text: "The in-browser model needs the site served over HTTP (WebAssembly and the ONNX file are fetched): run python -m http.server in the site's folder and open http://127.0.0.1:8000/."}));
      return;
    }
    async function show(source, width, height, what) {
      status.textContent = `running ${what} ...`;
      try {
        const {pixels, C, H, W} = pixelsOf(source, width, height);
        const {top5} = await classify(spec, pixels, C, H, W);
        result.replaceChildren(el("table", {class: "top5", "data-for": what}, top5.map(([name, p]) => el("tr", {},
          el("td", {text: name}), el("td", {class: "num", "data-prob": p, text: convzoo.percent(p)}),
          el("td", {}, el("span", {class: "bar", style: `width:${Math.round(80 * p)}px`}))))));
        status.textContent = `${what}: computed by onnxruntime-web ${spec.ort_version} (WebAssembly)`;
        box.dataset.done = what;
      } catch (err) {
        status.textContent = `the model could not run here: ${err && err.message ? err.message : err}`;
        box.dataset.failed = String(err);
      }
    }
    if (spec.draw) {
      const canvas = el("canvas", {class: "draw", width: 280, height: 280, title: "draw a digit"});
      const ctx = canvas.getContext("2d");
      const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, 280, 280); };
      clear();
      let drawing = false, last = null;
      const at = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * 280 / r.width, (e.clientY - r.top) * 280 / r.height]; };
      canvas.addEventListener("pointerdown", (e) => { drawing = true; last = at(e); canvas.setPointerCapture(e.pointerId); });
      canvas.addEventListener("pointermove", (e) => {
        if (!drawing) return;
        const p = at(e);
        ctx.strokeStyle = "#fff"; ctx.lineWidth = 22; ctx.lineCap = "round";
        ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
        last = p;
      });
      canvas.addEventListener("pointerup", () => { drawing = false; show(canvas, 280, 280, "your drawing"); });
      left.append(canvas, el("div", {}, el("button", {class: "step", text: "clear", onclick: clear})),
        el("p", {class: "muted", text: `Draw white on black, large and centred, as MNIST's digits are; it is shrunk to ${spec.input_size[1]} x ${spec.input_size[2]}.`}));
    }
    const picks = el("div", {class: "picks"});
    for (const ex of examples) {
      const img = el("img", {src: ex.png, alt: `test image ${ex.index} (${ex.label})`, title: `test image ${ex.index}: ${ex.label}`, "data-example": ex.index});
      img.addEventListener("click", () => {
        picks.querySelectorAll("img").forEach((i) => i.classList.toggle("chosen", i === img));
        show(img, img.naturalWidth, img.naturalHeight, `test image ${ex.index}`);
      });
      picks.append(img);
    }
    const file = el("input", {type: "file", accept: "image/*"});
    file.addEventListener("change", () => {
      const chosen = file.files[0];
      if (!chosen) return;
      const img = new Image();
      img.onload = () => show(img, img.naturalWidth, img.naturalHeight, chosen.name);
      img.src = URL.createObjectURL(chosen);
    });
    left.append(el("p", {text: "The first test image of each class:"}), picks, el("p", {}, "Or your own image: ", file));
  }
  return {panel, classify, preprocess, axisWeights};
})();

// The explorer page: the layer x head grid (SVG), the projection of sampled rows (WebGL point sprites) and the
// panel of the selected head or cluster. Reads the JSON embedded in #explorer-data; no network, no libraries.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#ccb974",
    "#64b5cd", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf", "#aec7e8", "#ffbb78"];
  const NOISE = "#bbbbbb";
  const MISSING = "#f0f0f0";
  const VIRIDIS = ["#440154", "#482878", "#3e4a89", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
    "#b5de2b", "#fde725"];
  const MAPS_SHOWN = 6;
  const LEGEND_SHOWN = 24;

  // ---- decoding ----
  function bytesOf(b64) {
    const text = atob(b64);
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out;
  }
  const ARRAYS = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, float32: Float32Array };
  function typed(b64, type) {
    const bytes = bytesOf(b64);
    const T = ARRAYS[type];
    return new T(bytes.buffer, 0, bytes.byteLength / T.BYTES_PER_ELEMENT);
  }
  const heads = DATA.heads_table;
  const nHeads = heads.columns.layer.length;
  const points = {
    count: DATA.points.count,
    xy: typed(DATA.points.xy, "float32"),
    columns: {},
  };
  for (const [name, column] of Object.entries(DATA.points.columns)) {
    points.columns[name] = { values: column.values, codes: typed(column.codes, column.type) };
  }
  function pointValue(name, i) {
    const column = points.columns[name];
    return column.values[column.codes[i]];
  }

  // ---- colours ----
  function hex(colour) {
    return [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
  }
  function categoryColour(value, index) {
    if (value === null || value === undefined || value === "") return MISSING;
    const integer = typeof value === "number" ? value : /^-?\d+$/.test(value) ? parseInt(value, 10) : null;
    if (integer === -1) return NOISE;
    const k = integer !== null && Number.isInteger(integer) ? integer : index;
    return PALETTE[((k % PALETTE.length) + PALETTE.length) % PALETTE.length];
  }
  function scaleColour(t) {
    if (t === null || !Number.isFinite(t)) return MISSING;
    const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
    const a = hex(VIRIDIS[i]), b = hex(VIRIDIS[i + 1]), f = x - i;
    return "#" + a.map((v, j) => Math.round(v + (b[j] - v) * f).toString(16).padStart(2, "0")).join("");
  }
  function format(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    return Math.abs(value) >= 1000 || Math.abs(value) < 0.001 ? value.toExponential(3) : value.toPrecision(4);
  }
  // A column's colouring: a function of a value, and the legend's entries.
  function colouring(values, kind) {
    if (kind === "number") {
      const finite = values.filter((v) => v !== null && Number.isFinite(v));
      const low = finite.length ? Math.min(...finite) : 0, high = finite.length ? Math.max(...finite) : 1;
      const span = high > low ? high - low : 1;
      return { kind, low, high, colour: (v) => (v === null ? MISSING : scaleColour((v - low) / span)) };
    }
    const distinct = [...new Set(values.filter((v) => v !== null))];
    distinct.sort((a, b) => (typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b))));
    const index = new Map(distinct.map((v, i) => [v, i]));
    return { kind, values: distinct, colour: (v) => categoryColour(v, index.get(v)) };
  }

  // ---- page ----
  function element(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attributes || {})) {
      if (k === "onclick") node.addEventListener("click", v);
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }
  function svgElement(tag, attributes) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attributes || {})) node.setAttribute(k, v);
    return node;
  }
  function save(url, name) {
    const link = element("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
  }
  function saveCanvas(canvas, name) {
    canvas.toBlob((blob) => {
      const url = URL.createObjectURL(blob);
      save(url, name);
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    }, "image/png");
  }
  function svgText(svg) {
    return new XMLSerializer().serializeToString(svg);
  }
  function saveSvg(svg, name) {
    save(URL.createObjectURL(new Blob([svgText(svg)], { type: "image/svg+xml" })), name);
  }
  function saveSvgPng(svg, name) {
    const image = new Image();
    image.onload = () => {
      const canvas = element("canvas", { width: svg.width.baseVal.value * 2, height: svg.height.baseVal.value * 2 });
      const context = canvas.getContext("2d");
      context.fillStyle = "#fff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      saveCanvas(canvas, name);
    };
    image.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svgText(svg));
  }
  function exportButtons(name, svg, canvas) {
    const box = element("span", { class: "export" });
    if (svg) {
      box.append(element("button", { "data-export": name + ".svg", onclick: () => saveSvg(svg(), name + ".svg") }, "SVG"));
      box.append(element("button", { "data-export": name + ".png", onclick: () => saveSvgPng(svg(), name + ".png") }, "PNG"));
    } else {
      box.append(element("button", { "data-export": name + ".png", onclick: () => saveCanvas(canvas(), name + ".png") }, "PNG"));
    }
    return box;
  }

  const state = { measure: null, colour: null, head: null, cluster: null, point: null };

  // ---- the layer x head grid ----
  const PLACES = ["layer", "head", "map_x", "map_y"]; // the heads' keys and their place on the map: no measures
  const measures = Object.keys(heads.columns).filter((c) => !PLACES.includes(c));
  const headRow = new Map();
  for (let i = 0; i < nHeads; i++) headRow.set(heads.columns.layer[i] + ":" + heads.columns.head[i], i);

  // An SVG grid of layers x heads: value(layer, head) -> colour; cells call pick(layer, head).
  function gridSvg(colour, label, pick, selected, legend) {
    const cell = Math.max(14, Math.min(34, Math.floor(520 / DATA.heads)));
    const left = 46, top = 34, width = DATA.heads * cell, height = DATA.layers * cell;
    const legendWidth = 190;
    const legendHeight = legend.kind === "number" ? 140 : 16 * (Math.min(LEGEND_SHOWN, legend.values.length) + 1);
    const svg = svgElement("svg", { width: left + width + legendWidth, height: top + Math.max(height, legendHeight) + 10,
      "font-family": "sans-serif", "font-size": "11" });
    svg.append(svgElement("rect", { x: 0, y: 0, width: "100%", height: "100%", fill: "#fff" }));
    const title = svgElement("text", { x: left, y: 12, "font-size": "12" });
    title.textContent = label;
    svg.append(title);
    for (let h = 0; h < DATA.heads; h++) {
      const t = svgElement("text", { x: left + h * cell + cell / 2, y: top - 6, "text-anchor": "middle" });
      t.textContent = h;
      svg.append(t);
    }
    for (let l = 0; l < DATA.layers; l++) {
      const t = svgElement("text", { x: left - 6, y: top + l * cell + cell / 2 + 4, "text-anchor": "end" });
      t.textContent = l;
      svg.append(t);
      for (let h = 0; h < DATA.heads; h++) {
        const [fill, text] = colour(l, h);
        const rect = svgElement("rect", { class: "cell", x: left + h * cell, y: top + l * cell, width: cell - 1,
          height: cell - 1, fill, "data-layer": l, "data-head": h });
        const tip = svgElement("title");
        tip.textContent = `layer ${l}, head ${h}: ${text}`;
        rect.append(tip);
        rect.addEventListener("click", () => pick(l, h));
        svg.append(rect);
      }
    }
    if (selected) {
      svg.append(svgElement("rect", { class: "selected", x: left + selected[1] * cell - 1, y: top + selected[0] * cell - 1,
        width: cell + 1, height: cell + 1, fill: "none", stroke: "#000", "stroke-width": 2.5 }));
    }
    const axis = svgElement("text", { x: 4, y: top - 6 });
    axis.textContent = "layer";
    svg.append(axis);
    drawLegend(svg, left + width + 14, top, legend);
    return svg;
  }
  function drawLegend(svg, x, y, legend) {
    if (legend.kind === "number") {
      for (let i = 0; i < 10; i++) {
        svg.append(svgElement("rect", { x, y: y + (9 - i) * 14, width: 14, height: 14, fill: scaleColour(i / 9) }));
      }
      for (const [value, offset] of [[legend.high, 10], [legend.low, 136]]) {
        const t = svgElement("text", { x: x + 20, y: y + offset });
        t.textContent = format(value);
        svg.append(t);
      }
      return;
    }
    const shown = legend.values.slice(0, LEGEND_SHOWN);
    shown.forEach((value, i) => {
      svg.append(svgElement("rect", { x, y: y + i * 16, width: 11, height: 11, fill: legend.colour(value) }));
      const t = svgElement("text", { x: x + 16, y: y + i * 16 + 10 });
      t.textContent = String(value).slice(0, 28);
      svg.append(t);
    });
    if (legend.values.length > shown.length) {
      const t = svgElement("text", { x, y: y + shown.length * 16 + 10 });
      t.textContent = `and ${legend.values.length - shown.length} more`;
      svg.append(t);
    }
  }
  function headValue(column, l, h) {
    const i = headRow.get(l + ":" + h);
    return i === undefined ? null : heads.columns[column][i];
  }
  function drawGrid() {
    const legend = colouring(heads.columns[state.measure], heads.kinds[state.measure]);
    const svg = gridSvg((l, h) => {
      const v = headValue(state.measure, l, h);
      return [legend.colour(v), format(v)];
    }, state.measure, selectHead, state.head, legend);
    svg.id = "grid";
    document.getElementById("grid").replaceWith(svg);
    if (DATA.head_map) drawHeadMap(legend);
  }

  // ---- the map of the heads: each head at its place (map_x, map_y), coloured as the grid ----
  function drawHeadMap(legend) {
    const size = 380, pad = 16;
    const xs = heads.columns.map_x, ys = heads.columns.map_y;
    const placed = [...Array(nHeads).keys()].filter((i) => Number.isFinite(xs[i]) && Number.isFinite(ys[i]));
    const x0 = Math.min(...placed.map((i) => xs[i])), y0 = Math.min(...placed.map((i) => ys[i]));
    const span = Math.max(Math.max(...placed.map((i) => xs[i])) - x0, Math.max(...placed.map((i) => ys[i])) - y0) || 1;
    const svg = svgElement("svg", { id: "heads-map", width: size, height: size, "font-family": "sans-serif",
      "font-size": "11" });
    svg.append(svgElement("rect", { x: 0, y: 0, width: "100%", height: "100%", fill: "#fff" }));
    for (const i of placed) {
      const l = heads.columns.layer[i], h = heads.columns.head[i], v = heads.columns[state.measure][i];
      const chosen = state.head !== null && state.head[0] === l && state.head[1] === h;
      const dot = svgElement("circle", { class: "head-dot", cx: pad + ((xs[i] - x0) / span) * (size - 2 * pad),
        cy: size - pad - ((ys[i] - y0) / span) * (size - 2 * pad), r: chosen ? 7 : 5, fill: legend.colour(v),
        stroke: chosen ? "#000" : "#666", "stroke-width": chosen ? 2.5 : 0.5, "data-layer": l, "data-head": h });
      const tip = svgElement("title");
      tip.textContent = `layer ${l}, head ${h}: ${format(v)}`;
      dot.append(tip);
      dot.addEventListener("click", () => selectHead(l, h));
      svg.append(dot);
    }
    document.getElementById("heads-map").replaceWith(svg);
  }

  // ---- the projection ----
  const canvas = element("canvas", { id: "points" });
  const tooltip = element("div", { id: "tooltip" });
  const view = { zoom: 1, x: 0, y: 0 };
  const unit = new Float32Array(points.count * 2); // positions scaled to [-1, 1], equal aspect
  (function normalise() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < points.count; i++) {
      const x = points.xy[2 * i], y = points.xy[2 * i + 1];
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    const half = Math.max(x1 - x0, y1 - y0, 1e-12) / 2 * 1.05, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    for (let i = 0; i < points.count; i++) {
      unit[2 * i] = (points.xy[2 * i] - cx) / half;
      unit[2 * i + 1] = (points.xy[2 * i + 1] - cy) / half;
    }
  })();
  const BUCKETS = 128; // a uniform grid over [-1, 1]^2 for picking the point under the cursor
  const buckets = new Map();
  for (let i = 0; i < points.count; i++) {
    const key = bucketOf(unit[2 * i]) * BUCKETS + bucketOf(unit[2 * i + 1]);
    if (!buckets.has(key)) buckets.set(key, []);
    buckets.get(key).push(i);
  }
  function bucketOf(v) {
    return Math.min(BUCKETS - 1, Math.max(0, Math.floor((v + 1) / 2 * BUCKETS)));
  }

  let gl = null, program = null, buffers = null;
  const overlay = { count: 0 };
  let drawn = 0;
  function shader(type, source) {
    const s = gl.createShader(type);
    gl.shaderSource(s, source);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  }
  function initGl() {
    gl = canvas.getContext("webgl", { preserveDrawingBuffer: true, antialias: false, alpha: false });
    if (!gl) return false;
    program = gl.createProgram();
    gl.attachShader(program, shader(gl.VERTEX_SHADER, `
      attribute vec2 a_pos; attribute vec3 a_colour;
      uniform vec2 u_scale; uniform vec2 u_offset; uniform float u_size; uniform float u_fade;
      varying vec3 v_colour;
      void main() {
        gl_Position = vec4(a_pos * u_scale + u_offset, 0.0, 1.0);
        gl_PointSize = u_size;
        v_colour = mix(a_colour, vec3(0.88), u_fade);
      }`));
    gl.attachShader(program, shader(gl.FRAGMENT_SHADER, `
      precision mediump float; varying vec3 v_colour;
      void main() {
        vec2 d = gl_PointCoord - vec2(0.5);
        if (dot(d, d) > 0.25) discard;
        gl_FragColor = vec4(v_colour, 1.0);
      }`));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
    buffers = { pos: gl.createBuffer(), colour: gl.createBuffer(), overPos: gl.createBuffer(), overColour: gl.createBuffer() };
    gl.bindBuffer(gl.ARRAY_BUFFER, buffers.pos);
    gl.bufferData(gl.ARRAY_BUFFER, unit, gl.STATIC_DRAW);
    return true;
  }
  let pointColours = new Uint8Array(points.count * 3);
  function colourPoints() {
    const column = points.columns[state.colour];
    const legend = colouring(column.values, "category");
    const rgb = column.values.map((v) => hex(legend.colour(v)));
    for (let i = 0; i < points.count; i++) pointColours.set(rgb[column.codes[i]], 3 * i);
    if (gl) {
      gl.bindBuffer(gl.ARRAY_BUFFER, buffers.colour);
      gl.bufferData(gl.ARRAY_BUFFER, pointColours, gl.STATIC_DRAW);
    }
    drawPointLegend(legend, column);
  }
  function drawPointLegend(legend, column) {
    const counts = new Array(column.values.length).fill(0);
    for (let i = 0; i < points.count; i++) counts[column.codes[i]]++;
    const order = column.values.map((v, i) => i).sort((a, b) => counts[b] - counts[a]).slice(0, LEGEND_SHOWN);
    const clustering = isClustering(state.colour);
    const box = element("div", { class: "legend", id: "points-legend" });
    for (const i of order) {
      const value = column.values[i];
      const attributes = clustering ? { class: "link", onclick: () => selectCluster(state.colour, value) } : {};
      box.append(element("span", attributes, element("i", { class: "swatch", style: `background:${legend.colour(value)}` }),
        `${value} (${counts[i]})`));
    }
    if (column.values.length > order.length) box.append(element("span", {}, `and ${column.values.length - order.length} more`));
    document.getElementById("points-legend").replaceWith(box);
  }
  function chosenPoints() {
    if (state.head) {
      const layer = points.columns.layer, head = points.columns.head;
      return (i) => layer.values[layer.codes[i]] === state.head[0] && head.values[head.codes[i]] === state.head[1];
    }
    if (state.cluster && points.columns[state.cluster.clustering]) {
      const column = points.columns[state.cluster.clustering];
      return (i) => String(column.values[column.codes[i]]) === String(state.cluster.cluster);
    }
    return null;
  }
  function highlight() {
    const chosen = chosenPoints();
    const positions = [], colours = [];
    if (chosen) {
      for (let i = 0; i < points.count; i++) {
        if (chosen(i)) {
          positions.push(unit[2 * i], unit[2 * i + 1]);
          colours.push(pointColours[3 * i], pointColours[3 * i + 1], pointColours[3 * i + 2]);
        }
      }
    }
    overlay.count = positions.length / 2;
    overlay.active = chosen !== null;
    if (gl) {
      gl.bindBuffer(gl.ARRAY_BUFFER, buffers.overPos);
      gl.bufferData(gl.ARRAY_BUFFER, new Float32Array(positions), gl.DYNAMIC_DRAW);
      gl.bindBuffer(gl.ARRAY_BUFFER, buffers.overColour);
      gl.bufferData(gl.ARRAY_BUFFER, new Uint8Array(colours), gl.DYNAMIC_DRAW);
    }
  }
  function pointSize() {
    return (points.count > 20000 ? 3 : points.count > 2000 ? 4 : 6) * (window.devicePixelRatio || 1);
  }
  function scale() {
    const w = canvas.width, h = canvas.height, s = Math.min(w, h);
    return [view.zoom * s / w, view.zoom * s / h];
  }
  function drawPoints() {
    if (!gl) return;
    const dpr = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * dpr), height = Math.round(canvas.clientHeight * dpr);
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.useProgram(program);
    const [sx, sy] = scale();
    gl.uniform2f(gl.getUniformLocation(program, "u_scale"), sx, sy);
    gl.uniform2f(gl.getUniformLocation(program, "u_offset"), view.x, view.y);
    const pass = (pos, colour, count, size, fade) => {
      if (!count) return;
      gl.uniform1f(gl.getUniformLocation(program, "u_size"), size);
      gl.uniform1f(gl.getUniformLocation(program, "u_fade"), fade);
      const aPos = gl.getAttribLocation(program, "a_pos"), aColour = gl.getAttribLocation(program, "a_colour");
      gl.bindBuffer(gl.ARRAY_BUFFER, pos);
      gl.enableVertexAttribArray(aPos);
      gl.vertexAttribPointer(aPos, 2, gl.FLOAT, false, 0, 0);
      gl.bindBuffer(gl.ARRAY_BUFFER, colour);
      gl.enableVertexAttribArray(aColour);
      gl.vertexAttribPointer(aColour, 3, gl.UNSIGNED_BYTE, true, 0, 0);
      gl.drawArrays(gl.POINTS, 0, count);
    };
    pass(buffers.pos, buffers.colour, points.count, pointSize(), overlay.active ? 0.8 : 0);
    pass(buffers.overPos, buffers.overColour, overlay.count, pointSize() + 3 * dpr, 0);
    drawn = points.count;
  }
  // Canvas pixel (CSS px) of point i, and the point nearest a CSS pixel within `radius` px.
  function screenOf(i) {
    const [sx, sy] = scale();
    const x = unit[2 * i] * sx + view.x, y = unit[2 * i + 1] * sy + view.y;
    return [(x + 1) / 2 * canvas.clientWidth, (1 - y) / 2 * canvas.clientHeight];
  }
  function nearestPoint(px, py, radius) {
    const [sx, sy] = scale();
    const ux = ((px / canvas.clientWidth) * 2 - 1 - view.x) / sx, uy = ((1 - py / canvas.clientHeight) * 2 - 1 - view.y) / sy;
    const reach = radius / canvas.clientWidth * 2 / sx;
    const spread = Math.ceil(reach / (2 / BUCKETS));
    const bx = bucketOf(ux), by = bucketOf(uy);
    let best = -1, bestDistance = Infinity;
    for (let i = Math.max(0, bx - spread); i <= Math.min(BUCKETS - 1, bx + spread); i++) {
      for (let j = Math.max(0, by - spread); j <= Math.min(BUCKETS - 1, by + spread); j++) {
        for (const p of buckets.get(i * BUCKETS + j) || []) {
          const [qx, qy] = screenOf(p);
          const d = (qx - px) ** 2 + (qy - py) ** 2;
          if (d < bestDistance) { bestDistance = d; best = p; }
        }
      }
    }
    return bestDistance <= radius * radius ? best : -1;
  }
  function describePoint(i) {
    const parts = [`feature ${pointValue("feature_id", i)}`, `question ${pointValue("question_id", i)}`,
      `layer ${pointValue("layer", i)}`, `head ${pointValue("head", i)}`];
    for (const name of DATA.colour_options) if (name !== "layer" && name !== "head") parts.push(`${name} ${pointValue(name, i)}`);
    return parts.join(" · ");
  }
  function bindPointer() {
    let drag = null;
    canvas.addEventListener("mousedown", (e) => { drag = { x: e.offsetX, y: e.offsetY, moved: false }; });
    canvas.addEventListener("mousemove", (e) => {
      if (drag && (e.buttons & 1)) {
        const dx = e.offsetX - drag.x, dy = e.offsetY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
        view.x += dx / canvas.clientWidth * 2;
        view.y -= dy / canvas.clientHeight * 2;
        drag.x = e.offsetX; drag.y = e.offsetY;
        drawPoints();
        return;
      }
      const i = nearestPoint(e.offsetX, e.offsetY, 6);
      if (i < 0) { tooltip.style.display = "none"; return; }
      tooltip.textContent = describePoint(i);
      tooltip.style.display = "block";
      tooltip.style.left = (canvas.offsetLeft + e.offsetX + 12) + "px";
      tooltip.style.top = (canvas.offsetTop + e.offsetY + 12) + "px";
    });
    canvas.addEventListener("mouseleave", () => { tooltip.style.display = "none"; });
    canvas.addEventListener("mouseup", (e) => {
      const moved = drag && drag.moved;
      drag = null;
      if (moved) return;
      const i = nearestPoint(e.offsetX, e.offsetY, 6);
      if (i >= 0) selectPoint(i);
    });
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const factor = Math.exp(-e.deltaY * 0.0015);
      const cx = (e.offsetX / canvas.clientWidth) * 2 - 1, cy = (1 - e.offsetY / canvas.clientHeight) * 2 - 1;
      view.x = cx - (cx - view.x) * factor;
      view.y = cy - (cy - view.y) * factor;
      view.zoom *= factor;
      drawPoints();
    }, { passive: false });
  }

  // ---- exemplar maps ----
  function contextText(tokens) {
    const separators = tokens.map((t, i) => (t === "[SEP]" ? i : -1)).filter((i) => i >= 0);
    const start = separators.length ? separators[0] + 1 : 0;
    const stop = separators.length > 1 ? separators[separators.length - 1] : tokens.length;
    return joinTokens(tokens.slice(start, stop));
  }
  function joinTokens(tokens) {
    return tokens.reduce((text, t) => (t.startsWith("##") ? text + t.slice(2) : text ? text + " " + t : t), "");
  }
  function mapFigure(m, index) {
    const feature = DATA.features[String(m.feature)];
    const values = bytesOf(m.data);
    const small = element("canvas", { width: m.cells, height: m.cells });
    const image = small.getContext("2d").createImageData(m.cells, m.cells);
    for (let i = 0; i < values.length; i++) {
      const [r, g, b] = hex(scaleColour(values[i] / 255));
      image.data.set([r, g, b, 255], 4 * i);
    }
    small.getContext("2d").putImageData(image, 0, 0);
    const shown = element("canvas", { width: 448, height: 448, class: "map-canvas", "data-map": index });
    const context = shown.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.drawImage(small, 0, 0, 448, 448);
    const hover = element("div", { class: "hover" }, "Hover the map: query tokens (rows) → key tokens (columns).");
    const span = (c) => [Math.floor(c * m.tokens / m.cells), Math.floor((c + 1) * m.tokens / m.cells)];
    shown.addEventListener("mousemove", (e) => {
      const row = Math.min(m.cells - 1, Math.floor(e.offsetY / shown.clientHeight * m.cells));
      const col = Math.min(m.cells - 1, Math.floor(e.offsetX / shown.clientWidth * m.cells));
      const [q0, q1] = span(row), [k0, k1] = span(col);
      const value = values[row * m.cells + col] / 255 * m.peak;
      hover.textContent = `“${joinTokens(feature.tokens.slice(q0, q1))}” → “${joinTokens(feature.tokens.slice(k0, k1))}”: ${format(value)}`;
    });
    const labels = Object.entries(m.labels).map(([name, c]) => `${name} ${c}`).join(", ");
    const caption = [m.caption, `feature ${m.feature}`, `layer ${m.layer} head ${m.head}`, `${m.tokens} tokens`]
      .filter((x) => x).join(" · ");
    const text = element("div", { class: "text" }, element("p", {}, element("b", {}, "Question: "), feature.question),
      element("p", {}, element("b", {}, "Context: "), contextText(feature.tokens)),
      element("p", {}, element("b", {}, "Tokens: "), feature.tokens.join(" ")));
    return element("figure", { class: "map" }, shown,
      element("figcaption", {}, caption, labels ? element("br") : "", labels, " ",
        exportButtons(`map-f${m.feature}-l${m.layer}-h${m.head}`, null, () => shown)),
      hover, element("details", {}, element("summary", {}, "Question and context"), text));
  }
  function mapsSection(chosen, what) {
    const section = element("div", {}, element("h3", {}, `Exemplar maps (${chosen.length ? Math.min(chosen.length, MAPS_SHOWN) + " of " + chosen.length : "none"})`));
    if (!chosen.length) {
      section.append(element("p", { class: "notes" }, DATA.maps.length ? `No exemplar map of ${what} in this run.`
        : "This run kept no exemplar maps (--exemplars 0)."));
      return section;
    }
    section.append(element("div", { class: "maps" }, ...chosen.slice(0, MAPS_SHOWN).map(([m, i]) => mapFigure(m, i))));
    return section;
  }

  // ---- panels ----
  function isClustering(name) {
    return DATA.head_clusters !== null && DATA.head_clusters.columns.clustering.includes(name);
  }
  function clusterRows() {
    const c = DATA.head_clusters.columns;
    return c.layer.map((_, i) => ({ layer: c.layer[i], head: c.head[i], clustering: c.clustering[i], cluster: c.cluster[i],
      rows: c.rows[i], share: c.share[i] }));
  }
  function clusterLink(clustering, cluster, text) {
    return element("span", { class: "link", "data-clustering": clustering, "data-cluster": cluster,
      onclick: () => selectCluster(clustering, cluster) }, text);
  }
  function headPanel(l, h) {
    const i = headRow.get(l + ":" + h);
    const panel = element("div", { id: "head-panel" }, element("h2", {}, `Layer ${l}, head ${h}`));
    if (state.point !== null) panel.append(element("p", { class: "notes" }, "Point: " + describePoint(state.point), " ",
      ...Object.keys(DATA.points.columns).filter(isClustering).map((name) =>
        clusterLink(name, pointValue(name, state.point), `${name} ${pointValue(name, state.point)}`)).flatMap((x) => [x, " "])));
    const categories = measures.filter((c) => heads.kinds[c] === "category" && i !== undefined && heads.columns[c][i]);
    panel.append(element("div", {}, ...categories.map((c) => element("span", { class: "badge" }, `${c}: ${heads.columns[c][i]}`))));
    const statistics = element("table", { class: "kv", id: "head-statistics" });
    for (const c of measures.filter((c) => heads.kinds[c] === "number")) {
      statistics.append(element("tr", { "data-column": c }, element("td", {}, c), element("td", {}, format(i === undefined ? null : heads.columns[c][i]))));
    }
    const columns = element("div", { class: "columns" }, element("div", {}, element("h3", {}, "Statistics"), statistics));
    if (DATA.head_clusters) {
      const shares = element("div", { class: "shares" }, element("h3", {}, "Share of its rows in each cluster"));
      const mine = clusterRows().filter((r) => r.layer === l && r.head === h);
      for (const clustering of [...new Set(mine.map((r) => r.clustering))]) {
        shares.append(element("div", {}, element("b", {}, clustering)));
        for (const r of mine.filter((r) => r.clustering === clustering).sort((a, b) => b.share - a.share).slice(0, 8)) {
          shares.append(element("div", {}, element("i", { class: "bar", style: `width:${Math.round(r.share * 120)}px` }),
            clusterLink(clustering, r.cluster, `cluster ${r.cluster}`), ` ${(100 * r.share).toFixed(1)}% (${r.rows} rows)`));
        }
      }
      columns.append(shares);
    }
    panel.append(columns);
    panel.append(mapsSection(DATA.maps.map((m, k) => [m, k]).filter(([m]) => m.layer === l && m.head === h), "this head"));
    return panel;
  }
  function clusterPanel(clustering, cluster) {
    const rows = clusterRows().filter((r) => r.clustering === clustering && String(r.cluster) === String(cluster));
    const total = rows.reduce((s, r) => s + r.rows, 0);
    const all = clusterRows().filter((r) => r.clustering === clustering).reduce((s, r) => s + r.rows, 0);
    const share = new Map(rows.map((r) => [r.layer + ":" + r.head, r.share]));
    const panel = element("div", { id: "cluster-panel" },
      element("h2", {}, `${clustering}, cluster ${cluster}` + (String(cluster) === "-1" ? " (noise / not re-clustered)" : "")),
      element("p", { class: "notes" }, `${total} rows, ${(100 * total / Math.max(all, 1)).toFixed(1)}% of the sample; `
        + "the grid shows the share of each head's rows in this cluster."));
    const heatmap = () => {
      const svg = gridSvg((l, h) => {
        const v = share.get(l + ":" + h) || 0;
        return [scaleColour(v), (100 * v).toFixed(1) + "%"];
      }, `${clustering} cluster ${cluster}: share of each head's rows`, selectHead, null,
      { kind: "number", low: 0, high: 1 });
      svg.id = "cluster-heatmap";
      return svg;
    };
    panel.append(element("div", { class: "controls" }, "Heatmap:",
      exportButtons(`${clustering}-cluster-${cluster}`, () => document.getElementById("cluster-heatmap"))));
    panel.append(heatmap());
    const top = rows.sort((a, b) => b.share - a.share).slice(0, 8);
    panel.append(element("p", { class: "shares" }, "Heads most in it: ", ...top.flatMap((r) => [element("span",
      { class: "link", onclick: () => selectHead(r.layer, r.head) }, `L${r.layer} H${r.head} ${(100 * r.share).toFixed(0)}%`), " "])));
    const maps = DATA.maps.map((m, k) => [m, k]).filter(([m]) => String(m.labels[clustering]) === String(cluster));
    panel.append(mapsSection(maps, "this cluster"));
    return panel;
  }
  function showPanel(panel) {
    const details = document.getElementById("details");
    details.replaceChildren(panel);
  }

  // ---- selection ----
  function selectHead(l, h) {
    state.head = [l, h];
    state.cluster = null;
    drawGrid();
    highlight();
    drawPoints();
    showPanel(headPanel(l, h));
    state.point = null;
  }
  function selectPoint(i) {
    state.point = i;
    selectHead(pointValue("layer", i), pointValue("head", i));
  }
  function selectCluster(clustering, cluster) {
    state.cluster = { clustering, cluster };
    state.head = null;
    drawGrid();
    highlight();
    drawPoints();
    showPanel(clusterPanel(clustering, cluster));
  }
  function setMeasure(name) {
    state.measure = name;
    document.getElementById("measure").value = name;
    drawGrid();
  }
  function setColour(name) {
    state.colour = name;
    document.getElementById("colour").value = name;
    colourPoints();
    highlight();
    drawPoints();
  }

  // ---- layout ----
  function select(id, options, value, onchange) {
    const node = element("select", { id }, ...options.map((o) => element("option", { value: o }, o)));
    node.value = value;
    node.addEventListener("change", () => onchange(node.value));
    return node;
  }
  function build() {
    document.title = DATA.title;
    const preferred = ["pattern", "roles", "consistency_dbscan", "dominant_dbscan"].find((c) => measures.includes(c));
    state.measure = preferred || measures[0];
    state.colour = DATA.colour_options.find((c) => isClustering(c)) || DATA.colour_options[0];
    const gridView = element("section", { class: "view", id: "grid-view" },
      element("div", { class: "controls" }, element("label", { for: "measure" }, "Colour heads by"),
        select("measure", measures, state.measure, setMeasure), exportButtons("heads-grid", () => document.getElementById("grid"))),
      svgElement("svg", { id: "grid" }));
    const projectionView = element("section", { class: "view", id: "projection-view" },
      element("div", { class: "controls" }, element("label", { for: "colour" }, "Colour points by"),
        select("colour", DATA.colour_options, state.colour, setColour),
        element("button", { id: "reset-view", onclick: () => { view.zoom = 1; view.x = 0; view.y = 0; drawPoints(); } }, "Reset zoom"),
        exportButtons("projection", null, () => canvas)),
      canvas, tooltip, element("div", { class: "legend", id: "points-legend" }),
      element("p", { class: "notes" }, `${points.count.toLocaleString("en")} points. ${DATA.projection} Scroll to zoom, drag to pan, click a point to select its head.`));
    const mapView = DATA.head_map ? [element("section", { class: "view", id: "heads-map-view" },
      element("div", { class: "controls" }, element("span", {}, "Map of the heads"),
        exportButtons("heads-map", () => document.getElementById("heads-map"))),
      svgElement("svg", { id: "heads-map" }), element("p", { class: "notes" }, DATA.head_map))] : [];
    document.body.append(element("h1", {}, DATA.title),
      ...DATA.notes.map((n) => element("p", { class: "notes" }, n)),
      element("div", { class: "views" }, gridView, ...mapView, projectionView), element("section", { id: "details" }));
    drawGrid();
    if (!initGl()) projectionView.append(element("p", { class: "notes" }, "WebGL is not available in this browser: no projection."));
    colourPoints();
    highlight();
    drawPoints();
    bindPointer();
    window.addEventListener("resize", drawPoints);
  }

  build();
  window.explorer = {
    data: DATA, state, selectHead, selectCluster, setMeasure, setColour, screenOf,
    pointAt: (x, y) => nearestPoint(x, y, 6),
    drawnPoints: () => drawn, highlighted: () => overlay.count,
  };
})();

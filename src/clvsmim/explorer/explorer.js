/* clvsmim attention explorer: click a patch, see where CL and MIM look.
 *
 * Plain JavaScript on canvases; no framework, nothing from the network. Works from file://:
 * data comes in .js files that assign to window.CLVSMIM_EXPLORER_DATA (loaded with <script>,
 * one per image and model, on demand). Payload layout: clvsmim/explorer/payload.py.
 *
 *   ClvsmimExplorer.mount(element, {base: "explorer/", id: "F2"})
 *
 * URL hash at start-up: #image=I&query=Q|R,C&layer=L&control=1 (image = position in the strip,
 * layer 1-based). Keys: arrows move the query, PageUp/PageDown (or [ ]) the layer, c toggles
 * the control. Each instance is in ClvsmimExplorer.instances; after every draw the root element
 * carries data-state (JSON: image, query, layer, models drawn) and data-first-draw-ms (ms from
 * navigation start to the first drawn maps), and inst.drawn holds, per model, the decoded
 * attention rows of the query that were drawn (L×H arrays of N values).
 */
(function () {
  "use strict";
  var NS = "CLVSMIM_EXPLORER_DATA";

  function store() { return (window[NS] = window[NS] || {}); }

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = src;
      s.onload = function () { resolve(); };
      s.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(s);
    });
  }

  function bytesOf(b64) {
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function decodePayload(bytes, L, H, N) {
    var lh = L * H, buf = bytes.buffer, o = 0;
    var expected = lh * N * N + 4 * (2 * lh * N + 2 * lh);
    if (bytes.length !== expected) throw new Error("payload has " + bytes.length + " bytes, expected " + expected);
    var p = {};
    p.scale = new Float32Array(buf, o, lh * N); o += 4 * lh * N;
    p.queryDistance = new Float32Array(buf, o, lh * N); o += 4 * lh * N;
    p.distance = new Float32Array(buf, o, lh); o += 4 * lh;
    p.nmi = new Float32Array(buf, o, lh); o += 4 * lh;
    p.codes = new Uint8Array(buf, o, lh * N * N);
    return p;
  }

  function el(tag, cls, parent, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function parseHash() {
    var out = {}, h = (window.location.hash || "").replace(/^#/, "");
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) out[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1));
    });
    return out;
  }

  function fmt(v, d) { return (v === null || v === undefined || !isFinite(v)) ? "n/a" : v.toFixed(d); }

  function Explorer(root, opts) {
    this.root = root;
    this.base = opts.base || "";
    this.id = opts.id;
    this.index = store()[this.id + "/index"];
    if (!this.index) throw new Error("explorer data '" + this.id + "/index' not loaded (" + this.base + "index.js)");
    var ix = this.index, g = ix.geometry;
    this.L = g.depth; this.H = g.heads; this.gh = g.grid[0]; this.gw = g.grid[1]; this.N = this.gh * this.gw;
    this.payloads = {};  // "image/model" -> decoded payload
    this.pending = {};
    this.drawn = {};
    this.images = ix.images.map(function (im) { return this.imageCanvas(im); }, this);
    var hash = parseHash(), s = ix.start || {};
    this.state = {image: 0, query: 0, layer: this.L - 1, control: false, hover: null};
    this.setImageIndex(hash.image !== undefined ? +hash.image : (s.image || 0));
    this.setQuery(hash.query !== undefined ? this.parseQuery(hash.query) : (s.query || 0));
    this.state.layer = this.clampLayer((hash.layer !== undefined ? +hash.layer : (s.layer || this.L)) - 1);
    this.state.control = hash.control === "1";
    this.build();
    this.update();
  }

  Explorer.prototype.parseQuery = function (q) {
    var m = /^(\d+),(\d+)$/.exec(q);
    return m ? (+m[1]) * this.gw + (+m[2]) : +q;
  };
  Explorer.prototype.clampLayer = function (l) { return Math.max(0, Math.min(this.L - 1, l | 0)); };

  Explorer.prototype.imageCanvas = function (im) {
    var S = this.index.geometry.img_size, c = document.createElement("canvas");
    c.width = S; c.height = S;
    var ctx = c.getContext("2d"), data = ctx.createImageData(S, S), rgb = bytesOf(im.rgb);
    for (var i = 0, j = 0; i < S * S; i++) {
      data.data[j++] = rgb[3 * i]; data.data[j++] = rgb[3 * i + 1]; data.data[j++] = rgb[3 * i + 2]; data.data[j++] = 255;
    }
    ctx.putImageData(data, 0, 0);
    return c;
  };

  Explorer.prototype.visibleModels = function () {
    var st = this.state;
    return this.index.models.filter(function (m) { return !m.control || st.control; });
  };

  // ------------------------------------------------------------------ layout
  Explorer.prototype.build = function () {
    var self = this, ix = this.index, root = this.root;
    root.classList.add("cx-root");
    root.tabIndex = 0;
    root.innerHTML = "";
    var strip = el("div", "cx-strip", root);
    this.thumbs = this.images.map(function (c, i) {
      var t = el("canvas", "cx-thumb", strip);
      t.width = 48; t.height = 48;
      var ctx = t.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(c, 0, 0, 48, 48);
      t.title = ix.images[i].title || ("image " + i);
      t.addEventListener("click", function () { self.setImageIndex(i); self.update(); });
      return t;
    });
    var main = el("div", "cx-main", root);
    var left = el("div", "cx-left", main);
    this.canvas = el("canvas", "cx-image", left);
    this.canvas.width = 256; this.canvas.height = 256;
    this.readout = el("div", "cx-readout", left);
    var ctl = el("div", "cx-controls", left);
    var lab = el("label", null, ctl, "layer ");
    this.layerInput = el("input", null, lab);
    this.layerInput.type = "range"; this.layerInput.min = 1; this.layerInput.max = this.L; this.layerInput.step = 1;
    this.layerInput.addEventListener("input", function () { self.state.layer = self.clampLayer(+self.layerInput.value - 1); self.update(); });
    if (ix.models.some(function (m) { return m.control; })) {
      var cl = el("label", null, ctl);
      this.controlInput = el("input", null, cl);
      this.controlInput.type = "checkbox";
      cl.appendChild(document.createTextNode(" show the untrained control"));
      this.controlInput.addEventListener("change", function () { self.state.control = self.controlInput.checked; self.update(); });
    }
    this.colorbar = el("canvas", "cx-colorbar", left);
    this.colorbar.width = 256; this.colorbar.height = 34;
    el("p", "cx-help", left, "Click or touch a patch (hover previews it) to make it the query; arrow keys move it, " +
       "PageUp/PageDown or [ ] change the layer. Each small map: the query's attention over the patches in one " +
       "layer (row) and head (column; the last column is the mean over heads), scaled to its own maximum. " +
       "Click a row to pick its layer.");
    if (ix.download) {
      var a = el("a", "cx-download", left, "download the explorer's data (.npz)");
      a.href = this.base + ix.download; a.setAttribute("download", "");
    }
    var right = el("div", "cx-right", main);
    this.panels = el("div", "cx-models", right);
    el("div", "cx-note", right, "Bars under each model: the mean attention distance (px) and the NMI of each head " +
       "on this image in the selected layer (the definitions of F3 and F4); black tick: this query's own distance.");
    this.status = el("div", "cx-status", root);

    this.canvas.style.touchAction = "none";
    function patchAt(ev) {
      var r = self.canvas.getBoundingClientRect();
      var x = (ev.clientX - r.left) / r.width, y = (ev.clientY - r.top) / r.height;
      if (!(x >= 0 && x < 1 && y >= 0 && y < 1)) return null;
      return Math.floor(y * self.gh) * self.gw + Math.floor(x * self.gw);
    }
    this.canvas.addEventListener("pointerdown", function (ev) {
      var q = patchAt(ev);
      if (q === null) return;
      self.pressed = true;
      self.state.hover = null;
      self.setQuery(q); self.update();
      root.focus({preventScroll: true});
      ev.preventDefault();
    });
    this.canvas.addEventListener("pointermove", function (ev) {
      var q = patchAt(ev);
      if (q === null) return;
      if (self.pressed || ev.pointerType === "touch") { self.setQuery(q); self.update(); }
      else if (ev.pointerType === "mouse" && q !== self.state.hover) { self.state.hover = q; self.update(); }
    });
    window.addEventListener("pointerup", function () { self.pressed = false; });
    this.canvas.addEventListener("pointerleave", function () {
      if (self.state.hover !== null) { self.state.hover = null; self.update(); }
    });
    root.addEventListener("keydown", function (ev) { if (self.onKey(ev.key)) ev.preventDefault(); });
  };

  Explorer.prototype.onKey = function (key) {
    var q = this.state.query, r = Math.floor(q / this.gw), c = q % this.gw;
    if (key === "ArrowLeft") c = Math.max(0, c - 1);
    else if (key === "ArrowRight") c = Math.min(this.gw - 1, c + 1);
    else if (key === "ArrowUp") r = Math.max(0, r - 1);
    else if (key === "ArrowDown") r = Math.min(this.gh - 1, r + 1);
    else if (key === "PageUp" || key === "]") { this.state.layer = this.clampLayer(this.state.layer + 1); this.update(); return true; }
    else if (key === "PageDown" || key === "[") { this.state.layer = this.clampLayer(this.state.layer - 1); this.update(); return true; }
    else if (key === "c" && this.controlInput) { this.state.control = !this.state.control; this.update(); return true; }
    else return false;
    this.state.hover = null;
    this.setQuery(r * this.gw + c); this.update();
    return true;
  };

  Explorer.prototype.setImageIndex = function (i) {
    this.state.image = Math.max(0, Math.min(this.images.length - 1, i | 0));
  };
  Explorer.prototype.setQuery = function (q) { this.state.query = Math.max(0, Math.min(this.N - 1, q | 0)); };

  // ------------------------------------------------------------------ data
  Explorer.prototype.payload = function (image, model) {
    var key = this.index.images[image].files[model.name];
    var full = this.id + "/" + key.replace(/\.js$/, "");
    var cache = this.payloads[full];
    if (cache) return Promise.resolve(cache);
    if (this.pending[full]) return this.pending[full];
    var self = this;
    var p = (store()[full] ? Promise.resolve() : loadScript(this.base + key)).then(function () {
      var b64 = store()[full];
      if (typeof b64 !== "string") throw new Error(key + " did not define " + full);
      var decoded = decodePayload(bytesOf(b64), self.L, self.H, self.N);
      delete store()[full];  // keep one decoded copy only
      self.payloads[full] = decoded;
      delete self.pending[full];
      return decoded;
    });
    this.pending[full] = p;
    return p;
  };

  Explorer.prototype.update = function () {
    var self = this, st = this.state, models = this.visibleModels();
    var ticket = (this.ticket = (this.ticket || 0) + 1);
    this.layerInput.value = st.layer + 1;
    if (this.controlInput) this.controlInput.checked = st.control;
    this.thumbs.forEach(function (t, i) { t.classList.toggle("cx-selected", i === st.image); });
    this.status.textContent = "";
    Promise.all(models.map(function (m) { return self.payload(st.image, m); })).then(function (payloads) {
      if (ticket !== self.ticket) return;  // a newer update is on its way
      self.draw(models, payloads);
    }, function (err) {
      self.status.textContent = "could not load the explorer's data: " + err.message;
      self.root.setAttribute("data-error", err.message);
    });
    if (Object.keys(this.pending).length) this.status.textContent = "loading…";
  };

  // ------------------------------------------------------------------ drawing
  Explorer.prototype.row = function (p, l, h, q) {
    var N = this.N, r = ((l * this.H + h) * N + q), s = p.scale[r], off = r * N, out = new Float64Array(N);
    for (var k = 0; k < N; k++) out[k] = p.codes[off + k] * s;
    return out;
  };

  Explorer.prototype.paintMap = function (ctx, x, y, size, values) {
    var lut = this.index.colormap, gh = this.gh, gw = this.gw, max = 0, k;
    for (k = 0; k < values.length; k++) if (values[k] > max) max = values[k];
    ctx.globalAlpha = 0.45;
    ctx.drawImage(this.images[this.state.image], x, y, size, size);
    ctx.globalAlpha = 0.78;
    var cw = size / gw, ch = size / gh;
    for (k = 0; k < values.length; k++) {
      var v = max > 0 ? Math.round(255 * values[k] / max) : 0, c = lut[v];
      ctx.fillStyle = "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")";
      var rr = Math.floor(k / gw), cc = k % gw;
      ctx.fillRect(x + cc * cw, y + rr * ch, Math.ceil(cw), Math.ceil(ch));
    }
    ctx.globalAlpha = 1;
  };

  Explorer.prototype.drawQueryImage = function (q) {
    var c = this.canvas, ctx = c.getContext("2d"), S = c.width, gh = this.gh, gw = this.gw;
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, S, S);
    ctx.drawImage(this.images[this.state.image], 0, 0, S, S);
    ctx.strokeStyle = "rgba(255,255,255,0.35)"; ctx.lineWidth = 1;
    for (var i = 1; i < gw; i++) { ctx.beginPath(); ctx.moveTo(i * S / gw + 0.5, 0); ctx.lineTo(i * S / gw + 0.5, S); ctx.stroke(); }
    for (i = 1; i < gh; i++) { ctx.beginPath(); ctx.moveTo(0, i * S / gh + 0.5); ctx.lineTo(S, i * S / gh + 0.5); ctx.stroke(); }
    var r = Math.floor(q / gw), cc = q % gw;
    ctx.lineWidth = 3; ctx.strokeStyle = "#00e5ff";
    ctx.strokeRect(cc * S / gw + 1.5, r * S / gh + 1.5, S / gw - 3, S / gh - 3);
    if (this.state.hover !== null && this.state.hover !== this.state.query) {
      var hr = Math.floor(this.state.query / gw), hc = this.state.query % gw;
      ctx.lineWidth = 1; ctx.setLineDash([3, 3]); ctx.strokeStyle = "#ffffff";
      ctx.strokeRect(hc * S / gw + 1.5, hr * S / gh + 1.5, S / gw - 3, S / gh - 3);
      ctx.setLineDash([]);
    }
  };

  Explorer.prototype.drawColorbar = function () {
    var c = this.colorbar, ctx = c.getContext("2d"), lut = this.index.colormap, W = c.width;
    ctx.clearRect(0, 0, W, c.height);
    for (var x = 0; x < W; x++) {
      var col = lut[Math.round(255 * x / (W - 1))];
      ctx.fillStyle = "rgb(" + col[0] + "," + col[1] + "," + col[2] + ")";
      ctx.fillRect(x, 0, 1, 14);
    }
    ctx.fillStyle = "#333"; ctx.font = "11px sans-serif"; ctx.textBaseline = "top";
    ctx.textAlign = "left"; ctx.fillText("0", 0, 18);
    ctx.textAlign = "center"; ctx.fillText("attention (each map: 0 … its maximum)", W / 2, 18);
    ctx.textAlign = "right"; ctx.fillText("max", W, 18);
  };

  Explorer.prototype.draw = function (models, payloads) {
    var self = this, st = this.state, L = this.L, H = this.H, N = this.N;
    var q = st.hover !== null ? st.hover : st.query;
    var ix = this.index;
    this.status.textContent = "";
    this.drawQueryImage(q);
    this.drawColorbar();
    var im = ix.images[st.image];
    this.readout.textContent = "query patch (row " + Math.floor(q / this.gw) + ", col " + (q % this.gw) + ") · layer " +
      (st.layer + 1) + " of " + L + (im.title ? " · " + im.title : "");
    // one panel per visible model
    var avail = Math.max(320, (this.panels.clientWidth || 900));
    var perModel = Math.floor(avail / models.length) - 12;
    var label = 26, cell = Math.max(22, Math.min(72, Math.floor((perModel - label) / (H + 1))));
    this.panels.innerHTML = "";
    this.drawn = {};
    var maxDist = 0, maxNmi = 0.1;  // NMI bars: at least 0 … 0.1, so near-zero NMI looks near zero
    payloads.forEach(function (p) {
      for (var i = 0; i < p.distance.length; i++) { maxDist = Math.max(maxDist, p.distance[i]); maxNmi = Math.max(maxNmi, p.nmi[i]); }
      for (i = 0; i < p.queryDistance.length; i++) maxDist = Math.max(maxDist, p.queryDistance[i]);
    });
    models.forEach(function (m, mi) {
      var p = payloads[mi], panel = el("div", "cx-model", self.panels);
      var head = el("div", "cx-model-title", panel, m.label);
      head.style.borderColor = m.color;
      var cv = el("canvas", "cx-grid", panel);
      cv.width = label + (H + 1) * cell; cv.height = 16 + L * cell;
      var ctx = cv.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.font = "11px sans-serif"; ctx.fillStyle = "#333"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
      for (var h = 0; h <= H; h++) {
        ctx.fillText(h < H ? (cell >= 48 ? "head " : (h === 0 ? "h" : "")) + (h + 1) : (cell >= 36 ? "mean" : "μ"),
                     label + (h + 0.5) * cell, 8);
      }
      var rows = [];
      for (var l = 0; l < L; l++) {
        var y = 16 + l * cell, mean = new Float64Array(N), perHead = [];
        ctx.fillStyle = "#333"; ctx.textAlign = "right";
        ctx.fillText("L" + (l + 1), label - 4, y + cell / 2);
        for (h = 0; h < H; h++) {
          var v = self.row(p, l, h, q);
          perHead.push(Array.prototype.slice.call(v));
          for (var k = 0; k < N; k++) mean[k] += v[k] / H;
          self.paintMap(ctx, label + h * cell, y, cell - 2, v);
        }
        self.paintMap(ctx, label + H * cell, y, cell - 2, mean);
        rows.push(perHead);
      }
      ctx.strokeStyle = "#00a0c0"; ctx.lineWidth = 2;
      ctx.strokeRect(label - 1, 16 + st.layer * cell - 1, (H + 1) * cell, cell);
      cv.addEventListener("click", function (ev) {
        var r = cv.getBoundingClientRect(), yy = (ev.clientY - r.top) * cv.height / r.height - 16;
        if (yy >= 0) { st.layer = self.clampLayer(Math.floor(yy / cell)); self.update(); }
      });
      self.drawn[m.name] = rows;
      self.drawStats(panel, m, p, q, maxDist, maxNmi, label + (H + 1) * cell);
    });
    if (!this.root.hasAttribute("data-first-draw-ms")) {  // ms from navigation start to the first maps
      this.root.setAttribute("data-first-draw-ms", String(Math.round(performance.now())));
    }
    this.root.setAttribute("data-state", JSON.stringify({
      image: st.image, query: q, row: Math.floor(q / this.gw), col: q % this.gw, layer: st.layer + 1,
      models: models.map(function (m) { return m.name; }), ready: true
    }));
  };

  Explorer.prototype.drawStats = function (panel, m, p, q, maxDist, maxNmi, width) {
    var H = this.H, l = this.state.layer, N = this.N;
    var cv = el("canvas", "cx-stats", panel), rowH = 16;
    cv.width = Math.max(220, width); cv.height = 20 + H * rowH * 2 + 8;
    var ctx = cv.getContext("2d"), x0 = 64, bw = cv.width - x0 - 58;
    ctx.font = "11px sans-serif"; ctx.textBaseline = "middle"; ctx.fillStyle = "#333"; ctx.textAlign = "left";
    ctx.fillText("layer " + (l + 1) + ": attention distance (px), NMI", 0, 8);
    for (var h = 0; h < H; h++) {
      var i = l * H + h, yd = 20 + 2 * h * rowH, yn = yd + rowH;
      var qd = p.queryDistance[i * N + q], d = p.distance[i], n = p.nmi[i];
      ctx.fillStyle = "#333"; ctx.textAlign = "left";
      ctx.fillText("head " + (h + 1), 0, yd + rowH / 2);
      ctx.fillStyle = m.color; ctx.globalAlpha = 0.85;
      ctx.fillRect(x0, yd + 3, maxDist > 0 ? bw * d / maxDist : 0, rowH - 6);
      ctx.globalAlpha = 1; ctx.fillStyle = "#000";
      var xq = x0 + (maxDist > 0 ? bw * qd / maxDist : 0);
      ctx.fillRect(xq - 1, yd + 1, 2, rowH - 2);
      ctx.fillStyle = "#333"; ctx.fillText(fmt(d, 1) + " px", x0 + bw + 4, yd + rowH / 2);
      ctx.fillStyle = m.color; ctx.globalAlpha = 0.5;
      ctx.fillRect(x0, yn + 3, maxNmi > 0 ? bw * n / maxNmi : 0, rowH - 6);
      ctx.globalAlpha = 1; ctx.fillStyle = "#333";
      ctx.fillText("NMI " + fmt(n, 3), x0 + bw + 4, yn + rowH / 2);
    }
  };

  var api = window.ClvsmimExplorer = window.ClvsmimExplorer || {instances: []};
  api.mount = function (root, opts) {
    try {
      var inst = new Explorer(root, opts);
      api.instances.push(inst);
      return inst;
    } catch (err) {
      root.textContent = "The attention explorer could not start: " + err.message;
      root.setAttribute("data-error", err.message);
      throw err;
    }
  };
  api.decodePayload = decodePayload;
})();

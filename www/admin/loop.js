// The X-ray: draws each frame of /loop/events (four a second). Plain SVG, no library;
// what each field means is in src/admin/xray.rs.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var HISTORY = 120; // frames kept for the rolling charts: 30 s
  var COLOURS = { ".": "#222b33", r: "#4a90d9", p: "#7ed321", s: "#bd10e0", w: "#f5a623", l: "#d0021b", a: "#50e3c2" };
  var NAMES = { ".": "free", r: "reading", p: "parked", s: "streaming", w: "writing", l: "lingering", a: "awaiting Redis" };
  var frames = [];

  function $(id) { return document.getElementById(id); }

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function human(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(0) + "k";
    return String(n);
  }

  function micros(us) { return us >= 1000 ? (us / 1000).toFixed(1) + " ms" : us + " µs"; }

  // ---- the wheel: one arc per 16 slots, and the needle ------------------------------
  var arcs = [];
  var needle;
  function buildWheel(count) {
    var svg = $("wheel");
    svg.replaceChildren();
    arcs = [];
    for (var i = 0; i < count; i++) {
      var a0 = (i / count) * 2 * Math.PI - Math.PI / 2;
      var a1 = ((i + 0.85) / count) * 2 * Math.PI - Math.PI / 2;
      var d = "M" + 100 * Math.cos(a0) + " " + 100 * Math.sin(a0) +
        " A100 100 0 0 1 " + 100 * Math.cos(a1) + " " + 100 * Math.sin(a1) +
        " L" + 70 * Math.cos(a1) + " " + 70 * Math.sin(a1) +
        " A70 70 0 0 0 " + 70 * Math.cos(a0) + " " + 70 * Math.sin(a0) + " Z";
      arcs.push(el("path", { d: d, fill: "#222b33" }, svg));
    }
    needle = el("line", { x1: 0, y1: 0, x2: 0, y2: -104, stroke: "#f5a623", "stroke-width": 2 }, svg);
    el("text", { id: "wheel-label", x: 0, y: 6, "text-anchor": "middle", fill: "#d6dde4", "font-size": 14 }, svg);
  }

  function drawWheel(wheel) {
    if (arcs.length !== wheel.arcs.length) buildWheel(wheel.arcs.length);
    var most = Math.max.apply(null, wheel.arcs.concat([1]));
    wheel.arcs.forEach(function (n, i) {
      var level = n === 0 ? 0 : 0.25 + 0.75 * Math.log(1 + n) / Math.log(1 + most);
      arcs[i].setAttribute("fill", n === 0 ? "#222b33" : "rgba(80, 227, 194, " + level.toFixed(2) + ")");
    });
    var angle = (wheel.cursor / wheel.slots) * 360;
    needle.setAttribute("transform", "rotate(" + angle + ")");
    $("wheel-label").textContent = human(wheel.timers) + " timers";
  }

  // ---- the slab: a square of cells ---------------------------------------------------
  var cells = [];
  function drawSlab(slab) {
    var svg = $("slab");
    var n = slab.cells.length;
    var side = Math.ceil(Math.sqrt(n));
    var size = 320 / side;
    if (cells.length !== n) {
      svg.replaceChildren();
      cells = [];
      for (var i = 0; i < n; i++) {
        cells.push(el("rect", { x: (i % side) * size, y: Math.floor(i / side) * size, width: size * 0.9, height: size * 0.9 }, svg));
      }
    }
    var seen = {};
    for (var j = 0; j < n; j++) {
      var letter = slab.cells[j];
      seen[letter] = (seen[letter] || 0) + 1;
      cells[j].setAttribute("fill", COLOURS[letter] || "#fff");
    }
    $("legend").replaceChildren.apply($("legend"), Object.keys(NAMES).map(function (letter) {
      var span = document.createElement("span");
      var swatch = document.createElement("i");
      swatch.style.background = COLOURS[letter];
      span.append(swatch, NAMES[letter] + " " + (seen[letter] || 0));
      return span;
    }).concat([document.createTextNode("(" + slab.capacity + " slots, " + slab.per_cell + " a cell)")]));
  }

  // ---- rolling charts ----------------------------------------------------------------
  function polyline(svg, values, top, colour) {
    var most = Math.max.apply(null, values.concat([top || 1]));
    var points = values.map(function (v, i) {
      return (i * 400 / (HISTORY - 1)).toFixed(1) + "," + (140 - (v / most) * 125).toFixed(1);
    }).join(" ");
    el("polyline", { points: points, fill: "none", stroke: colour, "stroke-width": 1.5 }, svg);
    return most;
  }

  function drawPasses() {
    var svg = $("passes-chart");
    svg.replaceChildren();
    var perPass = frames.map(function (f) { return f.passes ? f.events / f.passes : 0; });
    var longest = frames.map(function (f) { return f.pass_us_max; });
    var mean = frames.map(function (f) { return f.pass_us_mean; });
    var most = Math.max.apply(null, longest.concat([1]));
    longest.forEach(function (v, i) {
      var h = (v / most) * 125;
      el("rect", { x: i * 400 / HISTORY, y: 140 - h, width: 400 / HISTORY * 0.8, height: h, fill: "#3a4652" }, svg);
    });
    polyline(svg, mean, most, "#f5a623");
    var top = polyline(svg, perPass, 1, "#50e3c2");
    var last = frames[frames.length - 1];
    el("text", { x: 4, y: 12, fill: "#50e3c2", "font-size": 11 }, svg).textContent =
      "events/pass " + (last.passes ? (last.events / last.passes).toFixed(1) : "0") + " (top " + top.toFixed(0) + ")";
    el("text", { x: 396, y: 12, fill: "#f5a623", "font-size": 11, "text-anchor": "end" }, svg).textContent =
      "pass mean " + micros(last.pass_us_mean) + ", longest " + micros(last.pass_us_max);
  }

  function drawSyscalls(frame) {
    var svg = $("syscalls");
    svg.replaceChildren();
    var kinds = ["epoll_wait", "accept", "read", "write"];
    var most = Math.max.apply(null, kinds.map(function (k) { return frame.syscalls_per_s[k]; }).concat([1]));
    kinds.forEach(function (kind, i) {
      var v = frame.syscalls_per_s[kind];
      var w = (v / most) * 280;
      el("rect", { x: 90, y: 10 + i * 34, width: Math.max(w, 1), height: 24, fill: "#4a90d9" }, svg);
      el("text", { x: 84, y: 27 + i * 34, fill: "#d6dde4", "font-size": 12, "text-anchor": "end" }, svg).textContent = kind;
      el("text", { x: 96 + w, y: 27 + i * 34, fill: "#d6dde4", "font-size": 12 }, svg).textContent = human(v) + "/s";
    });
    $("bytes").textContent = "in " + human(frame.bytes_in_per_s) + " B/s, out " + human(frame.bytes_out_per_s) + " B/s";
  }

  function drawBroadcasts(frame) {
    var rows = frame.broadcasts.slice().reverse().map(function (b) {
      var tr = document.createElement("tr");
      [b.room, human(b.fanout), micros(b.micros), (b.ago_ms / 1000).toFixed(1) + " s"].forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      return tr;
    });
    $("broadcasts").replaceChildren.apply($("broadcasts"), rows);
  }

  function draw(frame) {
    frames.push(frame);
    if (frames.length > HISTORY) frames.shift();
    $("connections").textContent = human(frame.connections);
    $("polls").textContent = human(frame.polls);
    $("streams").textContent = human(frame.streams);
    $("passes").textContent = human(Math.round(frame.passes * 1000 / frame.interval_ms));
    $("timers").textContent = human(frame.wheel.timers);
    drawWheel(frame.wheel);
    drawSlab(frame.slab);
    drawPasses();
    drawSyscalls(frame);
    drawBroadcasts(frame);
  }

  var feed = new EventSource("/loop/events");
  feed.onopen = function () { $("feed").textContent = "live"; $("feed").className = "live"; };
  feed.onerror = function () { $("feed").textContent = "reconnecting…"; $("feed").className = ""; };
  feed.onmessage = function (e) { draw(JSON.parse(e.data)); };
})();

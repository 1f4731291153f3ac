// her2slide viewer: the slide through OpenSeadragon, and one canvas over it with the layers
// (region map, QC-excluded blocks, ROI, clusters, cell outlines) drawn for the visible area.
// Coordinates from the server are level-0 pixels with pixel j centred on j (cells.parquet);
// OpenSeadragon's image coordinates put pixel j on [j, j + 1), hence the + 0.5 everywhere.
// Every text that comes from the slide or the result is put in with textContent, never as HTML.
(function () {
  "use strict";

  var CLASS_COLOURS = ["rgb(70,130,180)", "rgb(255,215,0)", "rgb(255,140,0)", "rgb(200,30,30)"];
  var CLUSTER_COLOURS = ["rgb(148,0,211)", "rgb(0,158,115)", "rgb(230,0,126)", "rgb(0,114,178)", "rgb(86,180,233)",
                         "rgb(120,72,0)", "rgb(0,200,200)", "rgb(60,60,60)", "rgb(160,160,0)", "rgb(255,105,180)"];
  var QC_COLOURS = {saturated: "#e6194b", ink: "#3c3cff", fold: "#911eb4", blur: "#46a0a0", cytoplasmic: "#f58231",
                    edge: "#808080"};
  var HALF = 0.5;
  // the class colours as little-endian RGBA words, for writing pixels directly
  var RGBA_WORDS = [[70, 130, 180], [255, 215, 0], [255, 140, 0], [200, 30, 30]].map(function (c) {
    return ((255 << 24) | (c[2] << 16) | (c[1] << 8) | c[0]) >>> 0;
  });
  // below this radius on screen (device pixels) cells are drawn as one-pixel outlines
  var RASTER_BELOW_PX = 10;

  var state = {
    info: null, viewer: null, canvas: null, cells: null, cellsBox: null, cellRequest: 0,
    mapImage: null, qc: null, roi: null, selectedCell: null, selectedRegion: null,
    stats: {cellsInView: null, cellsDrawn: 0, box: null, firstTileMs: null, lastCellLayerMs: null, cellLayerDone: 0,
            tilesLoaded: 0}
  };
  window.her2view = state;

  function $(id) { return document.getElementById(id); }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function getJson(url) {
    return fetch(url, {headers: {"Accept": "application/json"}}).then(function (r) {
      if (!r.ok) { throw new Error(url + ": " + r.status); }
      return r.json();
    });
  }

  function fmt(value) {
    if (value === null || value === undefined) { return "—"; }
    if (typeof value === "number") { return Number.isInteger(value) ? String(value) : value.toPrecision(4); }
    return String(value);
  }

  function colourOf(score) {
    var i = state.info ? state.info.classes.indexOf(score) : -1;
    return i >= 0 ? CLASS_COLOURS[i] : "#888";
  }

  // ------------------------------------------------------------------ geometry

  function transform() {
    var vp = state.viewer.viewport;
    var p0 = vp.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
    var p1 = vp.imageToViewerElementCoordinates(new OpenSeadragon.Point(1, 0));
    return {x0: p0.x, y0: p0.y, scale: p1.x - p0.x};
  }

  state.imageToScreen = function (x, y) {
    var p = state.viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(x + HALF, y + HALF));
    var r = state.viewer.element.getBoundingClientRect();
    return {x: p.x + r.left, y: p.y + r.top};
  };

  function viewBox() {
    var vp = state.viewer.viewport;
    var rect = vp.viewportToImageRectangle(vp.getBounds(true));
    return [rect.x - HALF, rect.y - HALF, rect.x + rect.width - HALF, rect.y + rect.height - HALF];
  }

  state.showBox = function (box) {
    var vp = state.viewer.viewport;
    var rect = vp.imageToViewportRectangle(box[0] + HALF, box[1] + HALF, box[2] - box[0], box[3] - box[1]);
    vp.fitBoundsWithConstraints(rect, true);
  };

  // ------------------------------------------------------------------ drawing

  function sizeCanvas() {
    var c = state.canvas, ratio = window.devicePixelRatio || 1;
    var w = state.viewer.container.clientWidth, h = state.viewer.container.clientHeight;
    c.width = Math.round(w * ratio); c.height = Math.round(h * ratio);
    c.style.width = w + "px"; c.style.height = h + "px";
  }

  function opacity(name) {
    return $("show-" + name).checked ? Number($("fade-" + name).value) : 0;
  }

  function draw() {
    if (!state.info) { return; }
    var ctx = state.canvas.getContext("2d"), ratio = window.devicePixelRatio || 1, t = transform();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, state.canvas.width, state.canvas.height);
    // image pixel coordinates (OpenSeadragon's) -> canvas pixels
    ctx.setTransform(t.scale * ratio, 0, 0, t.scale * ratio, t.x0 * ratio, t.y0 * ratio);
    var px = 1 / (t.scale * ratio);  // one screen pixel, in image pixels
    drawMap(ctx);
    drawQc(ctx, px);
    drawRoi(ctx, px);
    drawCells(ctx, px);
  }

  function gridRect() {
    var m = state.info.maps, mpp = state.info.slide.mpp;
    return {x: m.origin_um[0] / mpp + HALF, y: m.origin_um[1] / mpp + HALF,
            w: m.grid_shape[1] * m.region_um / mpp, h: m.grid_shape[0] * m.region_um / mpp};
  }

  function drawMap(ctx) {
    var g = gridRect();
    ctx.imageSmoothingEnabled = false;
    var a = opacity("map");
    if (a > 0 && state.mapImage && state.mapImage.complete) {
      ctx.globalAlpha = a;
      ctx.drawImage(state.mapImage, g.x, g.y, g.w, g.h);
    }
    a = opacity("clusters");
    if (a > 0 && state.clusterImage && state.clusterImage.complete) {
      ctx.globalAlpha = a * 0.3;
      ctx.drawImage(state.clusterImage, g.x, g.y, g.w, g.h);
    }
    ctx.globalAlpha = 1;
  }

  function drawQc(ctx, px) {
    var a = opacity("qc");
    if (a <= 0 || !state.qc) { return; }
    var reasons = state.qc.reasons;
    ctx.globalAlpha = a;
    state.qc.blocks.forEach(function (b) {
      ctx.fillStyle = QC_COLOURS[reasons[b[4]]] || "#444";
      ctx.fillRect(b[0] + HALF, b[1] + HALF, b[2] - b[0], b[3] - b[1]);
    });
    ctx.globalAlpha = 1;
  }

  function drawRoi(ctx, px) {
    var a = opacity("roi");
    if (a <= 0 || !state.roi) { return; }
    ctx.globalAlpha = a;
    ctx.lineWidth = 3 * px;
    state.roi.features.forEach(function (f) {
      var g = f.geometry, polygons = g.type === "Polygon" ? [g.coordinates] : g.coordinates;
      ctx.strokeStyle = f.properties.role === "exclude" ? "#d00" : "#0a0";
      ctx.beginPath();
      polygons.forEach(function (rings) {
        rings.forEach(function (ring) {
          ring.forEach(function (p, i) {
            if (i === 0) { ctx.moveTo(p[0] + HALF, p[1] + HALF); } else { ctx.lineTo(p[0] + HALF, p[1] + HALF); }
          });
          ctx.closePath();
        });
      });
      ctx.stroke();
    });
    ctx.globalAlpha = 1;
  }

  function outlinePath(ctx, c, i) {
    var rays = c.rays, base = i * rays, x = c.x[i] + HALF, y = c.y[i] + HALF;
    for (var k = 0; k < rays; k++) {
      var r = c.radii[base + k];
      if (k === 0) { ctx.moveTo(x + r * c.cos[k], y + r * c.sin[k]); }
      else { ctx.lineTo(x + r * c.cos[k], y + r * c.sin[k]); }
    }
    ctx.closePath();
  }

  function drawCells(ctx, px) {
    var c = state.cells, a = opacity("cells");
    state.stats.cellsDrawn = 0;
    if (a <= 0 || !c || c.n === 0) { return; }
    ctx.globalAlpha = a;
    if (c.typicalRadius / px < RASTER_BELOW_PX) { rasterCells(ctx, c); } else { strokeCells(ctx, c, px); }
    state.stats.cellsDrawn = c.n;
    ctx.globalAlpha = 1;
    var sel = state.selectedCell;
    for (var j = 0; sel !== null && j < c.n; j++) {
      if (c.rows[j] === sel) {
        ctx.lineWidth = 4 * px; ctx.strokeStyle = "#000"; ctx.beginPath(); outlinePath(ctx, c, j); ctx.stroke();
        ctx.lineWidth = 2 * px; ctx.strokeStyle = "#fff"; ctx.beginPath(); outlinePath(ctx, c, j); ctx.stroke();
      }
    }
  }

  // Large cells on screen: anti-aliased vector outlines, one path per class.
  function strokeCells(ctx, c, px) {
    ctx.lineWidth = 1.5 * px;
    for (var code = 0; code < CLASS_COLOURS.length; code++) {
      ctx.strokeStyle = CLASS_COLOURS[code];
      ctx.beginPath();
      for (var i = 0; i < c.n; i++) {
        if (c.codes[i] === code) { outlinePath(ctx, c, i); }
      }
      ctx.stroke();
    }
  }

  // Small cells on screen (thousands in view): one-pixel outlines written straight into a pixel
  // buffer at screen resolution, then composited. Anti-aliased strokes cost ~30 µs a cell in a
  // software canvas; a cell this small has a perimeter of a few dozen pixels.
  function rasterCells(ctx, c) {
    var ratio = window.devicePixelRatio || 1, t = transform();
    var w = state.canvas.width, h = state.canvas.height;
    var image = new ImageData(w, h), pixels = new Uint32Array(image.data.buffer);
    var s = t.scale * ratio, ox = t.x0 * ratio + HALF * s, oy = t.y0 * ratio + HALF * s;
    var xs = new Float64Array(c.rays), ys = new Float64Array(c.rays);
    for (var i = 0; i < c.n; i++) {
      var colour = RGBA_WORDS[c.codes[i]], base = i * c.rays, cx = ox + c.x[i] * s, cy = oy + c.y[i] * s;
      for (var k = 0; k < c.rays; k++) {
        xs[k] = cx + c.radii[base + k] * c.cos[k] * s;
        ys[k] = cy + c.radii[base + k] * c.sin[k] * s;
      }
      for (var e = 0; e < c.rays; e++) {
        var f = (e + 1) % c.rays;
        line(pixels, w, h, Math.round(xs[e]), Math.round(ys[e]), Math.round(xs[f]), Math.round(ys[f]), colour);
      }
    }
    var layer = rasterCanvas(w, h);
    layer.getContext("2d").putImageData(image, 0, 0);
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(layer, 0, 0);
    ctx.restore();
  }

  function line(pixels, w, h, x0, y0, x1, y1, colour) {  // Bresenham
    var dx = Math.abs(x1 - x0), dy = -Math.abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    var err = dx + dy;
    for (;;) {
      if (x0 >= 0 && x0 < w && y0 >= 0 && y0 < h) { pixels[y0 * w + x0] = colour; }
      if (x0 === x1 && y0 === y1) { return; }
      var e2 = 2 * err;
      if (e2 >= dy) { err += dy; x0 += sx; }
      if (e2 <= dx) { err += dx; y0 += sy; }
    }
  }

  var offscreen = null;
  function rasterCanvas(w, h) {
    if (!offscreen) { offscreen = document.createElement("canvas"); }
    if (offscreen.width !== w || offscreen.height !== h) { offscreen.width = w; offscreen.height = h; }
    return offscreen;
  }

  // ------------------------------------------------------------------ cells of the view

  function parseCells(buffer) {
    var head = new DataView(buffer), inBox = head.getUint32(0, true), n = head.getUint32(4, true);
    var rays = head.getUint32(8, true), offset = 12;
    function take(Type, count) {
      var out = new Type(buffer.slice(offset, offset + count * Type.BYTES_PER_ELEMENT));
      offset += count * Type.BYTES_PER_ELEMENT;
      return out;
    }
    var c = {inBox: inBox, n: n, rays: rays, x: take(Float32Array, n), y: take(Float32Array, n),
             rows: take(Uint32Array, n), radii: take(Float32Array, n * rays), codes: take(Uint8Array, n),
             cos: [], sin: []};
    for (var k = 0; k < rays; k++) {
      var angle = -Math.PI + (k + 0.5) * 2 * Math.PI / rays;
      c.cos.push(Math.cos(angle)); c.sin.push(Math.sin(angle));
    }
    c.typicalRadius = n ? c.radii[Math.floor(c.radii.length / 2)] : 0;
    return c;
  }

  function loadCells() {
    if (!state.info) { return; }
    var box = viewBox(), ticket = ++state.cellRequest, started = performance.now();
    var query = "x0=" + box[0] + "&y0=" + box[1] + "&x1=" + box[2] + "&y1=" + box[3];
    fetch("/api/cells?" + query).then(function (r) {
      if (!r.ok) { throw new Error("cells: " + r.status); }
      return r.arrayBuffer();
    }).then(function (buffer) {
      if (ticket !== state.cellRequest) { return; }  // the view moved on meanwhile
      var arrived = performance.now();
      var c = parseCells(buffer);
      state.cells = c.n > 0 ? c : null;
      state.stats.box = box;
      state.stats.cellsInView = c.inBox;
      draw();
      var drawn = performance.now();
      state.stats.lastCellFetchMs = arrived - started;
      state.stats.lastCellDrawMs = drawn - arrived;
      state.stats.lastCellLayerMs = drawn - started;
      state.stats.cellLayerDone++;
      var note = c.inBox.toLocaleString() + " cells in view";
      if (c.n === 0 && c.inBox > 0) { note += ": zoom in to see their outlines"; }
      $("cell-count").textContent = note;
    }).catch(reportError);
  }

  var cellTimer = null;
  function scheduleCells() {
    clearTimeout(cellTimer);
    cellTimer = setTimeout(loadCells, 60);
  }

  // ------------------------------------------------------------------ clicks

  function onClick(event) {
    if (!event.quick) { return; }
    event.preventDefaultAction = true;
    var p = state.viewer.viewport.viewerElementToImageCoordinates(event.position);
    selectAt(p.x - HALF, p.y - HALF);
  }

  function selectAt(x, y) {
    var q = "x=" + x + "&y=" + y;
    return Promise.all([getJson("/api/cell-at?" + q), getJson("/api/region-at?" + q)]).then(function (answers) {
      showCell(answers[0].cell);
      showRegion(answers[1].region);
    }).catch(reportError);
  }
  state.selectAt = selectAt;

  function table(rows) {
    var t = el("table");
    rows.forEach(function (row) {
      var tr = el("tr");
      tr.appendChild(el("th", row[0]));
      tr.appendChild(el("td", fmt(row[1])));
      t.appendChild(tr);
    });
    return t;
  }

  function showCell(cell) {
    var box = $("cell-info");
    box.replaceChildren();
    state.selectedCell = cell ? cell.row : null;
    $("selection-hint").hidden = true;
    if (!cell) { box.appendChild(el("p", "No cell there.", "muted")); draw(); return; }
    box.dataset.row = String(cell.row);
    var head = el("h3", "cell " + cell.row + ": class " + cell.cell_class);
    box.appendChild(head);
    var intensity = ["none", "faint", "weak–moderate", "intense"][cell.intensity];
    box.appendChild(table([
      ["class", cell.cell_class],
      ["membrane DAB (mean, OD)", cell.membrane_dab_od],
      ["stained membrane DAB (OD)", cell.stained_dab_od],
      ["membrane DAB 90th percentile (OD)", cell.membrane_dab_od_p90],
      ["completeness (share of circumference)", cell.completeness],
      ["stained arcs basolateral/lateral", cell.lateral ? "yes" : "no"],
      ["intensity", intensity === undefined ? cell.intensity : cell.intensity + " (" + intensity + ")"],
      ["area (µm²)", cell.area_um2],
      ["centroid (level-0 px)", fmt(cell.x) + ", " + fmt(cell.y)],
      ["tile", cell.tile]
    ]));
    draw();
  }

  function showRegion(region) {
    var box = $("region-info");
    box.replaceChildren();
    if (!region) { return; }
    box.appendChild(el("h3", "region r" + region.row + " c" + region.col + " (" + region.region_um +
                              " µm): local score " + fmt(region.local_score)));
    var rows = state.info.classes.map(function (name) { return ["cells " + name, region.cells[name]]; });
    rows.push(["tumour cells", region.total]);
    if (region.cluster) { rows.push(["cluster", region.cluster]); }
    rows.push(["mean completeness", region.maps.mean_completeness]);
    rows.push(["mean membrane DAB (OD)", region.maps.mean_membrane_dab_od]);
    if (region.maps.excluded !== undefined) { rows.push(["excluded share", region.maps.excluded]); }
    box.appendChild(table(rows));
  }

  // ------------------------------------------------------------------ panel

  function showSummary(info) {
    var r = info.report;
    document.title = "HER2 review: " + info.slide.name;
    $("slide-name").textContent = info.slide.name;
    var badge = $("badge");
    badge.textContent = r.score === null ? "not scored" : r.score;
    badge.style.background = colourOf(r.score);
    if (r.score === null) { badge.classList.add("small"); }
    $("result").textContent = r.result || [r.status, r.category, r.criteria].filter(Boolean).join(" · ");
    (r.reasons || []).forEach(function (reason) { $("reasons").appendChild(el("li", reason)); });
    // What QC asks the pathologist to check on a scored slide (report.json qc.warnings).
    (r.qc_checks || []).forEach(function (check) { $("reasons").appendChild(el("li", "QC flag: " + check, "check")); });
    var h = r.heterogeneity || {};
    $("pattern").textContent = h.pattern ? "Heterogeneity: " + h.pattern + (h.reason ? ". " + h.reason : "") : "";
    var legend = $("cell-legend");
    info.classes.forEach(function (name, i) {
      var span = el("span");
      var sw = el("span", null, "swatch"); sw.style.background = CLASS_COLOURS[i];
      span.appendChild(sw); span.appendChild(document.createTextNode(name));
      legend.appendChild(span);
    });
    var details = $("slide-details");
    var rows = [["file", info.slide.name], ["path", info.slide.path],
                ["dimensions (px)", info.slide.dimensions.join(" × ")], ["pixel size (µm/px)", info.slide.mpp],
                ["vendor", info.slide.vendor]];
    Object.keys(info.slide.properties).sort().forEach(function (k) { rows.push([k, info.slide.properties[k]]); });
    details.appendChild(table(rows));
  }

  function showMaps(info) {
    var select = $("map-name");
    info.maps.layers.forEach(function (layer) {
      if (layer.name === "heterogeneity_regions") { return; }
      var option = el("option", layer.caption);
      option.value = layer.name;
      select.appendChild(option);
    });
    select.addEventListener("change", function () { loadMap(select.value); });
    loadMap(select.value);
    state.clusterImage = loadImage("/api/maps/heterogeneity_regions");
  }

  function loadImage(url) {
    var img = new Image();
    img.onload = draw;
    img.src = url;
    return img;
  }

  function loadMap(name) {
    state.mapImage = loadImage("/api/maps/" + encodeURIComponent(name));
    var layer = state.info.maps.layers.filter(function (l) { return l.name === name; })[0];
    var legend = $("map-legend");
    legend.replaceChildren();
    if (layer.kind === "labels") {
      state.info.classes.forEach(function (c, i) {
        var span = el("span"), sw = el("span", null, "swatch");
        sw.style.background = CLASS_COLOURS[i];
        span.appendChild(sw); span.appendChild(document.createTextNode("local " + c));
        legend.appendChild(span);
      });
    } else {
      var bar = el("span", null, "colourbar");
      bar.style.background = "linear-gradient(to right, rgb(68,1,84), rgb(59,82,139), rgb(33,145,140), " +
                             "rgb(94,201,98), rgb(253,231,37))";
      legend.appendChild(bar);
      legend.appendChild(el("span", "0"));
      legend.appendChild(el("span", fmt(layer.range[1]) + (layer.unit ? " " + layer.unit : "")));
    }
  }

  function linkList(list, items, label, boxOf) {
    items.forEach(function (item) {
      var li = el("li"), button = el("button", label(item));
      button.type = "button";
      button.addEventListener("click", function () { state.showBox(boxOf(item)); });
      li.appendChild(button);
      list.appendChild(li);
    });
  }

  function showLists(info) {
    var deciding = info.deciding;
    $("deciding-note").textContent = deciding.regions.length ?
      "Regions with the most " + deciding.classes.join(" / ") + " cells; a click shows the region." :
      "None: the slide was not scored.";
    linkList($("deciding"), deciding.regions,
             function (r) { return "r" + r.row + " c" + r.col + ": " + r.deciding_cells + " of " + r.total +
                                   " cells, local score " + fmt(r.local_score); },
             function (r) { return r.box_px; });
    if (!info.clusters.length) { $("clusters").appendChild(el("li", "none", "muted")); }
    linkList($("clusters"), info.clusters,
             function (c) { return "cluster " + c.label + ": " + c.regions + " regions, " + fmt(c.area_mm2) +
                                   " mm², " +
                                   c.cells + " cells (" + fmt(100 * c.share_of_tumour_cells) + "% of tumour), up to " +
                                   c.max_local_score; },
             function (c) { return c.bbox_px; });
  }

  function showQcLegend() {
    var legend = $("qc-legend"), qc = state.qc;
    legend.replaceChildren();
    var areas = qc.excluded_mm2 || {}, any = false;
    Object.keys(areas).forEach(function (reason) {
      if (!areas[reason]) { return; }
      any = true;
      var span = el("span"), sw = el("span", null, "swatch");
      sw.style.background = QC_COLOURS[reason] || "#444";
      span.appendChild(sw);
      span.appendChild(document.createTextNode(reason + " " + fmt(areas[reason]) + " mm²"));
      legend.appendChild(span);
    });
    var removed = qc.cells_removed || {};
    legend.appendChild(el("div", (any ? "" : "nothing excluded; ") + "cells removed: " + fmt(removed.qc || 0) +
                                 " by QC, " + fmt(removed.roi || 0) + " outside the ROI", "muted"));
  }

  function showRoi() {
    var legend = $("roi-legend");
    if (!state.roi) { legend.textContent = "none: the whole tissue was scored"; return; }
    var s = state.roi.summary;
    legend.appendChild(el("div", "include: " + fmt(s.include.polygons) + " polygon(s) " +
                                 (s.whole_tissue ? "(whole tissue)" : fmt(s.include.area_mm2) + " mm²")));
    legend.appendChild(el("div", "exclude: " + fmt(s.exclude.polygons) + " polygon(s), " +
                                 fmt(s.exclude.area_mm2) + " mm²"));
    var names = Object.keys(s.classes || {});
    if (names.length) {
      legend.appendChild(el("div", "classes: " + names.map(function (n) {
        return (n || "(none)") + " × " + s.classes[n];
      }).join(", ")));
    }
  }

  // ------------------------------------------------------------------ sign-off

  function fillCategories() {
    var score = $("signoff-score").value, select = $("signoff-category");
    select.replaceChildren();
    (state.info.signoff.categories[score] || []).forEach(function (c) {
      var option = el("option", c); option.value = c; select.appendChild(option);
    });
  }

  function scoreText(entry) {
    return (entry.score === null ? "not scored" : entry.score) + (entry.category ? " (" + entry.category + ")" : "");
  }

  function showSignoff(s) {
    state.info.signoff = s;
    var box = $("signoff-state"), history = $("signoff-history");
    box.replaceChildren(); history.replaceChildren();
    if (s.error) { box.appendChild(el("p", s.error, "error")); }
    var latest = s.history.length ? s.history[s.history.length - 1] : null;
    if (latest) {
      var p = el("p", null, s.current ? "signed" : "stale");
      p.appendChild(el("b", (latest.decision === "accepted" ? "Accepted" : "Amended") + ": HER2 " + scoreText(latest)));
      p.appendChild(document.createTextNode(" by " + latest.reviewer + ", " + latest.time +
        (s.current ? "" : " — signed on an earlier result of this slide")));
      box.appendChild(p);
    } else {
      box.appendChild(el("p", "Not signed off yet.", "muted"));
    }
    s.history.slice().reverse().forEach(function (e) {
      var li = el("li");
      li.appendChild(el("div", e.time + " " + e.reviewer + ": " + e.decision + " HER2 " + scoreText(e) +
                               "; algorithm " + (e.algorithm.score === null ? "not scored" : e.algorithm.score)));
      if (e.note) { li.appendChild(el("div", e.note, "muted")); }
      history.appendChild(li);
    });
  }

  function setupSignoff(info) {
    var score = $("signoff-score");
    info.classes.forEach(function (c) { var o = el("option", c); o.value = c; score.appendChild(o); });
    if (info.report.score !== null) { score.value = info.report.score; }
    score.addEventListener("change", fillCategories);
    fillCategories();
    function decision() { return document.querySelector("input[name=decision]:checked").value; }
    function toggle() { $("amend-fields").classList.toggle("hidden", decision() !== "amend"); }
    document.querySelectorAll("input[name=decision]").forEach(function (r) { r.addEventListener("change", toggle); });
    toggle();
    $("signoff-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var amend = decision() === "amend";
      var body = {reviewer: $("signoff-reviewer").value, note: $("signoff-note").value, accept: !amend,
                  score: amend ? score.value : null, category: amend ? $("signoff-category").value : null};
      $("signoff-error").textContent = "";
      fetch("/api/signoff", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
        .then(function (r) { return r.json().then(function (data) { return {ok: r.ok, data: data}; }); })
        .then(function (answer) {
          if (!answer.ok) { $("signoff-error").textContent = answer.data.error || "sign-off refused"; return; }
          $("signoff-note").value = "";
          showSignoff(answer.data);
        }).catch(reportError);
    });
    showSignoff(info.signoff);
  }

  // ------------------------------------------------------------------ start

  function reportError(error) {
    $("selection-hint").hidden = false;
    $("selection-hint").textContent = "Could not load: " + error.message;
  }

  function layerControls() {
    ["cells", "map", "clusters", "qc", "roi"].forEach(function (name) {
      $("show-" + name).addEventListener("change", draw);
      $("fade-" + name).addEventListener("input", draw);
    });
  }

  function start(info) {
    state.info = info;
    var started = performance.now();
    var viewer = OpenSeadragon({
      element: $("slide"), tileSources: info.tiles, prefixUrl: "/static/openseadragon/images/",
      drawer: "canvas", showNavigator: true, navigatorPosition: "BOTTOM_RIGHT", maxZoomPixelRatio: 4,
      visibilityRatio: 0.5, gestureSettingsMouse: {clickToZoom: false}, animationTime: 0.4,
      // a browser opens at most 6 connections to one server: leave two to the cell and click requests
      imageLoaderLimit: 4
    });
    state.viewer = viewer;
    var canvas = el("canvas", null, "layers");
    state.canvas = canvas;
    viewer.canvas.appendChild(canvas);
    viewer.addHandler("open", function () { sizeCanvas(); draw(); });
    viewer.addHandler("tile-loaded", function () {
      state.stats.tilesLoaded++;
      if (state.stats.firstTileMs === null) {
        state.stats.firstTileMs = performance.now() - started;
        loadOverlays(info);  // the slide first: the layers' requests do not hold up its first tiles
        loadCells();
      }
    });
    viewer.addHandler("resize", function () { sizeCanvas(); draw(); scheduleCells(); });
    viewer.addHandler("update-viewport", draw);
    viewer.addHandler("animation-finish", loadCells);
    viewer.addHandler("canvas-click", onClick);
    showSummary(info);
    showLists(info);
    setupSignoff(info);
    layerControls();
  }

  // The layers' data (maps, QC blocks, ROI), requested once the first tile is in.
  function loadOverlays(info) {
    showMaps(info);
    getJson("/api/qc").then(function (qc) { state.qc = qc; showQcLegend(); draw(); }).catch(reportError);
    getJson("/api/roi").then(function (r) { state.roi = r.roi; showRoi(); draw(); }).catch(reportError);
  }

  getJson("/api/info").then(start).catch(reportError);
})();

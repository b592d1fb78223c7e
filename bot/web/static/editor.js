// The cutout editor (bot/web/editor.py). No build step, no libraries: pointer events for touch,
// pen and mouse alike; the whole list of marks goes to the server on every change (undo = drop
// the last group of marks), which answers the new alpha as a greyscale PNG on the editing grid.
"use strict";
(() => {
  const T = JSON.parse(document.getElementById("texts").textContent);
  const C = JSON.parse(document.getElementById("config").textContent);
  const $ = (id) => document.getElementById(id);
  const viewport = $("viewport"), stage = $("stage"), ghost = $("ghost");
  const cutout = $("cutout"), overlay = $("overlay"), cursorBox = $("cursor");
  const W = C.width, H = C.height;
  const toPhoto = C.fullWidth / W;  // grid px -> photo px (marks are in the photo's pixels)

  // --- words ------------------------------------------------------------------------------------
  document.title = T.title + " · Cutout Bot";
  $("title").textContent = T.title;
  const modeNames = {select: T.select, keep: T.keep, erase: T.erase};
  document.querySelectorAll("#modes .button").forEach((b) => { b.textContent = modeNames[b.dataset.mode]; });
  $("modes").setAttribute("aria-label", T.mode);
  $("brush-label").textContent = T.brush;
  $("undo").textContent = T.undo; $("redo").textContent = T.redo;
  $("compare").textContent = T.compare; $("zoom-in").textContent = "+"; $("zoom-out").textContent = "−";
  $("zoom-in").setAttribute("aria-label", T.zoom_in); $("zoom-out").setAttribute("aria-label", T.zoom_out);
  const saveLabel = C.web ? T.save_web : T.save;  // a web page's photo has no chat to send to
  if (C.web) {  // opened from the web page, usually in a tab of its own: back to that page
    const back = $("back");
    back.hidden = false; back.textContent = T.back_web;
    back.addEventListener("click", (event) => {
      event.preventDefault();
      window.close();  // the page's tab is still there, and redraws what was saved when shown
      setTimeout(() => { if (history.length > 1) history.back(); else location.href = "/"; }, 300);  // not closable
    });
  }
  $("fit").textContent = T.fit; $("main-only").textContent = T.main_only; $("save").textContent = saveLabel;
  $("keys").textContent = T.keys;
  viewport.setAttribute("aria-label", T.canvas_label);
  const lang = $("lang");
  lang.textContent = T.language;
  lang.lang = C.other === "en" ? "en" : "zh-Hant-TW";
  const here = new URL(location.href);
  here.searchParams.set("lang", C.other);
  lang.href = here.pathname + here.search;

  // --- state ------------------------------------------------------------------------------------
  let mode = "select";
  let history = C.marks.length ? [C.marks] : [];  // groups of marks; undo drops the last group
  let future = [];
  let shownMarks = JSON.stringify(history.flat());
  let savedMarks = JSON.stringify(C.marks);  // what the newest saved version holds: Save waits for a change
  let photoPixels = null, currentAlpha = null, originalAlpha = null, comparing = false;
  let scale = 1, offsetX = 0, offsetY = 0;
  let sequence = 0, saving = false;
  const setState = (state) => { document.body.dataset.state = state; };
  const marks = () => history.flat();

  cutout.width = overlay.width = W; cutout.height = overlay.height = H;
  stage.style.width = W + "px"; stage.style.height = H + "px";

  // --- drawing the cutout -----------------------------------------------------------------------
  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = reject;
      image.src = url;
    });
  }
  function pixelsOf(image) {
    const canvas = document.createElement("canvas");
    canvas.width = W; canvas.height = H;
    const context = canvas.getContext("2d", {willReadFrequently: true});
    context.drawImage(image, 0, 0, W, H);
    return context.getImageData(0, 0, W, H).data;
  }
  function draw() {
    const alpha = comparing ? originalAlpha : currentAlpha;
    if (!photoPixels || !alpha) return;
    const out = new ImageData(W, H);
    out.data.set(photoPixels);
    for (let i = 3; i < out.data.length; i += 4) out.data[i] = alpha[i - 3];
    cutout.getContext("2d").putImageData(out, 0, 0);
  }
  async function fetchAlpha(list) {
    const response = await fetch(C.base + "/alpha.png", {method: "POST", headers: {"Content-Type": "application/json"},
                                                         body: JSON.stringify({marks: list}), cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    const url = URL.createObjectURL(await response.blob());
    try { return pixelsOf(await loadImage(url)); } finally { URL.revokeObjectURL(url); }
  }
  function status(text) { $("status").textContent = text || ""; $("status").hidden = !text; }
  function message(text, error) {
    $("message").textContent = text || ""; $("message").hidden = !text; $("message").classList.toggle("error", !!error);
  }

  async function refresh() {
    const list = marks();
    const wanted = JSON.stringify(list);
    const mine = ++sequence;
    setState("working"); status(T.working); message("");
    try {
      const alpha = await fetchAlpha(list);
      if (mine !== sequence) return;  // a newer change is on its way
      currentAlpha = alpha; shownMarks = wanted;
      draw();
      document.body.dataset.previews = String(Number(document.body.dataset.previews || 0) + 1);
      setState("ready"); status("");
    } catch (error) {
      if (mine !== sequence) return;
      setState("ready"); status(""); message(T.preview_failed, true);
    }
    clearOverlay();
    updateButtons();
  }

  function updateButtons() {
    $("undo").disabled = !history.length; $("redo").disabled = !future.length;
    $("main-only").hidden = !C.mainOnly.length;
    if (!saving) $("save").disabled = JSON.stringify(marks()) === savedMarks;
  }
  function commit(group) {
    history.push(group); future = [];
    setComparing(false);  // an edit is seen on the cutout it changes, not hidden behind "Before"
    updateButtons(); refresh();
  }

  // --- modes and brush --------------------------------------------------------------------------
  function setMode(next) {
    mode = next;
    document.querySelectorAll("#modes .button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.mode === mode)));
    $("hint").textContent = T["hint_" + mode];
    $("brush").disabled = mode === "select";
    viewport.style.cursor = mode === "select" ? "pointer" : "crosshair";
    showCursor();
  }
  document.querySelectorAll("#modes .button").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
  const brushScreen = () => Number($("brush").value) / 2;  // radius on screen, px
  const brushGrid = () => brushScreen() / scale;             // radius on the grid, px

  // --- zoom and pan -----------------------------------------------------------------------------
  function apply() { stage.style.transform = `translate(${offsetX}px, ${offsetY}px) scale(${scale})`; showCursor(); }
  function fit() {
    const box = viewport.getBoundingClientRect();
    scale = Math.min(box.width / W, box.height / H) * 0.96;
    offsetX = (box.width - W * scale) / 2; offsetY = (box.height - H * scale) / 2;
    apply();
  }
  function zoomAt(factor, x, y) {
    const next = Math.min(Math.max(scale * factor, 0.1), 16);
    offsetX = x - (x - offsetX) * next / scale; offsetY = y - (y - offsetY) * next / scale;
    scale = next; apply();
  }
  function zoomCentre(factor) { const box = viewport.getBoundingClientRect(); zoomAt(factor, box.width / 2, box.height / 2); }
  $("zoom-in").addEventListener("click", () => zoomCentre(1.4));
  $("zoom-out").addEventListener("click", () => zoomCentre(1 / 1.4));
  $("fit").addEventListener("click", fit);
  viewport.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = viewport.getBoundingClientRect();
    zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
  }, {passive: false});
  addEventListener("resize", fit);

  // --- pointers: one finger taps or paints (pans in Select mode), two fingers pinch and pan ----------
  const pointers = new Map();
  let stroke = null, pan = null, pinch = null, downAt = null;
  function gridPoint(clientX, clientY) {
    const box = viewport.getBoundingClientRect();
    return [(clientX - box.left - offsetX) / scale, (clientY - box.top - offsetY) / scale];
  }
  const inside = ([x, y]) => x >= 0 && y >= 0 && x < W && y < H;
  const photoPoint = ([x, y]) => [Math.round(Math.min(Math.max(x, 0), W - 0.01) * toPhoto * 10) / 10,
                                  Math.round(Math.min(Math.max(y, 0), H - 0.01) * toPhoto * 10) / 10];
  function clearOverlay() { overlay.getContext("2d").clearRect(0, 0, W, H); }
  function paintDab(from, to, keep, radius) {
    const context = overlay.getContext("2d");
    context.strokeStyle = context.fillStyle = keep ? "rgba(4,122,58,.55)" : "rgba(180,35,24,.55)";
    context.lineCap = context.lineJoin = "round"; context.lineWidth = radius * 2;
    context.beginPath(); context.moveTo(from[0], from[1]); context.lineTo(to[0], to[1]); context.stroke();
  }
  function startStroke(point) {
    stroke = {points: [point], keep: mode === "keep", radius: brushGrid()};
    paintDab(point, point, stroke.keep, stroke.radius);
  }
  function endStroke() {
    if (!stroke) return;
    const done = stroke; stroke = null;
    if (!done.points.some(inside)) { clearOverlay(); return; }
    commit([{type: "stroke", mode: done.keep ? "keep" : "erase", radius: Math.round(done.radius * toPhoto * 10) / 10,
             points: done.points.map(photoPoint)}]);
  }
  function tapAt(point) {
    if (!inside(point)) return;
    // A tap adds what is not in the cutout yet and removes what is.
    const [x, y] = point, here = currentAlpha ? currentAlpha[(Math.floor(y) * W + Math.floor(x)) * 4] : 255;
    const [px, py] = photoPoint(point);
    commit([{type: "tap", mode: here >= 128 ? "erase" : "keep", x: px, y: py}]);
  }
  viewport.addEventListener("pointerdown", (event) => {
    keyboardCursor = false; showCursor();
    if (saving) return;
    viewport.setPointerCapture(event.pointerId);
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
    if (pointers.size === 2) {  // a second finger: pinch, and forget the stroke just begun
      stroke = null; clearOverlay(); downAt = null;
      const [a, b] = [...pointers.values()];
      pinch = {distance: Math.hypot(a[0] - b[0], a[1] - b[1]), mid: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2]};
      return;
    }
    if (pointers.size > 2) return;
    downAt = [event.clientX, event.clientY];
    const point = gridPoint(event.clientX, event.clientY);
    if (mode === "select" || event.button === 1) pan = {x: event.clientX, y: event.clientY};
    else startStroke(point);
  });
  viewport.addEventListener("pointermove", (event) => {
    if (!pointers.has(event.pointerId)) return;
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
    if (pinch && pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const distance = Math.hypot(a[0] - b[0], a[1] - b[1]), mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
      const box = viewport.getBoundingClientRect();
      offsetX += mid[0] - pinch.mid[0]; offsetY += mid[1] - pinch.mid[1];
      zoomAt(distance / Math.max(pinch.distance, 1), mid[0] - box.left, mid[1] - box.top);
      pinch = {distance, mid};
      return;
    }
    if (stroke) {
      const point = gridPoint(event.clientX, event.clientY), last = stroke.points[stroke.points.length - 1];
      if (Math.hypot(point[0] - last[0], point[1] - last[1]) < Math.max(1, stroke.radius / 4)) return;
      if (stroke.points.length < 3900) { paintDab(last, point, stroke.keep, stroke.radius); stroke.points.push(point); }
    } else if (pan && downAt && Math.hypot(event.clientX - downAt[0], event.clientY - downAt[1]) > 8) {
      offsetX += event.clientX - pan.x; offsetY += event.clientY - pan.y;
      pan = {x: event.clientX, y: event.clientY}; apply();
      downAt = null;  // a drag is no tap
    }
  });
  function pointerEnd(event) {
    if (!pointers.has(event.pointerId)) return;
    pointers.delete(event.pointerId);
    if (pinch) { if (pointers.size === 0) pinch = null; return; }
    if (event.type === "pointercancel") { stroke = null; clearOverlay(); pan = null; return; }
    if (stroke) endStroke();
    else if (pan && downAt) tapAt(gridPoint(event.clientX, event.clientY));
    pan = null; downAt = null;
  }
  viewport.addEventListener("pointerup", pointerEnd);
  viewport.addEventListener("pointercancel", pointerEnd);

  // --- keyboard: a cursor on the picture, moved with the arrow keys ------------------------------
  let cursor = [W / 2, H / 2];
  let keyboardCursor = false;  // a finger's tap focuses the picture too; the ring is for keyboard users
  function showCursor() {
    const visible = document.activeElement === viewport && (keyboardCursor || viewport.matches(":focus-visible"));
    cursorBox.hidden = !visible;
    if (!visible) return;
    const ring = cursorBox.firstElementChild, size = mode === "select" ? 12 / scale : brushGrid() * 2;
    ring.style.left = cursor[0] + "px"; ring.style.top = cursor[1] + "px";
    ring.style.width = ring.style.height = size + "px";
    ring.style.borderWidth = ring.style.outlineWidth = 2 / scale + "px";
  }
  viewport.addEventListener("focus", showCursor);
  viewport.addEventListener("blur", showCursor);
  viewport.addEventListener("keydown", (event) => {
    if (!keyboardCursor) { keyboardCursor = true; showCursor(); }
    const step = (event.shiftKey ? 40 : 8) / scale;
    const moves = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step]};
    if (moves[event.key]) {
      event.preventDefault();
      const [dx, dy] = moves[event.key];
      const next = [Math.min(Math.max(cursor[0] + dx, 0), W - 1), Math.min(Math.max(cursor[1] + dy, 0), H - 1)];
      if (stroke) { paintDab(cursor, next, stroke.keep, stroke.radius); stroke.points.push(next); }
      cursor = next; showCursor();
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      if (mode === "select") tapAt(cursor);
      else if (!stroke) startStroke(cursor);  // Enter starts painting, arrows paint, Enter again ends it
      else endStroke();
    } else if (event.key === "Escape" && stroke) {
      stroke = null; clearOverlay();
    }
  });
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target instanceof HTMLInputElement && target.type !== "range") return;
    const key = event.key.toLowerCase(), command = event.ctrlKey || event.metaKey;
    if (command && key === "z") { event.preventDefault(); (event.shiftKey ? redo : undo)(); return; }
    if (command && key === "y") { event.preventDefault(); redo(); return; }
    if (command || event.altKey) return;
    if (key === "s") setMode("select");
    else if (key === "k") setMode("keep");
    else if (key === "e") setMode("erase");
    else if (key === "[" || key === "]") {
      const brush = $("brush");
      brush.value = String(Number(brush.value) + (key === "]" ? 4 : -4)); showCursor();
    } else if (key === "+" || key === "=") zoomCentre(1.4);
    else if (key === "-") zoomCentre(1 / 1.4);
    else if (key === "0") fit();
  });
  $("brush").addEventListener("input", showCursor);

  // --- undo, redo, compare, quick fix, save -------------------------------------------------------
  function undo() { if (!history.length || saving) return; future.push(history.pop()); setComparing(false); updateButtons(); refresh(); }
  function redo() { if (!future.length || saving) return; history.push(future.pop()); setComparing(false); updateButtons(); refresh(); }
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  function setComparing(on) {
    if (comparing === on) return;
    comparing = on;
    $("compare").setAttribute("aria-pressed", String(comparing));
    draw();
  }
  $("compare").addEventListener("click", () => setComparing(!comparing));
  $("main-only").addEventListener("click", () => commit(C.mainOnly.map((mark) => ({...mark}))));
  $("save").addEventListener("click", async () => {
    if (saving) return;
    saving = true; $("save").disabled = true; $("save").textContent = T.saving;
    setState("saving"); message("");
    const list = marks(), sending = JSON.stringify(list);
    try {
      const response = await fetch(C.base + "/save", {method: "POST", headers: {"Content-Type": "application/json"},
                                                       body: JSON.stringify({marks: list})});
      const body = await response.json().catch(() => null);
      if (!response.ok) throw {code: body?.errors?.[0]?.code};
      savedMarks = sending;
      setState("saved"); message(body?.web ? T.saved_web : body?.sent === false ? T.saved_not_sent : T.saved);
    } catch (error) {
      // Pressing Save again helps with a network or server hiccup, not with these.
      const words = {too_many_versions: T.too_many_versions, expired: T.expired_title};
      setState("ready"); message(words[error?.code] || T.save_failed, true);
    } finally {
      saving = false; $("save").textContent = saveLabel; updateButtons();
    }
  });

  // --- start ------------------------------------------------------------------------------------
  setMode("select");
  updateButtons();
  fit();
  (async () => {
    try {
      ghost.src = C.base + "/photo.jpg";
      const photo = await loadImage(C.base + "/photo.jpg");
      photoPixels = pixelsOf(photo);
      originalAlpha = await fetchAlpha([]);
      currentAlpha = shownMarks === "[]" ? originalAlpha : await fetchAlpha(marks());
      draw();
      setState("ready");
    } catch (error) {
      setState("failed"); message(T.preview_failed, true);
    }
  })();
})();
